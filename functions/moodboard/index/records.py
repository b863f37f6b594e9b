"""products.jsonl of an index bundle: one Product per line plus its "label" and "content_key".

The reader is fast because nothing runs Python code per record: the lines are validated by
pydantic-core in one pass over the whole file (docs/performance.md, "Index load"); the loader reads
under `gc_paused`. A file the fast path cannot take goes through a line-by-line reader that names
the first bad line.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
from pydantic import ConfigDict, TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict

from moodboard.catalog import Product
from moodboard.errors import BundleError


class _RecordExtra(TypedDict):
    """The fields products.jsonl adds to each Product record."""

    label: int
    content_key: NotRequired[str | None]


def write_records(file: Path, products: Sequence[Product], keys: Sequence[str | None]) -> None:
    """Write products.jsonl: product i gets label i and content key keys[i]."""
    with Path(file).open("w", encoding="utf-8") as fh:
        for label, (product, key) in enumerate(zip(products, keys, strict=True)):
            record = {**product.model_dump(mode="json"), "label": label, "content_key": key}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


@cache
def _record_adapters() -> tuple[TypeAdapter[list[Product]], TypeAdapter[list[_RecordExtra]]]:
    """Validators of a whole products.jsonl as one JSON array (built on first use, not at import).
    Only keys go through pydantic-core's string cache: titles, URLs and ids are unique, and looking
    them up in it costs more than it saves."""
    config = ConfigDict(cache_strings="keys")
    return TypeAdapter(list[Product], config=config), TypeAdapter(list[_RecordExtra], config=config)


def read_records(file: Path) -> tuple[list[Product], np.ndarray, list[str | None]]:
    """The products of a products.jsonl with their labels and content keys.

    The lines are joined into one JSON array and validated by pydantic-core in two passes (the
    Product records, then the label and content key of each). A file the fast path cannot take
    (blank lines, a bad record) goes through the line-by-line reader, which accepts blank lines and
    names the first bad line in a BundleError.
    """
    raw = Path(file).read_bytes()
    lines = raw.count(b"\n") + (1 if raw and not raw.endswith(b"\n") else 0)
    document = (bytearray(b"[") + raw).replace(b"\n", b",")  # two copies, not four (strip, concat)
    if document.endswith(b","):
        document[-1:] = b"]"
    else:
        document += b"]"
    products_adapter, extra_adapter = _record_adapters()
    try:
        products = products_adapter.validate_json(document)
        extra = extra_adapter.validate_json(document)
    except ValidationError:
        return _read_records_by_line(file, raw)
    if len(products) != lines:  # a line held more than one record
        return _read_records_by_line(file, raw)
    labels = np.fromiter((record["label"] for record in extra), dtype=np.int64, count=len(extra))
    return products, labels, [record.get("content_key") for record in extra]


def _read_records_by_line(file: Path, raw: bytes) -> tuple[list[Product], np.ndarray, list[str | None]]:
    """The slow, general reader of products.jsonl: one record per non-blank line; BundleError naming
    the first line that is not a valid record."""
    extra_adapter = TypeAdapter(_RecordExtra)
    products: list[Product] = []
    labels: list[int] = []
    keys: list[str | None] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            extra = extra_adapter.validate_python(record)
            products.append(Product.model_validate(record))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise BundleError(f"{file} line {number}: {where}: {error['msg']}") from exc
        except ValueError as exc:
            raise BundleError(f"{file} line {number} is not a JSON record: {exc}") from exc
        labels.append(extra["label"])
        keys.append(extra.get("content_key"))
    return products, np.asarray(labels, dtype=np.int64), keys


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (restored as it was, also on errors): new long-lived
    records would otherwise trigger repeated full collections, none of which can find garbage. The
    objects made meanwhile are then moved straight to the oldest generation, unless someone froze
    objects on purpose (gc.freeze), whose freeze this must not undo."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()  # frozen objects go back to the oldest generation, unscanned
        if enabled:
            gc.enable()
