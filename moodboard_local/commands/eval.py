"""`moodboard eval`: match quality of a model bundle on a labelled catalog, and of stored ratings.

The harness lives in benchmarks.quality (it needs the `dev` extra: matplotlib and scipy) and is
imported only when the command runs. Catalog embeddings are cached in an index bundle: pass one
built by `moodboard load` with --index, or let the command build (and on later runs refresh) one
under --out/index.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moodboard import __version__
from moodboard.errors import ConfigError, MoodboardError
from moodboard.settings import Settings, get_settings
from moodboard_local.commands._common import positive_int, resolve_model, write_model_ref
from moodboard_local.console import console, err_console, print_note, progress_bar

DEFAULT_OUT = Path("artifacts/eval")
DEFAULT_SWEEP = "0,0.25,0.5,1,2"
DEFAULT_QUERIES = 100
INDEX_SUBDIR = "index"


def _weights(value: str) -> tuple[float, ...]:
    try:
        weights = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None
    if not weights or any(w < 0 for w in weights):
        raise argparse.ArgumentTypeError(f"expected non-negative weights, got {value!r}")
    return weights


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="measure match quality: catalog retrieval metrics, human ratings, A/B tests",
        description="Evaluate a model bundle on a labelled catalog (zero-shot text-to-image, held-out "
                    "image-to-image, gist diagnostics with the category filter, a weight sweep) and/or "
                    "summarise stored ratings with confidence intervals and compare two versions. Writes "
                    "report.json and report.html (with charts) into --out. Needs the dev extra.")
    p.add_argument("catalog", nargs="?", type=Path, default=None,
                   help="labelled catalog (.csv, .jsonl or clothing-dataset folder); optional with --ratings")
    p.add_argument("--model", type=Path, default=None, help="model bundle (default: the one that built --index)")
    p.add_argument("--precision", choices=["fp32", "int8"], default=None)
    p.add_argument("--index", type=Path, default=None,
                   help="reuse this index bundle's embeddings (built by `moodboard load` with the same model)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report folder (default {DEFAULT_OUT})")
    p.add_argument("--queries", type=positive_int, default=DEFAULT_QUERIES,
                   help=f"held-out query images (default {DEFAULT_QUERIES})")
    p.add_argument("--sweep", type=_weights, default=_weights(DEFAULT_SWEEP),
                   help=f"w_type values to sweep with w_image fixed (default {DEFAULT_SWEEP})")
    p.add_argument("--ignore-category", action="append", default=[], metavar="NAME",
                   help="leave a category out of the catalog evaluation (repeatable), e.g. 'Not sure'")
    p.add_argument("--seed", type=int, default=7, help="seed of the query sample and the resampling tests")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--ratings", type=Path, default=None, metavar="FILE",
                        help="ratings exported from the evaluations table (.csv, .jsonl, .json)")
    source.add_argument("--ratings-url", default=None, metavar="URL",
                        help="read ratings from a running stack's GET /evaluations (e.g. http://127.0.0.1:8000)")
    p.add_argument("--admin-token", default=None, help="admin bearer token for --ratings-url "
                                                       "(default MOODBOARD_ADMIN_TOKEN)")
    p.add_argument("--compare", nargs=2, default=None, metavar=("A", "B"),
                   help="A/B test two model fingerprints, index versions or weight sets in the ratings")
    p.add_argument("--compare-field", choices=["model_fingerprint", "index_version", "weights"], default=None)
    p.add_argument("--compare-k", type=positive_int, default=10, help="precision@k compared in the A/B test")
    p.add_argument("--against", type=Path, default=None, metavar="DIR",
                   help="compare --model (A) with this second model bundle (B) on the same held-out products: "
                        "caption/type/image retrieval, near-copies, diversity, bootstrap intervals, "
                        "neighbourhood overlap (writes comparison.json and comparison.html)")
    p.add_argument("--held-out", type=float, default=0.2,
                   help="with --against and no trained bundle: share of products held out (default 0.2)")
    p.add_argument("--top-types", type=positive_int, default=None,
                   help="with --against: type and image figures over the N largest types only")
    p.add_argument("--json", action="store_true", help="print the headline numbers as JSON")
    p.set_defaults(func=run)


def _load_harness() -> Any:
    try:
        from benchmarks.quality import harness, ratings, report
    except ModuleNotFoundError as exc:
        raise ConfigError(f"`moodboard eval` needs the dev extra ({exc.name} is missing): "
                          f"pip install -e '.[dev]'") from exc
    return harness, ratings, report


def run(args: argparse.Namespace) -> int:
    if args.catalog is None and args.ratings is None and args.ratings_url is None:
        raise ConfigError("give a CATALOG to evaluate, --ratings FILE or --ratings-url URL")
    if args.compare and args.ratings is None and args.ratings_url is None:
        raise ConfigError("--compare needs ratings: --ratings FILE or --ratings-url URL")
    if args.against is not None:
        return _compare_models(args, get_settings())
    harness, ratings_mod, report_mod = _load_harness()
    settings = get_settings()
    started = time.perf_counter()
    report: dict[str, Any] = {"meta": {"code_version": __version__,
                                       "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}
    thumbnail = None
    categories: dict[str, str] = {}
    if args.catalog is not None:
        thumbnail, categories = _catalog_eval(args, settings, harness, report)
    if args.ratings is not None or args.ratings_url is not None:
        _ratings_eval(args, settings, ratings_mod, report)
    report["meta"]["seconds_total"] = round(time.perf_counter() - started, 2)
    written = report_mod.write_report(report, args.out, thumbnail=thumbnail, categories=categories)
    _print(report, written, as_json=args.json)
    return 0


def _catalog_eval(args: argparse.Namespace, settings: Settings, harness: Any,
                  report: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    """Embed (or reuse) the catalog, run the harness into `report`; returns the contact sheet's
    thumbnail lookup and the product categories."""
    from moodboard.catalog import read_catalog
    from moodboard.embedder import Embedder
    from moodboard.index import ProductIndex, thumbnail_path
    from moodboard.index.manifest import MANIFEST_FILE
    from moodboard.ingest import load_catalog

    if not args.catalog.exists():
        raise ConfigError(f"catalog {args.catalog} does not exist")
    index_dir = args.index or args.out / INDEX_SUBDIR
    if args.model is None and args.index is None:
        raise ConfigError("give --model DIR (or --index DIR of a bundle built by `moodboard load`)")
    if args.index is not None and not (args.index / MANIFEST_FILE).exists():
        raise ConfigError(f"no index bundle at {args.index}")
    if args.model is not None:
        model_dir, precision = args.model, args.precision or "fp32"
    else:
        model_dir, precision = resolve_model(args.index, None, args.precision)
    embedder = Embedder.load(model_dir, precision=precision, threads=settings.intra_op_threads)
    meta = report["meta"]
    manifest = embedder.manifest
    threshold, threshold_from = near_copy_threshold(settings, manifest)
    meta.update(model_fingerprint=embedder.fingerprint, model_source=manifest.source.id,
                model_revision=manifest.source.revision, tiny_model=manifest.tiny,
                precision=precision, catalog=str(args.catalog), near_copy_threshold=threshold,
                near_copy_threshold_from=threshold_from)

    mark = time.perf_counter()
    if args.index is None:
        with progress_bar("embedding", enabled=not args.json) as on_progress:
            load = load_catalog(args.catalog, embedder, index_dir, settings=settings, on_progress=on_progress)
        write_model_ref(index_dir, model_dir, precision)
        meta.update(embedded=load.embedded, reused=load.reused, image_failures=len(load.image_failures),
                    rejects=len(load.rejects))
    index = ProductIndex.open(index_dir, expected_fingerprint=embedder.fingerprint)
    if args.index is not None:
        checksum = read_catalog(args.catalog).checksum
        if index.manifest.catalog_sha256 and index.manifest.catalog_sha256 != checksum:
            print_note(f"the index at {args.index} was built from another version of {args.catalog}")
    meta.update(index_dir=str(index_dir), index_version=index.version,
                seconds_embed=round(time.perf_counter() - mark, 2))

    data = harness.EvalSet.from_index(index, ignore=args.ignore_category)
    if len(data) < 2:
        raise ConfigError(f"the catalog needs at least two products to evaluate; the index holds {len(data)}")
    defaults = settings.query
    config = harness.EvalConfig(queries=args.queries, sweep=tuple(args.sweep), w_image=defaults.w_image,
                                w_type=defaults.w_type, near_copy_threshold=threshold, seed=args.seed)
    mark = time.perf_counter()
    report.update(harness.evaluate(data, embedder.embed_texts, config,
                                   served=harness.ServedCheck(embedder=embedder, open_image=_image_opener(settings))))
    meta["seconds_eval"] = round(time.perf_counter() - mark, 2)
    meta["ignored_categories"] = list(args.ignore_category)

    products = {p.id: p for p in data.products}

    def thumbnail(product_id: str):
        from PIL import Image

        product = products.get(product_id)
        if product is None:
            return None
        for path in (thumbnail_path(index_dir, product_id), Path(product.image)):
            if path.is_file():
                try:
                    with Image.open(path) as image:
                        return image.convert("RGB")
                except OSError:
                    continue
        return None

    return thumbnail, {p.id: p.category for p in data.products}


def _compare_models(args: argparse.Namespace, settings: Settings) -> int:
    """`--against`: two bundles on the held-out products of the trained one's split."""
    from moodboard.embedder import Embedder

    if args.catalog is None or args.model is None:
        raise ConfigError("--against compares --model A with bundle B on a CATALOG: give both")
    if args.index is not None or args.ratings is not None or args.ratings_url is not None:
        raise ConfigError("--against runs alone: drop --index, --ratings and --ratings-url")
    try:
        from benchmarks.quality import compare as compare_mod
        from benchmarks.quality import heldout
        from model_export.train.data import load_catalog
    except ModuleNotFoundError as exc:
        raise ConfigError(f"`moodboard eval --against` needs the dev extra ({exc.name} is missing)") from exc
    started = time.perf_counter()
    precision = args.precision or "fp32"
    a = Embedder.load(args.model, precision=precision, threads=settings.intra_op_threads)
    b = Embedder.load(args.against, precision=precision, threads=settings.intra_op_threads)
    trained = next((e.manifest.training for e in (b, a) if e.manifest.training is not None), None)
    if trained is not None:
        fraction, seed = trained.catalog["held_out_fraction"], trained.catalog["split_seed"]
        ignore = tuple(trained.catalog.get("ignored_categories", [])) + tuple(args.ignore_category)
    else:
        fraction, seed, ignore = args.held_out, args.seed, tuple(args.ignore_category)
    catalog = load_catalog(args.catalog, ignore=ignore)
    ids = [p.id for p in catalog.products]
    _, held_rows = heldout.split_products(ids, [p.category for p in catalog.products], fraction=fraction, seed=seed)
    digest = heldout.split_digest([ids[r] for r in held_rows])
    if trained is not None and trained.catalog.get("checksum") != catalog.checksum:
        print_note(f"{args.catalog} is not the catalog the trained model was trained on (checksum differs)")
    elif trained is not None and trained.catalog.get("held_out_digest") != digest:
        raise ConfigError("the held-out split does not match the one recorded in the trained model's manifest")
    opener = _image_opener(settings)
    images, kept = [], []
    for row in held_rows:
        image = opener(catalog.products[row].image)
        if image is not None:
            images.append(image)
            kept.append(row)
    if len(kept) < 2:
        raise ConfigError(f"only {len(kept)} held-out products have readable images; need at least 2")
    data = catalog.held_out(kept)
    with err_console.status(f"embedding {len(images)} held-out images with both models"):
        vectors_a, vectors_b = a.embed_images(images), b.embed_images(images)
    defaults = settings.query
    thresholds = (near_copy_threshold(settings, a.manifest)[0], near_copy_threshold(settings, b.manifest)[0])
    report = compare_mod.compare(data, vectors_a, a.embed_texts, vectors_b, b.embed_texts, ignore=args.ignore_category,
                                 top_types=args.top_types, near_copy_threshold=thresholds,
                                 w_image=defaults.w_image, w_type=defaults.w_type, seed=args.seed)
    report["meta"] = {
        "code_version": __version__, "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "catalog": str(args.catalog), "catalog_checksum": catalog.checksum, "precision": precision,
        "split": {"held_out_fraction": fraction, "seed": seed, "ignored_categories": list(ignore),
                  "held_out_digest": digest, "from_training_record": trained is not None,
                  "unreadable_images": len(held_rows) - len(kept)},
        "a": _model_meta(args.model, a, settings), "b": _model_meta(args.against, b, settings),
        "seconds_total": round(time.perf_counter() - started, 2),
    }
    written = compare_mod.write_comparison(report, args.out)
    headline = {label: {"a": row["a"], "b": row["b"], "difference": row["difference"], "interval": row["interval"]}
                for label, row in report["differences"].items()}
    headline["within_type_overlap"] = report["within_type_overlap"]["overlap"]
    if args.json:
        console.print_json(json.dumps({"comparison": headline, "report": {k: str(v) for k, v in written.items()}}))
        return 0
    console.print(f"A: {report['meta']['a']['name']} ({a.manifest.description})\n"
                  f"B: {report['meta']['b']['name']} ({b.manifest.description})\n"
                  f"{report['products']} held-out products", markup=False)
    for label, row in headline.items():
        if label == "within_type_overlap":
            console.print(f"within-type 10-NN overlap A vs B: {_fmt(row)}", markup=False)
            continue
        interval = row["interval"]
        console.print(f"{label}: A {_fmt(row['a'])}  B {_fmt(row['b'])}  B-A {_fmt(row['difference'])}"
                      + (f" [{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else ""), markup=False)
    err_console.print(f"report: {written['html']} (JSON: {written['json']})", markup=False)
    return 0


def _model_meta(path: Path, embedder: Any, settings: Settings) -> dict[str, Any]:
    manifest = embedder.manifest
    threshold, threshold_from = near_copy_threshold(settings, manifest)
    return {"path": str(path), "name": f"{manifest.source.id} @ {embedder.fingerprint[:8]}",
            "fingerprint": embedder.fingerprint, "description": manifest.description, "tiny": manifest.tiny,
            "near_copy_threshold": threshold, "near_copy_threshold_from": threshold_from}


def near_copy_threshold(settings: Settings, manifest: Any) -> tuple[float, str]:
    """The near-copy cosine a search with this model bundle uses (moodboard.query.QueryParams.from_defaults:
    an explicit setting, else the bundle's own ModelManifest.near_copy_threshold, else the default) and
    where it came from ("setting", "bundle" or "default"), so eval counts near-copies as the search drops them."""
    from moodboard.query import QueryParams

    defaults = settings.query
    threshold = QueryParams.from_defaults(defaults, model_near_copy=manifest.near_copy_threshold).near_copy_threshold
    if "near_copy_threshold" in defaults.model_fields_set:
        return threshold, "setting"
    return threshold, "bundle" if manifest.near_copy_threshold is not None else "default"


def _image_opener(settings: Settings) -> Any:
    from moodboard.catalog import is_url
    from moodboard.images import load_image_file

    def open_image(reference: str):
        if is_url(reference):
            return None
        try:
            return load_image_file(Path(reference), max_bytes=settings.max_image_bytes,
                                   max_pixels=settings.max_image_pixels)
        except (MoodboardError, OSError):
            return None

    return open_image


def _ratings_eval(args: argparse.Namespace, settings: Settings, ratings_mod: Any, report: dict[str, Any]) -> None:
    if args.ratings is not None:
        ratings = ratings_mod.read_ratings(args.ratings)
        source = str(args.ratings)
    else:
        token = args.admin_token or (settings.admin_token.get_secret_value() if settings.admin_token else None)
        ratings = ratings_mod.fetch_ratings(args.ratings_url, token)
        source = args.ratings_url
    report["ratings"] = {"source": source, "count": len(ratings),
                         "summary": ratings_mod.summarize(ratings, seed=args.seed)}
    if args.compare:
        a, b = args.compare
        report["compare"] = ratings_mod.compare(ratings, a, b, field=args.compare_field, k=args.compare_k,
                                                seed=args.seed)


def _print(report: dict[str, Any], written: dict[str, Path], *, as_json: bool) -> None:
    headline = headline_numbers(report)
    headline["report"] = {name: str(path) for name, path in written.items()}
    if as_json:
        console.print_json(json.dumps(headline, default=str))
        return
    if report["meta"].get("tiny_model"):
        print_note("the model bundle is a tiny random model: these figures only prove the harness runs")
    for key, value in headline.items():
        if key != "report":
            console.print(f"{key}: {_fmt(value)}", markup=False)
    err_console.print(f"report: {written['html']} (JSON: {written['json']})", markup=False)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def headline_numbers(report: dict[str, Any]) -> dict[str, Any]:
    """The few numbers worth printing after a run."""
    out: dict[str, Any] = {}
    zs, i2i, gist = report.get("zero_shot"), report.get("image_to_image"), report.get("gist")
    if zs:
        kp, kr = zs["k_precision"], zs["k_recall"]
        out[f"zero_shot_precision_at_{kp}"] = zs["overall"][f"precision_at_{kp}"]
        out[f"zero_shot_recall_at_{kr}"] = zs["overall"][f"recall_at_{kr}"]
        out["zero_shot_map"] = zs["overall"]["map"]
    if i2i:
        out[f"image_to_image_precision_at_{i2i['k']}"] = i2i["overall"][f"precision_at_{i2i['k']}"]
    if gist:
        for key in ("in_category_share", "near_copy_rate", "diversity_mean_pairwise_cosine"):
            out[f"gist_{key}"] = gist[key]
    served = report.get("served")
    if served:
        out["served_in_category_share"] = served["in_category_share"]
    ratings = report.get("ratings")
    if ratings:
        overall = ratings["summary"]["overall"]
        k = str(max(ratings["summary"]["ks"]))
        out["ratings"] = ratings["count"]
        out[f"rated_precision_at_{k}"] = overall["precision_at"][k]["value"]
    compare = report.get("compare")
    if compare:
        out["ab_difference"] = compare["difference"]
        out["ab_p_value"] = compare["p_value"]
        out["ab_significant"] = compare["significant"]
    if "seconds_total" in report.get("meta", {}):
        out["seconds_total"] = report["meta"]["seconds_total"]
    return out
