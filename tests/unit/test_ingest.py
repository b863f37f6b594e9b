"""Catalog ingestion with the fake embedder: incremental reuse, failures listed, bundle written."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from PIL import Image

from moodboard.index import ProductIndex, thumbnail_path
from moodboard.ingest import load_catalog
from moodboard.settings import Settings
from tests.fakes import FakeEmbedder
from tests.loopback import QuietHandler, loopback_server


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
    index = ProductIndex.open(out, expected_fingerprint=FakeEmbedder().fingerprint)
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
    index = ProductIndex.open(out, expected_fingerprint=embedder.fingerprint)
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


def _staging(out: Path) -> list[Path]:
    """Folders a load of `out` stages in beside it (found by name, as moodboard.load_staging does)."""
    return sorted(p for p in out.parent.iterdir()
                  if p.is_dir() and p.name.startswith(tuple(f".{out.name}.{kind}-" for kind in ("thumbs", "tmp", "old"))))


def _files(folder: Path) -> dict[str, bytes]:
    """A bundle's files and their bytes, less the seal any reader rewrites (moodboard.integrity)."""
    from moodboard.integrity import SEAL_FILE

    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != SEAL_FILE}


def test_a_load_with_no_loadable_product_leaves_the_existing_bundle_byte_identical(
        catalog: Path, tmp_path: Path, settings: Settings) -> None:
    from moodboard.errors import CatalogError

    out = tmp_path / "index"
    load_catalog(catalog, FakeEmbedder(), out, settings=settings)
    before = _files(out)
    broken = tmp_path / "broken"
    broken.mkdir()
    rows = [{"id": f"p{i}", "title": "x", "category": "hat", "image": f"img/missing{i}.png", "price": "", "currency": ""}
            for i in range(3)] + [{"id": "", "title": "no id", "category": "hat", "image": "a.png", "price": "",
                                  "currency": ""}]

    with pytest.raises(CatalogError, match=r"no product of .* could be loaded \(1 rows rejected, 3 images failed\); "
                                            r"nothing was written to") as caught:
        load_catalog(_write_catalog(broken, rows), FakeEmbedder(), out, settings=settings)

    assert type(caught.value).__name__ == "NothingLoaded"
    assert _files(out) == before
    assert _staging(out) == []
    assert [f.product_id for f in caught.value.report.image_failures] == ["p0", "p1", "p2"]
    with pytest.raises(CatalogError, match="no product"):
        load_catalog(broken / "catalog.csv", FakeEmbedder(), tmp_path / "fresh", settings=settings)
    assert not (tmp_path / "fresh").exists()


def test_the_next_load_removes_what_a_killed_load_left_and_still_reuses_the_bundle(
        catalog: Path, tmp_path: Path, settings: Settings) -> None:
    out = tmp_path / "index"
    load_catalog(catalog, FakeEmbedder(), out, settings=settings)
    for name in (".index.thumbs-1700000000000000000", ".index.tmp-0a1b2c3d", ".index.old-deadbeef"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "left.jpg").write_bytes(b"x" * 1000)
    (tmp_path / ".other.tmp-0a1b2c3d").mkdir()  # another output's: not ours to remove
    assert len(_staging(out)) == 3

    report = load_catalog(catalog, FakeEmbedder(), out, settings=settings)

    assert (report.reused, report.embedded) == (6, 0)
    assert _staging(out) == []
    assert (tmp_path / ".other.tmp-0a1b2c3d").is_dir()


def test_a_bundle_a_killed_load_had_moved_aside_is_put_back(catalog: Path, tmp_path: Path, settings: Settings) -> None:
    out = tmp_path / "index"
    load_catalog(catalog, FakeEmbedder(), out, settings=settings)
    out.rename(tmp_path / ".index.old-1234abcd")  # killed between staged_dir's two renames

    report = load_catalog(catalog, FakeEmbedder(), out, settings=settings)

    assert (report.reused, report.embedded) == (6, 0)
    assert not (tmp_path / ".index.old-1234abcd").exists()


def test_a_second_load_of_a_busy_output_is_refused_and_touches_nothing(catalog: Path, tmp_path: Path,
                                                                         settings: Settings) -> None:
    import fcntl

    from moodboard.errors import MoodboardError

    out = tmp_path / "index"
    live = tmp_path / ".index.thumbs-1"
    live.mkdir()
    fd = os.open(tmp_path / ".index.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a live load
    try:
        with pytest.raises(MoodboardError, match="another load is writing") as caught:
            load_catalog(catalog, FakeEmbedder(), out, settings=settings)
        assert type(caught.value).__name__ == "LoadBusy" and caught.value.status_code == 409
    finally:
        os.close(fd)
    assert live.is_dir() and not out.exists()


KILLED_LOAD = """
import sys, time
from pathlib import Path
from moodboard.ingest import load_catalog
from moodboard.settings import Settings
from tests.fakes import FakeEmbedder

class Stuck(FakeEmbedder):
    def embed_images(self, images):
        Path(sys.argv[3]).touch()
        time.sleep(600)

load_catalog(Path(sys.argv[1]), Stuck(fingerprint="another-model"), Path(sys.argv[2]),
             settings=Settings(cache_dir=Path(sys.argv[4]), fetch_concurrency=2, embed_batch_size=2))
"""


def test_a_load_killed_with_sigkill_leaves_staging_the_next_load_cleans(catalog: Path, tmp_path: Path,
                                                                        settings: Settings) -> None:
    import signal
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "index"
    load_catalog(catalog, FakeEmbedder(), out, settings=settings)
    before = _files(out)
    started = tmp_path / "embedding-started"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo / "functions"), str(repo)])}
    process = subprocess.Popen([sys.executable, "-c", KILLED_LOAD, str(catalog), str(out), str(started),
                                str(tmp_path / "cache")], cwd=repo, env=env)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert process.poll() is None, "the load to kill exited early"
            assert time.monotonic() < deadline, "the load to kill never started embedding"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    (leftover,) = _staging(out)
    assert leftover.name.startswith(".index.thumbs-") and any(leftover.iterdir())
    assert _files(out) == before

    report = load_catalog(catalog, FakeEmbedder(), out, settings=settings)

    assert (report.loaded, report.reused) == (6, 6)
    assert _staging(out) == []


def test_a_catalog_image_url_with_an_upper_case_scheme_is_fetched_not_opened_as_a_file(
        tmp_path: Path, settings: Settings) -> None:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 90)).save(buffer, "PNG")
    served: list[str] = []

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(buffer.getvalue())))
            self.end_headers()
            self.wfile.write(buffer.getvalue())

    with loopback_server(Handler) as server:
        url = f"HTTP://127.0.0.1:{server.server_address[1]}/shoe.png"
        catalog = _write_catalog(tmp_path, [{"id": "u1", "title": "Shoe", "category": "shoe", "image": url}])
        report = load_catalog(catalog, FakeEmbedder(), tmp_path / "index",
                              settings=settings.model_copy(update={"fetch_allow_loopback": True}))

    assert (report.loaded, report.image_failures, served) == (1, [], ["/shoe.png"])


def test_progress_is_reported_through_the_callback_for_each_image_to_embed(catalog: Path, tmp_path: Path,
                                                                            settings: Settings) -> None:
    calls: list[tuple[int, int]] = []
    load_catalog(catalog, FakeEmbedder(), tmp_path / "index", settings=settings,
                 on_progress=lambda done, total: calls.append((done, total)))
    assert calls == [(done, 6) for done in range(1, 7)]
