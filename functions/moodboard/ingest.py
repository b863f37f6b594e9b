"""Catalog ingestion: catalog rows -> images -> embeddings -> an index bundle.

Re-running on the same catalog re-embeds only products whose image changed (same content key as in
the previous bundle: the URL, or path + size + mtime for a file). Images that cannot be fetched or
decoded are listed with the reason and never abort the load. Memory stays flat with catalog size:
at most a window of decoded images is alive at a time.

A load that ends with no product writes nothing (NothingLoaded), so it never replaces a bundle with
an empty one; the S3 loader (moodboard.loading) relies on the same rule. A load holds its output's
lock and first removes what a killed load of the same output left behind (moodboard.load_staging).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from moodboard.catalog import CatalogRead, Product, RowReject, image_content_key, is_url, read_catalog
from moodboard.embedder import EmbedderProtocol
from moodboard.errors import BundleError, MoodboardError, NothingLoaded
from moodboard.fetch import FetchLimits, fetch
from moodboard.images import decode_image, load_image_file
from moodboard.index import IndexBuilder, ProductIndex
from moodboard.index.manifest import MANIFEST_FILE, THUMBS_DIR, thumb_name, thumbnail_path
from moodboard.load_staging import clean_staging, output_lock, thumbs_staging
from moodboard.settings import Settings

logger = logging.getLogger(__name__)

THUMB_SIZE = 256
ProgressCallback = Callable[[int, int], None]


class ImageFailure(BaseModel):
    """A product whose image could not be fetched or decoded."""

    product_id: str
    image: str
    reason: str


class LoadReport(BaseModel):
    """What a load did: counts, rejects, failures and where the bundle is."""

    loaded: int = 0
    embedded: int = 0
    reused: int = 0
    rejects: list[RowReject] = Field(default_factory=list)
    image_failures: list[ImageFailure] = Field(default_factory=list)
    duplicates: list[str] = Field(default_factory=list)
    categories: dict[str, int] = Field(default_factory=dict)
    index_dir: str = ""
    version: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for people."""
        return (
            f"loaded {self.loaded} products in {len(self.categories)} categories "
            f"({self.embedded} embedded, {self.reused} reused), rejected {len(self.rejects)} rows, "
            f"{len(self.image_failures)} image failures, {len(self.duplicates)} duplicate ids; "
            f"{self.seconds:.1f}s"
        )


class ImageSource:
    """Fetches and decodes product images with the configured limits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limits = FetchLimits.from_settings(settings)

    def open(self, image: str) -> Image.Image:
        """Return the decoded RGB image for a catalog image reference (URL or local path)."""
        s = self.settings
        if is_url(image):
            fetched = fetch(image, limits=self.limits, allow_loopback=s.fetch_allow_loopback)
            return decode_image(fetched.content, max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels)
        return load_image_file(Path(image), max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels)


def _previous_index(previous: Path | None, fingerprint: str) -> ProductIndex | None:
    if previous is None or not (Path(previous) / MANIFEST_FILE).exists():
        return None
    try:
        return ProductIndex.open(Path(previous), expected_fingerprint=fingerprint)
    except BundleError as exc:
        logger.warning("not reusing the previous index at %s: %s", previous, exc.message)
        return None


def _windowed(pool: ThreadPoolExecutor, fn: Callable[[Product], object], items: Sequence[Product],
              window: int) -> Iterator[tuple[Product, Future]]:
    """Yield (item, future) in order while keeping at most `window` tasks in flight."""
    pending: deque[tuple[Product, Future]] = deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= window:
            yield pending.popleft()
    while pending:
        yield pending.popleft()


def _save_thumb(image: Image.Image, dest: Path) -> None:
    thumb = image.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BICUBIC)
    thumb.save(dest, "JPEG", quality=82)


def load_catalog(
    catalog: Path,
    embedder: EmbedderProtocol,
    out_dir: Path,
    *,
    settings: Settings,
    previous: Path | None = None,
    on_progress: ProgressCallback | None = None,
    source: ImageSource | None = None,
) -> LoadReport:
    """Build an index bundle at out_dir from a catalog file/folder and return what happened.

    `previous` (default: out_dir itself when it already holds a bundle) lends vectors and thumbnails
    for products whose image did not change. `on_progress(done, total)` is called as each image of
    the products to embed is done (the CLI draws a bar with it, the loader records it on the job).
    Raises NothingLoaded (out_dir untouched, the report on
    the exception) when no product could be loaded, and LoadBusy when another load holds out_dir.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    read = read_catalog(Path(catalog))
    with output_lock(out_dir):
        clean_staging(out_dir)
        return _load(read, embedder, out_dir, settings=settings, previous=previous, on_progress=on_progress,
                     source=source or ImageSource(settings), started=started)


def _load(read: CatalogRead, embedder: EmbedderProtocol, out_dir: Path, *, settings: Settings,
          previous: Path | None, on_progress: ProgressCallback | None, source: ImageSource,
          started: float) -> LoadReport:
    report = LoadReport(
        rejects=list(read.rejects),
        duplicates=list(read.duplicates),
    )
    prev = _previous_index(previous if previous is not None else out_dir, embedder.fingerprint)

    staging_thumbs = thumbs_staging(out_dir)
    staging_thumbs.mkdir(parents=True, exist_ok=True)
    index = IndexBuilder(embedder.dim, embedder.fingerprint, model_precision=embedder.precision)
    try:
        todo: list[Product] = []
        keys: dict[str, str] = {}
        reused_products: list[Product] = []
        reused_vectors: list[np.ndarray] = []
        for product in read.products:
            key = image_content_key(product)
            keys[product.id] = key
            if prev is not None and prev.content_key(product.id) == key:
                reused_products.append(product)
                reused_vectors.append(prev.vector(product.id))
                old_thumb = thumbnail_path(Path(previous or out_dir), product.id)
                if old_thumb.exists():
                    shutil.copy2(old_thumb, staging_thumbs / thumb_name(product.id))
            else:
                todo.append(product)
        if reused_products:
            index.add(reused_products, np.stack(reused_vectors).astype(np.float32),
                      [keys[p.id] for p in reused_products])
        report.reused = len(reused_products)
        _embed_all(todo, keys, embedder, index, source, settings, staging_thumbs, report, on_progress=on_progress)
        report.loaded = report.reused + report.embedded
        report.seconds = time.perf_counter() - started
        if report.loaded == 0:
            raise NothingLoaded(
                f"no product of {read.source} could be loaded ({len(report.rejects)} rows rejected, "
                f"{len(report.image_failures)} images failed); nothing was written to {out_dir}", report=report)
        manifest = index.write(out_dir, catalog_sha256=read.checksum,
                               write_extra=lambda tmp: staging_thumbs.rename(tmp / THUMBS_DIR))
    finally:
        if staging_thumbs.exists():
            shutil.rmtree(staging_thumbs, ignore_errors=True)

    report.version = manifest.version
    report.categories = index.categories()
    report.index_dir = str(out_dir)
    report.seconds = time.perf_counter() - started
    logger.info("load finished: %s", report.summary())
    return report


class EmbeddedProducts(BaseModel):
    """What embedding a list of products gave: the products that embedded, their vectors (row i for
    product i), their image content keys, and the products whose image failed."""

    model_config = {"arbitrary_types_allowed": True}

    products: list[Product]
    vectors: np.ndarray
    keys: list[str | None]
    failures: list[ImageFailure]


def embed_products(products: Sequence[Product], keys: dict[str, str], embedder: EmbedderProtocol, *,
                   settings: Settings, thumbs: Path, source: ImageSource | None = None,
                   on_progress: ProgressCallback | None = None) -> EmbeddedProducts:
    """Fetch, decode and embed these products the way a load does (thumbnails of local images into
    `thumbs`), returning the vectors instead of writing a bundle: one shard of a sharded load
    (moodboard.shards). `keys` maps each id to its image content key."""
    collector = IndexBuilder(embedder.dim, embedder.fingerprint, model_precision=embedder.precision)
    report = LoadReport()
    _embed_all(list(products), keys, embedder, collector, source or ImageSource(settings), settings, thumbs,
               report, on_progress=on_progress)
    embedded, vectors, embedded_keys = collector.rows()
    return EmbeddedProducts(products=embedded, vectors=vectors, keys=embedded_keys, failures=report.image_failures)


def _embed_all(todo: list[Product], keys: dict[str, str], embedder: EmbedderProtocol, index: IndexBuilder,
               source: ImageSource, settings: Settings, thumbs: Path, report: LoadReport, *,
               on_progress: ProgressCallback | None) -> None:
    """Fetch/decode concurrently, embed in batches, add to the index; failures go to the report."""
    batch_size = settings.embed_batch_size
    total = len(todo)
    done = 0
    batch_products: list[Product] = []
    batch_images: list[Image.Image] = []

    def load_one(product: Product) -> Image.Image:
        image = source.open(product.image)
        if not product.is_url:
            _save_thumb(image, thumbs / thumb_name(product.id))
        return image

    def flush() -> None:
        if not batch_products:
            return
        vectors = embedder.embed_images(batch_images)
        index.add(list(batch_products), vectors, [keys[p.id] for p in batch_products])
        report.embedded += len(batch_products)
        batch_products.clear()
        batch_images.clear()

    with ThreadPoolExecutor(max_workers=settings.fetch_concurrency) as pool:
        for product, future in _windowed(pool, load_one, todo, window=2 * batch_size):
            try:
                image = future.result()
            except MoodboardError as exc:
                report.image_failures.append(ImageFailure(product_id=product.id, image=product.image,
                                                          reason=exc.message))
            except OSError as exc:  # the thumbnail could not be written
                report.image_failures.append(ImageFailure(product_id=product.id, image=product.image,
                                                          reason=f"cannot read: {exc.strerror or exc}"))
            else:
                batch_products.append(product)
                batch_images.append(image)
                if len(batch_products) >= batch_size:
                    flush()
            done += 1
            if on_progress is not None:
                on_progress(done, total)
        flush()

