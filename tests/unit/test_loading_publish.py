"""A load job whose job store fails right after the publish, against moto (in-process).

The fault is injected through botocore's own event hook (`before-call`, which short-circuits the
call so moto never applies it): the UpdateItem that marks the job succeeded fails with
ProvisionedThroughputExceededException, as DynamoDB's does when throttled.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moodboard.artifacts import CURRENT_KEY, ArtifactStore
from moodboard.load_jobs import JobStore
from moodboard.loading import CatalogLoader
from moodboard.settings import Settings
from moodboard.tables import create_tables
from moodboard_local.demo_catalog import generate_demo_catalog
from moto import mock_aws

from tests.fakes import FakeEmbedder

BUCKET = "moodboard-artifacts-test"
KEY = "catalogs/flaky/catalog.csv"


class ThrottledJobUpdates:
    """Throttles the next `failures` UpdateItem calls that set a job's status to succeeded."""

    def __init__(self, client: Any, failures: int) -> None:
        self.failures = failures
        self.throttled = 0
        client.meta.events.register_first("before-call.dynamodb.UpdateItem", self._before_call)

    def _before_call(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if self.failures <= 0 or b'"succeeded"' not in params["body"]:
            return None
        self.failures -= 1
        self.throttled += 1
        error = {"Code": "ProvisionedThroughputExceededException", "Message": "injected: the job table is throttled"}
        return AWSResponse(params["url"], 400, {}, None), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Any, Any, Settings]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        settings = Settings(artifacts_bucket=BUCKET, cache_dir=tmp_path / "cache", fetch_concurrency=2)
        create_tables(dynamodb, settings)
        catalog = generate_demo_catalog(tmp_path / "catalog", per_category=2, categories=["dress", "lamp"])
        s3.upload_file(str(catalog), BUCKET, KEY)
        for image in (catalog.parent / "images").iterdir():
            s3.upload_file(str(image), BUCKET, f"catalogs/flaky/images/{image.name}")
        yield s3, dynamodb, settings


def current_version(s3: Any) -> str | None:
    try:
        return json.loads(s3.get_object(Bucket=BUCKET, Key=CURRENT_KEY)["Body"].read())["version"]
    except s3.exceptions.NoSuchKey:
        return None


def run_load(aws: tuple[Any, Any, Settings], failures: int) -> tuple[dict[str, Any], JobStore, ThrottledJobUpdates]:
    s3, dynamodb, settings = aws
    jobs = JobStore(dynamodb, settings.jobs_table)
    job = jobs.create(KEY)
    throttle = ThrottledJobUpdates(dynamodb, failures)
    loader = CatalogLoader(store=ArtifactStore(BUCKET, s3), jobs=jobs, embedder=FakeEmbedder(source="fake/source"),
                            settings=settings)
    return loader.run(job.job_id, KEY), jobs, throttle


def test_job_store_failing_once_after_publish_still_ends_succeeded(aws: tuple[Any, Any, Settings]) -> None:
    result, jobs, throttle = run_load(aws, failures=1)

    assert throttle.throttled == 1
    assert result["status"] == "succeeded", result
    assert current_version(aws[0]) == result["version"]
    job = jobs.get(result["job_id"])
    assert job.status == "succeeded" and job.error is None
    assert job.result["version"] == result["version"] and job.progress["stage"] == "published"


def test_job_store_down_after_publish_never_records_a_failed_job(aws: tuple[Any, Any, Settings],
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    result, jobs, throttle = run_load(aws, failures=1000)

    assert throttle.throttled >= 2  # retried
    assert result["status"] == "succeeded" and current_version(aws[0]) == result["version"]
    job = jobs.get(result["job_id"])
    assert job.status == "running" and job.error is None  # never "failed": CURRENT moved
    assert "could not be marked succeeded" in caplog.text


def test_a_load_writes_the_card_the_index_list_shows(aws: tuple[Any, Any, Settings]) -> None:
    from moodboard.index_versions import IndexVersions

    result, _, _ = run_load(aws, failures=0)
    listed = IndexVersions(ArtifactStore(BUCKET, aws[0])).list(keep=10, keep_days=30)
    version = next(v for v in listed.items if v.version == result["version"])
    assert (version.catalog_key, version.categories, version.count) == (KEY, {"dress": 2, "lamp": 2}, 4)
    assert version.model == f"fake/source @ {version.model_fingerprint[:6]}"  # named by the loader's model
