"""The `moodboard` CLI end to end with the real tiny ONNX bundle and a generated catalog."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moodboard_local.cli import main


@pytest.fixture(scope="module")
def loaded_index(tiny_bundle: Path, demo_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "index"
    assert main(["load", str(demo_catalog), "--model", str(tiny_bundle), "--out", str(out), "--json"]) == 0
    return out


def _search_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    capsys.readouterr()
    assert main(["search", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_search_by_text_returns_only_the_category(loaded_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _search_json(capsys, "--index", str(loaded_index), "--text", "a dress", "--category", "dress", "-k", "5")

    assert len(out["results"]) == 5
    assert {r["category"] for r in out["results"]} == {"dress"}
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True)


def test_search_by_image_drops_the_exact_copy(loaded_index: Path, demo_catalog: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    query = demo_catalog.parent / "images" / "lamp-0003.jpg"
    # The untrained tiny model puts many drawn lamps close together, so the threshold sits just under
    # an exact copy's cosine of 1.0.
    out = _search_json(capsys, "--index", str(loaded_index), "--image", str(query), "--category", "lamp",
                       "-k", "9", "--near-copy-threshold", "0.9999")

    ids = [r["id"] for r in out["results"]]
    assert "lamp-0003" not in ids
    assert out["dropped_near_copies"] == 1
    assert len(ids) == 9 and all(i.startswith("lamp-") for i in ids)


def test_search_unknown_category_exits_2_with_one_line(loaded_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["search", "--index", str(loaded_index), "--text", "x", "--category", "spaceship"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "spaceship" in err and len(err.splitlines()) == 1


def test_load_missing_catalog_exits_2(tmp_path: Path, tiny_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", str(tmp_path / "nope.csv"), "--model", str(tiny_bundle), "--out", str(tmp_path / "i")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_reload_unchanged_catalog_reuses_every_vector(loaded_index: Path, tiny_bundle: Path, demo_catalog: Path,
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "index"
    shutil.copytree(loaded_index, copy)
    capsys.readouterr()
    assert main(["load", str(demo_catalog), "--model", str(tiny_bundle), "--out", str(copy), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["embedded"] == 0 and report["reused"] == report["loaded"] == 60


def test_load_where_every_image_fails_keeps_the_existing_index_and_exits_2(
        loaded_index: Path, tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from moodboard.integrity import SEAL_FILE

    def files(folder: Path) -> dict[str, bytes]:  # less the seal, a cache any reader rewrites
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
                if p.is_file() and p.name != SEAL_FILE}

    copy = tmp_path / "index"
    shutil.copytree(loaded_index, copy)
    before = files(copy)
    catalog = tmp_path / "gone.csv"
    catalog.write_text("id,title,category,image\na,A,dress,images/gone-a.jpg\nb,B,lamp,images/gone-b.jpg\n")
    capsys.readouterr()

    assert main(["load", str(catalog), "--model", str(tiny_bundle), "--out", str(copy), "--confirm"]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: no product of") and err[-1].endswith(f"nothing was written to {copy}")
    assert "(0 rows rejected, 2 images failed)" in err[-1]
    assert [line.split(":")[0] for line in err if line.startswith("image failed for")] == [
        "image failed for a", "image failed for b"]
    assert sum(line.startswith("error:") for line in err) == 1
    assert files(copy) == before
    assert json.loads((copy / "manifest.json").read_text())["count"] == 60


def test_a_destructive_load_needs_confirm(loaded_index: Path, tiny_bundle: Path, demo_catalog: Path,
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "index"
    shutil.copytree(loaded_index, copy)
    before = (copy / "manifest.json").read_bytes()
    lines = demo_catalog.read_text().splitlines()
    header = lines[0].split(",")
    first_type = lines[1].split(",")[header.index("category")]
    kept = [line for line in lines[1:] if line.split(",")[header.index("category")] == first_type]
    catalog = demo_catalog.parent / "one-type.csv"  # beside the images its rows name by relative path
    catalog.write_text("\n".join([lines[0], *kept]) + "\n")
    capsys.readouterr()

    assert main(["load", str(catalog), "--model", str(tiny_bundle), "--out", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: this load would remove 83% of products (50 of 60) and the "
                                               "product types ")
    assert err[0].endswith("confirm it with confirm=true (POST /admin/load) or --confirm")
    assert (copy / "manifest.json").read_bytes() == before

    assert main(["load", str(catalog), "--model", str(tiny_bundle), "--out", str(copy), "--confirm", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["loaded"] == 10 and report["reused"] == 10


def test_console_script_runs_as_a_process(loaded_index: Path) -> None:
    exe = Path(sys.executable).with_name("moodboard")
    proc = subprocess.run([str(exe), "search", "--index", str(loaded_index), "--category", "hat", "-k", "3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "hat-" in proc.stdout
