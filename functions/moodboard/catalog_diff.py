"""What a catalog load would change against the served index: the dry run.

`diff_catalog(new, current)` compares a read catalog (moodboard.catalog.CatalogRead) with the
products of the index it would replace: products added, removed and changed (which fields),
categories gained and lost (and each category's count before and after), the rows the catalog
rejects with their reasons, and whether the load needs an explicit confirmation: it does when it
would remove more than `max_removed_share` of the current products or any whole category (the
catalog that replaced 5,398 products with 14 and broke every shared link is the case it stops).

Nothing here publishes anything. Images are compared by what the text says: URLs as written,
local files by their name (a dry run reads the catalog from wherever it was unpacked, so folders
differ between runs; a changed file under the same name is not seen here, and the real load
re-embeds it anyway since its content key changes). When the dry run has the catalog's files at
hand (an archive it unpacked, a local catalog), a product whose image file is not there is rejected
as the load would skip it: left out of the products after, listed with the rejected rows.

A catalog in the bucket (POST /admin/load/dry-run) is a .csv/.jsonl, read alone, or an archive,
fetched and unpacked by the loader's own helper (moodboard.loading.fetch_archive, within the
archive_* limits) into a folder of its own under the cache, removed after the diff.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from moodboard.catalog import CatalogRead, Product, is_url
from moodboard.errors import CatalogError, LoadNeedsConfirmation, NotFound, RequestTooLarge

if TYPE_CHECKING:
    from moodboard.archives import ArchiveLimits

logger = logging.getLogger(__name__)

DEFAULT_MAX_REMOVED_SHARE = 0.10
LISTED = 50
COMPARED = ("title", "category", "image", "product_url", "price", "currency", "attributes")


class ChangedProduct(BaseModel):
    """A product in both, and the fields that differ."""

    id: str
    fields: list[str]


class CategoryCount(BaseModel):
    """Products of one category before and after the load."""

    category: str
    before: int
    after: int


class CatalogDiff(BaseModel):
    """The dry run's answer (first LISTED ids of each kind; the counts are complete)."""

    current_version: str | None = None
    before: int
    after: int
    added: int
    removed: int
    changed: int
    unchanged: int
    added_ids: list[str] = Field(default_factory=list)
    removed_ids: list[str] = Field(default_factory=list)
    changed_products: list[ChangedProduct] = Field(default_factory=list)
    categories_gained: list[str] = Field(default_factory=list)
    categories_lost: list[str] = Field(default_factory=list)
    categories: list[CategoryCount] = Field(default_factory=list)
    rejects: list[dict[str, object]] = Field(default_factory=list)
    rejects_total: int = 0
    images_missing: int = 0
    duplicates: list[str] = Field(default_factory=list)
    removed_share: float
    max_removed_share: float
    needs_confirmation: bool
    reasons: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        """One line for the console."""
        line = (f"{self.before} -> {self.after} products: {self.added} added, {self.removed} removed, "
                f"{self.changed} changed, {self.unchanged} unchanged; {self.rejects_total} rows rejected")
        if self.images_missing:
            line += f" ({self.images_missing} for a missing image file)"
        if self.categories_gained:
            line += f"; categories gained: {', '.join(self.categories_gained)}"
        if self.categories_lost:
            line += f"; categories LOST: {', '.join(self.categories_lost)}"
        return line


def _image_name(image: str) -> str:
    return image if is_url(image) else PurePath(image).name


def changed_fields(old: Product, new: Product) -> list[str]:
    """The compared fields whose values differ between two versions of a product."""
    fields = []
    for name in COMPARED:
        a, b = getattr(old, name), getattr(new, name)
        if name == "image":
            a, b = _image_name(a), _image_name(b)
        if a != b:
            fields.append(name)
    return fields


def missing_image_rejects(products: Iterable[Product], root: Path) -> list[dict[str, object]]:
    """The products whose local image is not a file under `root` (the catalog's unpacked folder), as
    rejects: the load would fail to read their image and skip them."""
    rejects: list[dict[str, object]] = []
    for product in products:
        if product.is_url or os.path.isfile(product.image):
            continue
        name = Path(os.path.relpath(product.image, root)).as_posix()
        rejects.append({"product_id": product.id, "image": name,
                        "reason": f"image file {name} is not in the catalog's files; the load would skip it"})
    return rejects


def diff_catalog(new: CatalogRead, current: Iterable[Product] | None, *, current_version: str | None = None,
                 max_removed_share: float = DEFAULT_MAX_REMOVED_SHARE, files_root: Path | None = None) -> CatalogDiff:
    """Compare a read catalog with the products of the index it would replace (None: nothing yet).
    With `files_root` (the folder the catalog's files are in), products whose image file is missing
    there are rejected (missing_image_rejects) and left out of the products after."""
    old = {p.id: p for p in (current or [])}
    image_rejects = missing_image_rejects(new.products, files_root) if files_root is not None else []
    skipped = {str(r["product_id"]) for r in image_rejects}
    fresh = {p.id: p for p in new.products if p.id not in skipped}
    added = [pid for pid in fresh if pid not in old]
    removed = [pid for pid in old if pid not in fresh]
    changes = [ChangedProduct(id=pid, fields=f) for pid in fresh if pid in old
               for f in [changed_fields(old[pid], fresh[pid])] if f]
    before = Counter(p.category for p in old.values())
    after = Counter(p.category for p in fresh.values())
    gained = sorted(set(after) - set(before))
    lost = sorted(set(before) - set(after))
    share = len(removed) / len(old) if old else 0.0
    reasons = []
    if share > max_removed_share:
        reasons.append(f"removes {len(removed)} of {len(old)} products ({share:.0%}, more than {max_removed_share:.0%})")
    if lost:
        reasons.append(f"removes every product of {len(lost)} categor{'y' if len(lost) == 1 else 'ies'}: "
                       f"{', '.join(lost[:10])}")
    rejects = [{"line": r.line, "reason": r.reason} for r in new.rejects] + image_rejects
    return CatalogDiff(
        current_version=current_version, before=len(old), after=len(fresh), added=len(added), removed=len(removed),
        changed=len(changes), unchanged=len(fresh) - len(added) - len(changes), added_ids=added[:LISTED],
        removed_ids=removed[:LISTED], changed_products=changes[:LISTED], categories_gained=gained,
        categories_lost=lost,
        categories=[CategoryCount(category=c, before=before.get(c, 0), after=after.get(c, 0))
                    for c in sorted(set(before) | set(after))],
        rejects=rejects[:500], rejects_total=len(rejects), images_missing=len(image_rejects), duplicates=list(new.duplicates)[:LISTED],
        removed_share=round(share, 4), max_removed_share=max_removed_share, needs_confirmation=bool(reasons),
        reasons=reasons)


def confirmation_message(diff: CatalogDiff) -> str:
    """The one line a refused load answers: what it would remove and how to confirm it."""
    parts = []
    if diff.removed_share > diff.max_removed_share:
        parts.append(f"{diff.removed_share:.0%} of products ({diff.removed} of {diff.before})")
    if diff.categories_lost:
        names = ", ".join(repr(c) for c in diff.categories_lost[:10])
        more = f" and {len(diff.categories_lost) - 10} more" if len(diff.categories_lost) > 10 else ""
        parts.append(f"the product type{'s' if len(diff.categories_lost) > 1 else ''} {names}{more}")
    return (f"this load would remove {' and '.join(parts)}; nothing was published; confirm it with confirm=true "
            "(POST /admin/load) or --confirm")


def check_load(new: CatalogRead, current: Iterable[Product] | None, *, confirm: bool, max_removed_share: float,
               current_version: str | None = None) -> CatalogDiff:
    """The one check every load runs before it builds anything (the single-process loader, the
    sharded plan step, `moodboard load`): the diff against what it replaces, and
    LoadNeedsConfirmation when the diff needs a confirmation the load was not given."""
    diff = diff_catalog(new, current, current_version=current_version, max_removed_share=max_removed_share)
    if diff.needs_confirmation and not confirm:
        raise LoadNeedsConfirmation(confirmation_message(diff),
                                    details={"removed": diff.removed, "before": diff.before,
                                             "removed_share": diff.removed_share,
                                             "categories_lost": diff.categories_lost[:LISTED]})
    if diff.needs_confirmation:
        logger.warning("confirmed load: it %s", "; ".join(diff.reasons))
    return diff


# --- the dry run of a catalog in the artifacts bucket (POST /admin/load/dry-run) or on disk -------

CATALOG_PREFIX = "catalogs/"
DRY_RUN_SUFFIXES = (".csv", ".jsonl", ".ndjson")
MAX_DRY_RUN_BYTES = 64 * 1024 * 1024
DRY_RUN_DIR = "dry-runs"
DRY_RUN_PREFIX = "dry-run-"


class UnknownCatalog(NotFound):
    """No catalog object under that key in the artifacts bucket."""


class NotDryRunnable(CatalogError):
    """A dry run reads a .csv or .jsonl catalog, or an archive, under catalogs/ or uploads/catalogs/ only."""


class CatalogTooLargeForDryRun(RequestTooLarge):
    """The catalog is larger than a dry run reads (details: its `bytes` and the `max_bytes` read)."""


def current_products(store: Any) -> tuple[list[Product] | None, str | None]:
    """CURRENT's products (read line by line from its products.jsonl; no numpy, so the evaluations
    function can run it) and its version; (None, None) when nothing is published yet."""
    from moodboard.artifacts import INDEX_PREFIX, s3_errors
    from moodboard.index.manifest import PRODUCTS_FILE

    pointer = store.current()
    if pointer is None:
        return None, None
    fields = set(Product.model_fields)
    with s3_errors(f"read the products of index {pointer.version}"):
        body = store.client.get_object(Bucket=store.bucket, Key=f"{INDEX_PREFIX}{pointer.version}/{PRODUCTS_FILE}")["Body"]
        products = [Product.model_validate({k: v for k, v in json.loads(line).items() if k in fields})
                    for line in body.iter_lines() if line.strip()]
    return products, pointer.version


@contextmanager
def dry_run_folder(cache_dir: Path) -> Iterator[Path]:
    """A new folder under `<cache_dir>/dry-runs` for one dry run's files, removed after it. The root
    is held like the loader's work root (moodboard.load_staging.shared_work_root): a dry run that
    finds no other one alive first removes what killed ones left (a Lambda that timed out in the
    middle of an unpack keeps its /tmp for the next request)."""
    from moodboard.load_staging import shared_work_root

    root = Path(cache_dir) / DRY_RUN_DIR

    def clean() -> None:
        for path in root.iterdir():
            if path.name.startswith(DRY_RUN_PREFIX) and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                logger.warning("removed %s, left behind by a dry run that did not finish", path)

    with shared_work_root(root, clean):
        work = Path(tempfile.mkdtemp(prefix=DRY_RUN_PREFIX, dir=root))
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)


def dry_run_in_bucket(store: Any, catalog_key: str, *, max_removed_share: float, limits: ArchiveLimits,
                      cache_dir: Path, max_bytes: int = MAX_DRY_RUN_BYTES) -> CatalogDiff:
    """The diff a load of `catalog_key` (a CSV or JSONL, or an archive, under catalogs/ or
    uploads/catalogs/) would make against CURRENT. Publishes nothing: a CSV or JSONL is read alone
    (its images are compared by name, not fetched); an archive is unpacked within `limits` as the
    loader does (ArchiveError when refused) and its image files checked. NotDryRunnable for another
    key or kind, UnknownCatalog when it is not there, CatalogTooLargeForDryRun above `max_bytes`,
    StoreError when S3 fails."""
    from moodboard.archives import is_archive
    from moodboard.artifacts import s3_errors
    from moodboard.catalog import read_catalog
    from moodboard.catalog_uploads import UPLOAD_PREFIX, is_catalog_prefix

    name = PurePath(catalog_key).name
    archive = is_archive(name)
    if not is_catalog_prefix(catalog_key) or not (archive or name.lower().endswith(DRY_RUN_SUFFIXES)):
        raise NotDryRunnable(f"a dry run reads a .csv, .jsonl or archive (.zip, .tar, .tar.gz) catalog under "
                             f"{CATALOG_PREFIX} or {UPLOAD_PREFIX} (got {catalog_key!r})")
    missing = UnknownCatalog(f"no catalog at {catalog_key!r} in the artifacts bucket",
                             details={"catalog_key": catalog_key})
    with s3_errors(f"read {catalog_key}", missing=missing):
        head = store.client.head_object(Bucket=store.bucket, Key=catalog_key)
    size = int(head.get("ContentLength", 0))
    if size > max_bytes:
        raise CatalogTooLargeForDryRun(f"{catalog_key} is {size} bytes; a dry run reads at most {max_bytes}",
                                       details={"bytes": size, "max_bytes": max_bytes})
    current, version = current_products(store)
    with dry_run_folder(cache_dir) as work:
        if archive:
            from moodboard.loading import fetch_archive

            files = work / "catalog"
            catalog = fetch_archive(store, catalog_key, files, limits=limits)
            return diff_catalog(read_catalog(catalog), current, current_version=version,
                                max_removed_share=max_removed_share, files_root=files)
        path = work / name
        with s3_errors(f"read {catalog_key}", missing=missing):
            store.client.download_file(store.bucket, catalog_key, str(path))
        return diff_catalog(read_catalog(path), current, current_version=version, max_removed_share=max_removed_share)


def dry_run_local(catalog: Path, current: Iterable[Product] | None, *, current_version: str | None,
                  max_removed_share: float, limits: ArchiveLimits, cache_dir: Path) -> CatalogDiff:
    """The diff a load of a catalog on disk (`moodboard load --dry-run`: a .csv/.jsonl, a
    clothing-dataset folder, or an archive, unpacked within `limits` into a dry-run folder and
    removed after) would make against `current`; its image files are checked. Writes nothing else."""
    from moodboard.archives import is_archive
    from moodboard.catalog import read_catalog

    catalog = Path(catalog)
    if catalog.is_file() and is_archive(catalog.name):
        from moodboard.loading import unpack_catalog

        with dry_run_folder(cache_dir) as work:
            files = work / "catalog"
            found = unpack_catalog(catalog, files, limits=limits, label=catalog.name)
            return diff_catalog(read_catalog(found), current, current_version=current_version,
                                max_removed_share=max_removed_share, files_root=files)
    root = catalog if catalog.is_dir() else catalog.resolve().parent
    return diff_catalog(read_catalog(catalog), current, current_version=current_version,
                        max_removed_share=max_removed_share, files_root=root)
