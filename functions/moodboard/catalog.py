"""Product catalogs: the Product record and readers for CSV, JSONL and the clothing-dataset layout.

A catalog is read whole; a bad row is reported (1-based file line and a reason naming the field) and
skipped, so one typo never stops a load of thousands of products. Local image paths are resolved
against the catalog's folder at read time and stored as absolute paths, so a Product's `image` is
either an http(s) URL or an absolute file path and needs no base directory afterwards.

Local image paths must stay inside the catalog's folder: an absolute path, `~`, `file://` or a `..`
that climbs out rejects the row. The check is made on the text alone, so a reject never tells
whether a file exists elsewhere on the loader's disk. `product_url` must be an http(s) URL (it
becomes a link in the web app). A field over MAX_FIELD_CHARS rejects its row, not the catalog.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from moodboard.errors import CatalogError

logger = logging.getLogger(__name__)

FIELDS = ("id", "title", "category", "image", "product_url", "price", "currency")
REQUIRED = ("id", "category", "image")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CLOTHING_CSV = "images.csv"
CLOTHING_COLUMNS = ("image", "sender_id", "label", "kids")
URL_SCHEMES = ("http://", "https://")
WEB_SCHEMES = ("http", "https")
# Longest field (in characters) a row may hold: Python csv's own default limit, applied per row here
# so that one long field rejects its row instead of the whole catalog.
MAX_FIELD_CHARS = 128 * 1024
# The csv module's limit is process-wide; it is raised once so that its parser never stops a read
# (a catalog is in memory whole anyway), and MAX_FIELD_CHARS applies instead.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


class Product(BaseModel):
    """One catalog item. `image` is an http(s) URL or an absolute local path."""

    model_config = ConfigDict(str_strip_whitespace=True, frozen=True)

    id: str = Field(min_length=1, max_length=512)
    title: str
    category: str = Field(min_length=1, max_length=200)
    image: str = Field(min_length=1)
    product_url: str | None = None
    price: float | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("price")
    @classmethod
    def _finite_price(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @property
    def is_url(self) -> bool:
        """True when the image is fetched over http(s) rather than read from disk."""
        return is_url(self.image)


class RowReject(BaseModel):
    """A skipped catalog row: its 1-based line in the file and why it was skipped."""

    model_config = ConfigDict(frozen=True)

    line: int
    reason: str


@dataclass
class CatalogRead:
    """What a catalog read produced: the valid products (last duplicate wins), the rejects, the ids
    that occurred more than once, and the sha256 of the file(s) read (recorded in index manifests)."""

    products: list[Product]
    rejects: list[RowReject] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    checksum: str = ""
    source: Path | None = None
    format: str = ""

    def summary(self) -> str:
        """One line for people: 'loaded N, rejected M (duplicates D)'."""
        return f"loaded {len(self.products)}, rejected {len(self.rejects)} (duplicates {len(self.duplicates)})"


class _RowError(ValueError):
    """A row-level problem; becomes a RowReject."""


def is_url(image: str) -> bool:
    """True for http(s) image references."""
    return image.lower().startswith(URL_SCHEMES)


def image_content_key(product: Product) -> str:
    """A key that changes when the product's image changes, for incremental loads.

    URLs are their own key (the URL is what we fetch); local files are keyed by path, size and
    mtime_ns so a file replaced in place is re-embedded. A missing file gets a distinct key so the
    loader tries it (and reports the failure) instead of reusing an old vector.
    """
    if is_url(product.image):
        return product.image
    try:
        stat = Path(product.image).stat()
    except OSError:
        return f"file:{product.image}:missing"
    return f"file:{product.image}:{stat.st_size}:{stat.st_mtime_ns}"


def read_catalog(path: Path) -> CatalogRead:
    """Read a catalog, choosing the reader from the path: a folder holding images.csv (the
    clothing-dataset layout), a .csv file, or a .jsonl/.ndjson file. Raises CatalogError when the
    file itself cannot be read; bad rows are returned as rejects."""
    path = Path(path)
    if path.is_dir():
        if (path / CLOTHING_CSV).is_file():
            return read_clothing_dataset(path)
        raise CatalogError(f"{path} is a folder without {CLOTHING_CSV}; give a .csv or .jsonl catalog file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(path)
    if suffix in JSONL_SUFFIXES:
        return read_jsonl(path)
    raise CatalogError(f"cannot tell the catalog format of {path}: expected a .csv, .jsonl or .ndjson file "
                       f"or a clothing-dataset folder")


def read_csv(path: Path) -> CatalogRead:
    """Read a CSV catalog with a header row; columns other than the Product fields go to attributes."""
    text, checksum = _read_text(path)
    base = path.resolve().parent
    rows = _csv_rows(text, path)
    _, header = next(rows, (0, None))
    if not header or isinstance(header, _RowError):
        raise CatalogError(f"{path} is empty: expected a header row with at least {', '.join(REQUIRED)}")
    names = [name.strip() for name in header]
    lowered = [name.lower() for name in names]
    missing = [name for name in REQUIRED if name not in lowered]
    if missing:
        raise CatalogError(f"{path} has no {', '.join(repr(m) for m in missing)} column "
                           f"(header: {', '.join(names)})")
    keys = [name.lower() if name.lower() in FIELDS else name for name in names]

    def records() -> Iterator[tuple[int, dict[str, Any] | _RowError]]:
        for line, row in rows:
            if isinstance(row, _RowError):
                yield line, row
                continue
            if len(row) != len(keys):
                yield line, _RowError(f"wrong column count: expected {len(keys)}, got {len(row)}")
                continue
            yield line, dict(zip(keys, row))

    return _collect(records(), base, checksum=checksum, source=path, fmt="csv")


def read_jsonl(path: Path) -> CatalogRead:
    """Read a JSON Lines catalog: one object per line; unknown keys go to attributes."""
    text, checksum = _read_text(path)
    base = path.resolve().parent

    def records() -> Iterator[tuple[int, dict[str, Any] | _RowError]]:
        for line, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield line, _RowError(f"bad JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(obj, dict):
                yield line, _RowError(f"bad JSON: expected an object, got {type(obj).__name__}")
                continue
            yield line, obj

    return _collect(records(), base, checksum=checksum, source=path, fmt="jsonl")


def read_clothing_dataset(folder: Path) -> CatalogRead:
    """Read the clothing-dataset layout: images.csv (image,sender_id,label,kids) + images/<image>.jpg.

    The label is the category, the image id is the product id, the title is the label plus the id's
    first 8 characters ("T-Shirt 4285fab0"); sender_id and kids go to attributes.
    """
    csv_path = folder / CLOTHING_CSV
    text, checksum = _read_text(csv_path)
    base = folder.resolve()
    rows = _csv_rows(text, csv_path)
    _, header = next(rows, (0, None))
    names = [name.strip().lower() for name in header] if isinstance(header, list) else []
    missing = [name for name in CLOTHING_COLUMNS if name not in names]
    if missing:
        raise CatalogError(f"{csv_path} has no {', '.join(repr(m) for m in missing)} column "
                           f"(expected {', '.join(CLOTHING_COLUMNS)})")

    def records() -> Iterator[tuple[int, dict[str, Any] | _RowError]]:
        for line, row in rows:
            if isinstance(row, _RowError):
                yield line, row
                continue
            if len(row) != len(names):
                yield line, _RowError(f"wrong column count: expected {len(names)}, got {len(row)}")
                continue
            values = {name: value.strip() for name, value in zip(names, row)}
            image_id, label = values.pop("image"), values.pop("label")
            kids = values.pop("kids")
            record: dict[str, Any] = {
                "id": image_id,
                "category": label,
                "title": f"{label} {image_id[:8]}" if label and image_id else "",
                "image": f"images/{image_id}.jpg" if image_id else "",
                "kids": {"true": True, "false": False}.get(kids.lower(), kids),
                **values,
            }
            yield line, record

    return _collect(records(), base, checksum=checksum, source=folder, fmt="clothing-dataset")


def _read_text(path: Path) -> tuple[str, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path} is not UTF-8 text (byte {exc.start})") from exc
    return text, hashlib.sha256(data).hexdigest()


def _csv_rows(text: str, path: Path) -> Iterator[tuple[int, list[str] | _RowError]]:
    """Yield (first line of the record, fields), skipping blank lines; quoted fields may span lines.
    A record the csv parser cannot read comes as a _RowError (its row is rejected)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if line == 1:
                raise CatalogError(f"{path} line 1: unreadable CSV header ({exc})") from exc
            start, line = line, reader.line_num + 1
            yield start, _RowError(f"unreadable CSV ({exc})")
            continue
        start, line = line, reader.line_num + 1
        if row and any(cell.strip() for cell in row):
            yield start, row


def _collect(records: Iterator[tuple[int, dict[str, Any] | _RowError]], base: Path, *,
             checksum: str, source: Path, fmt: str) -> CatalogRead:
    products: dict[str, Product] = {}
    rejects: list[RowReject] = []
    duplicates: dict[str, None] = {}
    for line, record in records:
        try:
            if isinstance(record, _RowError):
                raise record
            product = _to_product(record, base)
        except _RowError as exc:
            rejects.append(RowReject(line=line, reason=str(exc)))
            continue
        if product.id in products:
            duplicates[product.id] = None
        products[product.id] = product
    read = CatalogRead(products=list(products.values()), rejects=rejects, duplicates=list(duplicates),
                       checksum=checksum, source=source, format=fmt)
    logger.info("catalog %s: %s", source, read.summary())
    return read


def _to_product(record: dict[str, Any], base: Path) -> Product:
    """Turn one raw row into a Product, or raise _RowError naming the field at fault."""
    values = {key: _blank_to_none(value) for key, value in record.items()}
    for key, value in values.items():
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            raise _RowError(f"bad {key}: longer than {MAX_FIELD_CHARS} characters")
    for name in REQUIRED:
        if values.get(name) is None:
            raise _RowError(f"missing {name}")
    attributes = values.pop("attributes", None) or {}
    if not isinstance(attributes, dict):
        raise _RowError("bad attributes: expected an object")
    known = {name: values.pop(name) for name in FIELDS if name in values}
    attributes = {**attributes, **{k: v for k, v in values.items() if v is not None}}
    for name in ("id", "category", "image", "title"):
        if name in known and known[name] is not None and not isinstance(known[name], str):
            known[name] = str(known[name])
    known["price"] = _parse_price(known.get("price"))
    currency = known.get("currency")
    if currency is not None:
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3}", currency.strip()):
            raise _RowError(f"bad currency: {currency!r} is not a 3-letter code")
        known["currency"] = currency.strip().upper()
    known["image"] = resolve_image(known["image"], base)
    product_url = known.get("product_url")
    if product_url is not None and not is_web_url(str(product_url)):
        raise _RowError("bad product_url: must be an http(s) URL")
    known["title"] = known.get("title") or known["id"]
    try:
        return Product(**known, attributes=attributes)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "row"
        raise _RowError(f"bad {where}: {error['msg']}") from None


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _parse_price(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _RowError(f"bad price: {value!r} is not a number")
    try:
        price = float(value)
    except (TypeError, ValueError):
        raise _RowError(f"bad price: {value!r} is not a number") from None
    if not math.isfinite(price):
        raise _RowError(f"bad price: {value!r} is not a finite number")
    if price < 0:
        raise _RowError(f"bad price: {value!r} is negative")
    return price


def is_web_url(url: str) -> bool:
    """True for an absolute http(s) URL with a host: the only links the web app renders."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in WEB_SCHEMES and bool(parts.hostname) and not _has_control(url)


def resolve_image(image: str, base: Path) -> str:
    """Return http(s) URLs unchanged and local paths as absolute paths under `base`; raise _RowError
    for anything else. Decided on the text alone, so the reason never depends on what exists."""
    image = image.strip()
    if is_url(image):
        return image
    if "://" in image:
        scheme = image.split("://", 1)[0].lower()
        if scheme == "file":
            raise _RowError("bad image: file:// URLs are not allowed; give a path relative to the catalog")
        raise _RowError(f"bad image: unsupported scheme {scheme!r} (use http(s) or a path relative to the catalog)")
    if _has_control(image):
        raise _RowError("bad image: the path holds a control character")
    if image.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", image):
        raise _RowError("bad image: absolute paths are not allowed; give a path relative to the catalog")
    if image.startswith("~"):
        raise _RowError("bad image: '~' paths are not allowed; give a path relative to the catalog")
    root = os.path.normpath(base)
    path = os.path.normpath(os.path.join(root, image))
    if os.path.commonpath([root, path]) != root or path == root:
        raise _RowError("bad image: the path leaves the catalog's folder")
    return path


def _has_control(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)
