"""`moodboard load --workers N`: a sharded load on this machine, the load state machine's contract run
in process (DESIGN.md, "Loading at scale").

The steps are the ones the Lambdas run (moodboard.shard_plan, moodboard.shards): the plan, then
`run_worker` on one map item at a time in a pool of N processes (each loads the model once), then
`run_reduce` reading the map's results written as Step Functions' ResultWriter writes them. The job
lives in `.<out>.loads/<job>/` beside the output bundle; the bundle at --out is the base (its
unchanged products keep their vectors) and is replaced whole (moodboard.staging) only if it is still
the base when the job publishes. A failed shard is tried `ATTEMPTS` times (1 s, 2 s apart); a load
stopped at any point (Ctrl-C, SIGKILL, a crash) is continued with `--resume JOB`, which embeds only
the shards without output. After a publish the job's shard files are removed; its job.json stays.
"""

from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moodboard.errors import ConfigError, MoodboardError, PublishConflict, TooManyShardsFailed
from moodboard.index import IndexBuilder
from moodboard.index.manifest import MANIFEST_FILE, read_manifest
from moodboard.load_staging import clean_staging, output_lock
from moodboard.settings import Settings
from moodboard.shard_files import LocalJobFiles
from moodboard.shard_plan import ModelInfo, existing_plan, plan_local
from moodboard.shards import (
    DONE,
    SHARDS,
    Plan,
    ShardItem,
    run_reduce,
    run_worker,
    shard_file,
    thumbs_into,
    write_map_results,
)

logger = logging.getLogger(__name__)

ATTEMPTS = 3
RETRY_SECONDS = 1.0
MAP_RESULTS = "map-results"
JOB_RECORD = "job.json"
ShardCallback = Callable[[dict[str, Any]], None]


def jobs_root(out_dir: Path) -> Path:
    """Where the load jobs of the bundle at out_dir live: `.<name>.loads/` beside it."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.loads"


# --- the job record, as a file ---------------------------------------------------------------------

class FileJobProgress:
    """The job record in `<job>/job.json` (the fields of moodboard.load_jobs.JobRecord that a sharded
    load sets), updated by the pool's processes under an flock."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / JOB_RECORD

    @contextmanager
    def _record(self) -> Any:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / f".{JOB_RECORD}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            record = json.loads(self.path.read_text()) if self.path.is_file() else {}
            yield record
            record["updated_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            staging = self.path.with_name(f".{JOB_RECORD}.{secrets.token_hex(4)}")
            staging.write_text(json.dumps(record, indent=1))
            staging.replace(self.path)

    def read(self) -> dict[str, Any]:
        """The record as it is now."""
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def planned(self, job_id: str, plan: Plan) -> None:
        with self._record() as record:
            record.update(job_id=job_id, catalog=plan.catalog, status="running", shards_total=plan.shards,
                          products=plan.products, reused=plan.reused, version=plan.version)
            record.setdefault("shards_done", 0)
            record.setdefault("shard_failures", {})

    def shard_done(self, job_id: str, shard: int) -> None:
        with self._record() as record:
            done = set(record.get("shards_finished", [])) | {shard}
            record["shards_finished"] = sorted(done)
            record["shards_done"] = len(done)
            record.get("shard_failures", {}).pop(str(shard), None)

    def shard_failed(self, job_id: str, shard: int, failure: Mapping[str, Any]) -> None:
        with self._record() as record:
            record.setdefault("shard_failures", {})[str(shard)] = dict(failure)

    def finished(self, job_id: str, *, result: Mapping[str, Any], rejects: list[dict[str, Any]], shards_done: int,
                 failures: Mapping[str, Mapping[str, Any]]) -> None:
        with self._record() as record:
            record.update(status="succeeded", result=dict(result), rejects_total=len(rejects), shards_done=shards_done,
                          shard_failures={k: dict(v) for k, v in failures.items()}, error=None)

    def failed(self, job_id: str, error: str, *, rejects: list[dict[str, Any]] | None = None) -> None:
        with self._record() as record:
            record.update(status="failed", error=error)
            if rejects is not None:
                record["rejects_total"] = len(rejects)


# --- publishing to a folder ------------------------------------------------------------------------

class LocalPublisher:
    """Writes the bundle to out_dir (replaced whole, under its load lock), if out_dir still holds the
    bundle the job was planned against: the local form of the conditional CURRENT write."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)

    def _version(self) -> str | None:
        return read_manifest(self.out_dir).version if (self.out_dir / MANIFEST_FILE).is_file() else None

    def base_bundle(self, plan: Plan) -> Path | None:
        return self.out_dir if plan.base else None

    def published(self, plan: Plan) -> bool:
        return self._version() == plan.version

    def publish(self, builder: IndexBuilder, plan: Plan, thumbs: Path) -> None:
        with output_lock(self.out_dir):
            clean_staging(self.out_dir)
            found, expected = self._version(), plan.base.version if plan.base else None
            if found != expected:
                raise PublishConflict(f"{self.out_dir} holds {found or 'no bundle'}, not {expected or 'no bundle'} "
                                      f"which load job {plan.job_id} started from; start a new load")
            builder.write(self.out_dir, catalog_sha256=plan.catalog_sha256, write_extra=thumbs_into(thumbs),
                          version=plan.version)


# --- the pool --------------------------------------------------------------------------------------

_worker: dict[str, Any] = {}


def _start_worker(model_dir: str, precision: str, threads: int, settings: Settings, root: str) -> None:
    """Pool initializer: the model, loaded once per process."""
    from moodboard.embedder import Embedder

    _worker.update(embedder=Embedder.load(Path(model_dir), precision=precision, threads=threads), settings=settings,
                   root=Path(root))


def _embed(batch: dict[str, Any]) -> dict[str, Any]:
    """One map item, in a pool process: exactly the Lambda worker's call."""
    root = _worker["root"]
    job_id = batch["BatchInput"]["job_id"]
    return run_worker(batch, files_for=lambda job: LocalJobFiles(root, job), embedder=_worker["embedder"],
                      settings=_worker["settings"], jobs=FileJobProgress(root / job_id))


@dataclass
class LocalLoad:
    """What a local sharded load did."""

    job_id: str
    plan: Plan
    result: dict[str, Any]
    embedded_shards: list[int] = field(default_factory=list)
    skipped_shards: list[int] = field(default_factory=list)
    failed_shards: dict[int, str] = field(default_factory=dict)
    products_embedded_now: int = 0  # by this run's workers (a resumed job's finished shards not counted)
    shard_seconds: dict[int, float] = field(default_factory=dict)  # each shard embedded now: its worker's time
    seconds: float = 0.0


def run_local_load(*, out_dir: Path, model_dir: Path, precision: str, settings: Settings, workers: int,
                   catalog: Path | None = None, resume: str | None = None, shard_size: int | None = None,
                   tolerated_failure_percent: float = 0.0, on_shard: ShardCallback | None = None,
                   on_plan: Callable[[Plan], None] | None = None) -> LocalLoad:
    """Plan (or, with `resume`, continue) a sharded load of `catalog` into out_dir and run it to the
    publish. TooManyShardsFailed when more shards fail than tolerated (0 % by default: nothing is
    left out locally; resume the job once the cause is fixed)."""
    from moodboard.embedder import available_cpus
    from moodboard.model_bundle import load_manifest

    started = time.perf_counter()
    if workers < 1:
        raise ConfigError("--workers: at least 1")
    out_dir = Path(out_dir)
    root = jobs_root(out_dir)
    manifest = load_manifest(Path(model_dir), verify=False)
    model = ModelInfo(fingerprint=manifest.fingerprint, dim=manifest.dim, precision=precision)
    if resume:
        files = LocalJobFiles(root, resume)
        plan = existing_plan(files)
        if plan is None:
            raise ConfigError(f"no load job {resume!r} to resume under {root}")
        if plan.model_fingerprint != model.fingerprint:
            raise ConfigError(f"load job {resume} was planned with model {plan.model_fingerprint}; resume it with "
                              f"that model, not {model.fingerprint}")
    else:
        if catalog is None:
            raise ConfigError("a load needs a catalog (or --resume JOB)")
        files = LocalJobFiles(root, f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}")
        plan = plan_local(files, catalog, out_dir, model, shard_size=shard_size or settings.load_shard_size)
    progress = FileJobProgress(files.folder)
    progress.planned(files.job_id, plan)
    if on_plan is not None:
        on_plan(plan)
    items = [ShardItem.model_validate(item) for item in json.loads(files.read(SHARDS))]
    skipped = [item.shard for item in items if files.exists(shard_file(item.shard, DONE))]
    pending = [item for item in items if item.shard not in set(skipped)]
    for shard in skipped:
        progress.shard_done(files.job_id, shard)
    threads = max(1, available_cpus() // min(workers, max(1, len(pending))))
    outcomes = _run_map(files, pending, workers=workers, threads=threads, model_dir=model_dir, precision=precision,
                        settings=settings, on_shard=on_shard)
    run = f"{files.job_id}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    map_output = write_map_results(files.write_result, MAP_RESULTS, run, outcomes)
    failed = {o["Input"]["Items"][0]["shard"]: f"{o['Error']}: {o['Cause']}" for o in outcomes if o["Status"] == "FAILED"}
    if items and len(failed) * 100 > tolerated_failure_percent * len(items):
        message = (f"{len(failed)} of {len(items)} shards failed (first: shard {min(failed)}: {failed[min(failed)]}); "
                   f"nothing was published. Resume with: moodboard load --resume {files.job_id} --out {out_dir}")
        progress.failed(files.job_id, message)
        raise TooManyShardsFailed(message, details={"job_id": files.job_id, "failed": sorted(failed)})
    result = run_reduce({"job_id": files.job_id, "map": map_output}, files_for=lambda job: LocalJobFiles(root, job),
                        publisher=LocalPublisher(out_dir), jobs=progress)
    _clean_job(files)
    succeeded = [o for o in outcomes if o["Status"] == "SUCCEEDED"]
    return LocalLoad(job_id=files.job_id, plan=plan, result=result, skipped_shards=skipped, failed_shards=failed,
                     embedded_shards=[o["Input"]["Items"][0]["shard"] for o in succeeded],
                     products_embedded_now=sum(s["embedded"] for o in succeeded for s in o["Output"]["shards"]
                                               if not s["skipped"]),
                     shard_seconds={s["shard"]: s["seconds"] for o in succeeded for s in o["Output"]["shards"]
                                    if not s["skipped"]},
                     seconds=time.perf_counter() - started)


def _run_map(files: LocalJobFiles, pending: list[ShardItem], *, workers: int, threads: int, model_dir: Path,
             precision: str, settings: Settings, on_shard: ShardCallback | None) -> list[dict[str, Any]]:
    """Every pending shard through the pool, one map item each, each tried up to ATTEMPTS times; the
    outcomes as the map records its child executions."""
    outcomes: dict[int, dict[str, Any]] = {}
    todo = list(pending)
    for attempt in range(1, ATTEMPTS + 1):
        if not todo:
            break
        if attempt > 1:
            time.sleep(RETRY_SECONDS * 2 ** (attempt - 2))
        retry = []
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context, initializer=_start_worker,
                                 initargs=(str(model_dir), precision, threads, settings, str(files.root))) as pool:
            running: dict[Future[dict[str, Any]], dict[str, Any]] = {}
            for item in todo:
                batch = {"Items": [item.model_dump()], "BatchInput": {"job_id": files.job_id}}
                running[pool.submit(_embed, batch)] = batch
            try:
                _collect(running, outcomes, retry, attempt, on_shard)
            except BaseException:  # Ctrl-C: the shards not started are dropped, not run before exiting
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        todo = retry
    return [outcomes[shard] for shard in sorted(outcomes)]


def _collect(running: dict[Future[dict[str, Any]], dict[str, Any]], outcomes: dict[int, dict[str, Any]],
             retry: list[ShardItem], attempt: int, on_shard: ShardCallback | None) -> None:
    """Wait for the pool's map items, recording each outcome as the map's results do."""
    while running:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            batch = running.pop(future)
            shard = batch["Items"][0]["shard"]
            try:
                output = future.result()
            except Exception as exc:  # noqa: BLE001 - a failed item is retried, then recorded
                message = exc.message if isinstance(exc, MoodboardError) else f"{type(exc).__name__}: {exc}"
                outcomes[shard] = {"Input": batch, "Status": "FAILED", "Error": type(exc).__name__,
                                   "Cause": message}
                retry.append(ShardItem.model_validate(batch["Items"][0]))
                logger.warning("shard %d failed (attempt %d of %d): %s", shard, attempt, ATTEMPTS, message)
            else:
                outcomes[shard] = {"Input": batch, "Status": "SUCCEEDED", "Output": output}
                if on_shard is not None:
                    on_shard(output["shards"][0])


def _clean_job(files: LocalJobFiles) -> None:
    """After a publish: the job's shard files and map results go, its job.json stays."""
    shutil.rmtree(files.folder / "shards", ignore_errors=True)
    for path in (files.root / MAP_RESULTS).glob(f"{files.job_id}-*"):
        shutil.rmtree(path, ignore_errors=True)
    for name in ("reused.jsonl",):
        (files.folder / name).unlink(missing_ok=True)
