"""Catalog uploads from the team page (POST /admin/catalog-uploads): a presigned S3 POST for one
catalog file, so the file goes straight to the artifacts bucket and the API's payload stays small.

Uploads land under UPLOAD_PREFIX, which the bucket's S3 trigger does not watch (it watches
catalogs/), so an upload never starts a load by itself: the team runs the dry run first, then
POST /admin/load. CATALOG_KEY_PREFIXES is the one place that says which prefixes a dry run and a
load accept. Light on purpose (no numpy), for the evaluations function.
"""

from __future__ import annotations

import re
import uuid
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from moodboard.archives import ARCHIVE_SUFFIXES
from moodboard.errors import CatalogError, RequestTooLarge

CATALOG_PREFIX = "catalogs/"
UPLOAD_PREFIX = "uploads/catalogs/"
CATALOG_KEY_PREFIXES = (CATALOG_PREFIX, UPLOAD_PREFIX)
"""Where a catalog a load or a dry run reads may be: catalogs/ (the S3 trigger's) or the uploads."""
CATALOG_FILE_SUFFIXES = (".csv", ".jsonl", ".ndjson")
UPLOAD_SUFFIXES = CATALOG_FILE_SUFFIXES + ARCHIVE_SUFFIXES
UPLOAD_EXPIRY_S = 600
MAX_NAME = 200
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class BadUploadName(CatalogError):
    """An upload's file name is not a catalog (.csv, .jsonl, .ndjson) or an archive (.zip, .tar, .tar.gz, .tgz)."""

    status_code = 422


class UploadTooLarge(RequestTooLarge):
    """An upload is larger than the stated catalog upload limit."""


class CatalogUploadRequest(BaseModel):
    """Ask for a presigned POST for one catalog file of `size` bytes."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=MAX_NAME)
    size: int = Field(ge=1, description="bytes; at most Settings.catalog_upload_max_bytes")


class CatalogUpload(BaseModel):
    """Where and how to upload: POST `fields` + the file (last) as multipart/form-data to `url`."""

    catalog_key: str
    url: str
    fields: dict[str, str]
    max_bytes: int
    expires_in: int


def is_catalog_prefix(key: str) -> bool:
    """True for keys under one of CATALOG_KEY_PREFIXES, without '..' parts."""
    return key.startswith(CATALOG_KEY_PREFIXES) and ".." not in PurePosixPath(key).parts


def safe_name(filename: str) -> str:
    """The file name's last part with anything but letters, digits, '.', '_' and '-' replaced by '-';
    BadUploadName unless it ends with a catalog or archive suffix."""
    name = PurePosixPath(filename.replace("\\", "/")).name
    cleaned = _UNSAFE.sub("-", name).strip(".-")
    if not cleaned.lower().endswith(UPLOAD_SUFFIXES) or cleaned.lower() in UPLOAD_SUFFIXES:
        raise BadUploadName(f"{filename!r} is not a catalog: upload a {', '.join(UPLOAD_SUFFIXES)} file",
                            details={"filename": filename, "suffixes": list(UPLOAD_SUFFIXES)})
    return cleaned


def presign_upload(client: Any, bucket: str, request: CatalogUploadRequest, *, max_bytes: int,
                   expires_in: int = UPLOAD_EXPIRY_S) -> CatalogUpload:
    """A presigned POST for exactly `uploads/catalogs/<uuid>/<safe name>`, at most `max_bytes`
    (S3 enforces it with content-length-range). BadUploadName, UploadTooLarge."""
    name = safe_name(request.filename)
    if request.size > max_bytes:
        raise UploadTooLarge(f"{request.size} bytes is over the catalog upload limit of {max_bytes} bytes",
                             details={"bytes": request.size, "max_bytes": max_bytes})
    key = f"{UPLOAD_PREFIX}{uuid.uuid4().hex}/{name}"
    post = client.generate_presigned_post(
        Bucket=bucket, Key=key, Conditions=[["content-length-range", 1, max_bytes]], ExpiresIn=expires_in)
    return CatalogUpload(catalog_key=key, url=post["url"], fields={k: str(v) for k, v in post["fields"].items()},
                         max_bytes=max_bytes, expires_in=expires_in)
