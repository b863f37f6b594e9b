"""`moodboard search`: the gist query from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from moodboard.settings import get_settings
from moodboard_local.commands._common import DEFAULT_INDEX_DIR, resolve_model
from moodboard_local.console import console


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = get_settings().query
    p = subparsers.add_parser("search", help="find products with the gist of a picture",
                              description="Blend an inspiration image, the product type and optional text into one query.")
    p.add_argument("--index", type=Path, default=DEFAULT_INDEX_DIR, help=f"index bundle (default {DEFAULT_INDEX_DIR})")
    p.add_argument("--model", type=Path, default=None, help="model bundle (default: the one that built the index)")
    p.add_argument("--precision", choices=["fp32", "int8"], default=None)
    p.add_argument("--image", help="inspiration image: a file path or an http(s) URL (a Pinterest pin works)")
    p.add_argument("--category", help="product type to search within, e.g. Dress")
    p.add_argument("--text", help="free text to steer the match")
    p.add_argument("--negative", help="less of this")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--w-image", type=float, default=defaults.w_image)
    p.add_argument("--w-type", type=float, default=defaults.w_type)
    p.add_argument("--w-text", type=float, default=defaults.w_text)
    p.add_argument("--w-neg", type=float, default=defaults.w_neg)
    p.add_argument("--near-copy-threshold", type=float, default=None,
                   help="drop products above this cosine to the picture (default: MOODBOARD_QUERY_"
                        "NEAR_COPY_THRESHOLD if set, else the model bundle's own, else "
                        f"{defaults.near_copy_threshold})")
    p.add_argument("--mmr", type=float, default=None, dest="mmr_lambda", help="diversify with MMR (0..1)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.set_defaults(func=run)


def _open_query_image(ref: str, settings):  # noqa: ANN001, ANN202
    from moodboard.fetch import FetchLimits, fetch_image
    from moodboard.images import decode_image, load_image_file

    if "://" in ref:  # a URL; fetch refuses any scheme but http(s)
        fetched = fetch_image(ref, limits=FetchLimits.from_settings(settings),
                              allow_loopback=settings.fetch_allow_loopback)
        return decode_image(fetched.content, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    return load_image_file(Path(ref), max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)


def run(args: argparse.Namespace) -> int:
    from moodboard.embedder import Embedder
    from moodboard.index import ProductIndex
    from moodboard.query import QueryParams, resolve_query, run_query

    settings = get_settings()
    model_dir, precision = resolve_model(args.index, args.model, args.precision)
    embedder = Embedder.load(model_dir, precision=precision, threads=settings.intra_op_threads)
    index = ProductIndex.open(args.index, expected_fingerprint=embedder.fingerprint)
    params = QueryParams.from_defaults(settings.query, model_near_copy=embedder.near_copy_threshold,
                                       w_image=args.w_image, w_type=args.w_type, w_text=args.w_text,
                                       w_neg=args.w_neg, near_copy_threshold=args.near_copy_threshold, k=args.k,
                                       offset=args.offset, mmr_lambda=args.mmr_lambda)
    query = resolve_query(index, has_image=bool(args.image), category=args.category, text=args.text,
                          negative=args.negative, params=params)
    image = _open_query_image(args.image, settings) if args.image else None
    result = run_query(index, embedder, query, image=image)
    rows = [{"rank": args.offset + i + 1, "id": h.product.id, "score": round(float(h.score), 4),
             "category": h.product.category, "title": h.product.title, "price": h.product.price,
             "currency": h.product.currency, "image": h.product.image, "product_url": h.product.product_url}
            for i, h in enumerate(result.hits)]
    if args.json:
        console.print_json(json.dumps({"query": result.query.model_dump(mode="json"),
                                       "dropped_near_copies": result.dropped_near_copies, "results": rows}, default=str))
        return 0
    table = Table(title=f"{len(rows)} results" + (f" in {args.category}" if args.category else ""))
    for col in ("rank", "score", "id", "category", "title", "price"):
        table.add_column(col, justify="right" if col in ("rank", "score", "price") else "left")
    for r in rows:
        price = f"{r['price']:.2f} {r['currency'] or ''}".strip() if r["price"] is not None else ""
        table.add_row(str(r["rank"]), f"{r['score']:.3f}", r["id"], r["category"], r["title"], price)
    console.print(table)
    if result.dropped_near_copies:
        console.print(f"dropped {result.dropped_near_copies} near-copies of the query image", markup=False)
    return 0
