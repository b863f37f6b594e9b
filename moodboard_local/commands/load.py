"""`moodboard load CATALOG --model DIR --out DIR`: build (or refresh) an index bundle from a catalog
(a file, a folder, or a .zip/.tar/.tar.gz/.tgz archive, unpacked first as the Lambda loader does);
`--workers N` loads it in shards (resumable with `--resume JOB`)."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moodboard.errors import ConfigError, NothingLoaded
from moodboard.settings import Settings, get_settings
from moodboard_local.commands._common import DEFAULT_INDEX_DIR, DEFAULT_MODEL_DIR, write_model_ref
from moodboard_local.console import console, err_console, progress_bar

if TYPE_CHECKING:
    from moodboard.ingest import LoadReport

MAX_LISTED = 20
# Where `moodboard load ARCHIVE` unpacks it, under Settings.cache_dir (unpacked_archive).
LOCAL_CATALOGS_DIR = "local-catalogs"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("load", help="embed a catalog's images into an index bundle",
                              description="Embed a catalog (CSV, JSONL, a clothing-dataset folder, or an archive of one) into an index bundle. "
                                          "Re-running on the same --out re-embeds only what changed.")
    p.add_argument("catalog", type=Path, nargs="?",
                   help="catalog file (.csv, .jsonl), clothing-dataset folder, or a .zip/.tar/.tar.gz/.tgz archive of one")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help=f"model bundle (default {DEFAULT_MODEL_DIR})")
    p.add_argument("--out", type=Path, default=DEFAULT_INDEX_DIR, help=f"index bundle to write (default {DEFAULT_INDEX_DIR})")
    p.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    p.add_argument("--batch-size", type=int, default=None, help="images per embedding batch")
    p.add_argument("--json", action="store_true", help="print the load report as JSON")
    p.add_argument("--dry-run", action="store_true",
                   help="only show what the load would change against --out (added, removed, changed, categories, "
                        "rejects); also reads a .zip/.tar/.tar.gz catalog archive; writes nothing")
    p.add_argument("--confirm", action="store_true",
                   help="load even when it would remove more than MOODBOARD_LOAD_CONFIRM_REMOVED_SHARE of the "
                        "products in --out or a whole category (refused otherwise, --out untouched)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="load in shards with N worker processes (what the AWS load state machine runs); a stopped "
                        "load can then be continued with --resume")
    p.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help="products per shard (with --workers; default MOODBOARD_LOAD_SHARD_SIZE, 1000)")
    p.add_argument("--resume", metavar="JOB", default=None,
                   help="continue the stopped sharded load JOB of --out: only its unfinished shards are embedded")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moodboard.archives import is_archive

    if args.resume is None and args.catalog is None:
        raise ConfigError("give a catalog to load (or --resume JOB)")
    if args.catalog is not None and not args.catalog.exists():
        raise ConfigError(f"catalog {args.catalog} does not exist")
    settings = get_settings()
    if args.dry_run:
        return dry_run(args, settings)
    if args.catalog is not None and args.catalog.is_file() and is_archive(args.catalog.name):
        sharded_load = args.workers is not None
        with unpacked_archive(args.catalog, args.out, settings, keep_on_failure=sharded_load) as catalog:
            return load(argparse.Namespace(**{**vars(args), "catalog": catalog}), settings)
    return load(args, settings)


@contextmanager
def unpacked_archive(archive: Path, out: Path, settings: Settings, *, keep_on_failure: bool = False) -> Iterator[Path]:
    """The catalog inside an archive (.zip/.tar/.tar.gz/.tgz), unpacked by the loader's own helper
    (moodboard.loading.unpack_catalog, within the archive_* limits: ArchiveError, exit 2, nothing
    written to --out when refused) into <cache_dir>/local-catalogs/<archive and --out digest>. The
    folder is the same on every load of that archive into that --out, and members keep their mtimes,
    so unchanged images keep their content keys and vectors. It is removed after the load, except a
    sharded load that did not finish (its --resume reads the images from there)."""
    import shutil

    from moodboard.archives import ArchiveLimits
    from moodboard.loading import unpack_catalog

    digest = hashlib.sha256(f"{archive.resolve()}|{Path(out).resolve()}".encode()).hexdigest()[:16]
    folder = Path(settings.cache_dir) / LOCAL_CATALOGS_DIR / digest
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    unpacked = finished = False
    try:
        catalog = unpack_catalog(archive, folder, limits=ArchiveLimits.from_settings(settings), label=archive.name)
        unpacked = True
        yield catalog
        finished = True
    finally:
        if finished or not (unpacked and keep_on_failure):
            shutil.rmtree(folder, ignore_errors=True)


def load(args: argparse.Namespace, settings: Settings) -> int:
    """The load of a catalog file or folder (an archive is unpacked by `run` first)."""
    from moodboard.embedder import Embedder
    from moodboard.ingest import load_catalog

    if args.catalog is not None:
        _check(args, settings)
    if args.batch_size:
        settings = settings.model_copy(update={"embed_batch_size": args.batch_size})
    if args.workers is not None or args.resume is not None:
        return sharded(args, settings)
    embedder = Embedder.load(args.model, precision=args.precision, threads=settings.intra_op_threads)
    try:
        with progress_bar("embedding", enabled=not args.json) as on_progress:
            report = load_catalog(args.catalog, embedder, args.out, settings=settings, on_progress=on_progress)
    except NothingLoaded as exc:
        # Why every row or image failed, then the one-line error (exit 2): --out was not touched.
        if exc.report is not None:
            _list_problems(exc.report)
        raise
    write_model_ref(args.out, args.model, args.precision)
    if args.json:
        console.print_json(json.dumps(report.model_dump()))
        return 0
    _list_problems(report)
    console.print(report.summary(), markup=False)
    console.print(f"index bundle: {report.index_dir} (version {report.version})", markup=False)
    return 0


def sharded(args: argparse.Namespace, settings: Settings) -> int:
    """The load in shards (moodboard_local.local_load): the plan, N worker processes, the publish."""
    from moodboard_local.local_load import run_local_load

    if args.shard_size is not None and args.shard_size < 1:
        raise ConfigError("--shard-size: at least 1")

    def planned(plan: Any) -> None:
        err_console.print(f"load job {plan.job_id}: {plan.products} products to embed in {plan.shards} shards of "
                          f"{plan.shard_size}, {plan.reused} kept from the current bundle", markup=False)
        err_console.print(f"if it stops: moodboard load --resume {plan.job_id} --out {args.out}", markup=False)

    def shard_done(summary: dict[str, Any]) -> None:
        err_console.print(f"shard {summary['shard']}: {summary['embedded']} embedded, {summary['failures']} images "
                          f"failed, {summary['seconds']:.1f}s", markup=False)

    load = run_local_load(out_dir=args.out, model_dir=args.model, precision=args.precision, settings=settings,
                          workers=args.workers or 1, catalog=args.catalog, resume=args.resume,
                          shard_size=args.shard_size, on_plan=None if args.json else planned,
                          on_shard=None if args.json else shard_done)
    write_model_ref(args.out, args.model, args.precision)
    report = {**load.result, "job_id": load.job_id, "shards_embedded": load.embedded_shards,
              "shards_skipped": load.skipped_shards, "products_embedded_now": load.products_embedded_now,
              "shard_seconds": load.shard_seconds,
              "wall_seconds": round(load.seconds, 2)}
    if args.json:
        console.print_json(json.dumps(report))
        return 0
    result = load.result
    console.print(f"loaded {result['loaded']} products ({result['embedded']} embedded in {len(load.embedded_shards)} "
                  f"shards, {len(load.skipped_shards)} shards done before, {result['reused']} reused), "
                  f"{result['image_failures']} image failures, {result['rejected_rows']} rejected rows; "
                  f"{load.seconds:.1f}s", markup=False)
    console.print(f"index bundle: {args.out} (version {result['version']}, load job {load.job_id})", markup=False)
    return 0


def _out_products(out: Path) -> tuple[list[Any] | None, str | None]:
    """The products of the bundle at --out and its version; (None, None) when there is none yet."""
    from moodboard.index import read_manifest
    from moodboard.index.manifest import PRODUCTS_FILE
    from moodboard.index.records import read_records

    if not (out / PRODUCTS_FILE).is_file():
        return None, None
    return read_records(out / PRODUCTS_FILE)[0], read_manifest(out).version


def _check(args: argparse.Namespace, settings: Settings) -> None:
    """The load check (moodboard.catalog_diff.check_load) against --out: LoadNeedsConfirmation
    (exit 2, --out untouched) for a destructive load without --confirm."""
    from moodboard.catalog import read_catalog
    from moodboard.catalog_diff import check_load

    current, version = _out_products(args.out)
    if current is not None:
        check_load(read_catalog(args.catalog), current, confirm=args.confirm, current_version=version,
                   max_removed_share=settings.load_confirm_removed_share)


def dry_run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the diff of the catalog (a file, a folder or an archive, unpacked within the archive_*
    limits and removed after) against the bundle at --out (none yet: everything is added)."""
    from moodboard.archives import ArchiveLimits
    from moodboard.catalog_diff import dry_run_local

    current, version = _out_products(args.out)
    diff = dry_run_local(args.catalog, current, current_version=version,
                         max_removed_share=settings.load_confirm_removed_share,
                         limits=ArchiveLimits.from_settings(settings), cache_dir=settings.cache_dir)
    if args.json:
        console.print_json(diff.model_dump_json())
        return 0
    for reject in diff.rejects[:MAX_LISTED]:
        where = f"line {reject['line']}" if "line" in reject else f"product {reject['product_id']}"
        err_console.print(f"rejected {where}: {reject['reason']}", markup=False)
    console.print(f"dry run against {args.out}" + (f" (version {version})" if version else " (no index yet)")
                  + ": nothing was written", markup=False)
    console.print(diff.summary(), markup=False)
    for reason in diff.reasons:
        console.print(f"needs confirmation: this load {reason}", markup=False)
    return 0


def _list_problems(report: LoadReport) -> None:
    """Rejected rows, failed images and duplicate ids on stderr, at most MAX_LISTED of each."""
    for reject in report.rejects[:MAX_LISTED]:
        err_console.print(f"rejected line {reject.line}: {reject.reason}", markup=False)
    for failure in report.image_failures[:MAX_LISTED]:
        err_console.print(f"image failed for {failure.product_id}: {failure.reason}", markup=False)
    hidden = max(0, len(report.rejects) - MAX_LISTED) + max(0, len(report.image_failures) - MAX_LISTED)
    if hidden:
        err_console.print(f"... and {hidden} more (use --json for the full list)", markup=False)
    if report.duplicates:
        err_console.print(f"duplicate ids (last row wins): {', '.join(report.duplicates[:MAX_LISTED])}", markup=False)
