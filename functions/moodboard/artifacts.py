"""Index bundles (and optionally model bundles) on S3: two-phase publish and verified download.

Layout of the artifacts bucket (docs/contracts.md):

    indexes/<version>/...      immutable: every file of an index bundle, manifest.json written last
    indexes/CURRENT            {"version", "model_fingerprint", "published"}: the served version
    catalogs/...               catalog uploads (the loader's input)
    models/<fingerprint>/...   an optional model bundle

Publishing uploads a whole version first and then moves CURRENT with an S3 conditional write:
`If-None-Match: *` when there is no pointer yet, `If-Match: <ETag>` of the pointer the publisher
started from otherwise. S3 evaluates the condition atomically, so of two publishes that started
from the same pointer exactly one moves it; the other gets PublishConflict and CURRENT never points
at a half-written version. A reader downloads a version into a temporary folder, checks every file
against the manifest's sha256 and only then renames it into place.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from moodboard.aws import aws_errors
from moodboard.errors import BundleError, ConfigError, MoodboardError, NotFound, PublishConflict
from moodboard.index.manifest import VERSION_PATTERN, IndexManifest, verify
from moodboard.integrity import MANIFEST_FILE
from moodboard.staging import staged_dir

logger = logging.getLogger(__name__)

INDEX_PREFIX = "indexes/"
CURRENT_KEY = "indexes/CURRENT"
CATALOG_PREFIX = "catalogs/"
MODEL_PREFIX = "models/"
UPLOAD_WORKERS = 8
# Files up to this size go up in one PUT; bigger ones through boto3's multipart transfer.
SINGLE_PUT_BYTES = 64 * 1024 * 1024
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_SAFE_VERSION = re.compile(VERSION_PATTERN)


@dataclass(frozen=True)
class Pointer:
    """The CURRENT pointer as read: which version is served, with which model, and its ETag."""

    version: str
    model_fingerprint: str
    etag: str
    published: str | None = None
    previous: str | None = None
    """The version CURRENT pointed at before this move (kept by the retention rule)."""


def s3_errors(action: str, *, missing: MoodboardError | None = None,
              conflict: MoodboardError | None = None) -> AbstractContextManager[None]:
    """S3's error mapping: a missing object raises `missing`, a failed condition (If-Match,
    If-None-Match) `conflict` (when given); any other failure StoreError (503) saying what we were
    doing (moodboard.aws.aws_errors)."""
    errors = {**dict.fromkeys(_MISSING_CODES, missing), **dict.fromkeys(_CONFLICT_CODES, conflict)}
    return aws_errors("S3", action, {code: error for code, error in errors.items() if error is not None})


def check_version(version: str) -> str:
    """A version string safe to use as one path segment (it names folders on S3 and in /tmp)."""
    if not isinstance(version, str) or not _SAFE_VERSION.match(version):
        raise BundleError(f"invalid index version {version!r}")
    return version


class ArtifactStore:
    """Index bundles in one S3 bucket. Receives its boto3 S3 client (moto in tests)."""

    def __init__(self, bucket: str, client: Any) -> None:
        if not bucket:
            raise ConfigError("no artifacts bucket configured (MOODBOARD_ARTIFACTS_BUCKET)")
        self.bucket = bucket
        self.client = client

    # --- the pointer ---------------------------------------------------------------------------

    def current(self) -> Pointer | None:
        """The CURRENT pointer, or None when nothing has been published yet."""
        try:
            with s3_errors(f"read {CURRENT_KEY}", missing=NotFound(f"no {CURRENT_KEY}")):
                response = self.client.get_object(Bucket=self.bucket, Key=CURRENT_KEY)
                body = response["Body"].read()
        except NotFound:
            return None
        try:
            data = json.loads(body)
            previous = data.get("previous")
            return Pointer(version=check_version(data["version"]), model_fingerprint=str(data["model_fingerprint"]),
                           etag=response["ETag"], published=data.get("published"),
                           previous=check_version(previous) if previous else None)
        except (ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"{CURRENT_KEY} is not a valid pointer") from exc

    def move_current(self, version: str, model_fingerprint: str, *, expected: Pointer | None) -> Pointer:
        """Point CURRENT at `version` if it still is `expected` (None: if there is no pointer yet).

        The condition is checked by S3 (If-Match / If-None-Match), atomically. PublishConflict when
        another publish moved the pointer first.
        """
        check_version(version)
        published = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        previous = expected.version if expected is not None and expected.version != version else (
            expected.previous if expected is not None else None)
        body = json.dumps({"version": version, "model_fingerprint": model_fingerprint, "published": published,
                           "previous": previous})
        condition = {"IfMatch": expected.etag} if expected is not None else {"IfNoneMatch": "*"}
        moved = PublishConflict(f"another publish moved {CURRENT_KEY} first; {version} was uploaded but is not current",
                                details={"version": version})
        with s3_errors(f"move {CURRENT_KEY}", conflict=moved, missing=moved if expected is not None else None):
            response = self.client.put_object(Bucket=self.bucket, Key=CURRENT_KEY, Body=body.encode(),
                                              ContentType="application/json", **condition)
        logger.info("CURRENT -> %s (model %s)", version, model_fingerprint)
        return Pointer(version=version, model_fingerprint=model_fingerprint, etag=response["ETag"],
                       published=published, previous=previous)

    # --- publishing ----------------------------------------------------------------------------

    def upload_version(self, index_dir: Path) -> IndexManifest:
        """Upload a verified index bundle to indexes/<version>/, manifest.json last and create-only
        (a version is never overwritten). Returns the manifest."""
        index_dir = Path(index_dir)
        manifest = verify(index_dir)
        version = manifest.version
        prefix = f"{INDEX_PREFIX}{version}/"
        files = sorted(p for p in index_dir.rglob("*") if p.is_file() and p.name != MANIFEST_FILE
                       and not any(part.startswith(".") for part in p.relative_to(index_dir).parts))
        with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS) as pool:
            for future in [pool.submit(self._upload_file, f, prefix + f.relative_to(index_dir).as_posix())
                           for f in files]:
                future.result()
        published = PublishConflict(f"index version {version} was already published", details={"version": version})
        with s3_errors(f"upload {prefix}{MANIFEST_FILE}", conflict=published):
            self.client.put_object(Bucket=self.bucket, Key=prefix + MANIFEST_FILE,
                                   Body=(index_dir / MANIFEST_FILE).read_bytes(),
                                   ContentType="application/json", IfNoneMatch="*")
        logger.info("uploaded index %s (%d files)", version, len(files) + 1)
        return manifest

    def _upload_file(self, path: Path, key: str) -> None:
        with s3_errors(f"upload {key}"):
            if path.stat().st_size <= SINGLE_PUT_BYTES:
                with path.open("rb") as fh:
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=fh)
            else:
                self.client.upload_file(str(path), self.bucket, key)

    def publish(self, index_dir: Path, *, base: Pointer | None | object = ...) -> Pointer:
        """Publish an index bundle: upload it as an immutable version, then move CURRENT to it. The
        two steps alone (no card, no retention): loads and serve publish through
        moodboard.index_versions.publish_version, which adds them.

        `base` is the pointer the bundle was built from (the loader reads it before building, for
        incremental reuse); by default it is read now, before the upload. CURRENT moves only if it
        still is `base`, so of concurrent publishes exactly one wins and the others raise
        PublishConflict. Any failure before the move leaves CURRENT untouched.
        """
        expected = self.current() if base is ... else base
        assert expected is None or isinstance(expected, Pointer)
        manifest = self.upload_version(index_dir)
        return self.move_current(manifest.version, manifest.model_fingerprint, expected=expected)

    # --- reading -------------------------------------------------------------------------------

    def download(self, version: str, dest_root: Path) -> Path:
        """Download indexes/<version>/ to dest_root/<version> and verify it; returns that folder.

        The files land in a temporary sibling first and are checked against the manifest's sha256;
        only a complete, verified bundle is renamed into place. A verified copy already there is
        reused. BundleError for a missing or corrupt version, StoreError for S3 failures.
        """
        check_version(version)
        dest_root = Path(dest_root)
        final = dest_root / version
        if final.is_dir():
            try:
                verify(final)
                return final
            except BundleError:
                logger.warning("cached index %s is corrupt; downloading it again", version)
                shutil.rmtree(final, ignore_errors=True)
        with staged_dir(final, replace=False) as staging:
            self.download_prefix(f"{INDEX_PREFIX}{version}/", staging)
            if not (staging / MANIFEST_FILE).exists():
                raise BundleError(f"index version {version} is missing or incomplete on S3 (no {MANIFEST_FILE})")
            verify(staging)
        return final

    def download_prefix(self, prefix: str, dest: Path, *, preserve_mtime: bool = False) -> int:
        """Download every object under `prefix` into `dest`, keeping relative paths; returns the count.
        Keys that would escape `dest` are refused. With `preserve_mtime` each file's mtime is the
        object's LastModified, so an unchanged object gives an unchanged (path, size, mtime)."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        objects: list[dict[str, Any]] = []
        with s3_errors(f"list {prefix}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                objects.extend(page.get("Contents", []))
        jobs = []
        for obj in objects:
            key = obj["Key"]
            relative = PurePosixPath(key[len(prefix):])
            if not relative.parts or ".." in relative.parts or relative.is_absolute():
                raise BundleError(f"refusing the S3 key {key!r}: it leaves {prefix}")
            if key.endswith("/"):
                continue
            jobs.append((key, dest.joinpath(*relative.parts), obj.get("LastModified") if preserve_mtime else None))
        with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS) as pool:
            for future in [pool.submit(self._download_listed, *job) for job in jobs]:
                future.result()
        return len(jobs)

    def _download_listed(self, key: str, path: Path, modified: datetime | None) -> None:
        self.download_file(key, path)
        if modified is not None:
            stamp = modified.timestamp()
            os.utime(path, (stamp, stamp))

    def download_file(self, key: str, path: Path, *, preserve_mtime: bool = False) -> Path:
        """Download one object to `path` (parents created); BundleError when it does not exist.
        With `preserve_mtime` the file's mtime is the object's LastModified."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with s3_errors(f"download {key}", missing=BundleError(f"s3://{self.bucket}/{key} does not exist")):
            if preserve_mtime:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
                with path.open("wb") as fh:
                    for chunk in response["Body"].iter_chunks(1 << 20):
                        fh.write(chunk)
                stamp = response["LastModified"].timestamp()
                os.utime(path, (stamp, stamp))
            else:
                self.client.download_file(self.bucket, key, str(path))
        return path


def split_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/prefix -> (bucket, prefix ending in / or empty). ConfigError for anything else."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(f"not an s3:// URI: {uri!r}")
    prefix = parsed.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return parsed.netloc, prefix


def download_model(uri: str, client: Any, cache_dir: Path) -> Path:
    """Download a model bundle from s3://bucket/prefix/ to cache_dir/models/<name> once per container;
    the embedder verifies its sha256 when it loads it."""
    bucket, prefix = split_s3_uri(uri)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{bucket}_{prefix}".strip("/_")) or "model"
    final = Path(cache_dir) / "models" / name
    if (final / MANIFEST_FILE).is_file():
        return final
    shutil.rmtree(final, ignore_errors=True)  # a folder without a manifest is not a bundle
    with staged_dir(final, replace=False) as staging:
        count = ArtifactStore(bucket, client).download_prefix(prefix, staging)
        if not count or not (staging / MANIFEST_FILE).is_file():
            raise BundleError(f"no model bundle at {uri} (no {MANIFEST_FILE})")
    logger.info("downloaded model bundle %s (%d files)", uri, count)
    return final
