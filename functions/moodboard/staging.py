"""Stage-then-rename: a folder is written beside its destination and renamed into place whole.

Readers of the destination see the old folder or the new one, never half of one, and a failed write
leaves the old folder as it was. Every writer of a whole folder goes through `staged_dir`: the index
builder, the download of an index or model bundle from S3, the model exporter, `moodboard serve`'s
seeding of its index cache. The folders beside the destination are named by `staging_path`:
`.<name>.tmp-<token>` while writing, `.<name>.old-<token>` while the old one is moved aside (and a
load's `.<name>.thumbs-<token>`); moodboard.load_staging finds them by those names to clean up after
a killed load, and readers of a folder of bundles skip names starting with a dot.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP = "tmp"
OLD = "old"


def staging_prefix(target: Path, kind: str) -> str:
    """The name every `kind` staging folder of `target` starts with: `.<name>.<kind>-`."""
    return f".{Path(target).name}.{kind}-"


def staging_path(target: Path, kind: str, token: str | None = None) -> Path:
    """A `kind` staging folder beside `target` (not created), with a fresh token unless given."""
    target = Path(target)
    return target.parent / f"{staging_prefix(target, kind)}{token or secrets.token_hex(4)}"


@contextmanager
def staged_dir(target: Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield a new empty folder beside `target` to write into. On a clean exit it becomes `target`
    by rename: an existing `target` is moved aside first and put back if the rename fails, or, with
    `replace=False`, kept as it is (another writer of the same content finished first) and the new
    folder dropped. On an error the new folder is removed and `target` is left untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    staging = staging_path(target, TMP, token)
    staging.mkdir()
    try:
        yield staging
        if replace:
            _replace_dir(staging, target, token)
        else:
            _rename_unless_there(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_dir(new: Path, target: Path, token: str) -> None:
    """Move `new` to `target`; an existing `target` is moved aside first and restored on failure."""
    if not target.exists():
        os.rename(new, target)
        return
    old = staging_path(target, OLD, token)
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _rename_unless_there(new: Path, target: Path) -> None:
    """Move `new` to `target` unless a folder is there already; then `new` is removed."""
    try:
        os.rename(new, target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(new, ignore_errors=True)
