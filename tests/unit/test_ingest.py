"""Catalog ingestion with the fake embedder: incremental reuse, failures listed, bundle written."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from PIL import Image

from moodboard.index import ProductIndex
from moodboard.ingest import load_catalog, thumbnail_path
from moodboard.settings import Settings
from tests.fakes import FakeEmbedder


def _write_catalog(folder: Path, rows: list[dict]) -> Path:
    path = folder / "catalog.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "title", "category", "image", "price", "currency"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _image(folder: Path, name: str, color: tuple[int, int, int]) -> str:
    (folder / "img").mkdir(exist_ok=True)
    Image.new("RGB", (64, 48), color).save(folder / "img" / name)
    return f"img/{name}"


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    rows = [
        {"id": f"p{i}", "title": f"Product {i}", "category": "dress" if i % 2 else "lamp",
         "image": _image(tmp_path, f"p{i}.png", (30 * i, 100, 200 - 20 * i)), "price": "10.50", "currency": "EUR"}
        for i in range(6)
    ]
    return _write_catalog(tmp_path, rows)


def test_load_writes_a_bundle_with_every_product(catalog: Path, tmp_path: Path, settings: Settings) -> None:
    out = tmp_path / "index"
    report = load_catalog(catalog, FakeEmbedder(), out, settings=settings)

    assert report.loaded == 6 and report.embedded == 6 and report.reused == 0
    assert report.categories == {"dress": 3, "lamp": 3}
    index = ProductIndex.load(out, expected_fingerprint=FakeEmbedder().fingerprint)
    assert sorted(index.categories().items()) == [("dress", 3), ("lamp", 3)]
    assert thumbnail_path(out, "p3").exists()


def test_reload_reembeds_only_changed_images(catalog: Path, tmp_path: Path, settings: Settings) -> None:
    out = tmp_path / "index"
    load_catalog(catalog, FakeEmbedder(), out, settings=settings)
    changed = tmp_path / "img" / "p2.png"
    Image.new("RGB", (64, 48), (255, 0, 0)).save(changed)
    os.utime(changed, ns=(1, 1))  # a different mtime even on coarse filesystem clocks

    embedder = FakeEmbedder()
    report = load_catalog(catalog, embedder, out, settings=settings)

    assert (report.embedded, report.reused) == (1, 5)
    assert embedder.image_calls == 1
    index = ProductIndex.load(out, expected_fingerprint=embedder.fingerprint)
    red = embedder.embed_images([Image.new("RGB", (64, 48), (255, 0, 0))])[0]
    assert float(index.vector("p2") @ red) == pytest.approx(1.0, abs=1e-5)
    assert thumbnail_path(out, "p0").exists(), "thumbnails of reused products are kept"


def test_broken_images_are_listed_and_do_not_abort(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "img" / "empty.png").write_bytes(b"")
    rows = [
        {"id": "ok", "title": "Fine", "category": "hat", "image": _image(tmp_path, "ok.png", (1, 2, 3)), "price": "1", "currency": "EUR"},
        {"id": "broken", "title": "Broken", "category": "hat", "image": "img/broken.jpg", "price": "1", "currency": "EUR"},
        {"id": "empty", "title": "Empty", "category": "hat", "image": "img/empty.png", "price": "1", "currency": "EUR"},
        {"id": "missing", "title": "Missing", "category": "hat", "image": "img/nope.png", "price": "1", "currency": "EUR"},
    ]
    report = load_catalog(_write_catalog(tmp_path, rows), FakeEmbedder(), tmp_path / "index", settings=settings)

    assert report.loaded == 1
    failed = {f.product_id: f.reason for f in report.image_failures}
    assert set(failed) == {"broken", "empty", "missing"}
    assert all(reason for reason in failed.values())


def test_bad_rows_are_reported_with_line_numbers(tmp_path: Path, settings: Settings) -> None:
    rows = [
        {"id": "a", "title": "A", "category": "hat", "image": _image(tmp_path, "a.png", (9, 9, 9)), "price": "3", "currency": "EUR"},
        {"id": "", "title": "no id", "category": "hat", "image": "img/a.png", "price": "3", "currency": "EUR"},
        {"id": "c", "title": "C", "category": "hat", "image": "img/a.png", "price": "minus three", "currency": "EUR"},
    ]
    report = load_catalog(_write_catalog(tmp_path, rows), FakeEmbedder(), tmp_path / "index", settings=settings)

    assert report.loaded == 1
    assert [r.line for r in report.rejects] == [3, 4]
