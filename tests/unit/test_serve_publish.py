"""`moodboard serve`'s first publish goes through the one publish of every load
(moodboard.index_versions.publish_version): the version gets its card, so GET /admin/indexes lists
its product types and catalog, and a second start of the same bundle publishes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moodboard.artifacts import ArtifactStore
from moodboard.evaluation_routes import create_evaluations_app
from moodboard.runtime import Runtime, set_runtime
from moodboard.settings import Settings, get_settings
from moodboard.tables import create_tables
from moodboard_local.commands.serve import publish_index
from moto import mock_aws

from tests.unit.test_artifacts import FINGERPRINT, make_bundle

BUCKET = "moodboard-serve-publish-test"
ADMIN = "admin-token-for-tests"


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        settings = Settings(admin_token=ADMIN, artifacts_bucket=BUCKET, cache_dir=tmp_path / "cache")
        s3 = boto3.client("s3", region_name="us-east-1")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        create_tables(dynamodb, settings)
        runtime = Runtime(settings, s3=s3, dynamodb=dynamodb)
        set_runtime(runtime)
        try:
            yield runtime
        finally:
            set_runtime(None)


def listed(runtime: Runtime) -> dict[str, Any]:
    app = create_evaluations_app()
    app.dependency_overrides[get_settings] = lambda: runtime.settings
    response = TestClient(app).get("/admin/indexes", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_serve_first_publish_lists_the_version_with_its_product_types_and_catalog(runtime: Runtime,
                                                                                 tmp_path: Path) -> None:
    catalog = tmp_path / "shop" / "catalog.csv"
    bundle = make_bundle(tmp_path / "bundle", n=5)  # p0..p4: lamp, dress, lamp, dress, lamp

    publish_index(runtime, bundle, FINGERPRINT, catalog=catalog)

    body = listed(runtime)
    version = ArtifactStore(BUCKET, runtime.s3).current().version
    assert body["current"] == version
    [item] = body["items"]
    assert (item["version"], item["current"]) == (version, True)
    assert item["categories"] == {"dress": 2, "lamp": 3}
    assert item["catalog_key"] == str(catalog.resolve())
    assert item["count"] == 5


def test_serve_restart_with_the_same_bundle_publishes_nothing_new(runtime: Runtime, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    publish_index(runtime, bundle, FINGERPRINT)
    before = ArtifactStore(BUCKET, runtime.s3).current()

    publish_index(runtime, bundle, FINGERPRINT)

    after = ArtifactStore(BUCKET, runtime.s3).current()
    assert (after.version, after.etag) == (before.version, before.etag)
    [item] = listed(runtime)["items"]
    assert item["catalog_key"] is None and item["categories"] == {"dress": 3, "lamp": 3}


def test_serve_republishes_a_bundle_uploaded_before_after_a_rollback(runtime: Runtime, tmp_path: Path) -> None:
    """A restart with --catalog whose bundle is already a listed version, after CURRENT moved on:
    the version is promoted again instead of failing the start on the create-only upload."""
    store = ArtifactStore(BUCKET, runtime.s3)
    first = make_bundle(tmp_path / "first", seed=1)
    publish_index(runtime, first, FINGERPRINT)
    publish_index(runtime, make_bundle(tmp_path / "second", seed=2), FINGERPRINT)
    first_version = store.current().previous

    publish_index(runtime, first, FINGERPRINT)

    assert store.current().version == first_version
