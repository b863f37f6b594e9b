"""The loader Lambda handler with real-shaped S3 and direct events, against moto (in-process)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moodboard.artifacts import CURRENT_KEY, ArtifactStore
from moodboard.demo_catalog import generate_demo_catalog
from moodboard.jobs import JobStore
from moodboard.runtime import Runtime, set_runtime
from moodboard.settings import Settings
from moodboard.tables import create_tables
from moto import mock_aws

from tests.apigw import LambdaContext, load_event
from tests.fakes import FakeEmbedder

BUCKET = "moodboard-artifacts-test"
PREFIX = "catalogs/spring shop/"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3, boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def settings(tmp_path: Path, aws: tuple[Any, Any]) -> Iterator[Settings]:
    s3, dynamodb = aws
    settings = Settings(artifacts_bucket=BUCKET, cache_dir=tmp_path / "cache", fetch_concurrency=2)
    create_tables(dynamodb, settings)
    set_runtime(Runtime(settings, s3=s3, dynamodb=dynamodb, embedder=FakeEmbedder()))
    yield settings
    set_runtime(None)


@pytest.fixture
def handler(settings: Settings) -> Any:
    from loader.handler import handler

    return handler


def upload_catalog(s3: Any, tmp_path: Path, *, extra_rows: list[dict[str, str]] = ()) -> int:
    """A generated catalog (2 types x 3) plus extra rows, uploaded with its images; returns the good rows."""
    catalog = generate_demo_catalog(tmp_path / "catalog", per_category=3, categories=["dress", "lamp"])
    with catalog.open() as fh:
        rows = list(csv.DictReader(fh))
    with catalog.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        for row in extra_rows:
            writer.writerow({**{k: "" for k in rows[0]}, **row})
    s3.upload_file(str(catalog), BUCKET, PREFIX + "catalog.csv")
    for image in (catalog.parent / "images").iterdir():
        s3.upload_file(str(image), BUCKET, PREFIX + "images/" + image.name)
    return len(rows)


def current(s3: Any) -> dict[str, Any] | None:
    try:
        return json.loads(s3.get_object(Bucket=BUCKET, Key=CURRENT_KEY)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def test_s3_event_builds_and_publishes_an_index(handler: Any, aws: tuple[Any, Any], settings: Settings,
                                                tmp_path: Path) -> None:
    s3, dynamodb = aws
    good = upload_catalog(s3, tmp_path, extra_rows=[
        {"id": "no-category", "title": "x", "image": "images/dress-0000.jpg"},
        {"id": "lost-image", "title": "Lost", "category": "dress", "image": "images/not-uploaded.jpg"},
    ])
    event = load_event("s3_catalog_created.json")

    result = handler(event, LambdaContext())

    [outcome] = result["results"]
    assert outcome["status"] == "succeeded"
    assert outcome["loaded"] == good and outcome["embedded"] == good
    assert current(s3)["version"] == outcome["version"]
    job = JobStore(dynamodb, settings.jobs_table).get(outcome["job_id"])
    assert job.status == "succeeded"
    assert job.catalog_key == PREFIX + "catalog.csv"
    assert job.progress["stage"] == "published"
    reasons = {r.get("product_id") or r.get("line"): r["reason"] for r in job.rejects}
    assert "lost-image" in reasons and "category" in " ".join(str(v) for v in reasons.values())
    bundle = ArtifactStore(BUCKET, s3).download(outcome["version"], tmp_path / "check")
    assert (bundle / "thumbs").is_dir()


def test_direct_event_reuses_the_current_index(handler: Any, aws: tuple[Any, Any], settings: Settings,
                                               tmp_path: Path) -> None:
    s3, dynamodb = aws
    good = upload_catalog(s3, tmp_path)
    first = handler(load_event("s3_catalog_created.json"), LambdaContext())["results"][0]
    jobs = JobStore(dynamodb, settings.jobs_table)
    event = load_event("loader_direct.json")
    jobs.create(event["catalog_key"], job_id=event["job_id"])

    second = handler(event, LambdaContext())["results"][0]

    assert second["status"] == "succeeded"
    assert second["reused"] == good and second["embedded"] == 0
    assert second["version"] != first["version"]
    assert current(s3)["version"] == second["version"]
    assert jobs.get(event["job_id"]).result["version"] == second["version"]


def test_images_uploaded_next_to_a_catalog_do_not_start_loads(handler: Any, aws: tuple[Any, Any]) -> None:
    event = load_event("s3_catalog_created.json")
    event["Records"][0]["s3"]["object"]["key"] = "catalogs/spring+shop/images/dress-0000.jpg"

    assert handler(event, LambdaContext()) == {"results": []}
    assert current(aws[0]) is None


def test_redelivered_s3_event_is_skipped(handler: Any, aws: tuple[Any, Any], tmp_path: Path) -> None:
    upload_catalog(aws[0], tmp_path)
    event = load_event("s3_catalog_created.json")
    first = handler(event, LambdaContext())["results"][0]

    again = handler(event, LambdaContext())["results"][0]

    assert again == {"job_id": first["job_id"], "status": "skipped"}
    assert current(aws[0])["version"] == first["version"]


def test_catalog_without_a_loadable_product_fails_the_job_and_publishes_nothing(
        handler: Any, aws: tuple[Any, Any], settings: Settings) -> None:
    s3, dynamodb = aws
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "catalog.csv",
                  Body=b"id,title,category,image\na,A,dress,images/missing.jpg\n")

    outcome = handler(load_event("s3_catalog_created.json"), LambdaContext())["results"][0]

    assert outcome["status"] == "failed"
    assert "nothing was published" in outcome["error"]
    job = JobStore(dynamodb, settings.jobs_table).get(outcome["job_id"])
    assert job.status == "failed" and job.rejects[0]["product_id"] == "a"
    assert current(s3) is None


def test_direct_event_outside_catalogs_is_refused(handler: Any, aws: tuple[Any, Any]) -> None:
    from moodboard.errors import CatalogError

    with pytest.raises(CatalogError, match="not a catalog under catalogs/"):
        handler({"job_id": "j1", "catalog_key": "indexes/CURRENT"}, LambdaContext())


def test_zip_catalog_with_its_images_builds_and_publishes(handler: Any, aws: tuple[Any, Any], tmp_path: Path) -> None:
    import zipfile

    catalog = generate_demo_catalog(tmp_path / "zipped", per_category=2, categories=["hat", "bag"])
    archive = tmp_path / "shop.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in [catalog, *sorted((catalog.parent / "images").iterdir())]:
            zf.write(file, f"shop/{file.relative_to(catalog.parent)}")
    aws[0].upload_file(str(archive), BUCKET, "catalogs/shop.zip")
    event = load_event("s3_catalog_created.json")
    event["Records"][0]["s3"]["object"]["key"] = "catalogs/shop.zip"

    outcome = handler(event, LambdaContext())["results"][0]

    assert outcome["status"] == "succeeded", outcome
    assert outcome["loaded"] == 4 and outcome["categories"] == {"hat": 2, "bag": 2}
    assert current(aws[0])["version"] == outcome["version"]


def test_zip_with_a_member_escaping_its_folder_is_refused(handler: Any, aws: tuple[Any, Any], tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../outside.csv", "id,title,category,image\n")
    aws[0].upload_file(str(archive), BUCKET, "catalogs/evil.zip")

    outcome = handler({"job_id": "evil-1", "catalog_key": "catalogs/evil.zip"}, LambdaContext())["results"][0]

    assert outcome["status"] == "failed" and "outside its folder" in outcome["error"]
    assert current(aws[0]) is None
