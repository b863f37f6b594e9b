"""The product index bundle: hnswlib graphs, the product records and their vectors, a manifest.

Labels are row numbers: label i is row i of the vector matrix and node i of the global hnswlib graph.
An upsert of a known id keeps its label (hnswlib updates the node in place and repairs its links); a
deleted id's label is marked deleted in hnswlib and reused by the next new product, so churn does
not grow the index.

A search without a category walks the global graph. A search within a category takes one of three
paths (measurements: docs/index-switch.md and docs/performance.md):

- at most `switch` (SWITCH) live products: exact numpy search over a contiguous copy of the
  category's vectors (recall 1.0; 0.9 ms at 20k, 2.7 ms at 50k, 7 ms at 100k on two cores);
- above the switch: the category's **own hnswlib graph**, which holds only its members under their
  global labels (same M and ef_construction as the global graph) and is searched without a filter,
  at beam EF_CATEGORY, and again at EF_CATEGORY_OUTSIDE when the query lies far outside the
  category (its best match there is OUTSIDE_GAP less similar than its best match overall, one probe
  of the global graph). The global graph's filtered walk is not good enough there: at 1M vectors,
  for a category made of whole clusters it found only 93-96 % of the true top 10, because it must
  cross regions without members; a category graph at a fixed beam misses too, for queries from far
  away. A category's graph is built from the stored vectors when the category grows above the
  switch and dropped when it shrinks below DROP_SHARE of it (hysteresis: a category hovering around
  the switch does not rebuild its graph on every change);
- above the switch but without a graph of its own: the global graph's filtered walk. This happens
  for bundles written before category graphs existed ("moodboard-index/1"): loading one does not
  build graphs (building one from 100k+ vectors takes 20 s or more on two cores, too slow for a
  cold start); the next upsert or delete touching such a category, or build_category_graphs(),
  builds it.

Any graph walk that comes back with fewer than k hits falls back to exact search.

Bundle layout (docs/contracts.md): manifest.json, index.bin (the global graph), graphs/<name>.bin
(one per category with its own graph, listed in the manifest with its category and counts),
products.jsonl (one Product per line plus "label" and "content_key"), vectors.npy (float32, row i =
label i, deleted rows included so labels stay valid; "elements" in the manifest counts them,
"count" counts live products).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from itertools import islice
from pathlib import Path

import hnswlib
import numpy as np
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict

from moodboard.catalog import Product
from moodboard.errors import BundleError, FingerprintMismatch, NotFound, UnknownCategory
from moodboard.integrity import sha256_file, verify_files
from moodboard.vectors import Vector, l2_normalize

logger = logging.getLogger(__name__)

FORMAT = "moodboard-index/2"
# Formats this reader loads: /1 bundles have no category graphs (see the module docstring).
READABLE_FORMATS = ("moodboard-index/1", FORMAT)
SPACE = "cosine"
M = 16
EF_CONSTRUCTION = 200
EF_SEARCH = 64
RANDOM_SEED = 100
# Categories with at most this many live products are searched exactly (numpy); larger ones get a
# graph of their own. Exact search costs ~0.07 us per row; a category graph search costs 0.5-1 ms
# for a query near the category but 5-9 ms for one far outside it (the second, wide walk), which is
# most queries when product types are clusters of the embedding space. The two meet near 100k
# products (1M index: 7.0 ms exact vs 6.8 ms graph at 100k, 14 vs 8 ms at 200k; at 50k exact takes
# 2.7 ms against 5-6 ms), and up to it exact search has recall 1.0 and needs no second graph.
# Measured with benchmarks/perf/index.py and benchmarks/index_switch.py: docs/index-switch.md.
SWITCH = 100_000
# A category's graph is dropped once the category shrinks below this share of the switch.
DROP_SHARE = 0.5
# hnswlib's filtered walk of the global graph needs a wider beam to keep recall when the category
# lies away from the query (same measurement); only bundles without category graphs still use it.
EF_FILTERED = 256
# Beam of a category graph search. A query near the category finds its true top 10 at any ef
# (recall 1.000 from ef 128 up, 1M vectors). A query far outside it (its best match in the category
# is OUTSIDE_GAP less similar than its best match overall: common when product types are clusters
# of the embedding space) lands on the category's near side and misses members further round:
# at 1M, for categories of whole clusters, ef 512 found 81-86 % of their true top 10, ef 2048 96-99 %,
# ef 4096 99-99.7 % (5 ms for 500k members). So a search starts at EF_CATEGORY and runs again at
# EF_CATEGORY_OUTSIDE when the query turns out to be outside (docs/performance.md).
EF_CATEGORY = 256
EF_CATEGORY_OUTSIDE = 4096
OUTSIDE_GAP = 0.05
# Rows gathered per add_items call when a category graph is built (bounds the temporary copy).
GRAPH_BUILD_CHUNK = 50_000

MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.bin"
PRODUCTS_FILE = "products.jsonl"
VECTORS_FILE = "vectors.npy"
GRAPHS_DIR = "graphs"
CORE_FILES = (INDEX_FILE, PRODUCTS_FILE, VECTORS_FILE)
_GRAPH_FILE = re.compile(rf"^{GRAPHS_DIR}/[A-Za-z0-9_-]+\.bin$")


@dataclass(frozen=True)
class Hit:
    """One search result: the product, its cosine similarity to the query, its index label."""

    product: Product
    score: float
    label: int


class BuildParams(BaseModel):
    """hnswlib parameters the index was built and is searched with, and the category-graph rule it
    was saved under (bundles from before category graphs have only the first three: the rest get
    defaults)."""

    M: int = M
    ef_construction: int = EF_CONSTRUCTION
    ef_search: int = EF_SEARCH
    ef_filtered: int = EF_FILTERED
    ef_category: int = EF_CATEGORY
    ef_category_outside: int = EF_CATEGORY_OUTSIDE
    outside_gap: float = OUTSIDE_GAP
    switch: int = SWITCH
    drop_below: int = int(SWITCH * DROP_SHARE)


class GraphEntry(BaseModel):
    """One category graph of a bundle: its file, its category, its live members (`count`) and the
    nodes the file holds (`elements`, deleted ones included)."""

    category: str
    file: str
    count: int
    elements: int


class IndexManifest(BaseModel):
    """manifest.json of an index bundle."""

    format: str = FORMAT
    version: str
    model_fingerprint: str
    model_precision: str
    count: int
    elements: int
    dim: int
    space: str = SPACE
    build: BuildParams = BuildParams()
    graphs: list[GraphEntry] = []
    catalog_sha256: str | None = None
    created: str
    sha256: dict[str, str]


class _CategoryGraph:
    """One category's own hnswlib graph. Its live nodes are exactly the category's members, under
    the index's global labels. A member that leaves is marked deleted, and its slot goes to the next
    label that enters (hnswlib's replace_deleted), so churn does not grow the graph; a label that
    comes back to a graph it was deleted from gets its old node back."""

    def __init__(self, hnsw: hnswlib.Index, live: int) -> None:
        self.hnsw = hnsw
        self.live = live

    @classmethod
    def build(cls, vectors: np.ndarray, labels: np.ndarray, *, m: int, ef_construction: int) -> _CategoryGraph:
        hnsw = hnswlib.Index(space=SPACE, dim=vectors.shape[1])
        hnsw.init_index(max_elements=max(labels.size, 1), M=m, ef_construction=ef_construction,
                        random_seed=RANDOM_SEED, allow_replace_deleted=True)
        for start in range(0, labels.size, GRAPH_BUILD_CHUNK):
            chunk = labels[start:start + GRAPH_BUILD_CHUNK]
            hnsw.add_items(vectors[chunk], chunk)
        return cls(hnsw, int(labels.size))

    def update(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """New vectors for live members."""
        self.hnsw.add_items(vectors, labels)

    def enter(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Add labels that are not live members of this graph."""
        revived: list[int] = []
        fresh: list[int] = []
        for i, label in enumerate(labels.tolist()):
            try:
                self.hnsw.unmark_deleted(label)
            except RuntimeError as exc:
                if "not found" not in str(exc).lower():  # live already: the caller broke the invariant
                    raise
                fresh.append(i)
            else:
                revived.append(i)
        if revived:
            self.hnsw.add_items(vectors[revived], labels[revived])
        self.live += len(revived)
        if fresh:
            vacant = self.hnsw.element_count - self.live
            needed = self.hnsw.element_count + max(0, len(fresh) - vacant)
            capacity = self.hnsw.get_max_elements()
            if needed > capacity:
                self.hnsw.resize_index(max(needed, capacity + capacity // 4))
            self.hnsw.add_items(vectors[fresh], labels[fresh], replace_deleted=True)
            self.live += len(fresh)

    def leave(self, labels: Iterable[int]) -> None:
        """Mark members that left the category (deleted, or moved to another one) deleted."""
        for label in labels:
            self.hnsw.mark_deleted(label)
            self.live -= 1


class ProductIndex:
    """Products and their embeddings, searchable by cosine similarity, optionally within a category.

    Thread-safe: one lock serialises mutations and searches (each search takes milliseconds; an
    upsert that makes a category cross the switch builds its graph under the lock, ~20 s per 100k
    vectors on two cores).
    """

    def __init__(self, dim: int, model_fingerprint: str, *, model_precision: str = "fp32",
                 hnsw: hnswlib.Index, vectors: np.ndarray) -> None:
        self.dim = dim
        self.model_fingerprint = model_fingerprint
        self.model_precision = model_precision
        self.catalog_sha256: str | None = None
        self.manifest: IndexManifest | None = None
        self._switch = SWITCH
        self._drop_below = int(SWITCH * DROP_SHARE)
        self._hnsw = hnsw
        self._vectors = vectors
        self._products: list[Product | None] = []
        self._keys: list[str | None] = []
        self._label_of: dict[str, int] = {}
        self._free: list[int] = []
        self._members: dict[str, set[int]] = {}
        self._graphs: dict[str, _CategoryGraph] = {}
        self._category_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.RLock()

    @classmethod
    def create(cls, dim: int, model_fingerprint: str, *, model_precision: str = "fp32",
               capacity: int = 1024) -> ProductIndex:
        """An empty index for embeddings of `dim` dimensions from the model with this fingerprint."""
        capacity = max(int(capacity), 1)
        hnsw = hnswlib.Index(space=SPACE, dim=dim)
        hnsw.init_index(max_elements=capacity, M=M, ef_construction=EF_CONSTRUCTION, random_seed=RANDOM_SEED)
        hnsw.set_ef(EF_SEARCH)
        return cls(dim, model_fingerprint, model_precision=model_precision, hnsw=hnsw,
                   vectors=np.zeros((capacity, dim), np.float32))

    # --- reading -------------------------------------------------------------------------------

    @property
    def version(self) -> str | None:
        """The bundle version this index was last saved as or loaded from."""
        return self.manifest.version if self.manifest else None

    @property
    def created(self) -> str | None:
        """When the bundle this index was last saved as or loaded from was written."""
        return self.manifest.created if self.manifest else None

    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._label_of

    def ids(self) -> list[str]:
        """Live product ids in label order."""
        with self._lock:
            return [p.id for p in self._products if p is not None]

    def products(self) -> Iterator[Product]:
        """Live products in label order."""
        return iter([p for p in self._products if p is not None])

    def get(self, product_id: str) -> Product:
        """The product with this id; NotFound when it is not in the index."""
        return self._products[self._label(product_id)]  # type: ignore[return-value]

    def vector(self, product_id: str) -> Vector:
        """The stored (L2-normalised) embedding of a product; NotFound when unknown."""
        with self._lock:
            return self._vectors[self._label(product_id)].copy()

    def vectors_at(self, labels: Sequence[int]) -> Vector:
        """Stored embeddings of the given labels, shape (len(labels), dim)."""
        with self._lock:
            return self._vectors[np.asarray(labels, dtype=np.int64)].copy()

    def label_of(self, product_id: str) -> int:
        """The label of a product id; NotFound when unknown."""
        return self._label(product_id)

    def content_key(self, product_id: str) -> str | None:
        """The image content key the product was embedded from (None when unknown), so an
        incremental load can tell which images changed."""
        label = self._label_of.get(product_id)
        return None if label is None else self._keys[label]

    def categories(self) -> dict[str, int]:
        """Live product counts per category, by category name."""
        with self._lock:
            return {name: len(members) for name, members in sorted(self._members.items())}

    def category_graphs(self) -> dict[str, int]:
        """The categories searched through a graph of their own, with their live product counts."""
        with self._lock:
            return {name: graph.live for name, graph in sorted(self._graphs.items())}

    def _label(self, product_id: str) -> int:
        label = self._label_of.get(product_id)
        if label is None:
            raise NotFound(f"no product {product_id!r} in the index", details={"id": product_id})
        return label

    # --- category graphs -----------------------------------------------------------------------

    @property
    def switch(self) -> int:
        """Categories with more live products than this get a graph of their own; the others are
        searched exactly. A loaded index keeps the switch of the bundle's manifest (SWITCH for bundles
        from before category graphs). Setting it (also sets `drop_below` to DROP_SHARE of it) builds
        and drops graphs to match: tests and benchmarks do."""
        return self._switch

    @switch.setter
    def switch(self, value: int) -> None:
        with self._lock:
            self._switch = int(value)
            self._drop_below = int(self._switch * DROP_SHARE)
            self._sync_graphs(set(self._members) | set(self._graphs))

    @property
    def drop_below(self) -> int:
        """A category's graph is dropped once the category holds fewer live products than this."""
        return self._drop_below

    def build_category_graphs(self) -> list[str]:
        """Build the missing graph of every category above the switch (e.g. after loading a bundle
        written before category graphs, whose large categories otherwise use the filtered walk of
        the global graph). Returns the categories whose graph was built."""
        with self._lock:
            return self._sync_graphs(set(self._members) | set(self._graphs))

    def _sync_graphs(self, categories: Iterable[str]) -> list[str]:
        """Give each of these categories a graph when it is above the switch and has none, and drop
        its graph when it shrank below `drop_below` (or vanished). Returns the categories built."""
        built = []
        for category in sorted(categories):
            members = self._members.get(category)
            size = len(members) if members is not None else 0
            if category in self._graphs and (size == 0 or size < self.drop_below):
                del self._graphs[category]
                logger.info("dropped the graph of category %r (%d products)", category, size)
            elif category not in self._graphs and size > self._switch:
                started = time.perf_counter()
                labels = np.fromiter(sorted(members), dtype=np.int64, count=size)  # type: ignore[arg-type]
                self._graphs[category] = _CategoryGraph.build(self._vectors, labels, m=self._hnsw.M,
                                                              ef_construction=self._hnsw.ef_construction)
                built.append(category)
                logger.info("built the graph of category %r (%d products) in %.1f s", category, size,
                            time.perf_counter() - started)
        return built

    # --- writing -------------------------------------------------------------------------------

    def upsert(self, products: Sequence[Product], vectors: Vector,
               keys: Sequence[str | None] | None = None) -> None:
        """Add products or replace existing ones (same id) with new records and vectors, without a
        rebuild. Within one call the last occurrence of an id wins. `keys` are the image content
        keys the vectors were computed from (catalog.image_content_key). A product whose category
        changes moves from the old category's graph to the new one's; a known product whose vector
        is unchanged is not re-inserted into the global graph (a record-only change costs no graph
        repair)."""
        if not len(products):
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"vectors of shape {vectors.shape}, the index holds (n, {self.dim})")
        if vectors.shape[0] != len(products):
            raise ValueError(f"{len(products)} products but {vectors.shape[0]} vectors")
        if keys is not None and len(keys) != len(products):
            raise ValueError(f"{len(products)} products but {len(keys)} keys")
        last = {product.id: i for i, product in enumerate(products)}
        rows = list(last.values())
        vectors = l2_normalize(vectors[rows])
        with self._lock:
            labels: list[int] = []
            fresh = len(self._products)
            for product in (products[i] for i in rows):
                label = self._label_of.get(product.id)
                if label is None and self._free:
                    label = self._free.pop()
                elif label is None:
                    label, fresh = fresh, fresh + 1
                labels.append(label)
            self._ensure_capacity(fresh)
            self._products.extend([None] * (fresh - len(self._products)))
            self._keys.extend([None] * (fresh - len(self._keys)))
            at = np.asarray(labels, dtype=np.int64)
            olds = [self._products[label] for label in labels]
            known = np.fromiter((old is not None for old in olds), dtype=bool, count=len(olds))
            changed = np.ones(len(labels), dtype=bool)
            if known.any():
                changed[known] = ~np.all(self._vectors[at[known]] == vectors[known], axis=1)
            if changed.any():
                self._hnsw.add_items(vectors[changed], at[changed])
            self._vectors[at] = vectors
            leaving: dict[str, list[int]] = {}
            updating: dict[str, list[int]] = {}
            entering: dict[str, list[int]] = {}
            touched: set[str] = set()
            for j, (label, i, old) in enumerate(zip(labels, rows, olds)):
                product = products[i]
                category = product.category
                stays = old is not None and old.category == category
                if old is not None and not stays:
                    self._leave(old.category, label)
                    if old.category in self._graphs:
                        leaving.setdefault(old.category, []).append(label)
                    touched.add(old.category)
                if category in self._graphs and (not stays or changed[j]):
                    (updating if stays else entering).setdefault(category, []).append(j)
                self._products[label] = product
                self._keys[label] = keys[i] if keys is not None else None
                self._label_of[product.id] = label
                self._members.setdefault(category, set()).add(label)
                self._category_cache.pop(category, None)
                touched.add(category)
            for category, gone in leaving.items():
                self._graphs[category].leave(gone)
            for category, js in updating.items():
                self._graphs[category].update(at[js], vectors[js])
            for category, js in entering.items():
                self._graphs[category].enter(at[js], vectors[js])
            self._sync_graphs(touched)
        logger.debug("upserted %d products (%d live)", len(labels), len(self))

    def delete(self, ids: Iterable[str]) -> int:
        """Remove products by id without a rebuild (hnswlib mark_deleted, in the global graph and in
        their category's graph); unknown ids are ignored. Returns how many were removed."""
        removed = 0
        with self._lock:
            touched: set[str] = set()
            for product_id in ids:
                label = self._label_of.pop(product_id, None)
                if label is None:
                    continue
                self._hnsw.mark_deleted(label)
                product = self._products[label]
                self._products[label] = None
                self._keys[label] = None
                category = product.category  # type: ignore[union-attr]
                self._leave(category, label)
                graph = self._graphs.get(category)
                if graph is not None:
                    graph.leave([label])
                touched.add(category)
                self._free.append(label)
                removed += 1
            self._sync_graphs(touched)
        return removed

    def _leave(self, category: str, label: int) -> None:
        members = self._members.get(category)
        if members is not None:
            members.discard(label)
            if not members:
                del self._members[category]
        self._category_cache.pop(category, None)

    def _ensure_capacity(self, needed: int) -> None:
        capacity = self._hnsw.get_max_elements()
        if needed <= capacity:
            return
        new_capacity = max(needed, 2 * capacity)
        self._hnsw.resize_index(new_capacity)
        grown = np.zeros((new_capacity, self.dim), np.float32)
        grown[: self._vectors.shape[0]] = self._vectors
        self._vectors = grown

    # --- searching -----------------------------------------------------------------------------

    def search(self, vector: Vector, k: int, *, category: str | None = None,
               exclude: Callable[[int], bool] | None = None) -> list[Hit]:
        """The k products most similar to `vector` (cosine), best first, optionally within one
        category and skipping labels for which `exclude(label)` is true. Returns fewer than k only
        when fewer products qualify. Without a category the search walks the global graph; within a
        category of at most `switch` products it is exact, within a larger one it walks the
        category's own graph (the global graph's filtered walk when it has none yet). Raises
        UnknownCategory for a category with no live products."""
        query = l2_normalize(np.asarray(vector, dtype=np.float32).reshape(-1))
        if query.shape[0] != self.dim:
            raise ValueError(f"query has {query.shape[0]} dimensions, the index {self.dim}")
        if k < 1:
            return []
        with self._lock:
            if category is None:
                return self._graph(query, k, None, exclude, len(self._label_of))
            if category not in self._members:
                raise UnknownCategory(f"no products of type {category!r} in the index",
                                      details={"category": category, "known": sorted(self._members)})
            members = self._members[category]
            own = self._graphs.get(category)
            if own is not None:
                return self._graph(query, k, members, exclude, len(members), graph=own.hnsw)
            if len(members) <= self._switch:
                return self._exact(query, *self._category_rows(category), k, exclude)
            return self._graph(query, k, members, exclude, len(members))

    def _all_labels(self) -> np.ndarray:
        return np.fromiter(self._label_of.values(), dtype=np.int64, count=len(self._label_of))

    def _category_rows(self, category: str) -> tuple[np.ndarray, np.ndarray]:
        """A small category's labels and a contiguous copy of their vectors, kept until the category
        changes: gathering scattered rows costs more than the matrix product over them."""
        cached = self._category_cache.get(category)
        if cached is None:
            labels = np.fromiter(sorted(self._members[category]), dtype=np.int64)
            cached = (labels, self._vectors[labels])
            self._category_cache[category] = cached
        return cached

    def _exact(self, query: Vector, labels: np.ndarray, matrix: np.ndarray | None, k: int,
               exclude: Callable[[int], bool] | None) -> list[Hit]:
        """Exact cosine search over the given labels (numpy); `matrix` holds their vectors when the
        caller has them contiguous."""
        if labels.size == 0:
            return []
        scores = (self._vectors[labels] if matrix is None else matrix) @ query
        take = min(labels.size, k if exclude is None else 2 * k + 8)
        while True:
            top = np.argpartition(-scores, take - 1)[:take] if take < labels.size else np.arange(labels.size)
            top = top[np.argsort(-scores[top], kind="stable")]
            chosen = [int(i) for i in top if exclude is None or not exclude(int(labels[i]))][:k]
            if len(chosen) == k or take == labels.size:
                break
            take = min(labels.size, take * 4)
        return [Hit(self._products[int(labels[i])], _score(scores[i]), int(labels[i])) for i in chosen]  # type: ignore[arg-type]

    def _graph(self, query: Vector, k: int, members: set[int] | None,
               exclude: Callable[[int], bool] | None, available: int, *,
               graph: hnswlib.Index | None = None) -> list[Hit]:
        """hnswlib search away from `exclude`: of a category's own `graph` (it holds only that
        category's members: no filter; again with a wide beam when the query lies outside the
        category), else of the global graph filtered to `members`. Exact over `members` (all
        products when None) when the walk comes back short: the filtered walk can miss when few
        nodes pass the filter."""
        want = min(k, available)
        if want == 0:
            return []
        walk_members = None if graph is not None else members
        if walk_members is None and exclude is None:
            allow = None
        elif exclude is None:
            allow = walk_members.__contains__  # type: ignore[union-attr]  # C-level: no Python frame per node
        elif walk_members is None:
            allow = lambda label: not exclude(label)
        else:
            allow = lambda label: label in walk_members and not exclude(label)
        if graph is not None:
            hnsw, ef = graph, EF_CATEGORY
        else:
            hnsw, ef = self._hnsw, EF_SEARCH if allow is None else EF_FILTERED
        labels, distances = _walk(hnsw, query, want, ef, allow)
        if graph is not None and labels.shape[1] == want and self._outside(query, 1.0 - float(distances[0][0])):
            labels, distances = _walk(hnsw, query, want, EF_CATEGORY_OUTSIDE, allow)
        if labels.shape[1] < want:
            logger.debug("hnswlib search returned %d of %d; exact fallback", labels.shape[1], want)
            pool = self._all_labels() if members is None else np.fromiter(members, dtype=np.int64)
            return self._exact(query, pool, None, k, exclude)
        return [Hit(self._products[int(label)], _score(1.0 - distance), int(label))  # type: ignore[arg-type]
                for label, distance in zip(labels[0], distances[0])]

    def _outside(self, query: Vector, best_in_category: float) -> bool:
        """Whether the query lies outside the category whose best match scored `best_in_category`:
        its best match overall (global graph, ef EF_SEARCH) is OUTSIDE_GAP more similar."""
        labels, distances = _walk(self._hnsw, query, 1, EF_SEARCH, None)
        return labels.shape[1] == 1 and (1.0 - float(distances[0][0])) - best_in_category > OUTSIDE_GAP

    # --- persistence ---------------------------------------------------------------------------

    def save(self, path: Path, *, write_extra: Callable[[Path], None] | None = None) -> IndexManifest:
        """Write the bundle to `path`: everything goes to a sibling temp dir first, which then
        replaces `path` by rename, so a reader sees the old bundle or the new one, never half of
        one, and a failed save leaves the old bundle intact. `write_extra(dir)` may add files
        (e.g. thumbnails) before the manifest hashes everything."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(4)
        tmp = path.parent / f".{path.name}.tmp-{token}"
        try:
            tmp.mkdir()
            with self._lock:
                elements = len(self._products)
                self._hnsw.save_index(str(tmp / INDEX_FILE))
                graphs = self._save_graphs(tmp)
                np.save(tmp / VECTORS_FILE, self._vectors[:elements])
                self._write_products(tmp / PRODUCTS_FILE)
                count = len(self._label_of)
                build = BuildParams(M=self._hnsw.M, ef_construction=self._hnsw.ef_construction,
                                    switch=self._switch, drop_below=self.drop_below)
            if write_extra is not None:
                write_extra(tmp)
            now = datetime.now(UTC)
            manifest = IndexManifest(
                version=f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}",
                model_fingerprint=self.model_fingerprint, model_precision=self.model_precision,
                count=count, elements=elements, dim=self.dim, build=build, graphs=graphs,
                catalog_sha256=self.catalog_sha256, created=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                sha256=_hash_tree(tmp),
            )
            self._write_manifest(tmp / MANIFEST_FILE, manifest)
            _replace_dir(tmp, path, token)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.manifest = manifest
        logger.info("saved index %s (%d products, %d category graphs) to %s", manifest.version, count,
                    len(graphs), path)
        return manifest

    def _save_graphs(self, folder: Path) -> list[GraphEntry]:
        entries = []
        for category, graph in sorted(self._graphs.items()):
            file = _graph_file(category)
            (folder / GRAPHS_DIR).mkdir(exist_ok=True)
            graph.hnsw.save_index(str(folder / file))
            entries.append(GraphEntry(category=category, file=file, count=graph.live,
                                      elements=graph.hnsw.element_count))
        return entries

    def _write_products(self, file: Path) -> None:
        with file.open("w", encoding="utf-8") as fh:
            for label, product in enumerate(self._products):
                if product is not None:
                    record = {**product.model_dump(mode="json"), "label": label, "content_key": self._keys[label]}
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    @staticmethod
    def _write_manifest(file: Path, manifest: IndexManifest) -> None:
        file.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path, *, expected_fingerprint: str | None = None, verify: bool = True) -> ProductIndex:
        """Read a bundle written by save(), or by the reader before category graphs
        ("moodboard-index/1": its large categories use the global graph's filtered walk until
        build_category_graphs() or a change to them builds their graphs; see the module docstring).
        Raises FingerprintMismatch when it was built with a model other than `expected_fingerprint`
        (checked before anything heavy is read) and BundleError when a file is missing, corrupt
        (sha256, with verify; a product record that fails validation, always) or of another format."""
        path = Path(path)
        manifest = read_manifest(path)
        if expected_fingerprint is not None and manifest.model_fingerprint != expected_fingerprint:
            raise FingerprintMismatch(
                f"index {manifest.version} at {path} was built with model {manifest.model_fingerprint}, "
                f"but the loaded model is {expected_fingerprint}; rebuild the index with this model "
                f"or load the model it was built with",
                details={"index_fingerprint": manifest.model_fingerprint, "model_fingerprint": expected_fingerprint},
            )
        graph_files = [entry.file for entry in manifest.graphs]
        missing = [name for name in (*CORE_FILES, *graph_files, *manifest.sha256) if not (path / name).is_file()]
        if missing:
            raise BundleError(f"index bundle {path} is missing {', '.join(sorted(set(missing)))}")
        if verify:
            verify_files(path, manifest.sha256, label=f"index bundle {path}")
        try:
            return cls._read(path, manifest)
        except BundleError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, ValidationError) as exc:
            raise BundleError(f"index bundle {path} is unreadable: {exc}") from exc

    @classmethod
    def _read(cls, path: Path, manifest: IndexManifest) -> ProductIndex:
        """The index from a bundle's files. Fast because nothing runs Python code per product: the
        records are validated by pydantic-core in one pass over the whole file, the bookkeeping is
        built from plain lists, the vectors are mapped from the file (no copy), and the cyclic garbage
        collector is paused meanwhile (100k new records would otherwise trigger repeated full
        collections over every object of the process, none of which can be garbage yet)."""
        steps: dict[str, float] = {}
        clock = time.perf_counter()

        def step(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            steps[name], clock = now - clock, now

        with _gc_paused():
            # Mapped copy-on-write instead of read: pages are read when first touched and writes
            # (upserts) stay private to this process. save() never rewrites a bundle's files in
            # place (it renames a new folder over the old one), so the mapping stays valid.
            stored = np.load(path / VECTORS_FILE, mmap_mode="c", allow_pickle=False).view(np.ndarray)
            if stored.dtype != np.float32 or stored.shape != (manifest.elements, manifest.dim):
                raise BundleError(f"index bundle {path}: vectors.npy is {stored.dtype} {stored.shape}, "
                                  f"expected float32 {(manifest.elements, manifest.dim)}")
            step("vectors")
            hnsw = hnswlib.Index(space=SPACE, dim=manifest.dim)
            hnsw.load_index(str(path / INDEX_FILE), max_elements=max(manifest.elements, 1))
            if hnsw.element_count != manifest.elements:
                raise BundleError(f"index bundle {path}: index.bin holds {hnsw.element_count} elements, "
                                  f"the manifest says {manifest.elements}")
            if hnsw.get_max_elements() == manifest.elements:
                vectors = np.ascontiguousarray(stored)
            else:  # only an empty bundle: hnswlib keeps room for one element
                vectors = np.zeros((hnsw.get_max_elements(), manifest.dim), np.float32)
                vectors[: manifest.elements] = stored
            step("global graph")
            index = cls(manifest.dim, manifest.model_fingerprint, model_precision=manifest.model_precision,
                        hnsw=hnsw, vectors=vectors)
            index.catalog_sha256 = manifest.catalog_sha256
            index._switch, index._drop_below = manifest.build.switch, manifest.build.drop_below
            products, labels, keys = _read_records(path / PRODUCTS_FILE)
            step("records")
            index._install(path, products, labels, keys, manifest)
            step("bookkeeping")
            for entry in manifest.graphs:
                index._graphs[entry.category] = index._load_graph(path, entry)
            step("category graphs")
            hnsw.set_ef(EF_SEARCH)
            index.manifest = manifest
        logger.info("read index %s: %d products, %d category graphs in %.2f s (%s)", manifest.version,
                    manifest.count, len(manifest.graphs), sum(steps.values()),
                    ", ".join(f"{name} {seconds:.2f} s" for name, seconds in steps.items()))
        return index

    def _install(self, path: Path, products: list[Product], labels: np.ndarray, keys: list[str | None],
                 manifest: IndexManifest) -> None:
        """Records, content keys, the id -> label map, category members and free labels of a bundle."""
        elements = manifest.elements
        if len(products) != manifest.count:
            raise BundleError(f"index bundle {path}: products.jsonl holds {len(products)} products, "
                              f"the manifest says {manifest.count}")
        if labels.size and (labels.min() < 0 or labels.max() >= elements):
            raise BundleError(f"index bundle {path}: products.jsonl has a label outside 0..{elements - 1}")
        taken = np.zeros(elements, dtype=bool)
        taken[labels] = True
        if int(taken.sum()) != labels.size:
            raise BundleError(f"index bundle {path}: products.jsonl gives one label to two products")
        order = labels.tolist()
        if order == list(range(elements)):
            self._products, self._keys = products, keys
        else:
            self._products, self._keys = [None] * elements, [None] * elements
            for label, product, key in zip(order, products, keys):
                self._products[label] = product
                self._keys[label] = key
        self._label_of = dict(zip([p.id for p in products], order))
        if len(self._label_of) != len(products):
            raise BundleError(f"index bundle {path}: products.jsonl holds an id twice")
        members: dict[str, set[int]] = {}
        for product, label in zip(products, order):
            group = members.get(product.category)
            if group is None:
                group = members[product.category] = set()
            group.add(label)
        self._members = members
        self._free = np.flatnonzero(~taken).tolist()

    def _load_graph(self, path: Path, entry: GraphEntry) -> _CategoryGraph:
        """A category graph of the bundle, checked against the records: same live count, and a few
        members present with their stored vectors."""
        members = self._members.get(entry.category)
        if members is None or len(members) != entry.count or not _GRAPH_FILE.match(entry.file):
            raise BundleError(f"index bundle {path}: the graph {entry.file} of category {entry.category!r} "
                              f"does not match the products ({entry.count} listed, "
                              f"{len(members) if members else 0} in products.jsonl)")
        hnsw = hnswlib.Index(space=SPACE, dim=self.dim)
        hnsw.load_index(str(path / entry.file), max_elements=max(entry.elements, 1), allow_replace_deleted=True)
        sample = np.fromiter(islice(members, 4), dtype=np.int64)
        try:
            found = np.asarray(hnsw.get_items(sample))
        except RuntimeError as exc:
            raise BundleError(f"index bundle {path}: the graph {entry.file} lacks members of {entry.category!r}") from exc
        if hnsw.element_count != entry.elements or not np.allclose(found, self._vectors[sample], atol=1e-4):
            raise BundleError(f"index bundle {path}: the graph {entry.file} does not match the vectors "
                              f"of {entry.category!r}")
        return _CategoryGraph(hnsw, entry.count)


class _RecordExtra(TypedDict):
    """The fields products.jsonl adds to each Product record."""

    label: int
    content_key: NotRequired[str | None]


@cache
def _record_adapters() -> tuple[TypeAdapter[list[Product]], TypeAdapter[list[_RecordExtra]]]:
    """Validators of a whole products.jsonl as one JSON array (built on first use, not at import).
    Only keys go through pydantic-core's string cache: titles, URLs and ids are unique, and looking
    them up in it made the Product pass 30 % slower (0.28 vs 0.21 s at 100k)."""
    config = ConfigDict(cache_strings="keys")
    return TypeAdapter(list[Product], config=config), TypeAdapter(list[_RecordExtra], config=config)


def _read_records(file: Path) -> tuple[list[Product], np.ndarray, list[str | None]]:
    """The products of a products.jsonl with their labels and content keys.

    The lines are joined into one JSON array and validated by pydantic-core in two passes (the
    Product records, then the label and content key of each), with no Python code per record. A
    file the fast path cannot take (blank lines, a bad record) goes through the line-by-line reader,
    which accepts blank lines and names the first bad line in a BundleError.
    """
    raw = file.read_bytes()
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
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (restored as it was, also on errors). The objects made
    meanwhile (the records: long-lived) are then moved straight to the oldest generation, unless
    someone froze objects on purpose (gc.freeze), whose freeze this must not undo: otherwise the
    first allocation after the pause would scan them all as young objects (~0.07 s at 100k)."""
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


def _graph_file(category: str) -> str:
    """A category graph's file in the bundle: a readable slug of the name plus a hash of it, so any
    category name (slashes, unicode, 200 characters) gives a distinct, safe file name."""
    slug = re.sub(r"[^A-Za-z0-9_]+", "-", category).strip("-")[:40] or "category"
    digest = hashlib.sha256(category.encode("utf-8")).hexdigest()[:12]
    return f"{GRAPHS_DIR}/{slug}-{digest}.bin"


def _walk(hnsw: hnswlib.Index, query: Vector, k: int, ef: int,
          allow: Callable[[int], bool] | None) -> tuple[np.ndarray, np.ndarray]:
    """One hnswlib knn query at beam `ef` (at least k); empty (1, 0) arrays when it finds fewer
    than k (hnswlib raises then)."""
    hnsw.set_ef(max(ef, k))
    try:
        return hnsw.knn_query(query, k=k, num_threads=1, filter=allow)
    except RuntimeError:
        empty = np.zeros((1, 0))
        return empty, empty


def _score(similarity: float) -> float:
    """Cosine similarity as a plain float, rounding noise clipped to [-1, 1]."""
    return min(1.0, max(-1.0, float(similarity)))


def read_manifest(path: Path) -> IndexManifest:
    """The manifest of the index bundle at `path`; BundleError when missing, unreadable or foreign."""
    file = Path(path) / MANIFEST_FILE
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise BundleError(f"no index bundle at {path} ({MANIFEST_FILE} is missing or unreadable)") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BundleError(f"index manifest {file} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        found = data.get("format") if isinstance(data, dict) else None
        raise BundleError(f"{file} is not a moodboard-index manifest this reader knows "
                          f"(format {found!r}; it reads {', '.join(READABLE_FORMATS)})")
    if data["format"] == READABLE_FORMATS[0]:
        data = {**data, "graphs": []}  # /1 bundles have no category graphs
    try:
        return IndexManifest.model_validate(data)
    except ValidationError as exc:
        raise BundleError(f"index manifest {file} is invalid: {exc.errors()[0]['msg']}") from exc


def _hash_tree(root: Path) -> dict[str, str]:
    return {file.relative_to(root).as_posix(): sha256_file(file)
            for file in sorted(root.rglob("*")) if file.is_file() and file.name != MANIFEST_FILE}


def _replace_dir(new: Path, target: Path, token: str) -> None:
    """Move `new` to `target`; an existing `target` is moved aside first and restored on failure."""
    if not target.exists():
        os.rename(new, target)
        return
    old = target.parent / f".{target.name}.old-{token}"
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
