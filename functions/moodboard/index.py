"""The product index bundle: an hnswlib graph, the product records and their vectors, a manifest.

Labels are row numbers: label i is row i of the vector matrix and node i of the hnswlib graph. An
upsert of a known id keeps its label (hnswlib updates the node in place and repairs its links); a
deleted id's label is marked deleted in hnswlib and reused by the next new product, so churn does
not grow the index. Searches within a category run exactly over that category's vectors when it
holds at most SWITCH products (see docs/index-switch.md for the measurement), else through hnswlib
with a filter, falling back to exact search when the filtered graph walk comes back short.

Bundle layout (docs/contracts.md): manifest.json, index.bin, products.jsonl (one Product per line
plus "label" and "content_key"), vectors.npy (float32, row i = label i, deleted rows included so
labels stay valid; "elements" in the manifest counts them, "count" counts live products).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import hnswlib
import numpy as np
from pydantic import BaseModel, ValidationError

from moodboard.catalog import Product
from moodboard.errors import BundleError, FingerprintMismatch, NotFound, UnknownCategory
from moodboard.vectors import Vector, l2_normalize

logger = logging.getLogger(__name__)

FORMAT = "moodboard-index/1"
SPACE = "cosine"
M = 16
EF_CONSTRUCTION = 200
EF_SEARCH = 64
RANDOM_SEED = 100
# Categories with at most this many live products are searched exactly (numpy) instead of through
# hnswlib's filtered search: measured with benchmarks/index_switch.py, see docs/index-switch.md.
SWITCH = 20_000
# hnswlib's filtered walk needs a wider beam to keep recall when the category lies away from the
# query (same measurement).
EF_FILTERED = 256

MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.bin"
PRODUCTS_FILE = "products.jsonl"
VECTORS_FILE = "vectors.npy"
CORE_FILES = (INDEX_FILE, PRODUCTS_FILE, VECTORS_FILE)


@dataclass(frozen=True)
class Hit:
    """One search result: the product, its cosine similarity to the query, its index label."""

    product: Product
    score: float
    label: int


class BuildParams(BaseModel):
    """hnswlib parameters the index was built and is searched with."""

    M: int = M
    ef_construction: int = EF_CONSTRUCTION
    ef_search: int = EF_SEARCH


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
    catalog_sha256: str | None = None
    created: str
    sha256: dict[str, str]


class ProductIndex:
    """Products and their embeddings, searchable by cosine similarity, optionally within a category.

    Thread-safe: one lock serialises mutations and searches (each search takes milliseconds).
    """

    def __init__(self, dim: int, model_fingerprint: str, *, model_precision: str = "fp32",
                 hnsw: hnswlib.Index, vectors: np.ndarray) -> None:
        self.dim = dim
        self.model_fingerprint = model_fingerprint
        self.model_precision = model_precision
        self.catalog_sha256: str | None = None
        self.manifest: IndexManifest | None = None
        self.switch = SWITCH
        self._hnsw = hnsw
        self._vectors = vectors
        self._products: list[Product | None] = []
        self._keys: list[str | None] = []
        self._label_of: dict[str, int] = {}
        self._free: list[int] = []
        self._members: dict[str, set[int]] = {}
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

    def _label(self, product_id: str) -> int:
        label = self._label_of.get(product_id)
        if label is None:
            raise NotFound(f"no product {product_id!r} in the index", details={"id": product_id})
        return label

    # --- writing -------------------------------------------------------------------------------

    def upsert(self, products: Sequence[Product], vectors: Vector,
               keys: Sequence[str | None] | None = None) -> None:
        """Add products or replace existing ones (same id) with new records and vectors, without a
        rebuild. Within one call the last occurrence of an id wins. `keys` are the image content
        keys the vectors were computed from (catalog.image_content_key)."""
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
            self._hnsw.add_items(vectors, np.asarray(labels, dtype=np.int64))
            self._vectors[labels] = vectors
            self._products.extend([None] * (fresh - len(self._products)))
            self._keys.extend([None] * (fresh - len(self._keys)))
            for label, i in zip(labels, rows):
                product = products[i]
                old = self._products[label]
                if old is not None:
                    self._leave(old.category, label)
                self._products[label] = product
                self._keys[label] = keys[i] if keys is not None else None
                self._label_of[product.id] = label
                self._members.setdefault(product.category, set()).add(label)
                self._category_cache.pop(product.category, None)
        logger.debug("upserted %d products (%d live)", len(labels), len(self))

    def delete(self, ids: Iterable[str]) -> int:
        """Remove products by id without a rebuild (hnswlib mark_deleted); unknown ids are ignored.
        Returns how many were removed."""
        removed = 0
        with self._lock:
            for product_id in ids:
                label = self._label_of.pop(product_id, None)
                if label is None:
                    continue
                self._hnsw.mark_deleted(label)
                product = self._products[label]
                self._products[label] = None
                self._keys[label] = None
                self._leave(product.category, label)  # type: ignore[union-attr]
                self._free.append(label)
                removed += 1
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
        when fewer products qualify. Without a category the search goes through hnswlib; within a
        category of at most `switch` products it is exact. Raises UnknownCategory for a category
        with no live products."""
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
            if len(members) <= self.switch:
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
               exclude: Callable[[int], bool] | None, available: int) -> list[Hit]:
        """hnswlib search, filtered to `members` and away from `exclude`; exact when it comes back
        short (the filtered walk can miss when few nodes pass the filter)."""
        want = min(k, available)
        if want == 0:
            return []
        if members is None and exclude is None:
            allow = None
        elif exclude is None:
            allow = members.__contains__  # a C-level callable: no Python frame per visited node
        elif members is None:
            allow = lambda label: not exclude(label)
        else:
            allow = lambda label: label in members and not exclude(label)
        self._hnsw.set_ef(max(EF_SEARCH if allow is None else EF_FILTERED, want))
        try:
            labels, distances = self._hnsw.knn_query(query, k=want, num_threads=1, filter=allow)
        except RuntimeError:
            labels = distances = np.zeros((1, 0))
        if labels.shape[1] < want:
            logger.debug("filtered hnswlib search returned %d of %d; exact fallback", labels.shape[1], want)
            pool = self._all_labels() if members is None else np.fromiter(members, dtype=np.int64)
            return self._exact(query, pool, None, k, exclude)
        return [Hit(self._products[int(label)], _score(1.0 - distance), int(label))  # type: ignore[arg-type]
                for label, distance in zip(labels[0], distances[0])]

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
                np.save(tmp / VECTORS_FILE, self._vectors[:elements])
                self._write_products(tmp / PRODUCTS_FILE)
                count = len(self._label_of)
            if write_extra is not None:
                write_extra(tmp)
            now = datetime.now(UTC)
            manifest = IndexManifest(
                version=f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}",
                model_fingerprint=self.model_fingerprint, model_precision=self.model_precision,
                count=count, elements=elements, dim=self.dim, catalog_sha256=self.catalog_sha256,
                created=now.strftime("%Y-%m-%dT%H:%M:%SZ"), sha256=_hash_tree(tmp),
            )
            self._write_manifest(tmp / MANIFEST_FILE, manifest)
            _replace_dir(tmp, path, token)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.manifest = manifest
        logger.info("saved index %s (%d products) to %s", manifest.version, count, path)
        return manifest

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
        """Read a bundle written by save(). Raises FingerprintMismatch when it was built with a model
        other than `expected_fingerprint` (checked before anything heavy is read) and BundleError when
        a file is missing, corrupt (sha256, with verify) or of another format."""
        path = Path(path)
        manifest = read_manifest(path)
        if expected_fingerprint is not None and manifest.model_fingerprint != expected_fingerprint:
            raise FingerprintMismatch(
                f"index {manifest.version} at {path} was built with model {manifest.model_fingerprint}, "
                f"but the loaded model is {expected_fingerprint}; rebuild the index with this model "
                f"or load the model it was built with",
                details={"index_fingerprint": manifest.model_fingerprint, "model_fingerprint": expected_fingerprint},
            )
        missing = [name for name in (*CORE_FILES, *manifest.sha256) if not (path / name).is_file()]
        if missing:
            raise BundleError(f"index bundle {path} is missing {', '.join(sorted(set(missing)))}")
        if verify:
            for name, digest in manifest.sha256.items():
                if _sha256_file(path / name) != digest:
                    raise BundleError(f"index bundle {path}: {name} does not match its sha256 in the manifest")
        try:
            return cls._read(path, manifest)
        except BundleError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, ValidationError) as exc:
            raise BundleError(f"index bundle {path} is unreadable: {exc}") from exc

    @classmethod
    def _read(cls, path: Path, manifest: IndexManifest) -> ProductIndex:
        stored = np.load(path / VECTORS_FILE, allow_pickle=False)
        if stored.dtype != np.float32 or stored.shape != (manifest.elements, manifest.dim):
            raise BundleError(f"index bundle {path}: vectors.npy is {stored.dtype} {stored.shape}, "
                              f"expected float32 {(manifest.elements, manifest.dim)}")
        hnsw = hnswlib.Index(space=SPACE, dim=manifest.dim)
        hnsw.load_index(str(path / INDEX_FILE), max_elements=max(manifest.elements, 1))
        if hnsw.element_count != manifest.elements:
            raise BundleError(f"index bundle {path}: index.bin holds {hnsw.element_count} elements, "
                              f"the manifest says {manifest.elements}")
        if hnsw.get_max_elements() == manifest.elements:
            vectors = np.ascontiguousarray(stored)
        else:
            vectors = np.zeros((hnsw.get_max_elements(), manifest.dim), np.float32)
            vectors[: manifest.elements] = stored
        index = cls(manifest.dim, manifest.model_fingerprint, model_precision=manifest.model_precision,
                    hnsw=hnsw, vectors=vectors)
        index.catalog_sha256 = manifest.catalog_sha256
        index._products = [None] * manifest.elements
        index._keys = [None] * manifest.elements
        with (path / PRODUCTS_FILE).open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                record = json.loads(line)
                label, key = int(record.pop("label")), record.pop("content_key", None)
                product = Product.model_validate(record)
                index._products[label] = product
                index._keys[label] = key
                index._label_of[product.id] = label
                index._members.setdefault(product.category, set()).add(label)
        if len(index._label_of) != manifest.count:
            raise BundleError(f"index bundle {path}: products.jsonl holds {len(index._label_of)} products, "
                              f"the manifest says {manifest.count}")
        index._free = [label for label, product in enumerate(index._products) if product is None]
        hnsw.set_ef(EF_SEARCH)
        index.manifest = manifest
        return index


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
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise BundleError(f"{file} is not a {FORMAT} manifest (format {found!r})")
    try:
        return IndexManifest.model_validate(data)
    except ValidationError as exc:
        raise BundleError(f"index manifest {file} is invalid: {exc.errors()[0]['msg']}") from exc


def _sha256_file(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_tree(root: Path) -> dict[str, str]:
    return {file.relative_to(root).as_posix(): _sha256_file(file)
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
