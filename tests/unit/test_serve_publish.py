"""`moodboard serve`'s first publish goes through the one publish of every load
(moodboard.index_versions.publish_version): the version gets its card, so GET /admin/indexes lists
its product types and catalog, and a second start of the same bundle publishes nothing; nor does a
second start with an unchanged catalog (same content checksum, pictures and model)."""

from __future__ import annotations

import os
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
from moodboard_local.commands.serve import build_index, publish_index
from moodboard.index.manifest import read_manifest
from moto import mock_aws
from PIL import Image

from tests.fakes import FakeEmbedder
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


def _shop(folder: Path, n: int = 4) -> Path:
    """A small CSV catalog with a local picture per product."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    lines = ["id,title,category,image"]
    for i in range(n):
        Image.new("RGB", (32, 24), (40 * i, 90, 200 - 30 * i)).save(folder / "img" / f"p{i}.png")
        lines.append(f"p{i},Product {i},{'dress' if i % 2 else 'lamp'},img/p{i}.png")
    catalog = folder / "catalog.csv"
    catalog.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return catalog


def _start(runtime: Runtime, catalog: Path, embedder: FakeEmbedder, cache: Path) -> str:
    """What `moodboard serve --catalog` does with the default model: build (or keep) and publish."""
    index_dir = build_index(catalog, runtime.settings, embedder, cache)
    publish_index(runtime, index_dir, embedder.fingerprint, catalog=catalog)
    return ArtifactStore(BUCKET, runtime.s3).current().version


def test_serve_restart_with_an_unchanged_catalog_keeps_the_current_version(runtime: Runtime,
                                                                          tmp_path: Path) -> None:
    catalog, embedder = _shop(tmp_path / "shop"), FakeEmbedder()
    first = _start(runtime, catalog, embedder, tmp_path / "cache")

    second = _start(runtime, catalog, embedder, tmp_path / "cache")

    assert second == first
    assert [item["version"] for item in listed(runtime)["items"]] == [first]
    assert embedder.image_calls == 4, "the second start embedded nothing"


def test_serve_restart_with_a_changed_catalog_publishes_a_new_version(runtime: Runtime, tmp_path: Path) -> None:
    catalog, embedder = _shop(tmp_path / "shop"), FakeEmbedder()
    first = _start(runtime, catalog, embedder, tmp_path / "cache")
    catalog.write_text(catalog.read_text(encoding="utf-8").replace("Product 1", "Red dress"), encoding="utf-8")

    second = _start(runtime, catalog, embedder, tmp_path / "cache")

    assert second != first
    assert sorted(item["version"] for item in listed(runtime)["items"]) == sorted([first, second])
    assert embedder.image_calls == 4, "the titles changed, not the pictures: nothing embedded again"


def test_serve_restart_with_a_picture_replaced_in_place_publishes_a_new_version(runtime: Runtime,
                                                                               tmp_path: Path) -> None:
    catalog, embedder = _shop(tmp_path / "shop"), FakeEmbedder()
    first = _start(runtime, catalog, embedder, tmp_path / "cache")
    picture = tmp_path / "shop" / "img" / "p2.png"
    Image.new("RGB", (32, 24), (255, 0, 0)).save(picture)
    os.utime(picture, ns=(1, 1))  # a different mtime even on coarse filesystem clocks

    second = _start(runtime, catalog, embedder, tmp_path / "cache")

    assert second != first
    assert embedder.image_calls == 5, "only the replaced picture embedded again"


def test_compared_index_of_an_unchanged_catalog_keeps_its_version(settings: Settings, tmp_path: Path) -> None:
    """--compare-model's index (kept in the data folder's compared-indexes/) is rebuilt by the same
    build_index: an unchanged catalog keeps its version; a changed one gets a new one."""
    catalog, embedder = _shop(tmp_path / "shop"), FakeEmbedder(fingerprint="compared-model-0002")
    out = tmp_path / "data" / "compared-indexes" / "shop"
    first = read_manifest(build_index(catalog, settings, embedder, tmp_path / "cache", out=out)).version

    assert read_manifest(build_index(catalog, settings, embedder, tmp_path / "cache", out=out)).version == first
    catalog.write_text(catalog.read_text(encoding="utf-8") + "p9,Lamp 9,lamp,img/p0.png\n", encoding="utf-8")
    assert read_manifest(build_index(catalog, settings, embedder, tmp_path / "cache", out=out)).version != first
