"""Load jobs: a catalog object in S3 -> an index bundle -> published, with the job record kept current.

Used by the loader Lambda (functions/loader/handler.py) for S3 ObjectCreated events under
`catalogs/` and direct events `{"job_id", "catalog_key"}`, and by `moodboard serve` for
`POST /admin/load` (run in a thread). What a catalog object can be (kept simple on purpose):

- a CSV or JSONL file whose images are http(s) URLs, or paths relative to the file; those paths
  are read from keys under the catalog's own prefix (catalogs/shop/spring.csv + images/a.jpg ->
  catalogs/shop/images/a.jpg);
- `images.csv` of the clothing-dataset layout: its whole prefix is downloaded and read as a folder;
- a .zip / .tar(.gz) archive holding one of the above (unpacked by moodboard.archives: links and
  special members refused, every path checked, size, count and ratio limits);
- a prefix ending in "/" (direct events only): downloaded whole, the catalog found inside.

The previous CURRENT bundle lends its vectors for unchanged products (moodboard.ingest), and the new
bundle is published against that same pointer, so a load that raced another one fails with
PublishConflict instead of silently replacing it. A catalog with no loadable product fails its job
and publishes nothing (the NothingLoaded rule of moodboard.ingest, shared with `moodboard load`).
Each job holds a shared lock on the cache; a job that finds no other one alive first removes what
killed jobs left there (moodboard.load_staging).
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from moodboard.archives import ArchiveLimits, extract, is_archive
from moodboard.artifacts import CATALOG_PREFIX, ArtifactStore, Pointer
from moodboard.catalog import CLOTHING_CSV, read_catalog
from moodboard.catalog_uploads import UPLOAD_PREFIX, is_catalog_prefix
from moodboard.errors import CatalogError, ConfigError, MoodboardError, NotFound, NothingLoaded
from moodboard.load_staging import shared_work_root
from moodboard.observability import COUNT, record_metric
from moodboard.settings import Settings

if TYPE_CHECKING:
    from moodboard.embedder import EmbedderProtocol
    from moodboard.ingest import LoadReport
    from moodboard.load_jobs import JobStore, StateMachineLoadRunner

logger = logging.getLogger(__name__)

CATALOG_SUFFIXES = (".csv", ".jsonl", ".ndjson")
WORK_DIR = "work"
CATALOG_FILES_DIR = "catalog-files"
WORK_PREFIX = "load-"
# What a job leaves under catalog-files/: its folder, and the archive downloaded beside it.
_CATALOG_FILES_NAME = re.compile(r"^\.?[0-9a-f]{16}($|-)")
PROGRESS_SECONDS = 2.0
MAX_IMAGE_DOWNLOADS = 8


@dataclass(frozen=True)
class LoadJob:
    """One catalog to load: the job id, the catalog's key and the bucket it is in."""

    job_id: str
    catalog_key: str
    bucket: str | None = None


def is_catalog_key(key: str) -> bool:
    """True for keys under catalogs/ or uploads/catalogs/ (moodboard.catalog_uploads) that name a
    catalog file, an archive, or (direct only) a prefix."""
    lowered = key.lower()
    return is_catalog_prefix(key) and (
        lowered.endswith(CATALOG_SUFFIXES) or is_archive(key) or key.endswith("/"))


def jobs_from_event(event: dict[str, Any]) -> list[LoadJob]:
    """The load jobs an invocation asks for: S3 ObjectCreated records for catalog keys (others,
    such as the images uploaded next to a catalog, are skipped), or one direct job."""
    if "Records" in event:
        jobs = []
        for record in event.get("Records") or []:
            s3 = record.get("s3") or {}
            key = unquote_plus((s3.get("object") or {}).get("key", ""))
            bucket = (s3.get("bucket") or {}).get("name")
            if not str(record.get("eventName", "")).startswith("ObjectCreated") or key.endswith("/"):
                continue
            if not is_catalog_key(key):
                logger.debug("ignoring %s: not a catalog", key)
                continue
            marker = f"{bucket}/{key}/{(s3.get('object') or {}).get('sequencer', '')}"
            job_id = "s3-" + hashlib.sha256(marker.encode()).hexdigest()[:20]
            jobs.append(LoadJob(job_id=job_id, catalog_key=key, bucket=bucket))
        return jobs
    job_id, key = event.get("job_id"), event.get("catalog_key")
    if not job_id or not key:
        raise ConfigError("a loader event needs S3 Records or {\"job_id\", \"catalog_key\"}")
    if not is_catalog_key(str(key)):
        raise CatalogError(f"{key!r} is not a catalog under {CATALOG_PREFIX} or {UPLOAD_PREFIX} (.csv, .jsonl, an archive or a prefix/)")
    return [LoadJob(job_id=str(job_id), catalog_key=str(key))]


def fetch_catalog(store: ArtifactStore, key: str, dest: Path, *, limits: ArchiveLimits) -> Path:
    """Download the catalog object (and the images it names by relative path) into dest; returns
    the path to hand to moodboard.catalog.read_catalog (a file, or a clothing-dataset folder).
    Archives are unpacked within `limits`."""
    dest.mkdir(parents=True, exist_ok=True)
    name = PurePosixPath(key).name
    prefix = key[: len(key) - len(name)]
    if key.endswith("/"):
        store.download_prefix(key, dest, preserve_mtime=True)
        return find_catalog(dest)
    if name == CLOTHING_CSV:
        store.download_prefix(prefix, dest, preserve_mtime=True)
        return dest
    if is_archive(name):
        return fetch_archive(store, key, dest, limits=limits)
    catalog = store.download_file(key, dest / name, preserve_mtime=True)
    _fetch_local_images(store, catalog, prefix, dest)
    return catalog


def fetch_archive(store: ArtifactStore, key: str, dest: Path, *, limits: ArchiveLimits) -> Path:
    """Download the archive at `key` beside dest, unpack it into dest (unpack_catalog) and remove
    the download; returns the catalog inside. Every reader of an archive catalog in the bucket
    comes here: the loader, the sharded load's plan step and the dry run."""
    name = PurePosixPath(key).name
    archive = store.download_file(key, dest.parent / f".{dest.name}-{name}")
    try:
        return unpack_catalog(archive, dest, limits=limits, label=name)
    finally:
        archive.unlink(missing_ok=True)


def unpack_catalog(archive: Path, dest: Path, *, limits: ArchiveLimits, label: str | None = None) -> Path:
    """Unpack an archive catalog into dest (moodboard.archives, within `limits`; ArchiveError with
    dest removed when refused) and return the catalog inside it (find_catalog)."""
    extract(archive, dest, limits=limits, label=label)
    return find_catalog(dest)


def _fetch_local_images(store: ArtifactStore, catalog: Path, prefix: str, root: Path) -> None:
    """Download the keys of images a catalog names by relative path; missing ones are left for
    ingest to report as image failures."""
    wanted: list[tuple[str, Path]] = []
    for product in read_catalog(catalog).products:
        if product.is_url:
            continue
        path = Path(product.image)
        try:
            relative = path.resolve().relative_to(root.resolve())
        except ValueError:
            continue
        wanted.append((prefix + relative.as_posix(), path))

    def get(item: tuple[str, Path]) -> None:
        try:
            store.download_file(*item, preserve_mtime=True)
        except MoodboardError as exc:
            logger.info("catalog image %s not downloaded: %s", item[0], exc.message)

    with ThreadPoolExecutor(max_workers=MAX_IMAGE_DOWNLOADS) as pool:
        list(pool.map(get, wanted))


def find_catalog(folder: Path) -> Path:
    """The catalog inside an unpacked folder: a clothing-dataset folder, else the first CSV/JSONL
    at the top or one level down."""
    for candidate in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
        if (candidate / CLOTHING_CSV).is_file() and (candidate / "images").is_dir():
            return candidate
        files = sorted(p for p in candidate.iterdir() if p.is_file() and p.suffix.lower() in CATALOG_SUFFIXES)
        if files:
            return files[0]
    raise CatalogError("no catalog (.csv or .jsonl) found in the uploaded folder or archive")


def report_rejects(report: LoadReport) -> list[dict[str, Any]]:
    """Rows the catalog rejected and images that failed, as the job record lists them."""
    rows = [{"line": r.line, "reason": r.reason} for r in report.rejects]
    images = [{"product_id": f.product_id, "image": f.image, "reason": f.reason} for f in report.image_failures]
    return rows + images


class CatalogLoader:
    """Runs load jobs: download, build with moodboard.ingest (reusing CURRENT), publish, report."""

    def __init__(self, *, store: ArtifactStore, jobs: JobStore | None, embedder: EmbedderProtocol,
                 settings: Settings) -> None:
        self.store = store
        self.jobs = jobs
        self.embedder = embedder
        self.settings = settings

    def run(self, job_id: str, catalog_key: str, *, bucket: str | None = None) -> dict[str, Any]:
        """Run one job to the end and return its result; failures are recorded on the job (status
        failed, error) and returned, not raised, except unexpected ones, which are re-raised."""
        self._update(job_id, status="running", progress={"stage": "download"})
        with shared_work_root(Path(self.settings.cache_dir), self._clean_dead_jobs):
            return self._run_held(job_id, catalog_key, bucket)

    def _run_held(self, job_id: str, catalog_key: str, bucket: str | None) -> dict[str, Any]:
        work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{job_id[:24]}-", dir=self._work_root()))
        files = self._catalog_dir(catalog_key)
        try:
            result = self._run(job_id, catalog_key, bucket, files, work)
        except MoodboardError as exc:
            record_metric("LoadFailures", COUNT, 1)
            logger.warning("load job %s failed: %s", job_id, exc.message)
            self._update(job_id, status="failed", error=exc.message)
            return {"job_id": job_id, "status": "failed", "error": exc.message}
        except Exception as exc:
            self._update(job_id, status="failed", error=f"internal error ({type(exc).__name__})")
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(files, ignore_errors=True)
        return result

    def _clean_dead_jobs(self) -> None:
        """Remove the work and catalog folders of jobs that died (called with no other job alive)."""
        cache = Path(self.settings.cache_dir)
        leftovers = [p for p in _entries(cache / WORK_DIR) if p.name.startswith(WORK_PREFIX) and p.is_dir()]
        leftovers += [p for p in _entries(cache / CATALOG_FILES_DIR) if _CATALOG_FILES_NAME.match(p.name)]
        for path in leftovers:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            logger.warning("removed %s, left behind by a load job that did not finish", path)

    def _catalog_dir(self, catalog_key: str) -> Path:
        """Where a catalog's files land: the same folder on every run of the same key, since local
        image paths are part of ingest's content keys (with size and mtime, kept from S3), so an
        unchanged image keeps its vector across loads."""
        digest = hashlib.sha256(catalog_key.encode()).hexdigest()[:16]
        folder = Path(self.settings.cache_dir) / CATALOG_FILES_DIR / digest
        shutil.rmtree(folder, ignore_errors=True)
        return folder

    def _work_root(self) -> Path:
        root = Path(self.settings.cache_dir) / WORK_DIR
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _run(self, job_id: str, catalog_key: str, bucket: str | None, files: Path, work: Path) -> dict[str, Any]:
        from moodboard.ingest import load_catalog

        source = self.store if not bucket or bucket == self.store.bucket else ArtifactStore(bucket, self.store.client)
        catalog = fetch_catalog(source, catalog_key, files, limits=ArchiveLimits.from_settings(self.settings))
        base = self.store.current()
        if base is not None:
            self._check(job_id, catalog)
        previous = self._previous(base)
        self._update(job_id, progress={"stage": "embed", "done": 0})
        try:
            report = load_catalog(catalog, self.embedder, work / "index", settings=self.settings,
                                  previous=previous, on_progress=self._progress(job_id))
        except NothingLoaded as exc:
            if exc.report is not None:
                self._update(job_id, rejects=report_rejects(exc.report))
            raise NothingLoaded(f"no product of {catalog_key} could be loaded; nothing was published",
                                report=exc.report) from exc
        rejects = report_rejects(report)
        self._update(job_id, progress={"stage": "publish", "done": report.loaded, "total": report.loaded})
        pointer = self._publish(work / "index", catalog_key, base)
        result = {"version": pointer.version, "model_fingerprint": pointer.model_fingerprint,
                  "loaded": report.loaded, "embedded": report.embedded, "reused": report.reused,
                  "image_failures": len(report.image_failures), "rejected_rows": len(report.rejects),
                  "duplicates": len(report.duplicates), "categories": report.categories,
                  "seconds": round(report.seconds, 2)}
        record_metric("ProductsLoaded", COUNT, report.loaded)
        record_metric("ProductsEmbedded", COUNT, report.embedded)
        # CURRENT has moved: from here on the job succeeded, whatever the job store says.
        self._record_success(job_id, rejects=rejects, result=result,
                             progress={"stage": "published", "done": report.loaded, "total": report.loaded})
        logger.info("load job %s published %s: %s", job_id, pointer.version, report.summary())
        return {"job_id": job_id, "status": "succeeded", **result}

    def _publish(self, bundle: Path, catalog_key: str, base: Pointer | None) -> Pointer:
        """Publish the bundle from `base` (moodboard.index_versions.publish_version: upload, card with
        the catalog key, CURRENT moved, retention)."""
        from moodboard.index_versions import publish_version

        return publish_version(self.store, bundle, base=base, settings=self.settings, catalog_key=catalog_key,
                               model_source=self.embedder.source)

    def _check(self, job_id: str, catalog: Path) -> None:
        """Refuse (LoadNeedsConfirmation, nothing published) a load that removes what the check
        guards, unless its job was started with confirm=true."""
        from moodboard.catalog_diff import check_load, current_products

        current, version = current_products(self.store)
        confirm = self.jobs.confirmed(job_id) if self.jobs is not None else False
        check_load(read_catalog(catalog), current, confirm=confirm, current_version=version,
                   max_removed_share=self.settings.load_confirm_removed_share)

    def _previous(self, base: Pointer | None) -> Path | None:
        """The CURRENT bundle, downloaded, when it was built with this model (for vector reuse)."""
        if base is None or base.model_fingerprint != self.embedder.fingerprint:
            return None
        try:
            return self.store.download(base.version, Path(self.settings.cache_dir) / "indexes")
        except MoodboardError as exc:
            logger.warning("not reusing index %s: %s", base.version, exc.message)
            return None

    def _progress(self, job_id: str) -> Any:
        last = [0.0]
        lock = threading.Lock()

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            with lock:
                if done < total and now - last[0] < PROGRESS_SECONDS:
                    return
                last[0] = now
            try:
                self._update(job_id, progress={"stage": "embed", "done": done, "total": total})
            except MoodboardError as exc:
                logger.warning("progress of job %s not recorded: %s", job_id, exc.message)

        return report

    def _update(self, job_id: str, **fields: Any) -> None:
        if self.jobs is not None:
            self.jobs.update(job_id, **fields)

    def _record_success(self, job_id: str, *, attempts: int = 4, first_delay: float = 0.25, **fields: Any) -> None:
        """Mark a published job succeeded, retrying a failing job store (with a doubling delay). The
        publish already moved CURRENT, which is the truth: a store that still fails is logged, never
        turned into a failed job."""
        for attempt in range(1, attempts + 1):
            try:
                self._update(job_id, status="succeeded", **fields)
                return
            except NotFound as exc:  # the record is gone: nobody will read it again
                logger.error("load job %s published, but its record could not be updated: %s", job_id, exc.message)
                return
            except MoodboardError as exc:  # StoreError: DynamoDB throttled or failed
                if attempt == attempts:
                    logger.error("load job %s published %s, but its record could not be marked succeeded: %s",
                                 job_id, fields.get("result", {}).get("version"), exc.message)
                    return
                logger.warning("load job %s: marking it succeeded failed (%s); trying again", job_id, exc.message)
                time.sleep(first_delay * 2 ** (attempt - 1))

    def ensure_job(self, job: LoadJob) -> bool:
        """Create the record of a job that has none (S3 events); False when the job already succeeded
        (a redelivered event), so it is not loaded twice."""
        return ensure_job(self.jobs, job)


def ensure_job(jobs: JobStore | None, job: LoadJob) -> bool:
    """Create the record of a job that has none (S3 events); False when the job already succeeded."""
    if jobs is None:
        return True
    try:
        record = jobs.get(job.job_id)
    except NotFound:
        try:
            jobs.create(job.catalog_key, job_id=job.job_id)
        except MoodboardError:
            record = jobs.get(job.job_id)
        else:
            return True
    return record.status != "succeeded"


def _entries(folder: Path) -> list[Path]:
    """Files and folders directly in `folder` (links skipped: never followed by a cleanup)."""
    if not folder.is_dir():
        return []
    return [path for path in folder.iterdir() if not path.is_symlink()]


def start_jobs(runner: StateMachineLoadRunner, jobs: JobStore | None,
               load_jobs: Iterable[LoadJob]) -> list[dict[str, Any]]:
    """Start one execution of the load state machine per job (sharded: moodboard.shards). The
    execution is named by the job id, so an S3 event delivered twice starts one load."""
    results = []
    for job in load_jobs:
        if not ensure_job(jobs, job):
            logger.info("job %s already succeeded; skipping the repeated event", job.job_id)
            results.append({"job_id": job.job_id, "status": "skipped"})
            continue
        execution = runner.start(job.job_id, job.catalog_key, bucket=job.bucket)
        if execution is not None and jobs is not None:
            jobs.update(job.job_id, execution_arn=execution, progress={"stage": "started"})
        results.append({"job_id": job.job_id, "status": "started" if execution else "already started",
                        "execution_arn": execution})
    return results


def run_jobs(loader: CatalogLoader, jobs: Iterable[LoadJob]) -> list[dict[str, Any]]:
    """Run jobs one after the other and return their results (skipped duplicates included)."""
    results = []
    for job in jobs:
        if not loader.ensure_job(job):
            logger.info("job %s already succeeded; skipping the repeated event", job.job_id)
            results.append({"job_id": job.job_id, "status": "skipped"})
            continue
        results.append(loader.run(job.job_id, job.catalog_key, bucket=job.bucket))
    return results
