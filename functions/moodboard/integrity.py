"""Integrity of immutable bundles: a full sha256 check once, then a cheap stat seal.

Model and index bundles never change once written (a new version is a new folder), yet hashing
them on every process start cost about a second of a 3 s cold-start budget (350 MB of fp32
graphs, a 100k-product index; docs/performance.md). So once a bundle's files match their manifest,
`verify_files` leaves a seal in the folder: for each file the digest it was checked against, its
size and its mtime. A later check hashes only the files whose size or mtime differ from the seal
(all of them when there is no seal). A file rewritten in place gets a new mtime and is hashed again.

Racy entries are never trusted: a file modified less than `SETTLE_NS` before the seal was written
could be modified again within the same clock tick without its mtime changing, so such a file is
hashed every time until it has settled (the "racy git" rule). Freshly built bundles are therefore
hashed in full on their first loads; a model baked into a Lambda image is sealed at image build time
(`python -m moodboard.integrity /opt/model`), where its files are older than the build step.

The seal guards against half-copied, truncated and corrupted bundles. It is no defence against
someone who can write the bundle folder: they could rewrite the manifest as well.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from moodboard.errors import BundleError

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
# Every bundle, model or index, is a folder whose manifest lists the sha256 of its other files.
MANIFEST_FILE = "manifest.json"
SEAL_FILE = ".moodboard-verified.json"
SEAL_FORMAT = "moodboard-seal/1"
SETTLE_NS = 2_000_000_000
# hashlib releases the GIL on large buffers: two graphs hash on two cores at once.
HASH_WORKERS = 2


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks so large graphs do not fill memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(root: Path, expected: Mapping[str, str], *, label: str) -> int:
    """Check that each file named in `expected` (path relative to `root` -> hex sha256) exists inside
    `root` and has that digest, trusting a settled seal entry instead of hashing where one matches.

    Raises BundleError naming the first missing or mismatching file. Seals the files that were hashed
    and matched (best effort: a read-only folder keeps no seal). Returns how many files were hashed.
    """
    root = Path(root)
    sealed = _read_seal(root)
    stats: dict[str, os.stat_result] = {}
    inside = _Inside(root)
    for name in expected:
        file = root / name
        if not inside(file) or not file.is_file():
            raise BundleError(f"{label}: {name} is missing")
        stats[name] = file.stat()
    to_hash = [name for name, digest in expected.items() if not _trusted(sealed.get(name), digest, stats[name])]
    if to_hash:
        with ThreadPoolExecutor(max_workers=min(HASH_WORKERS, len(to_hash))) as pool:
            digests = dict(zip(to_hash, pool.map(lambda name: sha256_file(root / name), to_hash)))
        for name in to_hash:
            if digests[name] != expected[name]:
                raise BundleError(f"{label}: {name} does not match its sha256 (corrupt or edited)")
        _write_seal(root, {**sealed, **{name: _entry(expected[name], stats[name]) for name in to_hash}})
    logger.debug("%s: %d of %d files hashed, the rest sealed", label, len(to_hash), len(expected))
    return len(to_hash)


def _entry(digest: str, stat: os.stat_result) -> dict[str, object]:
    return {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sealed_at_ns": time.time_ns()}


def _trusted(entry: object, digest: str, stat: os.stat_result) -> bool:
    """A seal entry vouches for a file only if nothing about it changed and it had settled when sealed."""
    if not isinstance(entry, dict):
        return False
    sealed_at = entry.get("sealed_at_ns")
    return (entry.get("sha256") == digest and entry.get("size") == stat.st_size
            and entry.get("mtime_ns") == stat.st_mtime_ns
            and isinstance(sealed_at, int) and stat.st_mtime_ns < sealed_at - SETTLE_NS)


def _read_seal(root: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads((root / SEAL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != SEAL_FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return {name: entry for name, entry in data["files"].items() if isinstance(entry, dict)}


def _write_seal(root: Path, entries: Mapping[str, Mapping[str, object]]) -> None:
    """Write the seal atomically (temp file + rename); a folder we may not write keeps none."""
    tmp = root / f"{SEAL_FILE}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps({"format": SEAL_FORMAT, "files": dict(entries)}), encoding="utf-8")
        os.replace(tmp, root / SEAL_FILE)
    except OSError as exc:
        logger.debug("no seal written in %s: %s", root, exc)
        tmp.unlink(missing_ok=True)


class _Inside:
    """Whether a path under `root` resolves inside it. Same answer as resolving every path, but each
    folder is resolved once and a file only when it is a link: a bundle's thousands of thumbnails
    share one folder (resolving each took 2 s of a 5,400-product index's load)."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
        self._folders: dict[Path, bool] = {}

    def _within(self, path: Path) -> bool:
        return path == self._root or self._root in path.parents

    def __call__(self, path: Path) -> bool:
        folder = path.parent
        ok = self._folders.get(folder)
        if ok is None:
            ok = self._folders[folder] = self._within(folder.resolve())
        if not ok or path.name in ("", ".", ".."):
            return False
        return self._within(path.resolve()) if path.is_symlink() else True


def seal_bundle(root: Path) -> int:
    """Verify every file a bundle's manifest.json lists (model or index bundle) and seal it; returns
    the number of files checked. For image builds: `python -m moodboard.integrity DIR`."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"no readable {MANIFEST_FILE} in {root}") from exc
    digests = manifest.get("sha256") if isinstance(manifest, dict) else None
    if not isinstance(digests, dict) or not digests:
        raise BundleError(f"{root / MANIFEST_FILE} lists no sha256")
    verify_files(root, digests, label=f"bundle {root}")
    return len(digests)


def main(argv: Sequence[str] | None = None) -> int:
    """Seal the bundle folders given on the command line; exit code 2 with one line on a bad bundle."""
    folders = list(sys.argv[1:] if argv is None else argv)
    if not folders:
        sys.stderr.write("usage: python -m moodboard.integrity BUNDLE_DIR [BUNDLE_DIR ...]\n")
        return 2
    for folder in folders:
        try:
            count = seal_bundle(Path(folder))
        except BundleError as exc:
            sys.stderr.write(f"error: {exc.message}\n")
            return 2
        sys.stdout.write(f"{folder}: {count} files verified and sealed\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
