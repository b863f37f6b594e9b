"""Planning a sharded load: a catalog becomes shards of the products to embed (moodboard.shards).

The plan reads the catalog, gives every product its image content key, keeps the products whose key
is the one the base bundle (CURRENT, or the bundle at --out) has, and splits the rest, in catalog
order, into shards of `shard_size`. It writes the shard inputs, reused.jsonl and shards.json, and
plan.json last: a job with a plan.json is planned for good, and planning it again returns that plan,
so a resumed or retried job embeds the same shards. The version the job will publish is fixed here
(the plan's time and the job id's hash).

On AWS the catalog's own image files stay in the bucket: the plan lists them once (their ETag and
size make the content key, `s3:<path in the catalog>:<size>:<etag>`) and the workers read them by
key. The images of an archive exist only inside it, so the plan uploads those it names under the
job (`loads/<job>/files/`). Locally the content key is the file's path, size and mtime, as for every
local load (moodboard.catalog.image_content_key).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from moodboard.archives import ArchiveLimits, is_archive
from moodboard.artifacts import INDEX_PREFIX, ArtifactStore, s3_errors, split_s3_uri
from moodboard.catalog import CLOTHING_CSV, CatalogRead, image_content_key, is_url, read_catalog
from moodboard.catalog_diff import check_load
from moodboard.errors import BundleError, ConfigError
from moodboard.index.manifest import MANIFEST_FILE, PRODUCTS_FILE, read_manifest
from moodboard.index.records import read_records
from moodboard.loading import CATALOG_SUFFIXES, fetch_archive, find_catalog
from moodboard.settings import Settings
from moodboard.shard_files import JobFiles
from moodboard.shards import (
    INPUT,
    PLAN,
    REUSED,
    SHARDS,
    BaseBundle,
    Plan,
    ShardItem,
    ShardProduct,
    read_plan,
    shard_file,
    write_lines,
)

logger = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 1000
WRITERS = 8


@dataclass(frozen=True)
class ModelInfo:
    """What a plan needs of the model: its embedding space, dimension and served precision, and its
    source (where its weights came from) for the published version's card."""

    fingerprint: str
    dim: int
    precision: str
    source: str | None = None


def model_info(settings: Settings, s3_client: Any = None) -> ModelInfo:
    """The configured model's fingerprint and dimension from its manifest alone (the plan embeds
    nothing): Settings.model_dir, or manifest.json under Settings.model_s3_uri."""
    from moodboard.model_bundle import ModelManifest, load_manifest

    if settings.model_dir:
        manifest = load_manifest(Path(settings.model_dir), verify=False)
    elif settings.model_s3_uri and s3_client is not None:
        bucket, prefix = split_s3_uri(settings.model_s3_uri)
        with s3_errors(f"read {prefix}{MANIFEST_FILE}"):
            raw = s3_client.get_object(Bucket=bucket, Key=prefix + MANIFEST_FILE)["Body"].read()
        manifest = ModelManifest.model_validate_json(raw)
    else:
        raise ConfigError("no model configured (MOODBOARD_MODEL_DIR or MOODBOARD_MODEL_S3_URI)")
    return ModelInfo(fingerprint=manifest.fingerprint, dim=manifest.dim, precision=settings.precision,
                     source=manifest.source.id)


def job_version(job_id: str, when: datetime) -> str:
    """The index version a job publishes: fixed at planning, so a reduce run twice publishes once."""
    return f"{when:%Y%m%dT%H%M%SZ}-{hashlib.sha256(job_id.encode()).hexdigest()[:8]}"


def write_plan(files: JobFiles, *, catalog: str, read: CatalogRead, entries: Sequence[ShardProduct],
               model: ModelInfo, base: BaseBundle | None, base_keys: dict[str, str | None] | None,
               shard_size: int) -> Plan:
    """Split the products into kept ones and shards and write the job's files, plan.json last."""
    kept = [e for e in entries if base_keys is not None and base_keys.get(e.product.id) == e.key]
    kept_ids = {e.product.id for e in kept}
    todo = [e for e in entries if e.product.id not in kept_ids]
    shards = [todo[start:start + shard_size] for start in range(0, len(todo), shard_size)]
    now = datetime.now(UTC)
    plan = Plan(job_id=files.job_id, catalog=catalog, catalog_sha256=read.checksum, model_fingerprint=model.fingerprint,
                model_precision=model.precision, model_source=model.source, dim=model.dim, base=base,
                version=job_version(files.job_id, now),
                shard_size=shard_size, shards=len(shards), products=len(todo), reused=len(kept),
                rejects=[{"line": r.line, "reason": r.reason} for r in read.rejects], duplicates=list(read.duplicates),
                created=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        writes = [pool.submit(files.write, shard_file(i, INPUT), write_lines(shard)) for i, shard in enumerate(shards)]
        writes.append(pool.submit(files.write, REUSED, write_lines(kept)))
        for future in writes:
            future.result()
    manifest = [ShardItem(shard=i, products=len(shard)).model_dump() for i, shard in enumerate(shards)]
    files.write(SHARDS, json.dumps(manifest).encode())
    files.write(PLAN, plan.model_dump_json(indent=1).encode())
    logger.info("load job %s planned: %d products to embed in %d shards of %d, %d kept from %s", plan.job_id,
                plan.products, plan.shards, shard_size, plan.reused, base.version if base else "no base")
    return plan


def existing_plan(files: JobFiles) -> Plan | None:
    """The job's plan when it was planned before (a retried or resumed job keeps its shards)."""
    return read_plan(files) if files.exists(PLAN) else None


# --- local catalogs ----------------------------------------------------------------------------------

def plan_local(files: JobFiles, catalog: Path, out_dir: Path, model: ModelInfo, *,
               shard_size: int = DEFAULT_SHARD_SIZE) -> Plan:
    """Plan a load of a local catalog into the bundle at out_dir (which lends its vectors)."""
    if (plan := existing_plan(files)) is not None:
        return plan
    read = read_catalog(Path(catalog))
    base, base_keys = None, None
    if (Path(out_dir) / MANIFEST_FILE).is_file():
        manifest = read_manifest(out_dir)
        base = BaseBundle(version=manifest.version, model_fingerprint=manifest.model_fingerprint)
        if manifest.model_fingerprint == model.fingerprint:
            products, _labels, keys = read_records(Path(out_dir) / PRODUCTS_FILE)
            base_keys = {p.id: k for p, k in zip(products, keys)}
    entries = [ShardProduct(product=p, key=image_content_key(p)) for p in read.products]
    return write_plan(files, catalog=str(Path(catalog).resolve()), read=read, entries=entries, model=model,
                      base=base, base_keys=base_keys, shard_size=shard_size)


# --- catalogs in S3 ------------------------------------------------------------------------------------

@dataclass
class StagedCatalog:
    """A catalog object brought to local disk for reading, without its images: the path to read,
    the folder its relative image paths resolve in, and the bucket's objects by path in it."""

    catalog: Path
    root: Path
    objects: dict[str, tuple[str, int, str]] = field(default_factory=dict)  # path -> (key, size, etag)
    from_archive: bool = False


def list_objects(store: ArtifactStore, prefix: str) -> dict[str, tuple[str, int, str]]:
    """Every object under prefix by its path below it: (key, size, ETag)."""
    found: dict[str, tuple[str, int, str]] = {}
    with s3_errors(f"list {prefix}"):
        for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                relative = obj["Key"][len(prefix):]
                if relative and not relative.endswith("/"):
                    found[relative] = (obj["Key"], int(obj["Size"]), str(obj.get("ETag", "")).strip('"'))
    return found


def stage_catalog(store: ArtifactStore, key: str, dest: Path, *, limits: ArchiveLimits) -> StagedCatalog:
    """Download what is needed to read the catalog at `key` (never its images; an archive whole)."""
    dest.mkdir(parents=True, exist_ok=True)
    name = PurePosixPath(key).name
    prefix = key[: len(key) - len(name)]
    if key.endswith("/") or name == CLOTHING_CSV:
        root_prefix = key if key.endswith("/") else prefix
        objects = list_objects(store, root_prefix)
        for relative in objects:
            parts = PurePosixPath(relative).parts
            if ".." in parts or PurePosixPath(relative).is_absolute():
                raise BundleError(f"refusing the S3 key {root_prefix + relative!r}: it leaves {root_prefix}")
            target = dest.joinpath(*parts)
            if parts[-1] == CLOTHING_CSV or relative.lower().endswith(CATALOG_SUFFIXES):
                store.download_file(root_prefix + relative, target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)  # the folders exist, so find_catalog sees images/
        if name == CLOTHING_CSV:
            (dest / "images").mkdir(exist_ok=True)
            return StagedCatalog(catalog=dest, root=dest, objects=objects)
        return StagedCatalog(catalog=find_catalog(dest), root=dest, objects=objects)
    if is_archive(name):
        return StagedCatalog(catalog=fetch_archive(store, key, dest, limits=limits), root=dest, from_archive=True)
    catalog = store.download_file(key, dest / name)
    return StagedCatalog(catalog=catalog, root=dest, objects=list_objects(store, prefix))


def plan_s3(files: JobFiles, store: ArtifactStore, catalog_key: str, model: ModelInfo, *, settings: Settings,
            work: Path, source: ArtifactStore | None = None, confirm: bool = False) -> Plan:
    """Plan a load of a catalog object (in `source`, by default the artifacts bucket), reusing the
    vectors of CURRENT's unchanged products. Refused (LoadNeedsConfirmation, nothing planned) when
    the load would remove what moodboard.catalog_diff.check_load guards and `confirm` is False."""
    if (plan := existing_plan(files)) is not None:
        return plan
    staged = stage_catalog(source or store, catalog_key, work / "catalog", limits=ArchiveLimits.from_settings(settings))
    read = read_catalog(staged.catalog)
    root = os.path.realpath(staged.root)
    local = [p for p in read.products if not is_url(p.image)]
    if staged.from_archive:
        staged.objects = _upload_images(files, local, root)
    entries = []
    for product in read.products:
        if is_url(product.image):
            entries.append(ShardProduct(product=product, key=product.image))
            continue
        relative = Path(os.path.relpath(os.path.realpath(product.image), root)).as_posix()
        s3_key, size, etag = staged.objects.get(relative, (None, 0, ""))
        content_key = f"s3:{relative}:{size}:{etag}" if s3_key else f"s3:{relative}:missing"
        entries.append(ShardProduct(product=product, key=content_key, s3_key=s3_key or f"missing/{relative}"))
    base, base_keys = _current_keys(store, model, work, read=read, confirm=confirm,
                                    max_removed_share=settings.load_confirm_removed_share)
    return write_plan(files, catalog=catalog_key, read=read, entries=entries, model=model, base=base,
                      base_keys=base_keys, shard_size=settings.load_shard_size)


def _upload_images(files: JobFiles, products: Iterable[Any], root: str) -> dict[str, tuple[str, int, str]]:
    """Upload the unpacked archive's images the catalog names to the job's files/ (in parallel)."""
    wanted = {}
    for product in products:
        path = os.path.realpath(product.image)
        if os.path.isfile(path):
            wanted[Path(os.path.relpath(path, root)).as_posix()] = path

    def upload(item: tuple[str, str]) -> tuple[str, tuple[str, int, str]]:
        relative, path = item
        etag = files.upload(Path(path), f"files/{relative}")
        return relative, (files.result_key(f"files/{relative}"), os.path.getsize(path), etag)

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        return dict(pool.map(upload, wanted.items()))


def _current_keys(store: ArtifactStore, model: ModelInfo, work: Path, *, read: CatalogRead, confirm: bool,
                  max_removed_share: float) -> tuple[BaseBundle | None, dict[str, str | None] | None]:
    """CURRENT as the load's base, checked against the catalog (check_load), and its products'
    content keys when it has this model's vectors (only products.jsonl is read; reduce downloads
    the bundle for the vectors)."""
    pointer = store.current()
    if pointer is None:
        return None, None
    base = BaseBundle(version=pointer.version, model_fingerprint=pointer.model_fingerprint, etag=pointer.etag)
    records = store.download_file(f"{INDEX_PREFIX}{pointer.version}/{PRODUCTS_FILE}",
                                  work / f"current-{pointer.version}" / PRODUCTS_FILE)
    products, _labels, keys = read_records(records)
    check_load(read, products, confirm=confirm, current_version=pointer.version, max_removed_share=max_removed_share)
    if pointer.model_fingerprint != model.fingerprint:
        return base, None
    return base, {p.id: k for p, k in zip(products, keys)}
