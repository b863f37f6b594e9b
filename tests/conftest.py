"""Shared fixtures: the real tiny ONNX model bundle, generated catalogs, fake embedder, settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from moodboard.settings import Settings, get_settings
from tests.catalogs import BUCKET, REGION
from tests.fakes import FakeEmbedder


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP exported through the real export path (fp32 + int8), built once per run."""
    from model_export.export import export_tiny

    return export_tiny(tmp_path_factory.mktemp("tiny-model") / "bundle", quantize="int8")


@pytest.fixture(scope="session")
def demo_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated catalog: 6 product types x 10 products with small drawn images (CSV path)."""
    from moodboard_local.demo_catalog import generate_demo_catalog

    return generate_demo_catalog(tmp_path_factory.mktemp("demo-catalog"), per_category=10)


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: caches under tmp_path, a known admin token, nothing from the environment."""
    return Settings(cache_dir=tmp_path / "cache", admin_token="test-admin-token")


@pytest.fixture(autouse=True)
def _fresh_settings_cache() -> Iterator[None]:
    """Tests that set MOODBOARD_* variables must not leak a cached Settings into the next test."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def moto_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """In-process moto with test credentials and one empty bucket (tests.catalogs.BUCKET); yields its S3 client."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield s3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests last: Playwright's sync API keeps an asyncio loop running in the main
    thread for the rest of the session, which Mangum's handler (run_until_complete) cannot share.
    Every test under tests/browser is marked, so a new browser file cannot forget its marker."""
    browser_dir = Path(__file__).parent / "browser"
    for item in items:
        if browser_dir in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
