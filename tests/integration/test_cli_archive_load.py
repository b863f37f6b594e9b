"""`moodboard load ARCHIVE` (no --dry-run) with the real tiny ONNX bundle: a .zip/.tar.gz catalog is
unpacked by the loader's own helper (moodboard.loading.unpack_catalog) within the archive_* limits,
loaded, and its unpacked files removed; a refused archive is one line, exit 2, --out untouched."""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from moodboard.settings import get_settings
from moodboard_local.cli import main
from moodboard_local.commands.load import LOCAL_CATALOGS_DIR

from tests.crafted_archives import add_tar


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MOODBOARD_CACHE_DIR", str(tmp_path / "cache"))
    get_settings.cache_clear()
    yield tmp_path / "cache"
    get_settings.cache_clear()


def zip_catalog(folder: Path, archive: Path) -> Path:
    """The demo catalog's folder (catalog.csv + images/) as a zip, one level down like most uploads."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"spring/{path.relative_to(folder).as_posix()}")
    return archive


def load_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    capsys.readouterr()
    assert main(["load", *args, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_load_of_a_zip_catalog_builds_the_index_and_a_reload_reuses_every_vector(
        tiny_bundle: Path, demo_catalog: Path, tmp_path: Path, cache: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    archive = zip_catalog(demo_catalog.parent, tmp_path / "spring.zip")
    out = tmp_path / "index"

    first = load_json(capsys, str(archive), "--model", str(tiny_bundle), "--out", str(out))
    assert (first["loaded"], first["embedded"], first["image_failures"]) == (60, 60, [])
    assert first["categories"] == {name: 10 for name in ("bag", "dress", "hat", "lamp", "shoes", "sofa")}
    assert not any((cache / LOCAL_CATALOGS_DIR).iterdir())  # the unpacked files are gone

    again = load_json(capsys, str(archive), "--model", str(tiny_bundle), "--out", str(out))
    assert (again["embedded"], again["reused"]) == (0, 60)  # same folder, member mtimes kept: same content keys


def test_sharded_load_of_a_tar_gz_catalog(tiny_bundle: Path, demo_catalog: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "spring.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(demo_catalog.parent, arcname="spring")
    out = tmp_path / "index"

    report = load_json(capsys, str(archive), "--model", str(tiny_bundle), "--out", str(out), "--workers", "1")

    assert (report["loaded"], report["embedded"]) == (60, 60)


@pytest.mark.parametrize(("name", "expected"), [
    ("links.tar", "links.tar holds a link ('spring/images/a.jpg' -> '/etc/passwd'); links are not allowed"),
    ("broken.zip", "broken.zip"),
])
def test_a_refused_archive_is_one_line_exit_2_and_out_untouched(
        tiny_bundle: Path, demo_catalog: Path, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str],
        name: str, expected: str) -> None:
    out = tmp_path / "index"
    load_json(capsys, str(demo_catalog), "--model", str(tiny_bundle), "--out", str(out))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    archive = tmp_path / name
    if name.endswith(".tar"):
        with tarfile.open(archive, "w") as tf:
            add_tar(tf, "spring/catalog.csv", data=demo_catalog.read_bytes())
            add_tar(tf, "spring/images/a.jpg", tarfile.SYMTYPE, linkname="/etc/passwd")
    else:
        archive.write_bytes(b"PK\x03\x04 this is no zip")
    capsys.readouterr()

    assert main(["load", str(archive), "--model", str(tiny_bundle), "--out", str(out)]) == 2

    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert not any((cache / LOCAL_CATALOGS_DIR).iterdir())
