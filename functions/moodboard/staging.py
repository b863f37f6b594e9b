"""Stage-then-rename: a folder is written beside its destination and renamed into place whole.

Readers of the destination see the old folder or the new one, never half of one, and a failed write
leaves the old folder as it was. The index builder writes its bundles through `staged_dir`; any
other writer of a whole folder (a download, an export) can do the same. The names of the folders
beside the destination (`.<name>.tmp-<token>` while writing, `.<name>.old-<token>` while the old one
is moved aside) are what moodboard.load_staging cleans up after a killed load.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Yield a new empty folder beside `target` to write into. On a clean exit it replaces `target`
    by rename (an existing `target` is moved aside first and put back if the rename fails); on an
    error it is removed and `target` is left untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    staging = target.parent / f".{target.name}.tmp-{token}"
    staging.mkdir()
    try:
        yield staging
        _replace_dir(staging, target, token)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_dir(new: Path, target: Path, token: str) -> None:
    """Move `new` to `target`; an existing `target` is moved aside first and restored on failure."""
    if not target.exists():
        os.rename(new, target)
        return
    old = target.parent / f".{target.name}.old-{token}"
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
