"""Index bundles for tests, built the way the product builds them (IndexBuilder) and loaded back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from moodboard.catalog import Product
from moodboard.index import IndexBuilder, ProductIndex
from moodboard.index.manifest import SWITCH


def build_index(path: Path, products: Sequence[Product], vectors: np.ndarray, *, fingerprint: str,
                keys: Sequence[str | None] | None = None, switch: int = SWITCH,
                catalog_sha256: str | None = None) -> ProductIndex:
    """Write a bundle of these products and vectors to `path` and load it."""
    builder = IndexBuilder(np.asarray(vectors).shape[1], fingerprint, switch=switch)
    builder.add(products, vectors, keys)
    builder.write(path, catalog_sha256=catalog_sha256)
    return ProductIndex.open(path, expected_fingerprint=fingerprint)
