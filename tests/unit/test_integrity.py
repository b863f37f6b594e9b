"""Bundle integrity: sha256 once, then a stat seal that never vouches for a changed or racy file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from moodboard.errors import BundleError
from moodboard.integrity import SEAL_FILE, SETTLE_NS, main, seal_bundle, verify_files

PAST_NS = 1_600_000_000 * 10**9  # 2020: long settled


def write(folder: Path, name: str, data: bytes, *, settled: bool = True) -> str:
    """A file with `data`, its mtime far in the past unless `settled` is false; returns its sha256."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if settled:
        os.utime(path, ns=(PAST_NS, PAST_NS))
    return hashlib.sha256(data).hexdigest()


def two_files(folder: Path, *, settled: bool = True) -> dict[str, str]:
    return {"graph.onnx": write(folder, "graph.onnx", b"weights" * 1000, settled=settled),
            "sub/records.jsonl": write(folder, "sub/records.jsonl", b'{"id": 1}\n', settled=settled)}


def test_first_check_hashes_everything_then_the_seal_vouches_for_settled_files(tmp_path: Path) -> None:
    expected = two_files(tmp_path)
    assert verify_files(tmp_path, expected, label="bundle") == 2
    assert (tmp_path / SEAL_FILE).is_file()
    assert verify_files(tmp_path, expected, label="bundle") == 0


def test_a_file_rewritten_after_sealing_is_hashed_and_refused(tmp_path: Path) -> None:
    expected = two_files(tmp_path)
    verify_files(tmp_path, expected, label="bundle")
    (tmp_path / "graph.onnx").write_bytes(b"WEIGHTS" * 1000)  # same size, new mtime
    with pytest.raises(BundleError, match=r"bundle: graph\.onnx does not match its sha256"):
        verify_files(tmp_path, expected, label="bundle")


def test_a_truncated_file_is_refused_even_with_its_old_mtime(tmp_path: Path) -> None:
    expected = two_files(tmp_path)
    verify_files(tmp_path, expected, label="bundle")
    (tmp_path / "graph.onnx").write_bytes(b"weights")
    os.utime(tmp_path / "graph.onnx", ns=(PAST_NS, PAST_NS))
    with pytest.raises(BundleError, match="graph.onnx does not match"):
        verify_files(tmp_path, expected, label="bundle")


def test_racy_files_are_hashed_on_every_check(tmp_path: Path) -> None:
    """Files modified just before sealing could change again within the same mtime tick."""
    expected = two_files(tmp_path, settled=False)
    assert verify_files(tmp_path, expected, label="bundle") == 2
    assert verify_files(tmp_path, expected, label="bundle") == 2
    entries = json.loads((tmp_path / SEAL_FILE).read_text())["files"]
    for entry in entries.values():
        assert entry["mtime_ns"] >= entry["sealed_at_ns"] - SETTLE_NS


def test_a_seal_for_another_digest_is_not_trusted(tmp_path: Path) -> None:
    expected = two_files(tmp_path)
    verify_files(tmp_path, expected, label="bundle")
    with pytest.raises(BundleError, match="graph.onnx does not match"):
        verify_files(tmp_path, {**expected, "graph.onnx": "0" * 64}, label="bundle")


def test_a_garbled_seal_means_hashing_again(tmp_path: Path) -> None:
    expected = two_files(tmp_path)
    verify_files(tmp_path, expected, label="bundle")
    (tmp_path / SEAL_FILE).write_text("{not json")
    assert verify_files(tmp_path, expected, label="bundle") == 2


def test_missing_and_escaping_files_are_refused(tmp_path: Path) -> None:
    expected = two_files(tmp_path / "bundle")
    write(tmp_path, "outside.bin", b"x")
    with pytest.raises(BundleError, match="nope.bin is missing"):
        verify_files(tmp_path / "bundle", {**expected, "nope.bin": "0" * 64}, label="bundle")
    with pytest.raises(BundleError, match=r"\.\./outside\.bin is missing"):
        verify_files(tmp_path / "bundle", {"../outside.bin": hashlib.sha256(b"x").hexdigest()}, label="bundle")


def test_an_unwritable_seal_still_verifies(tmp_path: Path) -> None:
    expected = two_files(tmp_path)
    (tmp_path / SEAL_FILE).mkdir()  # os.replace onto a directory fails, as in a read-only image
    assert verify_files(tmp_path, expected, label="bundle") == 2
    assert verify_files(tmp_path, expected, label="bundle") == 2
    assert not list(tmp_path.glob(f"{SEAL_FILE}.*.tmp"))


def test_seal_bundle_and_its_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = two_files(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"sha256": expected}))
    assert seal_bundle(tmp_path) == 2
    assert main([str(tmp_path)]) == 0
    assert "2 files verified and sealed" in capsys.readouterr().out
    (tmp_path / "sub/records.jsonl").write_bytes(b"tampered\n")
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().endswith("sub/records.jsonl does not match its sha256 (corrupt or edited)")
    assert main([str(tmp_path / "nowhere")]) == 2
    assert main([]) == 2
