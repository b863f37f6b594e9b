"""The read-only product index: one loaded bundle, searched by cosine similarity.

A search without a category walks the global graph. Within a category it takes the path the
builder chose for that category from its size (docs/index-switch.md):

- a category without a graph of its own (at most the switch): exact numpy search over a contiguous
  copy of the category's vectors, kept after its first search (recall 1.0);
- a category with its own graph (it holds only the category's members, under their global labels):
  a walk of it at EF_CATEGORY, and a second one at EF_CATEGORY_OUTSIDE when the query lies outside
  the category (one k=1 probe of the global graph tells).

Any graph walk that comes back with fewer than k hits falls back to exact search.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np
from pydantic import ValidationError

from moodboard.catalog import Product
from moodboard.errors import BundleError, FingerprintMismatch, NotFound, UnknownCategory
from moodboard.index import manifest as bundle_manifest
from moodboard.index.manifest import (
    EF_CATEGORY,
    EF_CATEGORY_OUTSIDE,
    EF_FILTERED,
    EF_SEARCH,
    INDEX_FILE,
    OUTSIDE_GAP,
    PRODUCTS_FILE,
    SPACE,
    GraphEntry,
    IndexManifest,
    read_manifest,
)
from moodboard.index.records import gc_paused, read_records
from moodboard.index.stored_vectors import StoredVectors, read_stored_vectors
from moodboard.vectors import Vector, l2_normalize

logger = logging.getLogger(__name__)

# An unknown category's error lists this many of the known names.
MAX_LISTED_CATEGORIES = 50


@dataclass(frozen=True)
class Hit:
    """One search result: the product, its cosine similarity to the query, its index label."""

    product: Product
    score: float
    label: int


class ProductIndex:
    """The products of one index bundle and their embeddings: open it, search it, read from it.

    Built by moodboard.index.builder.IndexBuilder, never changed once loaded. Thread-safe: graph
    walks take a lock (hnswlib's beam is a setting of the graph), everything else only reads.
    """

    def __init__(self, path: Path, manifest: IndexManifest, *, hnsw: hnswlib.Index, vectors: StoredVectors,
                 products: list[Product | None], keys: list[str | None], label_of: dict[str, int],
                 members: dict[str, np.ndarray]) -> None:
        self.path = path
        self.manifest = manifest
        self._hnsw = hnsw
        self._vectors = vectors
        self._products = products
        self._keys = keys
        self._label_of = label_of
        self._members = members
        self._folded = {name.casefold(): name for name in sorted(members)}
        self._graphs: dict[str, hnswlib.Index] = {}
        self._rows: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, expected_fingerprint: str | None = None, verify: bool = True) -> ProductIndex:
        """Read the bundle at `path`. FingerprintMismatch when it was built with a model other than
        `expected_fingerprint` (checked before anything heavy is read); BundleError when a file is
        missing, corrupt (sha256, with `verify`; a product record that fails validation, always) or
        of another format."""
        path = Path(path)
        manifest = read_manifest(path)
        if expected_fingerprint is not None and manifest.model_fingerprint != expected_fingerprint:
            raise FingerprintMismatch(
                f"index {manifest.version} at {path} was built with model {manifest.model_fingerprint}, "
                f"but the loaded model is {expected_fingerprint}; rebuild the index with this model "
                f"or load the model it was built with",
                details={"index_fingerprint": manifest.model_fingerprint, "model_fingerprint": expected_fingerprint},
            )
        bundle_manifest.verify(path, digests=verify, manifest=manifest)
        try:
            return cls._read(path, manifest)
        except BundleError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, ValidationError) as exc:
            raise BundleError(f"index bundle {path} is unreadable: {exc}") from exc

    @classmethod
    def _read(cls, path: Path, manifest: IndexManifest) -> ProductIndex:
        """The index from a bundle's files: the vectors mapped from index.bin (a /2 bundle's from
        vectors.npy; no copy, pages read when first touched), the records validated in one pass
        (moodboard.index.records), with the cyclic garbage collector paused while the per-product
        objects are made."""
        steps: dict[str, float] = {}
        clock = time.perf_counter()

        def step(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            steps[name], clock = now - clock, now

        with gc_paused():
            vectors = _vectors(path, manifest)
            step("vectors")
            hnsw = hnswlib.Index(space=SPACE, dim=manifest.dim)
            hnsw.load_index(str(path / INDEX_FILE), max_elements=max(manifest.elements, 1))
            if hnsw.element_count != manifest.elements:
                raise BundleError(f"index bundle {path}: index.bin holds {hnsw.element_count} elements, "
                                  f"the manifest says {manifest.elements}")
            hnsw.set_ef(EF_SEARCH)
            step("global graph")
            products, labels, keys = read_records(path / PRODUCTS_FILE)
            step("records")
            index = cls(path, manifest, hnsw=hnsw, vectors=vectors,
                        **_bookkeeping(path, manifest, products, labels, keys))
            step("bookkeeping")
            for entry in manifest.graphs:
                index._graphs[entry.category] = index._load_graph(entry)
            step("category graphs")
        logger.info("read index %s: %d products, %d category graphs in %.2f s (%s)", manifest.version,
                    manifest.count, len(manifest.graphs), sum(steps.values()),
                    ", ".join(f"{name} {seconds:.2f} s" for name, seconds in steps.items()))
        return index

    def _load_graph(self, entry: GraphEntry) -> hnswlib.Index:
        """A category graph of the bundle, checked against the records: same member count, and a few
        members present with their stored vectors."""
        members = self._members.get(entry.category)
        if members is None or members.size != entry.count:
            raise BundleError(f"index bundle {self.path}: the graph {entry.file} of category {entry.category!r} "
                              f"does not match the products ({entry.count} listed, "
                              f"{0 if members is None else members.size} in products.jsonl)")
        hnsw = hnswlib.Index(space=SPACE, dim=self.dim)
        hnsw.load_index(str(self.path / entry.file), max_elements=max(entry.elements, 1))
        sample = members[:4]
        try:
            found = np.asarray(hnsw.get_items(sample))
        except RuntimeError as exc:
            raise BundleError(f"index bundle {self.path}: the graph {entry.file} lacks members of "
                              f"{entry.category!r}") from exc
        if hnsw.element_count != entry.elements or not np.allclose(found, self._vectors[sample], atol=1e-4):
            raise BundleError(f"index bundle {self.path}: the graph {entry.file} does not match the vectors "
                              f"of {entry.category!r}")
        return hnsw

    # --- reading -------------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """The bundle's version."""
        return self.manifest.version

    @property
    def dim(self) -> int:
        """Dimensions of the embeddings."""
        return self.manifest.dim

    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._label_of

    def products(self) -> Iterator[Product]:
        """The products in label order."""
        return (product for product in self._products if product is not None)

    def get(self, product_id: str) -> Product:
        """The product with this id; NotFound when it is not in the index."""
        return self._products[self.label_of(product_id)]  # type: ignore[return-value]

    def vector(self, product_id: str) -> Vector:
        """The stored (L2-normalised) embedding of a product; NotFound when unknown."""
        return np.array(self._vectors[self.label_of(product_id)])

    def vectors_at(self, labels: Sequence[int]) -> Vector:
        """Stored embeddings of the given labels, shape (len(labels), dim)."""
        return self._vectors[np.asarray(labels, dtype=np.int64)]

    def label_of(self, product_id: str) -> int:
        """The label of a product id; NotFound when unknown."""
        label = self._label_of.get(product_id)
        if label is None:
            raise NotFound(f"no product {product_id!r} in the index", details={"id": product_id})
        return label

    def content_key(self, product_id: str) -> str | None:
        """The image content key the product was embedded from (None when unknown), so the next
        build can reuse the vectors of products whose image did not change."""
        label = self._label_of.get(product_id)
        return None if label is None else self._keys[label]

    def categories(self) -> dict[str, int]:
        """Product counts per category, by category name."""
        return {name: int(members.size) for name, members in sorted(self._members.items())}

    def resolve_category(self, name: str, *, categories_url: str | None = None) -> str:
        """The index's spelling of a category name from a request (exact, else case-insensitive):
        the one place a category is resolved. UnknownCategory otherwise, listing the first
        MAX_LISTED_CATEGORIES names (and saying where the whole list is, when given)."""
        if name in self._members:
            return name
        match = self._folded.get(name.strip().casefold())
        if match is None:
            raise self._unknown_category(name, categories_url)
        return match

    def _unknown_category(self, name: str, categories_url: str | None = None) -> UnknownCategory:
        where = f"; the list is at {categories_url}" if categories_url else ""
        details = {"category": name, "categories": sorted(self._members)[:MAX_LISTED_CATEGORIES]}
        if categories_url:
            details["categories_url"] = categories_url
        return UnknownCategory(f"unknown category {name!r}{where}", details=details)

    # --- searching -----------------------------------------------------------------------------

    def search(self, vector: Vector, k: int, *, category: str | None = None,
               exclude: Callable[[int], bool] | None = None) -> list[Hit]:
        """The k products most similar to `vector` (cosine), best first, optionally within one
        category (its exact name) and skipping labels for which `exclude(label)` is true. Returns
        fewer than k only when fewer products qualify. UnknownCategory for a category the index
        does not hold."""
        query = l2_normalize(np.asarray(vector, dtype=np.float32).reshape(-1))
        if query.shape[0] != self.dim:
            raise ValueError(f"query has {query.shape[0]} dimensions, the index {self.dim}")
        if k < 1:
            return []
        if category is None:
            return self._walk(self._hnsw, query, k, exclude, None, EF_SEARCH if exclude is None else EF_FILTERED)
        members = self._members.get(category)
        if members is None:
            raise self._unknown_category(category)
        graph = self._graphs.get(category)
        if graph is None:
            return self._exact(query, members, self._category_rows(category), k, exclude)
        return self._walk(graph, query, k, exclude, members, EF_CATEGORY)

    def _category_rows(self, category: str) -> np.ndarray:
        """A contiguous copy of a category's vectors, kept: gathering scattered rows costs more than
        the matrix product over them."""
        rows = self._rows.get(category)
        if rows is None:
            rows = self._rows[category] = np.ascontiguousarray(self._vectors[self._members[category]])
        return rows

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

    def _walk(self, hnsw: hnswlib.Index, query: Vector, k: int, exclude: Callable[[int], bool] | None,
              members: np.ndarray | None, ef: int) -> list[Hit]:
        """A walk of the global graph (`members` None) or of a category's own graph (it holds only
        the category's `members`: no filter but `exclude`; again with a wide beam when the query lies
        outside the category). Exact over the same products when the walk comes back short."""
        want = min(k, len(self) if members is None else members.size)
        if want == 0:
            return []
        allow = None if exclude is None else (lambda label: not exclude(label))
        labels, distances = self._knn(hnsw, query, want, ef, allow)
        if members is not None and labels.shape[1] == want and self._outside(query, 1.0 - float(distances[0][0])):
            labels, distances = self._knn(hnsw, query, want, EF_CATEGORY_OUTSIDE, allow)
        if labels.shape[1] < want:
            logger.debug("hnswlib search returned %d of %d; exact fallback", labels.shape[1], want)
            pool = np.fromiter(self._label_of.values(), dtype=np.int64) if members is None else members
            return self._exact(query, pool, None, k, exclude)
        return [Hit(self._products[int(label)], _score(1.0 - distance), int(label))  # type: ignore[arg-type]
                for label, distance in zip(labels[0], distances[0])]

    def _outside(self, query: Vector, best_in_category: float) -> bool:
        """Whether the query lies outside the category whose best match scored `best_in_category`:
        its best match overall (global graph, ef EF_SEARCH) is OUTSIDE_GAP more similar."""
        labels, distances = self._knn(self._hnsw, query, 1, EF_SEARCH, None)
        return labels.shape[1] == 1 and (1.0 - float(distances[0][0])) - best_in_category > OUTSIDE_GAP

    def _knn(self, hnsw: hnswlib.Index, query: Vector, k: int, ef: int,
             allow: Callable[[int], bool] | None) -> tuple[np.ndarray, np.ndarray]:
        """One hnswlib knn query at beam `ef` (at least k); empty (1, 0) arrays when it finds fewer
        than k (hnswlib raises then)."""
        with self._lock:
            hnsw.set_ef(max(ef, k))
            try:
                return hnsw.knn_query(query, k=k, num_threads=1, filter=allow)
            except RuntimeError:
                empty = np.zeros((1, 0))
                return empty, empty


def _vectors(path: Path, manifest: IndexManifest) -> StoredVectors:
    """The bundle's vectors: read in place from index.bin, or from vectors.npy in a /2 bundle."""
    shape = (manifest.elements, manifest.dim)
    if manifest.vectors_file is None:
        return read_stored_vectors(path / INDEX_FILE, dim=manifest.dim, elements=manifest.elements)
    vectors = np.load(path / manifest.vectors_file, mmap_mode="r", allow_pickle=False).view(np.ndarray)
    if vectors.dtype != np.float32 or vectors.shape != shape:
        raise BundleError(f"index bundle {path}: {manifest.vectors_file} is {vectors.dtype} {vectors.shape}, "
                          f"expected float32 {shape}")
    return StoredVectors(matrix=vectors, rows=None)


def _bookkeeping(path: Path, manifest: IndexManifest, products: list[Product], labels: np.ndarray,
                 keys: list[str | None]) -> dict[str, object]:
    """Records by label, content keys, the id -> label map and the members of each category, after
    checking the records agree with the manifest and with each other."""
    elements = manifest.elements
    if len(products) != manifest.count:
        raise BundleError(f"index bundle {path}: products.jsonl holds {len(products)} products, "
                          f"the manifest says {manifest.count}")
    if labels.size and (labels.min() < 0 or labels.max() >= elements):
        raise BundleError(f"index bundle {path}: products.jsonl has a label outside 0..{elements - 1}")
    if np.unique(labels).size != labels.size:
        raise BundleError(f"index bundle {path}: products.jsonl gives one label to two products")
    order = labels.tolist()
    if order == list(range(elements)):
        by_label: list[Product | None] = list(products)
        keys_by_label = keys
    else:
        by_label, keys_by_label = [None] * elements, [None] * elements
        for label, product, key in zip(order, products, keys):
            by_label[label] = product
            keys_by_label[label] = key
    label_of = dict(zip([p.id for p in products], order))
    if len(label_of) != len(products):
        raise BundleError(f"index bundle {path}: products.jsonl holds an id twice")
    grouped: dict[str, list[int]] = {}
    for product, label in zip(products, order):
        grouped.setdefault(product.category, []).append(label)
    members = {name: np.sort(np.asarray(group, dtype=np.int64)) for name, group in grouped.items()}
    return {"products": by_label, "keys": keys_by_label, "label_of": label_of, "members": members}


def _score(similarity: float) -> float:
    """Cosine similarity as a plain float, rounding noise clipped to [-1, 1]."""
    return min(1.0, max(-1.0, float(similarity)))
