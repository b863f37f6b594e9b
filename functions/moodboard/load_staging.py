"""Staging folders of loads: found by name, cleaned by the next load, never shared by two live loads.

A load of an index bundle at `<parent>/<name>` stages beside it: `.<name>.thumbs-<token>` (thumbnails,
moodboard.ingest), `.<name>.tmp-<token>` (the bundle being written) and `.<name>.old-<token>` (the
previous bundle moved aside while the new one is renamed in; both moodboard.staging.staged_dir). A load killed
with SIGKILL leaves them behind. The next load of the same output takes the output's lock
(`.<name>.lock`, an flock, which the kernel drops when its holder dies, so a dead load never holds
it), then removes them; a bundle caught moved aside with nothing in its place is put back. A second
load of an output that a live load holds is refused (LoadBusy) instead of deleting the first one's
work. The loader's per-job folders under its cache (moodboard.loading) follow the same rule with a
shared lock: each job holds it shared, and only a job that finds no other alive cleans up.

The embeddings a killed load computed are not reused by the next one: only a finished bundle lends
its vectors. A sharded load (moodboard.shards, `moodboard load --workers N`) keeps each finished
shard's vectors and resumes from them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from moodboard.errors import LoadBusy
from moodboard.staging import OLD, TMP, staging_path, staging_prefix

logger = logging.getLogger(__name__)

THUMBS = "thumbs"
STAGING_KINDS = (THUMBS, TMP, OLD)
LOCK_SUFFIX = ".lock"
WORK_ROOT_LOCK = ".loads.lock"


def lock_file(out_dir: Path) -> Path:
    """The lock a load of out_dir holds while it runs."""
    return out_dir.parent / f".{out_dir.name}{LOCK_SUFFIX}"


def thumbs_staging(out_dir: Path) -> Path:
    """A fresh name for the thumbnails folder of a load of out_dir."""
    return staging_path(out_dir, THUMBS)


def staging_dirs(out_dir: Path) -> list[Path]:
    """The staging folders of loads of out_dir that exist now (live or left behind)."""
    if not out_dir.parent.is_dir():
        return []
    prefixes = tuple(staging_prefix(out_dir, kind) for kind in STAGING_KINDS)
    return sorted(path for path in out_dir.parent.iterdir()
                  if path.name.startswith(prefixes) and path.is_dir() and not path.is_symlink())


@contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold out_dir's load lock, or raise LoadBusy when a live load holds it."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file(out_dir), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LoadBusy(f"another load is writing {out_dir}; try again when it has finished") from None
        yield
    finally:
        os.close(fd)


def clean_staging(out_dir: Path) -> list[Path]:
    """Remove what killed loads of out_dir left behind; call with output_lock held. A previous
    bundle moved aside (`.old-`) with no bundle at out_dir is renamed back first. Returns what was
    removed."""
    leftovers = staging_dirs(out_dir)
    if not out_dir.exists():
        moved_aside = [path for path in leftovers if path.name.startswith(staging_prefix(out_dir, OLD))]
        if moved_aside:
            newest = max(moved_aside, key=lambda path: path.stat().st_mtime_ns)
            os.rename(newest, out_dir)
            leftovers.remove(newest)
            logger.warning("put back the bundle a killed load had moved aside: %s -> %s", newest.name, out_dir)
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
        logger.warning("removed %s, left behind by a load that did not finish", path)
    return leftovers


@contextmanager
def shared_work_root(root: Path, clean: Callable[[], None]) -> Iterator[None]:
    """Hold root's load lock shared for one job. First, when no other job holds it, take it
    exclusively and call `clean`: whatever jobs left under root then belongs to dead ones."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / WORK_ROOT_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.debug("another load job is running; leaving the cleanup of %s to a later job", root)
        else:
            clean()
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)
