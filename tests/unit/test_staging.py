"""moodboard.staging: stage-then-rename, and the staging folder names every writer shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from moodboard.load_staging import STAGING_KINDS, staging_dirs, thumbs_staging
from moodboard.staging import OLD, TMP, staged_dir, staging_path


def siblings(target: Path) -> list[str]:
    return sorted(path.name for path in target.parent.iterdir() if path != target)


def test_a_staged_folder_replaces_the_target_whole(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with staged_dir(target) as folder:
        assert folder.name.startswith(".bundle.tmp-") and folder.parent == tmp_path
        (folder / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert siblings(target) == []


def test_a_failed_write_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_dir(target) as folder:
        (folder / "half.txt").write_text("half")
        raise RuntimeError("the writer failed")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert siblings(target) == []


def test_without_replace_a_target_another_writer_finished_first_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "v1"
    with staged_dir(target, replace=False) as folder:
        (folder / "mine.txt").write_text("mine")
        target.mkdir()  # a concurrent download of the same version renamed its copy in first
        (target / "theirs.txt").write_text("theirs")
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert siblings(target) == []


def test_every_writer_names_its_staging_folders_so_a_load_finds_them(tmp_path: Path) -> None:
    out = tmp_path / "index"
    made = [staging_path(out, TMP), staging_path(out, OLD), thumbs_staging(out)]
    for path in made:
        path.mkdir()
    (tmp_path / ".other.tmp-1234").mkdir()
    assert staging_dirs(out) == sorted(made)
    assert {path.name.split(".")[2].split("-")[0] for path in made} == set(STAGING_KINDS)
