"""`moodboard load CATALOG --model DIR --out DIR`: build (or refresh) an index bundle from a catalog."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from moodboard.commands._common import DEFAULT_INDEX_DIR, DEFAULT_MODEL_DIR, write_model_ref
from moodboard.console import console, err_console
from moodboard.errors import ConfigError, NothingLoaded
from moodboard.settings import get_settings

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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moodboard.embedder import Embedder
    from moodboard.ingest import load_catalog

    if not args.catalog.exists():
        raise ConfigError(f"catalog {args.catalog} does not exist")
    settings = get_settings()
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
