"""Where a sharded load keeps its files: S3 under `loads/<job>/` of the artifacts bucket (AWS, and
`moodboard serve`'s moto), or a local folder (`moodboard load --workers N`).

Both stores take the same names (`plan.json`, `shards/00003/done.json` ...), so the plan, the
workers and the reduce step (moodboard.shards) run unchanged on either. A file appears whole or not
at all: S3 writes objects atomically, the local store writes a temporary file and renames it, so a
load killed mid-write never leaves a half-written checkpoint. `read_result(key)` reads what the
Distributed Map's ResultWriter wrote, by its key in the bucket (locally: under the folder that plays
the bucket).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from moodboard.artifacts import ArtifactStore, s3_errors
from moodboard.errors import BundleError, NotFound

LOADS_PREFIX = "loads/"


class JobFiles(Protocol):
    """The files of one load job."""

    job_id: str

    def read(self, name: str) -> bytes:
        """The file's bytes; BundleError when it does not exist."""

    def write(self, name: str, data: bytes) -> None:
        """Create or replace the file, whole."""

    def exists(self, name: str) -> bool:
        """Whether the file exists."""

    def upload(self, path: Path, name: str) -> None:
        """Store a local file under the name."""

    def read_result(self, key: str) -> bytes:
        """An object the Distributed Map's ResultWriter wrote, by its key in the bucket."""

    def result_key(self, name: str) -> str:
        """The key in the bucket of one of this job's files (what read_result takes)."""


def _check(name: str) -> str:
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or ".." in parts:
        raise BundleError(f"refusing the load file name {name!r}")
    return name


class S3JobFiles:
    """A job's files in the artifacts bucket, under loads/<job_id>/."""

    def __init__(self, store: ArtifactStore, job_id: str) -> None:
        self.store = store
        self.job_id = _check(job_id)
        self.prefix = f"{LOADS_PREFIX}{job_id}/"

    def result_key(self, name: str) -> str:
        return self.prefix + _check(name)

    def read(self, name: str) -> bytes:
        return self.read_result(self.result_key(name))

    def read_result(self, key: str) -> bytes:
        with s3_errors(f"read {key}", missing=BundleError(f"s3://{self.store.bucket}/{key} does not exist")):
            return self.store.client.get_object(Bucket=self.store.bucket, Key=key)["Body"].read()

    def write(self, name: str, data: bytes) -> None:
        key = self.result_key(name)
        with s3_errors(f"write {key}"):
            self.store.client.put_object(Bucket=self.store.bucket, Key=key, Body=data)

    def exists(self, name: str) -> bool:
        key = self.result_key(name)
        try:
            with s3_errors(f"look for {key}", missing=NotFound(f"no {key}")):
                self.store.client.head_object(Bucket=self.store.bucket, Key=key)
        except NotFound:
            return False
        return True

    def upload(self, path: Path, name: str) -> str:
        """Store a local file; returns its ETag (the MD5 of a single-PUT object: a content key)."""
        key = self.result_key(name)
        with s3_errors(f"upload {key}"), Path(path).open("rb") as fh:
            response: dict[str, Any] = self.store.client.put_object(Bucket=self.store.bucket, Key=key, Body=fh)
        return str(response.get("ETag", "")).strip('"')


class LocalJobFiles:
    """A job's files in `root/<job_id>/`; `root` plays the bucket (map results live beside the jobs)."""

    def __init__(self, root: Path, job_id: str) -> None:
        self.root = Path(root)
        self.job_id = _check(job_id)
        self.folder = self.root / job_id

    def result_key(self, name: str) -> str:
        return f"{self.job_id}/{_check(name)}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*PurePosixPath(_check(key)).parts)

    def read(self, name: str) -> bytes:
        return self.read_result(self.result_key(name))

    def read_result(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise BundleError(f"{path} does not exist") from exc

    def write(self, name: str, data: bytes) -> None:
        self.write_result(self.result_key(name), data)

    def write_result(self, key: str, data: bytes) -> None:
        """Write a file by its key under the root (the local map writes its results so)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.parent / f".{path.name}.{secrets.token_hex(4)}"
        try:
            with staging.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(staging, path)
        finally:
            staging.unlink(missing_ok=True)

    def exists(self, name: str) -> bool:
        return self._path(self.result_key(name)).is_file()

    def upload(self, path: Path, name: str) -> str:
        self.write(name, Path(path).read_bytes())
        return ""
