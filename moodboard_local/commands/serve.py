"""`moodboard serve`: the local web stack on one port (search API, evaluation routes, frontend).

    moodboard serve [--host 127.0.0.1] [--port 8000] [--model DIR] [--index DIR | --catalog PATH]
                    [--compare-model DIR ...]

With no --model it uses the default real checkpoint, exported once into ~/.cache/moodboard/models/,
and falls back to the tiny random model where the hub cannot be reached, saying so here and on the
page. With no --index or --catalog it loads the clothing dataset when found, else a generated demo
catalog, building the index once: a later start with the same catalog (content checksum), pictures
and model keeps serving the version built then (no new version, so evaluation rounds run before and
after the restart count as one configuration); one with changes re-embeds only what changed and
publishes a new version. S3 and DynamoDB come
from an embedded moto server unless an endpoint or real AWS credentials are configured; the index
is published to that bucket and served through the same CURRENT pointer code as in AWS, so
`POST /admin/load` swaps it live.

`--compare-model DIR` (repeatable) serves another model bundle next to the default one, e.g. a
trained bundle and its base, so an evaluation round can run on each (a search picks it by `model`,
GET /models lists them). Its index is built from the same catalog (--catalog, else the demo's) into
the data folder, keyed by model fingerprint and catalog: a restart without --catalog serves it as
it was, one with --catalog keeps it as well when nothing changed, else re-embeds only what changed.
It is served from that local bundle (a load from the team page changes the default model's index only).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moodboard.served_models import MAX_COMPARED
from moodboard.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATASET = REPO_ROOT.parent / "shared" / "data" / "clothing-dataset"
LOCAL_REFRESH_SECONDS = "5"
DEMO_PER_CATEGORY = 20
# The clothing dataset's labels that are not product types (its labelling tool's leftovers): hidden
# from the product types a shopper is offered (Settings.hidden_categories) unless configured.
CLOTHING_DATASET_HIDDEN = ("Not sure", "Skip", "Other")
# Where serve keeps its data between starts (moodboard_local.local_data), unless --data-dir or MOODBOARD_DATA_DIR.
DEFAULT_DATA_DIR = REPO_ROOT / ".moodboard-data"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="run the web app locally (search, evaluations, frontend on one port)",
        description="Serve the search API, the evaluation routes and the frontend on one port, with S3 and "
                    "DynamoDB from an embedded moto server unless AWS is configured.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", type=Path, default=None,
                   help="model bundle (default: the index's model, else the default checkpoint, exported once)")
    p.add_argument("--precision", choices=["fp32", "int8"], default=None)
    p.add_argument("--compare-model", type=Path, action="append", default=[], metavar="DIR",
                   help=f"also serve this model bundle, with its own index of the same catalog, so the team can "
                        f"compare it with the default model (repeatable, at most {MAX_COMPARED}; GET /models "
                        f"lists them, a search names one by `model`)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--index", type=Path, default=None, help="an index bundle to serve")
    source.add_argument("--catalog", type=Path, default=None,
                        help="a catalog (.csv, .jsonl or clothing-dataset folder) to load and serve")
    p.add_argument("--aws", choices=["auto", "moto", "real"], default="auto",
                   help="where S3 and DynamoDB come from (default: moto unless an endpoint or credentials are set)")
    p.add_argument("--allow-loopback-fetch", action="store_true",
                   help="test/demo only: let image URLs on 127.0.0.1 be fetched (Settings.fetch_allow_loopback)")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--data-dir", type=Path, default=None,
                      help=f"where ratings, rounds, history, URLs, jobs, index versions and the admin and team "
                           f"tokens are kept between starts (default MOODBOARD_DATA_DIR, else {DEFAULT_DATA_DIR})")
    data.add_argument("--ephemeral", action="store_true", help="keep nothing: every start begins empty")
    p.set_defaults(func=run)


def cache_home() -> Path:
    """~/.cache/moodboard (or $XDG_CACHE_HOME/moodboard): exported models, built indexes, demo data."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "moodboard"


def run(args: argparse.Namespace) -> int:
    from moodboard.runtime import Runtime, set_runtime
    from moodboard_local.console import console, print_note
    from moodboard_local.local_data import LocalData
    from moodboard_local.local_stack import (
        LOCAL_BUCKET,
        MOTO_CREDENTIALS,
        ensure_resources,
        start_local_aws,
    )

    settings = get_settings()
    if args.index is None and args.catalog is None and settings.index_dir:
        args.index = Path(settings.index_dir)
    cache = cache_home()
    model_dir, precision = choose_model(args, settings, cache)
    compared = compared_bundles(args, model_dir)
    data = None if args.ephemeral else LocalData(args.data_dir or settings.data_dir or DEFAULT_DATA_DIR)
    local = start_local_aws(settings, args.aws, state_dir=data.state_dir if data else None)
    try:
        env: dict[str, str] = {}
        if local.kind == "moto":
            os.environ.update(MOTO_CREDENTIALS)
        if local.endpoint_url:
            env["MOODBOARD_AWS_ENDPOINT_URL"] = local.endpoint_url
        if not settings.artifacts_bucket:
            if local.kind == "aws":
                from moodboard.errors import ConfigError

                raise ConfigError("real AWS is configured but MOODBOARD_ARTIFACTS_BUCKET is not set "
                                  "(or run with --aws moto)")
            env["MOODBOARD_ARTIFACTS_BUCKET"] = LOCAL_BUCKET
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        generated = token is None
        if token is None and data is not None:
            token, generated = data.admin_token()
        env["MOODBOARD_ADMIN_TOKEN"] = token or secrets.token_urlsafe(24)
        if data is not None:
            env["MOODBOARD_TEAM_FILE"] = str(data.team().path)
            if "MOODBOARD_CACHE_DIR" not in os.environ:
                env["MOODBOARD_CACHE_DIR"] = str(data.cache_dir)
        if args.allow_loopback_fetch:
            env["MOODBOARD_FETCH_ALLOW_LOOPBACK"] = "true"
        if "MOODBOARD_HIDDEN_CATEGORIES" not in os.environ and serves_clothing_dataset(args, settings, local.kind):
            env["MOODBOARD_HIDDEN_CATEGORIES"] = json.dumps(CLOTHING_DATASET_HIDDEN)
        catalog = compared_catalog(args, settings, cache, local.kind) if compared else None
        if catalog is not None:
            folder = data.compared_indexes_dir if data is not None else cache / "indexes"
            env["MOODBOARD_COMPARE_MODELS"] = json.dumps([
                {"model_dir": str(bundle), "index_dir": str(index_folder(folder, catalog, fingerprint))}
                for bundle, fingerprint in compared])
        if "MOODBOARD_INDEX_REFRESH_SECONDS" not in os.environ:
            env["MOODBOARD_INDEX_REFRESH_SECONDS"] = LOCAL_REFRESH_SECONDS
        env["MOODBOARD_MODEL_DIR"] = str(model_dir)
        env["MOODBOARD_PRECISION"] = precision
        os.environ.pop("MOODBOARD_INDEX_DIR", None)
        os.environ.pop("MOODBOARD_COMPARE_MODELS", None)  # serve's own --compare-model only
        os.environ.update(env)
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        get_settings.cache_clear()
        settings = get_settings().model_copy(update={"index_dir": None})

        runtime = Runtime(settings)
        embedder = runtime.embedder()
        tiny = embedder.tiny
        if tiny:
            print_note("serving the TINY RANDOM test model: results are not meaningful "
                       "(pass --model with a real model bundle for real results)")
        if local.kind != "aws":
            ensure_resources(settings, runtime.s3, runtime.dynamodb)
        # Kept data already serving an index of this model: go on serving it (a rollback or a load
        # published since is the team's choice), without reading the demo catalog again.
        kept = (data is not None and local.kind != "aws" and args.index is None and args.catalog is None
                and _kept_current(runtime, embedder.fingerprint))
        index_dir, built_from = (None, None) if kept else choose_index(
            args, settings, embedder, cache, follow_bucket=local.kind == "aws", catalog=catalog)
        if index_dir is not None:
            if local.kind == "aws":
                settings = settings.model_copy(update={"index_dir": str(index_dir)})
                runtime = Runtime(settings, s3=runtime.s3, dynamodb=runtime.dynamodb, embedder=embedder)
            else:
                publish_index(runtime, index_dir, embedder.fingerprint, catalog=built_from, model_source=embedder.source)
        for bundle in settings.compare_models if catalog is not None else ():
            # Like the default model's: kept data with no --catalog serves the index built before as is.
            if not (data is not None and args.catalog is None and _kept_bundle(Path(bundle.index_dir))):
                build_index(catalog, settings, runtime.compared_embedder(Path(bundle.model_dir)), cache,
                            out=Path(bundle.index_dir))
        set_runtime(runtime)
        loaded = runtime.index()
        served = runtime.served_models()

        app = build_local_app(settings, runtime=runtime, tiny=tiny)
        url = f"http://{args.host}:{args.port}/"
        console.print(f"AWS services: {local.describe()}", markup=False)
        console.print(f"model {embedder.fingerprint} ({'tiny test model' if tiny else model_dir})"
                      + (f": {embedder.description}" if embedder.description else "") + "; "
                      f"index {loaded.version} with {len(loaded)} products", markup=False)
        for model in served:
            index = model.index.get()
            console.print(f"compared model {model.name} ({model.fingerprint}): index {index.version} with "
                          f"{len(index)} products; a search names it with \"model\": \"{model.fingerprint[:12]}\"",
                          markup=False)
        if generated:
            console.print(f"admin token (MOODBOARD_ADMIN_TOKEN): {env['MOODBOARD_ADMIN_TOKEN']}", markup=False)
        if data is not None:
            console.print(f"data folder: {data.root} (admin token in {data.root / 'admin-token'}; "
                          "add team members with `moodboard team add NAME`, admins with `--admin`)", markup=False)
        console.print(f"moodboard is running at {url}  (API docs at {url}docs; Ctrl-C stops it)", markup=False)

        import uvicorn

        # uvicorn re-raises the SIGTERM it caught once it has shut down; with Python's default handler
        # that ends the process before `finally` saves the data folder (a change in the last autosave
        # interval was lost). Raising SystemExit instead lets the cleanup below run.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        local.stop()
    return 0


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM as a normal exit (SystemExit), so serve's cleanup runs."""
    raise SystemExit(128 + signum)


def _kept_current(runtime: Any, fingerprint: str) -> bool:
    """Whether the restored bucket already has a CURRENT index built with this model."""
    current = runtime.artifact_store().current()
    return current is not None and current.model_fingerprint == fingerprint


def _kept_bundle(index_dir: Path) -> bool:
    """Whether a complete, intact index bundle is at index_dir (its files' sha256 checked)."""
    from moodboard.errors import BundleError
    from moodboard.index import verify

    try:
        verify(index_dir)
    except (BundleError, OSError):
        return False
    return True


def choose_model(args: argparse.Namespace, settings: Any, cache: Path) -> tuple[Path, str]:
    """The model bundle to serve: --model, the index's model_ref.json, Settings.model_dir, else the
    default checkpoint exported once into the cache (the tiny model when the hub is unreachable)."""
    from moodboard_local.commands._common import MODEL_REF_FILE, resolve_model

    precision = args.precision or settings.precision
    if args.model is not None:
        return resolve_model(args.index or args.model, args.model, precision)
    if args.index is not None and (args.index / MODEL_REF_FILE).is_file():
        return resolve_model(args.index, None, args.precision)
    if settings.model_dir:
        return Path(settings.model_dir), precision
    return default_model(cache), precision


def default_model(cache: Path, *, exporter: Any = None) -> Path:
    """The default real checkpoint's bundle, exported on first use; where the hub cannot be reached,
    the tiny random model (also cached), with a note on the console."""
    from moodboard.errors import ConfigError, HubUnreachable
    from moodboard.integrity import MANIFEST_FILE
    from moodboard_local.console import print_note

    models = cache / "models"
    try:
        export = exporter or __import__("model_export.export", fromlist=["export_model"])
    except ImportError as exc:
        raise ConfigError("exporting a model needs the export extra (pip install -e '.[export]'), "
                          "or pass --model DIR") from exc
    real = models / _slug(export.DEFAULT_MODEL)
    if (real / MANIFEST_FILE).is_file():
        return real
    print_note(f"exporting {export.DEFAULT_MODEL} to {real} (once)")
    try:
        return export.export_model(export.DEFAULT_MODEL, real)
    except HubUnreachable as exc:
        print_note(f"{exc.message}")
    tiny = models / "tiny-random-clip"
    if not (tiny / MANIFEST_FILE).is_file():
        print_note(f"falling back to the tiny random CLIP, exported to {tiny}: results will NOT be meaningful")
        export.export_tiny(tiny)
    else:
        print_note("falling back to the cached tiny random CLIP: results will NOT be meaningful")
    return tiny


def choose_index(args: argparse.Namespace, settings: Any, embedder: Any, cache: Path, *,
                 follow_bucket: bool, catalog: Path | None = None) -> tuple[Path | None, Path | None]:
    """The index bundle to serve and the catalog it was built from: --index (no catalog known),
    --catalog built, or the demo catalog (`catalog` when already found) built; (None, None) to
    follow the bucket's CURRENT (real AWS with neither flag)."""
    if args.index is not None:
        return args.index, None
    if args.catalog is not None:
        return build_index(args.catalog, settings, embedder, cache), Path(args.catalog)
    if follow_bucket:
        return None, None
    source = catalog or demo_catalog(settings, cache)
    return build_index(source, settings, embedder, cache), source


def compared_bundles(args: argparse.Namespace, default_model: Path) -> list[tuple[Path, str]]:
    """The --compare-model bundles with their fingerprints (read from their manifests; the runtime
    verifies each file when it loads them). ConfigError or BundleError (exit 2) for more than
    MAX_COMPARED, a folder that is no model bundle, a bundle given twice or the served model itself,
    and with --index (there is no catalog to build the compared model's index from)."""
    from moodboard.errors import BundleError, ConfigError
    from moodboard.model_bundle import load_manifest

    if not args.compare_model:
        return []
    if len(args.compare_model) > MAX_COMPARED:
        raise ConfigError(f"--compare-model: at most {MAX_COMPARED} models can be compared with the served one")
    if args.index is not None:
        raise ConfigError("--compare-model needs the catalog to build its index from: "
                          "pass --catalog (or neither --index nor --catalog for the demo catalog), not --index")
    default = load_manifest(default_model, verify=False).fingerprint
    found: list[tuple[Path, str]] = []
    for folder in args.compare_model:
        try:
            fingerprint = load_manifest(folder, verify=False).fingerprint
        except BundleError as exc:
            raise BundleError(f"--compare-model {folder} is not a model bundle: {exc.message}") from exc
        if fingerprint == default:
            raise ConfigError(f"--compare-model {folder} is the model already served (fingerprint {fingerprint[:12]}): "
                              "compare another bundle")
        if any(fingerprint == seen for _, seen in found):
            raise ConfigError(f"--compare-model {folder}: that model (fingerprint {fingerprint[:12]}) is given twice")
        found.append((Path(folder).resolve(), fingerprint))
    return found


def compared_catalog(args: argparse.Namespace, settings: Any, cache: Path, aws_kind: str) -> Path:
    """The catalog the compared models' indexes are built from: the one serve loads (--catalog, else
    the demo catalog); ConfigError on real AWS without --catalog (serve then follows the bucket)."""
    from moodboard.errors import ConfigError

    if args.catalog is not None:
        return Path(args.catalog)
    if aws_kind == "aws":
        raise ConfigError("--compare-model on real AWS needs --catalog: the served index comes from the bucket")
    return demo_catalog(settings, cache)


def clothing_dataset(settings: Any) -> Path | None:
    """The clothing dataset folder (Settings.demo_dataset or ../shared/data/clothing-dataset), if found."""
    for candidate in (settings.demo_dataset, DEFAULT_DATASET):
        if candidate is not None and (Path(candidate) / "images.csv").is_file():
            return Path(candidate)
    return None


def serves_clothing_dataset(args: argparse.Namespace, settings: Any, aws_kind: str) -> bool:
    """Whether the catalog served will be a clothing-dataset folder (--catalog, or the demo's)."""
    if args.index is not None:
        return False
    if args.catalog is not None:
        return (Path(args.catalog) / "images.csv").is_file()
    return aws_kind != "aws" and clothing_dataset(settings) is not None


def demo_catalog(settings: Any, cache: Path) -> Path:
    """The clothing dataset when found (Settings.demo_dataset or ../shared/data/clothing-dataset),
    else a generated demo catalog in the cache."""
    from moodboard_local.console import print_note
    from moodboard_local.demo_catalog import generate_demo_catalog

    found = clothing_dataset(settings)
    if found is not None:
        print_note(f"demo catalog: the clothing dataset at {found}")
        return found
    generated = cache / "demo-catalog"
    if not (generated / "catalog.csv").is_file():
        print_note(f"clothing dataset not found; generating a demo catalog in {generated}")
        generate_demo_catalog(generated, per_category=DEMO_PER_CATEGORY)
    else:
        print_note(f"demo catalog: the generated one in {generated}")
    return generated / "catalog.csv"


def index_folder(folder: Path, catalog: Path, fingerprint: str) -> Path:
    """Where the index of `catalog` built with the model of `fingerprint` is kept under `folder`."""
    key = hashlib.sha256(f"{catalog.resolve()}|{fingerprint}".encode()).hexdigest()[:16]
    return folder / f"{_slug(catalog.stem)}-{key}"


def build_index(catalog: Path, settings: Any, embedder: Any, cache: Path, *, out: Path | None = None) -> Path:
    """Build (or refresh: unchanged images keep their vectors) the index of a catalog in the cache
    (or at `out`)."""
    from moodboard.catalog import read_catalog
    from moodboard.errors import ConfigError
    from moodboard.ingest import load_catalog
    from moodboard_local.console import console, err_console, progress_bar

    if not catalog.exists():
        raise ConfigError(f"catalog {catalog} does not exist")
    out = out or index_folder(cache / "indexes", catalog, embedder.fingerprint)
    kept = unchanged_index(out, read_catalog(catalog), embedder.fingerprint)
    if kept is not None:
        console.print(f"index {kept.version} of {catalog} kept: the catalog, its pictures and the model are "
                      f"those it was built from", markup=False)
        return out
    with progress_bar("embedding") as on_progress:
        report = load_catalog(catalog, embedder, out, settings=settings, on_progress=on_progress)
    for failure in report.image_failures[:5]:
        err_console.print(f"image failed for {failure.product_id}: {failure.reason}", markup=False)
    console.print(report.summary(), markup=False)
    return out


def unchanged_index(index_dir: Path, read: Any, fingerprint: str) -> Any:
    """The manifest of the intact bundle at index_dir when it was built by the model of `fingerprint`
    from this very catalog (`read`, a moodboard.catalog.CatalogRead): the same content checksum (the
    manifest's catalog_sha256) and every product's picture unchanged (its image content key); None
    when anything differs. Building it again would only give the same products a new version, which
    an evaluation round counts as another configuration. A product the bundle lacks had a picture that
    failed then; it counts as unchanged when that picture is a URL, a file still missing, or a file
    not modified since the bundle was built (a load, not a restart, tries it again)."""
    from moodboard.catalog import image_content_key, is_url
    from moodboard.errors import BundleError
    from moodboard.index import verify
    from moodboard.index.manifest import PRODUCTS_FILE
    from moodboard.index.records import read_records

    try:
        manifest = verify(Path(index_dir))
        if (manifest.model_fingerprint != fingerprint or not manifest.catalog_sha256
                or manifest.catalog_sha256 != read.checksum):
            return None
        products, _, keys = read_records(Path(index_dir) / PRODUCTS_FILE)
        built = datetime.strptime(manifest.created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except (BundleError, OSError, ValueError):
        return None
    stored = {product.id: key for product, key in zip(products, keys, strict=True)}
    if not stored.keys() <= {product.id for product in read.products}:
        return None
    for product in read.products:
        if product.id in stored:
            if stored[product.id] != image_content_key(product):
                return None
        elif not is_url(product.image):
            try:
                if Path(product.image).stat().st_mtime >= built:
                    return None
            except OSError:
                pass  # still missing
    return manifest


def publish_index(runtime: Any, index_dir: Path, fingerprint: str, *, catalog: Path | None = None,
                  model_source: str | None = None) -> None:
    """Publish a local bundle to the (local) bucket unless CURRENT already is that version, as every
    load publishes (moodboard.index_versions.publish_version: its card names `catalog`, the catalog's
    local path, its product types and the model's source for GET /admin/indexes; retention applies)."""
    from moodboard.errors import FingerprintMismatch
    from moodboard.index import verify
    from moodboard.index_versions import publish_version

    manifest = verify(index_dir)
    if manifest.model_fingerprint != fingerprint:
        raise FingerprintMismatch(
            f"the index at {index_dir} was built with model {manifest.model_fingerprint}, "
            f"but the model being served is {fingerprint}; pass the model it was built with (--model)")
    store = runtime.artifact_store()
    current = store.current()
    if current is None or current.version != manifest.version:
        publish_version(store, index_dir, base=current, settings=runtime.settings,
                        catalog_key=str(Path(catalog).resolve()) if catalog is not None else None,
                        model_source=model_source)
    _seed_index_cache(runtime, index_dir, manifest.version)


def _seed_index_cache(runtime: Any, index_dir: Path, version: str) -> None:
    """Put the local bundle where the runtime would download CURRENT to, so a big local index is not
    read back from the local bucket file by file (the runtime still verifies every sha256)."""
    import shutil

    from moodboard.runtime import INDEX_CACHE
    from moodboard.staging import staged_dir

    seeded = Path(runtime.settings.cache_dir) / INDEX_CACHE / version
    if not seeded.exists():
        with staged_dir(seeded, replace=False) as staging:
            shutil.copytree(index_dir, staging, dirs_exist_ok=True)


def build_local_app(settings: Any, *, runtime: Any, tiny: bool) -> Any:
    """One FastAPI app: the search routes, the evaluation routes (loads run in a thread here), a
    generated /config.json, and the frontend folder mounted last at /."""
    from fastapi.responses import JSONResponse
    from fastapi.staticfiles import StaticFiles

    from moodboard.evaluation_routes import mount
    from moodboard.load_jobs import JobStore, ThreadLoadRunner
    from moodboard.loading import CatalogLoader
    from moodboard.search_routes import create_search_app
    from moodboard_local.console import print_note

    app = create_search_app(settings)
    jobs = JobStore(runtime.dynamodb, settings.jobs_table)

    def load(job_id: str, catalog_key: str) -> None:
        loader = CatalogLoader(store=runtime.artifact_store(), jobs=jobs, embedder=runtime.embedder(),
                               settings=settings)
        loader.run(job_id, catalog_key)

    mount(app, load_runner=ThreadLoadRunner(load, jobs))
    config = {"apiBase": "", "tinyModel": tiny, "adminRequired": True}

    @app.get("/config.json", include_in_schema=False)
    def frontend_config() -> JSONResponse:
        return JSONResponse(config, headers={"Cache-Control": "no-store"})

    frontend = Path(settings.frontend_dir) if settings.frontend_dir else REPO_ROOT / "frontend"
    if frontend.is_dir():
        app.mount("/", StaticFiles(directory=frontend, html=True), name="frontend")
    else:
        print_note(f"no frontend folder at {frontend}; serving the API only")
    return app


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "catalog"
