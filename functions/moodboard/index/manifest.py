"""An index bundle on disk: its manifest, the names of its files, thumbnail naming, and `verify`.

A bundle is one folder, written once by moodboard.index.builder and never changed (a new catalog
gives a new bundle). Layout (docs/contracts.md, "Index bundle"):

    manifest.json        IndexManifest: format, version, model, counts, build parameters, the
                         category graphs, and the sha256 of every other file
    index.bin            hnswlib: the global graph, every product under its label, and the only
                         copy of the L2-normalised float32 vectors (read in place: stored_vectors)
    graphs/<name>.bin    hnswlib: one graph per category above the builder's switch, holding only
                         that category's members under their global labels
    products.jsonl       one Product per line plus its "label" and image "content_key"
    thumbs/<hash>.jpg    thumbnails of the products whose catalog image is a local file

Bundles of format /2 also held vectors.npy (row i = label i), the same floats a second time; they
are still read (their vectors from that file), and the builder writes /3.

This module imports nothing heavier than pydantic: artifacts.py verifies bundles with it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from moodboard.errors import BundleError
from moodboard.integrity import MANIFEST_FILE, verify_files

FORMAT = "moodboard-index/3"
# /2 stored the vectors a second time, in vectors.npy; still read, never written.
FORMAT_WITH_VECTORS_FILE = "moodboard-index/2"
READABLE_FORMATS = (FORMAT, FORMAT_WITH_VECTORS_FILE)
INDEX_FILE = "index.bin"
PRODUCTS_FILE = "products.jsonl"
VECTORS_FILE = "vectors.npy"
GRAPHS_DIR = "graphs"
THUMBS_DIR = "thumbs"
CORE_FILES = (INDEX_FILE, PRODUCTS_FILE)
# A version names a folder on S3 and in /tmp: one safe path segment.
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
GRAPH_FILE_PATTERN = rf"^{GRAPHS_DIR}/[A-Za-z0-9_-]+\.bin$"

# The parameters every bundle is built and searched with (recorded in its manifest's "build").
# Why these values: docs/index-switch.md and docs/performance.md, "Index".
SPACE = "cosine"
M = 16
EF_CONSTRUCTION = 200
EF_SEARCH = 64
# Beam of a walk of the global graph with a filter (a search that excludes some labels).
EF_FILTERED = 256
# Categories with more products than this get a graph of their own; the others are searched
# exactly (recall 1.0, no second graph). Exact search grows with the category and a graph walk does
# not; the switch sits where they cost about the same.
SWITCH = 100_000
# A category graph is walked at EF_CATEGORY, and again at EF_CATEGORY_OUTSIDE when the query lies
# outside the category (its best match there is OUTSIDE_GAP less similar than its best match
# overall): such a walk starts on the category's near side and needs the wide beam to reach the rest.
EF_CATEGORY = 256
EF_CATEGORY_OUTSIDE = 4096
OUTSIDE_GAP = 0.05


class BuildParams(BaseModel):
    """The hnswlib parameters a bundle was built and is searched with, and the builder's switch."""

    M: int = M
    ef_construction: int = EF_CONSTRUCTION
    ef_search: int = EF_SEARCH
    ef_filtered: int = EF_FILTERED
    ef_category: int = EF_CATEGORY
    ef_category_outside: int = EF_CATEGORY_OUTSIDE
    outside_gap: float = OUTSIDE_GAP
    switch: int = SWITCH


class GraphEntry(BaseModel):
    """One category graph of a bundle: its file, its category, its members (`count`) and the nodes
    the file holds (`elements`)."""

    category: str
    file: str = Field(pattern=GRAPH_FILE_PATTERN)
    count: int = Field(ge=0)
    elements: int = Field(ge=0)


class IndexManifest(BaseModel):
    """manifest.json of an index bundle. `count` counts the products, `elements` the nodes (and
    vectors) of index.bin (equal in the bundles the builder writes)."""

    format: str = FORMAT
    version: str = Field(pattern=VERSION_PATTERN)
    model_fingerprint: str
    model_precision: str
    count: int = Field(ge=0)
    elements: int = Field(ge=0)
    dim: int = Field(ge=1)
    space: str = SPACE
    build: BuildParams = BuildParams()
    graphs: list[GraphEntry] = []
    catalog_sha256: str | None = None
    created: str
    sha256: dict[str, str]

    @property
    def vectors_file(self) -> str | None:
        """vectors.npy for a bundle of format /2, None when the vectors live in index.bin only."""
        return VECTORS_FILE if self.format == FORMAT_WITH_VECTORS_FILE else None

    @property
    def core_files(self) -> tuple[str, ...]:
        """The files every bundle of this format needs, whatever its manifest lists."""
        return CORE_FILES + ((VECTORS_FILE,) if self.vectors_file else ())


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
    found = data.get("format") if isinstance(data, dict) else None
    if found not in READABLE_FORMATS:
        raise BundleError(f"{file} is not a moodboard-index manifest this reader knows "
                          f"(format {found!r}; it reads {' and '.join(READABLE_FORMATS)})")
    try:
        return IndexManifest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise BundleError(f"index manifest {file} is invalid: {where}: {error['msg']}") from exc


def verify(path: Path, *, digests: bool = True, manifest: IndexManifest | None = None) -> IndexManifest:
    """The manifest of the index bundle at `path` (read unless given), after checking that every
    file the bundle needs is there and, with `digests`, that every file it lists matches its sha256
    (hashed once, then sealed: moodboard.integrity). BundleError naming what is wrong."""
    path = Path(path)
    manifest = manifest or read_manifest(path)
    needed = {*manifest.core_files, *(entry.file for entry in manifest.graphs), *manifest.sha256}
    missing = sorted(name for name in needed if not (path / name).is_file())
    if missing:
        raise BundleError(f"index bundle {path} is missing {', '.join(missing)}")
    if digests:
        verify_files(path, manifest.sha256, label=f"index bundle {path}")
    return manifest


def graph_file(category: str) -> str:
    """A category graph's file in the bundle: a readable slug of the name plus a hash of it, so any
    category name (slashes, unicode, 200 characters) gives a distinct, safe file name."""
    slug = re.sub(r"[^A-Za-z0-9_]+", "-", category).strip("-")[:40] or "category"
    digest = hashlib.sha256(category.encode("utf-8")).hexdigest()[:12]
    return f"{GRAPHS_DIR}/{slug}-{digest}.bin"


def thumb_name(product_id: str) -> str:
    """File name of a product's thumbnail inside a bundle's thumbs/ folder."""
    return hashlib.sha1(product_id.encode()).hexdigest()[:20] + ".jpg"


def thumbnail_path(bundle: Path, product_id: str) -> Path:
    """Where the thumbnail of a product with a local-file image lives in the bundle at `bundle`."""
    return Path(bundle) / THUMBS_DIR / thumb_name(product_id)
