"""The steps of a sharded load on AWS, wired to the Lambda runtime: `plan`, `embed` (the map's
worker) and `reduce`, called by functions/loader/{plan,worker,reduce}.py with the events the load
state machine (infra_cdk/loads.py) sends. The work is in moodboard.shard_plan and moodboard.shards;
here the job's files are in S3, the job record in DynamoDB, and the bundle is published to CURRENT.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from moodboard.artifacts import ArtifactStore
from moodboard.errors import CatalogError, ConfigError, LoadNeedsConfirmation, MoodboardError, NotFound
from moodboard.load_jobs import JobStore
from moodboard.loading import is_catalog_key
from moodboard.observability import COUNT, record_metric
from moodboard.runtime import Runtime
from moodboard.shard_files import S3JobFiles
from moodboard.shard_plan import model_info, plan_s3
from moodboard.shards import (
    DONE,
    SHARDS,
    S3Publisher,
    StoredImageSource,
    StoreJobProgress,
    run_reduce,
    run_worker,
    shard_file,
)

logger = logging.getLogger(__name__)


def _jobs(runtime: Runtime) -> JobStore:
    return JobStore(runtime.dynamodb, runtime.settings.jobs_table)


def plan(event: dict[str, Any], runtime: Runtime) -> dict[str, Any]:
    """Plan the job `{"job_id", "catalog_key"[, "bucket"]}` (again: the same plan). `skip` when the
    job already succeeded (an execution started twice for one upload)."""
    job_id, catalog_key = event.get("job_id"), event.get("catalog_key")
    if not job_id or not catalog_key:
        raise ConfigError('a load execution needs {"job_id", "catalog_key"}')
    if not is_catalog_key(str(catalog_key)):
        raise CatalogError(f"{catalog_key!r} is not a catalog under catalogs/ (.csv, .jsonl, an archive or a prefix/)")
    settings = runtime.settings
    store = runtime.artifact_store()
    jobs = _jobs(runtime)
    try:
        record = jobs.get(job_id)
    except NotFound:
        record = jobs.create(str(catalog_key), job_id=str(job_id))
    if record.status == "succeeded":
        logger.info("load job %s already succeeded; nothing to do", job_id)
        return {"job_id": job_id, "skip": True}
    jobs.update(job_id, status="running", progress={"stage": "plan"})
    bucket = event.get("bucket")
    source = store if not bucket or bucket == store.bucket else ArtifactStore(str(bucket), store.client)
    files = S3JobFiles(store, job_id)
    work = Path(tempfile.mkdtemp(prefix=f"plan-{job_id[:24]}-", dir=_work_root(runtime)))
    try:
        job_plan = plan_s3(files, store, str(catalog_key), model_info(settings, store.client), settings=settings,
                           work=work, source=source, confirm=record.confirm)
    except LoadNeedsConfirmation as exc:  # nothing planned, nothing published: the job says why
        jobs.update(job_id, status="failed", error=exc.message, progress={"stage": "plan"})
        record_metric("LoadFailures", COUNT, 1)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress = StoreJobProgress(jobs)
    progress.planned(job_id, job_plan)
    done = [shard for shard in range(job_plan.shards) if files.exists(shard_file(shard, DONE))]
    for shard in done:  # a resumed job: its finished shards count
        progress.shard_done(job_id, shard)
    if job_plan.rejects:
        jobs.update(job_id, rejects=job_plan.rejects)
    return {"job_id": job_id, "skip": False, "shards": job_plan.shards, "shards_key": files.result_key(SHARDS),
            "products": job_plan.products, "reused": job_plan.reused, "version": job_plan.version}


def embed(event: dict[str, Any], runtime: Runtime) -> dict[str, Any]:
    """Embed the shards of one map batch (`{"Items", "BatchInput": {"job_id"}}`)."""
    settings = runtime.settings
    store = runtime.artifact_store()
    result = run_worker(
        event, files_for=lambda job_id: S3JobFiles(store, job_id), embedder=runtime.embedder(), settings=settings,
        jobs=StoreJobProgress(_jobs(runtime)),
        source_for=lambda items: StoredImageSource(settings, store,
                                                   {i.product.image: i.s3_key for i in items if i.s3_key}))
    record_metric("ProductsEmbedded", COUNT, sum(s["embedded"] for s in result["shards"] if not s["skipped"]))
    return result


def reduce(event: dict[str, Any], runtime: Runtime) -> dict[str, Any]:
    """Publish the job's bundle (`{"job_id", "map"}`), or record its failure (`{"job_id", "error"}`)."""
    store = runtime.artifact_store()
    work = Path(tempfile.mkdtemp(prefix="reduce-", dir=_work_root(runtime)))
    try:
        result = run_reduce(event, files_for=lambda job_id: S3JobFiles(store, job_id),
                            publisher=S3Publisher(store, work, settings=runtime.settings), jobs=StoreJobProgress(_jobs(runtime)))
    except MoodboardError:
        record_metric("LoadFailures", COUNT, 1)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if result["status"] == "succeeded":
        record_metric("ProductsLoaded", COUNT, result["loaded"])  # retention ran in the publish
    else:
        record_metric("LoadFailures", COUNT, 1)
    return result


def _work_root(runtime: Runtime) -> Path:
    root = Path(runtime.settings.cache_dir) / "work"
    root.mkdir(parents=True, exist_ok=True)
    return root
