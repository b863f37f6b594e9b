"""The index bundle, in one place: what it is on disk, how it is built, how it is read and searched.

    manifest       the manifest model, the bundle's file names, thumbnail naming, `verify()`
    builder        IndexBuilder: a bundle built once from the final products and vectors
    product_index  ProductIndex: a loaded bundle, read-only (load, search, get, vector, categories)
    records        products.jsonl: the fast records reader and its writer

The names below are imported from here (`from moodboard.index import ProductIndex`) and load their
module on first use, so `verify` costs no numpy or hnswlib import (the artifact store uses it).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moodboard.index.builder import IndexBuilder
    from moodboard.index.manifest import IndexManifest, read_manifest, thumbnail_path, verify
    from moodboard.index.product_index import Hit, ProductIndex

_HOMES = {
    "IndexBuilder": "builder",
    "IndexManifest": "manifest",
    "read_manifest": "manifest",
    "thumbnail_path": "manifest",
    "verify": "manifest",
    "Hit": "product_index",
    "ProductIndex": "product_index",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)
