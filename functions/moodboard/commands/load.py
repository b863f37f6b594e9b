"""`moodboard load CATALOG --model DIR --out DIR`: build (or refresh) an index bundle from a catalog."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from moodboard.commands._common import DEFAULT_INDEX_DIR, DEFAULT_MODEL_DIR, write_model_ref
from moodboard.console import console, err_console
from moodboard.errors import ConfigError, NothingLoaded
from moodboard.settings import Settings, get_settings

if TYPE_CHECKING:
    from moodboard.ingest import LoadReport

MAX_LISTED = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("load", help="embed a catalog's images into an index bundle",
                              description="Embed a catalog (CSV, JSONL or a clothing-dataset folder) into an index bundle. "
                                          "Re-running on the same --out re-embeds only what changed.")
    p.add_argument("catalog", type=Path, help="catalog file (.csv, .jsonl) or clothing-dataset folder")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help=f"model bundle (default {DEFAULT_MODEL_DIR})")
    p.add_argument("--out", type=Path, default=DEFAULT_INDEX_DIR, help=f"index bundle to write (default {DEFAULT_INDEX_DIR})")
    p.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    p.add_argument("--batch-size", type=int, default=None, help="images per embedding batch")
    p.add_argument("--json", action="store_true", help="print the load report as JSON")
    p.add_argument("--dry-run", action="store_true",
                   help="only show what the load would change against --out (added, removed, changed, categories, "
                        "rejects); writes nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moodboard.embedder import Embedder
    from moodboard.ingest import load_catalog

    if not args.catalog.exists():
        raise ConfigError(f"catalog {args.catalog} does not exist")
    settings = get_settings()
    if args.dry_run:
        return dry_run(args, settings)
    if args.batch_size:
        settings = settings.model_copy(update={"embed_batch_size": args.batch_size})
    embedder = Embedder.load(args.model, precision=args.precision, threads=settings.intra_op_threads)
    try:
        report = load_catalog(args.catalog, embedder, args.out, settings=settings, progress=not args.json)
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


def dry_run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the diff of the catalog against the bundle at --out (none yet: everything is added)."""
    from moodboard.catalog import read_catalog
    from moodboard.catalog_diff import diff_catalog
    from moodboard.index import read_manifest
    from moodboard.index.manifest import PRODUCTS_FILE
    from moodboard.index.records import read_records

    current, version = None, None
    if (args.out / PRODUCTS_FILE).is_file():
        version = read_manifest(args.out).version
        current = read_records(args.out / PRODUCTS_FILE)[0]
    diff = diff_catalog(read_catalog(args.catalog), current, current_version=version,
                        max_removed_share=settings.load_confirm_removed_share)
    if args.json:
        console.print_json(diff.model_dump_json())
        return 0
    for reject in diff.rejects[:MAX_LISTED]:
        err_console.print(f"rejected line {reject['line']}: {reject['reason']}", markup=False)
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
