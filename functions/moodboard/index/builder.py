"""Builds an index bundle once, from the final set of products and their vectors.

`IndexBuilder` collects products, their L2-normalised vectors and image content keys (`add`);
`write` then decides the category graphs from the final membership (a category with more products
than the switch gets one), builds the global graph and those graphs, and writes the bundle through
moodboard.staging.staged_dir, so a reader of the destination sees the old bundle or the new one,
never half of one. A bundle is never changed afterwards: the next load builds a new one.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import hnswlib
import numpy as np

from moodboard.catalog import Product
from moodboard.index.manifest import (
    EF_CONSTRUCTION,
    GRAPHS_DIR,
    INDEX_FILE,
    MANIFEST_FILE,
    PRODUCTS_FILE,
    SPACE,
    SWITCH,
    BuildParams,
    GraphEntry,
    IndexManifest,
    M,
    graph_file,
)
from moodboard.index.records import write_records
from moodboard.integrity import sha256_file
from moodboard.staging import staged_dir
from moodboard.vectors import Vector, l2_normalize

logger = logging.getLogger(__name__)

RANDOM_SEED = 100
# Rows gathered per add_items call while a graph is built (bounds the temporary copy).
GRAPH_BUILD_CHUNK = 50_000


def build_graph(vectors: np.ndarray, labels: np.ndarray) -> hnswlib.Index:
    """An hnswlib graph (SPACE, M, EF_CONSTRUCTION) of the rows `labels` of `vectors`, each under its
    row number as label: the global graph (every row) or one category's."""
    hnsw = hnswlib.Index(space=SPACE, dim=vectors.shape[1])
    hnsw.init_index(max_elements=max(labels.size, 1), M=M, ef_construction=EF_CONSTRUCTION, random_seed=RANDOM_SEED)
    for start in range(0, labels.size, GRAPH_BUILD_CHUNK):
        chunk = labels[start:start + GRAPH_BUILD_CHUNK]
        hnsw.add_items(vectors[chunk], chunk)
    return hnsw


class IndexBuilder:
    """The products of one bundle and their vectors, gathered before it is written once.

    Product i (in the order added) gets label i: node i of the global graph, whose file index.bin is
    the one place the bundle stores the vectors (moodboard.index.stored_vectors reads them there).
    """

    def __init__(self, dim: int, model_fingerprint: str, *, model_precision: str = "fp32",
                 switch: int = SWITCH) -> None:
        self.dim = dim
        self.model_fingerprint = model_fingerprint
        self.model_precision = model_precision
        self.switch = switch
        self.seconds: dict[str, float] = {}
        self._products: list[Product] = []
        self._keys: list[str | None] = []
        self._vectors: list[Vector] = []
        self._ids: set[str] = set()

    def __len__(self) -> int:
        return len(self._products)

    def add(self, products: Sequence[Product], vectors: Vector, keys: Sequence[str | None] | None = None) -> None:
        """Add products with their vectors (normalised here) and the image content keys the vectors
        were computed from (catalog.image_content_key). ValueError for an id added before or shapes
        that do not fit."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(products), self.dim):
            raise ValueError(f"{len(products)} products need vectors of shape ({len(products)}, {self.dim}), "
                             f"not {vectors.shape}")
        if keys is not None and len(keys) != len(products):
            raise ValueError(f"{len(products)} products but {len(keys)} keys")
        ids = [product.id for product in products]
        fresh = set(ids)
        if len(fresh) != len(ids) or not self._ids.isdisjoint(fresh):
            repeated = sorted(self._ids & fresh) or sorted(i for i, n in Counter(ids).items() if n > 1)
            raise ValueError(f"product ids added twice: {', '.join(repeated[:5])}")
        self._ids |= fresh
        self._products.extend(products)
        self._keys.extend(keys if keys is not None else [None] * len(products))
        self._vectors.append(l2_normalize(vectors))

    def rows(self) -> tuple[list[Product], Vector, list[str | None]]:
        """The products added so far, their (normalised) vectors as one (n, dim) array and their
        content keys, in label order: what a shard worker keeps of a batch it embedded."""
        return list(self._products), self._matrix(), list(self._keys)

    def _matrix(self) -> Vector:
        if not self._vectors:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(self._vectors) if len(self._vectors) > 1 else self._vectors[0]

    def categories(self) -> dict[str, int]:
        """Product counts per category, by category name."""
        counts: dict[str, int] = {}
        for product in self._products:
            counts[product.category] = counts.get(product.category, 0) + 1
        return dict(sorted(counts.items()))

    def write(self, path: Path, *, catalog_sha256: str | None = None,
              write_extra: Callable[[Path], None] | None = None, version: str | None = None) -> IndexManifest:
        """Build the graphs and write the bundle to `path`, replacing any folder there only once the
        whole bundle is written. `write_extra(folder)` may add files (thumbnails) before the
        manifest hashes everything. `version` names the bundle (default: the time and 4 random hex
        digits; a sharded load passes its job's, so a reduce that runs twice publishes one version).
        Returns the manifest."""
        path = Path(path)
        vectors = self._matrix()
        self._vectors = [vectors]  # one copy, not the chunks and their concatenation (2 GB each at 1M)
        clock = time.perf_counter()
        self.seconds = {}

        def step(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            self.seconds[name], clock = now - clock, now

        with staged_dir(path) as folder:
            build_graph(vectors, np.arange(len(vectors), dtype=np.int64)).save_index(str(folder / INDEX_FILE))
            step("global graph")
            graphs = self._write_graphs(folder, vectors)
            step("category graphs")
            write_records(folder / PRODUCTS_FILE, self._products, self._keys)
            if write_extra is not None:
                write_extra(folder)
            now = datetime.now(UTC)
            manifest = IndexManifest(
                version=version or f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}",
                model_fingerprint=self.model_fingerprint, model_precision=self.model_precision,
                count=len(self._products), elements=len(self._products), dim=self.dim,
                build=BuildParams(switch=self.switch), graphs=graphs, catalog_sha256=catalog_sha256,
                created=now.strftime("%Y-%m-%dT%H:%M:%SZ"), sha256=_hash_tree(folder),
            )
            (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
            step("files")
        logger.info("wrote index %s (%d products, %d category graphs) to %s in %.2f s (%s)", manifest.version,
                    manifest.count, len(graphs), path, sum(self.seconds.values()),
                    ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.seconds.items()))
        return manifest

    def _write_graphs(self, folder: Path, vectors: np.ndarray) -> list[GraphEntry]:
        """A graph of its own for every category above the switch, decided from the final members."""
        members: dict[str, list[int]] = {}
        for label, product in enumerate(self._products):
            members.setdefault(product.category, []).append(label)
        entries = []
        for category, labels in sorted(members.items()):
            if len(labels) <= self.switch:
                continue
            graph = build_graph(vectors, np.asarray(labels, dtype=np.int64))
            file = graph_file(category)
            (folder / GRAPHS_DIR).mkdir(exist_ok=True)
            graph.save_index(str(folder / file))
            entries.append(GraphEntry(category=category, file=file, count=len(labels), elements=graph.element_count))
        return entries


def _hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` but the manifest, by path relative to it."""
    return {file.relative_to(root).as_posix(): sha256_file(file)
            for file in sorted(root.rglob("*")) if file.is_file() and file.name != MANIFEST_FILE}
