"""Sharded loads: the shard worker and the reduce step, and the files between them (DESIGN.md,
"Loading at scale"; docs/contracts.md, "Sharded loads").

A load job is planned (moodboard.shard_plan), its shards are embedded by workers, and a reduce step
builds and publishes the bundle. On AWS a Step Functions Distributed Map runs the workers
(infra_cdk/loads.py); `moodboard load --workers N` runs the same functions in a process pool
(moodboard_local.local_load). A job's files (moodboard.shard_files: S3 `loads/<job>/`, or a folder):

    plan.json                 Plan: model, the bundle the load started from, the version it publishes
    shards.json               the shard manifest: a JSON array of {"shard": i, "products": n}, read by
                              the map's ItemReader (one item per shard)
    reused.jsonl              products kept from the base bundle ({"product", "key"}: image unchanged)
    shards/<i>/input.jsonl    what shard i embeds: {"product", "key", "s3_key"} per line
    shards/<i>/vectors.npy    float32 (m, dim), the m products that embedded, in order
    shards/<i>/records.jsonl  those m products, {"product", "key"} per line
    shards/<i>/failures.json  the shard's images that failed, with the reason
    shards/<i>/thumbs.tar     thumbnails of its catalog-local images (no URL images)
    shards/<i>/done.json      ShardDone, written last: the shard's checkpoint
    result.json               what the reduce step published (written before CURRENT moves)

A worker is called with what a Distributed Map with an ItemBatcher delivers:
`{"Items": [{"shard": 0, "products": 1000}, ...], "BatchInput": {"job_id": "..."}}`; it skips shards
that have a done.json, so a retried batch or a resumed job embeds only what is missing. Reduce is
called with `{"job_id", "map": <the map's output: {"MapRunArn", "ResultWriterDetails": {"Bucket",
"Key"}}, or {} when nothing was embedded>}`, reads the map's result manifest for the failed shards,
and publishes the version named in the plan, so a reduce run twice publishes once.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from moodboard.artifacts import ArtifactStore, Pointer
from moodboard.catalog import Product
from moodboard.embedder import EmbedderProtocol
from moodboard.errors import BundleError, MoodboardError, NothingLoaded, PublishConflict, ShardFailed
from moodboard.images import decode_image
from moodboard.index import IndexBuilder
from moodboard.index.manifest import THUMBS_DIR, thumb_name, thumbnail_path
from moodboard.ingest import ImageFailure, ImageSource, embed_products
from moodboard.settings import Settings
from moodboard.shard_files import JobFiles

logger = logging.getLogger(__name__)

PLAN = "plan.json"
SHARDS = "shards.json"
REUSED = "reused.jsonl"
RESULT = "result.json"
INPUT, VECTORS, RECORDS, FAILURES, THUMBS, DONE = (
    "input.jsonl", "vectors.npy", "records.jsonl", "failures.json", "thumbs.tar", "done.json")
SHARD_OUTPUTS = (VECTORS, RECORDS, FAILURES, THUMBS)
_THUMB_NAME = re.compile(r"^[0-9a-f]{20}\.jpg$")


def shard_file(shard: int, name: str) -> str:
    """A shard's file: shards/00042/<name>."""
    return f"shards/{shard:05d}/{name}"


# --- what the files hold ---------------------------------------------------------------------------

class BaseBundle(BaseModel):
    """The bundle a load started from (CURRENT, or the bundle at --out): its vectors are reused and
    the new bundle replaces it only if it is still the one served."""

    version: str
    model_fingerprint: str
    etag: str | None = None


class Plan(BaseModel):
    """plan.json: everything the workers and the reduce step need to know about a job."""

    job_id: str
    catalog: str
    catalog_sha256: str
    model_fingerprint: str
    model_precision: str
    model_source: str | None = None  # the model's source, for the version card ("source @ short fp")
    dim: int = Field(ge=1)
    base: BaseBundle | None = None
    version: str
    shard_size: int = Field(ge=1)
    shards: int = Field(ge=0)
    products: int = Field(ge=0)
    reused: int = Field(ge=0)
    rejects: list[dict[str, Any]] = Field(default_factory=list)
    duplicates: list[str] = Field(default_factory=list)
    created: str


class ShardItem(BaseModel):
    """One item of the shard manifest (one map item)."""

    shard: int = Field(ge=0)
    products: int = Field(ge=0)


class ShardProduct(BaseModel):
    """A product to embed (or kept): its record, its image content key, and where a worker reads the
    image when it is a catalog file in the artifacts bucket."""

    product: Product
    key: str
    s3_key: str | None = None


class ShardDone(BaseModel):
    """done.json: a shard's checkpoint, written after its outputs."""

    shard: int
    embedded: int
    failures: list[ImageFailure]
    model_fingerprint: str
    seconds: float
    sha256: dict[str, str]


class _BatchInput(BaseModel):
    job_id: str = Field(min_length=1)


class WorkerEvent(BaseModel):
    """A batch of shards as the Distributed Map's ItemBatcher delivers it."""

    Items: list[ShardItem] = Field(min_length=1)
    BatchInput: _BatchInput


def read_model(files: JobFiles, name: str, model: type[BaseModel]) -> Any:
    """A job file as its model; BundleError when it is not valid."""
    try:
        return model.model_validate_json(files.read(name))
    except ValidationError as exc:
        raise BundleError(f"{name} of load job {files.job_id} is not valid: {exc.errors()[0]['msg']}") from exc


def read_plan(files: JobFiles) -> Plan:
    """The job's plan.json."""
    return read_model(files, PLAN, Plan)


def read_lines(data: bytes) -> list[ShardProduct]:
    """The {"product", "key"[, "s3_key"]} lines of input.jsonl, records.jsonl or reused.jsonl."""
    return [ShardProduct.model_validate_json(line) for line in data.splitlines() if line.strip()]


def write_lines(items: Sequence[ShardProduct]) -> bytes:
    return b"".join(item.model_dump_json(exclude_none=True).encode() + b"\n" for item in items)


# --- job progress ----------------------------------------------------------------------------------

class JobProgress(Protocol):
    """Where a load's job record lives (DynamoDB on AWS, a file locally); progress is best effort."""

    def planned(self, job_id: str, plan: Plan) -> None: ...

    def shard_done(self, job_id: str, shard: int) -> None: ...

    def shard_failed(self, job_id: str, shard: int, failure: Mapping[str, Any]) -> None: ...

    def finished(self, job_id: str, *, result: Mapping[str, Any], rejects: list[dict[str, Any]], shards_done: int,
                 failures: Mapping[str, Mapping[str, Any]]) -> None: ...

    def failed(self, job_id: str, error: str, *, rejects: list[dict[str, Any]] | None = None) -> None: ...


class StoreJobProgress:
    """The job record in the jobs table (moodboard.load_jobs.JobStore)."""

    def __init__(self, jobs: Any) -> None:
        self.jobs = jobs

    def planned(self, job_id: str, plan: Plan) -> None:
        self.jobs.shards_planned(job_id, plan.shards)
        self.jobs.update(job_id, progress={"stage": "embed", "shards": plan.shards, "products": plan.products,
                                           "reused": plan.reused})

    def shard_done(self, job_id: str, shard: int) -> None:
        self.jobs.shard_done(job_id, shard)

    def shard_failed(self, job_id: str, shard: int, failure: Mapping[str, Any]) -> None:
        self.jobs.shard_failed(job_id, shard, failure)

    def finished(self, job_id: str, *, result: Mapping[str, Any], rejects: list[dict[str, Any]], shards_done: int,
                 failures: Mapping[str, Mapping[str, Any]]) -> None:
        self.jobs.set_shards(job_id, done=shards_done, failures=failures)
        self.jobs.update(job_id, status="succeeded", result=result, rejects=rejects,
                         progress={"stage": "published", "done": result.get("loaded"), "total": result.get("loaded")})

    def failed(self, job_id: str, error: str, *, rejects: list[dict[str, Any]] | None = None) -> None:
        self.jobs.update(job_id, status="failed", error=error, rejects=rejects)


def _tell(jobs: JobProgress | None, what: str, *args: Any, **kwargs: Any) -> None:
    """Report progress; a job store that fails is logged, never fails the load (CURRENT is the truth)."""
    if jobs is None:
        return
    try:
        getattr(jobs, what)(*args, **kwargs)
    except MoodboardError as exc:
        logger.warning("load job %s: %s not recorded: %s", args[0] if args else "?", what, exc.message)


# --- the worker ------------------------------------------------------------------------------------

class StoredImageSource(ImageSource):
    """A shard's images: http(s) URLs fetched as every load fetches them, and the catalog's own image
    files read from the artifacts bucket by key (bounded by max_image_bytes before reading)."""

    def __init__(self, settings: Settings, store: ArtifactStore, keys: Mapping[str, str]) -> None:
        super().__init__(settings)
        self.store = store
        self.keys = dict(keys)

    def open(self, image: str) -> Any:
        key = self.keys.get(image)
        if key is None:
            return super().open(image)
        from botocore.exceptions import ClientError

        from moodboard.errors import ImageTooLarge, UnsupportedImage

        s = self.settings
        try:
            response = self.store.client.get_object(Bucket=self.store.bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in ("NoSuchKey", "404", "NotFound"):
                raise UnsupportedImage(f"the catalog's image {key} is not in the bucket") from exc
            raise  # throttling, 5xx: the shard fails and its batch is retried
        size = int(response.get("ContentLength") or 0)
        if size > s.max_image_bytes:
            response["Body"].close()
            raise ImageTooLarge(f"{key} is {size} bytes, over the {s.max_image_bytes}-byte limit")
        return decode_image(response["Body"].read(s.max_image_bytes + 1), max_bytes=s.max_image_bytes,
                            max_pixels=s.max_image_pixels)


SourceFactory = Callable[[Sequence[ShardProduct]], ImageSource]


def run_worker(event: Mapping[str, Any], *, files_for: Callable[[str], JobFiles], embedder: EmbedderProtocol,
               settings: Settings, jobs: JobProgress | None = None,
               source_for: SourceFactory | None = None) -> dict[str, Any]:
    """Embed every shard of a map batch that has no output yet. A shard that fails is recorded on the
    job and the others still run; then ShardFailed is raised so the map retries the batch (finished
    shards are skipped then)."""
    batch = WorkerEvent.model_validate(event)
    job_id = batch.BatchInput.job_id
    files = files_for(job_id)
    plan = read_plan(files)
    if embedder.fingerprint != plan.model_fingerprint:
        raise BundleError(f"load job {job_id} was planned for model {plan.model_fingerprint}, this worker has "
                          f"{embedder.fingerprint}")
    summaries: list[dict[str, Any]] = []
    errors: list[tuple[int, str, BaseException]] = []
    for item in batch.Items:
        try:
            summaries.append(embed_shard(files, plan, item.shard, embedder, settings=settings, jobs=jobs,
                                         source_for=source_for))
        except Exception as exc:  # noqa: BLE001 - every shard's failure is recorded, then the batch fails
            message = exc.message if isinstance(exc, MoodboardError) else f"{type(exc).__name__}: {exc}"
            logger.warning("load job %s: shard %d failed: %s", job_id, item.shard, message)
            errors.append((item.shard, message, exc))
            _tell(jobs, "shard_failed", job_id, item.shard, {"error": message[:500], "products": item.products})
    if errors:
        shard, message, first = errors[0]
        raise ShardFailed(f"{len(errors)} of {len(batch.Items)} shards failed; shard {shard}: {message}",
                          details={"shards": [e[0] for e in errors]}) from first
    return {"job_id": job_id, "shards": summaries}


def embed_shard(files: JobFiles, plan: Plan, shard: int, embedder: EmbedderProtocol, *, settings: Settings,
                jobs: JobProgress | None = None, source_for: SourceFactory | None = None) -> dict[str, Any]:
    """Embed one shard and write its outputs, done.json last; a shard with a done.json is skipped."""
    if files.exists(shard_file(shard, DONE)):
        done = read_model(files, shard_file(shard, DONE), ShardDone)
        return {"shard": shard, "embedded": done.embedded, "failures": len(done.failures), "skipped": True,
                "seconds": done.seconds}
    started = time.perf_counter()
    items = read_lines(files.read(shard_file(shard, INPUT)))
    with tempfile.TemporaryDirectory(prefix=f"shard-{shard}-") as tmp:
        thumbs = Path(tmp) / THUMBS_DIR
        thumbs.mkdir()
        source = source_for(items) if source_for is not None else ImageSource(settings)
        embedded = embed_products([item.product for item in items], {item.product.id: item.key for item in items},
                                  embedder, settings=settings, thumbs=thumbs, source=source)
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(embedded.vectors, dtype=np.float32), allow_pickle=False)
        outputs = {
            VECTORS: buffer.getvalue(),
            RECORDS: write_lines([ShardProduct(product=p, key=k or "") for p, k in zip(embedded.products,
                                                                                       embedded.keys)]),
            FAILURES: json.dumps([f.model_dump() for f in embedded.failures]).encode(),
            THUMBS: _tar(thumbs),
        }
    for name, data in outputs.items():
        files.write(shard_file(shard, name), data)
    done = ShardDone(shard=shard, embedded=len(embedded.products), failures=embedded.failures,
                     model_fingerprint=embedder.fingerprint, seconds=round(time.perf_counter() - started, 3),
                     sha256={name: hashlib.sha256(data).hexdigest() for name, data in outputs.items()})
    files.write(shard_file(shard, DONE), done.model_dump_json().encode())
    _tell(jobs, "shard_done", plan.job_id, shard)
    logger.info("load job %s: shard %d embedded %d products (%d images failed) in %.1f s", plan.job_id, shard,
                done.embedded, len(done.failures), done.seconds)
    return {"shard": shard, "embedded": done.embedded, "failures": len(done.failures), "skipped": False,
            "seconds": done.seconds}


def _tar(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name, recursive=False)
    return buffer.getvalue()


def _untar_thumbs(data: bytes, dest: Path) -> None:
    """Thumbnails from a shard's thumbs.tar: regular files named as thumb_name makes them, nothing else."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for member in tar.getmembers():
            if not member.isreg() or not _THUMB_NAME.match(member.name):
                raise BundleError(f"refusing {member.name!r} in a shard's thumbnails")
            source = tar.extractfile(member)
            if source is not None:
                (dest / member.name).write_bytes(source.read())


# --- the map's results -----------------------------------------------------------------------------

def failed_shards(files: JobFiles, map_output: Mapping[str, Any] | None) -> dict[int, str]:
    """The shards of the map's failed items and why, from its ResultWriter manifest ({} without one).

    The manifest is {"ResultFiles": {"FAILED": [{"Key", "Size"}], "SUCCEEDED": [...], ...}}; each
    FAILED file is a JSON array of child executions with "Input" (the batch, as a JSON string),
    "Error" and "Cause" (a Lambda error's JSON, whose errorMessage is kept)."""
    details = (map_output or {}).get("ResultWriterDetails") or {}
    if not details.get("Key"):
        return {}
    manifest = json.loads(files.read_result(details["Key"]))
    failed: dict[int, str] = {}
    for entry in (manifest.get("ResultFiles") or {}).get("FAILED") or []:
        for execution in json.loads(files.read_result(entry["Key"])):
            batch = execution.get("Input") or "{}"
            batch = json.loads(batch) if isinstance(batch, str) else batch
            reason = _cause(execution.get("Error"), execution.get("Cause"))
            for item in batch.get("Items") or []:
                failed[int(item["shard"])] = reason
    return failed


def _cause(error: str | None, cause: str | None) -> str:
    try:
        message = json.loads(cause or "").get("errorMessage")
    except (ValueError, AttributeError):
        message = None
    return f"{error or 'Failed'}: {message or cause or 'no cause given'}"[:500]


def write_map_results(write: Callable[[str, bytes], None], prefix: str, run: str,
                      outcomes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Write a map run's results as the ResultWriter does (manifest.json, SUCCEEDED_0.json,
    FAILED_0.json under prefix/run/), for runs of the map outside Step Functions; returns the map's
    output. Each outcome is {"Input": batch, "Status": "SUCCEEDED" | "FAILED", "Output" | "Error",
    "Cause"}."""
    files: dict[str, list[dict[str, Any]]] = {"SUCCEEDED": [], "FAILED": [], "PENDING": []}
    for outcome in outcomes:
        entry = {**outcome, "Input": json.dumps(outcome["Input"])}
        if "Output" in entry:
            entry["Output"] = json.dumps(entry["Output"])
        files[outcome["Status"]].append(entry)
    manifest: dict[str, Any] = {"DestinationBucket": "", "MapRunArn": f"local:{run}", "ResultFiles": {}}
    for status, entries in files.items():
        manifest["ResultFiles"][status] = []
        if entries:
            key = f"{prefix}/{run}/{status}_0.json"
            data = json.dumps(entries).encode()
            write(key, data)
            manifest["ResultFiles"][status].append({"Key": key, "Size": len(data)})
    manifest_key = f"{prefix}/{run}/manifest.json"
    write(manifest_key, json.dumps(manifest).encode())
    return {"MapRunArn": manifest["MapRunArn"], "ResultWriterDetails": {"Bucket": "", "Key": manifest_key}}


# --- reduce ----------------------------------------------------------------------------------------

class Publisher(Protocol):
    """Where a reduced bundle goes: CURRENT in the artifacts bucket, or a local folder."""

    def base_bundle(self, plan: Plan) -> Path | None:
        """The base bundle's folder, for the vectors and thumbnails of unchanged products."""

    def published(self, plan: Plan) -> bool:
        """Whether the plan's version is the one served already (a reduce that ran before)."""

    def publish(self, builder: IndexBuilder, plan: Plan, thumbs: Path) -> None:
        """Write the bundle (as the plan's version) and make it the served one, if the served one is
        still the plan's base (PublishConflict otherwise)."""


class S3Publisher:
    """Publishes to the artifacts bucket with the two-phase, conditional publish of ArtifactStore."""

    def __init__(self, store: ArtifactStore, work: Path, *, settings: Settings, catalog_key: str | None = None) -> None:
        self.store = store
        self.work = Path(work)
        self.settings = settings
        self.catalog_key = catalog_key

    def base_bundle(self, plan: Plan) -> Path | None:
        return self.store.download(plan.base.version, self.work / "indexes") if plan.base else None

    def published(self, plan: Plan) -> bool:
        current = self.store.current()
        return current is not None and current.version == plan.version

    def publish(self, builder: IndexBuilder, plan: Plan, thumbs: Path) -> None:
        from moodboard.index_versions import publish_version

        bundle = self.work / "bundles" / plan.version
        builder.write(bundle, catalog_sha256=plan.catalog_sha256, write_extra=thumbs_into(thumbs),
                      version=plan.version)
        expected = (Pointer(version=plan.base.version, model_fingerprint=plan.base.model_fingerprint,
                            etag=plan.base.etag or "") if plan.base else None)
        # A version uploaded by an earlier run of this reduce (stopped before the move) is moved to.
        publish_version(self.store, bundle, base=expected, settings=self.settings,
                        catalog_key=self.catalog_key or plan.catalog, model_source=plan.model_source)
        shutil.rmtree(bundle, ignore_errors=True)


def thumbs_into(thumbs: Path) -> Callable[[Path], None]:
    def move(folder: Path) -> None:
        if any(thumbs.iterdir()):
            shutil.move(str(thumbs), str(folder / THUMBS_DIR))
    return move


def run_reduce(event: Mapping[str, Any], *, files_for: Callable[[str], JobFiles], publisher: Publisher,
               jobs: JobProgress | None = None) -> dict[str, Any]:
    """The last step of a load: with "error" (a step failed), record it on the job; otherwise build
    the bundle from every finished shard and publish it (reduce_job)."""
    job_id = str(event.get("job_id") or "")
    if not job_id:
        raise BundleError("a reduce event needs the job_id")
    if event.get("error"):
        return record_failure(job_id, event["error"], jobs=jobs)
    files = files_for(job_id)
    return reduce_job(files, read_plan(files), event.get("map"), publisher, jobs=jobs)


def record_failure(job_id: str, error: Mapping[str, Any], *, jobs: JobProgress | None) -> dict[str, Any]:
    """Mark the job failed with the step's error (Step Functions' {"Error", "Cause"})."""
    message = _cause(error.get("Error"), error.get("Cause"))
    _tell(jobs, "failed", job_id, message)
    logger.warning("load job %s failed: %s", job_id, message)
    return {"job_id": job_id, "status": "failed", "error": message}


def reduce_job(files: JobFiles, plan: Plan, map_output: Mapping[str, Any] | None, publisher: Publisher, *,
               jobs: JobProgress | None = None) -> dict[str, Any]:
    """Build the bundle from CURRENT's unchanged products and every finished shard, then publish it.

    Shards without output (the map's failed items, within its tolerance) are listed on the job with
    the map's reason, their products left out. Raises NothingLoaded when no product is left, and
    PublishConflict when another load moved CURRENT after this one was planned."""
    started = time.perf_counter()
    if publisher.published(plan) and files.exists(RESULT):
        result = json.loads(files.read(RESULT))
        logger.info("load job %s: version %s is already published", plan.job_id, plan.version)
        _tell(jobs, "finished", plan.job_id, result=result, rejects=[], shards_done=result["shards"]["done"],
              failures=result["shards"]["failed"])
        return {"job_id": plan.job_id, "status": "succeeded", **result}
    items = {item.shard: item for item in (ShardItem.model_validate(i) for i in json.loads(files.read(SHARDS)))}
    map_failed = failed_shards(files, map_output)
    done: dict[int, ShardDone] = {}
    missing: dict[str, dict[str, Any]] = {}
    for shard in range(plan.shards):
        if files.exists(shard_file(shard, DONE)):
            done[shard] = read_model(files, shard_file(shard, DONE), ShardDone)
        else:
            missing[str(shard)] = {"error": map_failed.get(shard, "the shard did not finish"),
                                   "products": items[shard].products if shard in items else None}
    builder = IndexBuilder(plan.dim, plan.model_fingerprint, model_precision=plan.model_precision)
    failures: list[ImageFailure] = []
    with tempfile.TemporaryDirectory(prefix="reduce-") as tmp:
        thumbs = Path(tmp) / THUMBS_DIR
        thumbs.mkdir()
        if plan.reused:
            _add_reused(builder, files, plan, publisher, thumbs)
        for shard in sorted(done):
            _add_shard(builder, files, plan, done[shard], thumbs)
            failures.extend(done[shard].failures)
        rejects = plan.rejects + [f.model_dump() for f in failures] + [
            {"shard": int(shard), "reason": f"shard failed: {failure['error']}", "products": failure["products"]}
            for shard, failure in missing.items()]
        if len(builder) == 0:
            _tell(jobs, "failed", plan.job_id, f"no product of {plan.catalog} could be loaded; nothing was published",
                  rejects=rejects)
            raise NothingLoaded(f"no product of {plan.catalog} could be loaded; nothing was published")
        embedded = sum(d.embedded for d in done.values())
        result = {"version": plan.version, "model_fingerprint": plan.model_fingerprint, "loaded": len(builder),
                  "embedded": embedded, "reused": plan.reused, "image_failures": len(failures),
                  "rejected_rows": len(plan.rejects), "duplicates": len(plan.duplicates),
                  "categories": builder.categories(),
                  "shards": {"total": plan.shards, "done": len(done), "failed": missing},
                  "seconds": round(time.perf_counter() - started, 2)}
        files.write(RESULT, json.dumps(result).encode())
        publisher.publish(builder, plan, thumbs)
    _tell(jobs, "finished", plan.job_id, result=result, rejects=rejects, shards_done=len(done), failures=missing)
    logger.info("load job %s published %s: %d products (%d embedded, %d reused), %d of %d shards", plan.job_id,
                plan.version, len(builder), embedded, plan.reused, len(done), plan.shards)
    return {"job_id": plan.job_id, "status": "succeeded", **result}


def _add_reused(builder: IndexBuilder, files: JobFiles, plan: Plan, publisher: Publisher, thumbs: Path) -> None:
    """The products whose image did not change, with their vectors and thumbnails from the base."""
    from moodboard.index import ProductIndex

    base_dir = publisher.base_bundle(plan)
    if base_dir is None or plan.base is None:
        raise BundleError(f"load job {plan.job_id} reuses {plan.reused} products but has no base bundle")
    base = ProductIndex.open(base_dir, expected_fingerprint=plan.model_fingerprint)
    if base.version != plan.base.version:
        raise PublishConflict(f"the bundle at {base_dir} is {base.version}, not {plan.base.version} which load job "
                              f"{plan.job_id} was planned against; start a new load")
    kept = read_lines(files.read(REUSED))
    builder.add([item.product for item in kept],
                base.vectors_at([base.label_of(item.product.id) for item in kept]), [item.key for item in kept])
    for item in kept:
        source = thumbnail_path(base_dir, item.product.id)
        if source.is_file():
            shutil.copyfile(source, thumbs / thumb_name(item.product.id))


def _add_shard(builder: IndexBuilder, files: JobFiles, plan: Plan, done: ShardDone, thumbs: Path) -> None:
    """One finished shard's products, vectors and thumbnails, checked against its done.json."""
    shard = done.shard
    data = {name: files.read(shard_file(shard, name)) for name in SHARD_OUTPUTS}
    for name, blob in data.items():
        if hashlib.sha256(blob).hexdigest() != done.sha256.get(name):
            raise BundleError(f"shard {shard} of load job {plan.job_id}: {name} does not match its done.json")
    records = read_lines(data[RECORDS])
    vectors = np.load(io.BytesIO(data[VECTORS]), allow_pickle=False)
    if done.model_fingerprint != plan.model_fingerprint or vectors.shape != (len(records), plan.dim):
        raise BundleError(f"shard {shard} of load job {plan.job_id} holds {vectors.shape} vectors of model "
                          f"{done.model_fingerprint}, expected ({len(records)}, {plan.dim}) of {plan.model_fingerprint}")
    if records:
        builder.add([item.product for item in records], vectors, [item.key for item in records])
    _untar_thumbs(data[THUMBS], thumbs)
