"""Section 3, query end to end: POST /search through the FastAPI app of functions/search/app.py.

A text query (JSON: category + text) and an image query (multipart: a 500x500 JPEG upload +
category) against an index of 100k synthetic products with structured vectors, the model being the
full-size random bundle, fp32 and int8. Each is timed (p50/p95/p99)

- in process: httpx.AsyncClient over httpx.ASGITransport (no sockets, as Mangum calls the app), and
- over HTTP on loopback: uvicorn serving the same app in a child process on 127.0.0.1,

next to baselines timed in the same rounds: the library call the route wraps (decode +
moodboard.query.gist_search, with the params the route builds) and the model work alone (decode,
embed_images, embed_texts); the same routes (a second app from create_search_app) with an
embedder built with the other onnxruntime thread-spinning setting than the shipped one; and the same
routes with the embedder's text cache off (every query embeds its type prompt again: the behaviour
before the cache).

Every text query carries a text never sent before (the sample text plus a running number), so the
shopper's text is always a cache miss and runs through the text graph; only the type prompt, the
same for every query of a product type, comes from the cache, as it does in production after the
first query of that type.
The app gets the preloaded embedder and index through its dependency
overrides and no search history (get_history -> None: DynamoDB is not part of this measurement).

    python -m benchmarks.perf.query_e2e --serve --model DIR --index DIR --precision fp32 --port N
starts the HTTP server the section talks to (used by the section itself).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TEXT_QUERY = {"category": "dress", "text": "flowing linen summer dress in pastel colours"}
IMAGE_CATEGORY = "dress"
TEXT_TARGET_MS = 25.0
IMAGE_TARGET_MS = {"fp32": 80.0, "int8": 50.0}
SERVER_START_TIMEOUT = 900.0


def app_with(bundle: Path, index_dir: Path, precision: str, embedder: Any = None, loaded: Any = None,
             app: Any = None) -> tuple[Any, Any]:
    """The search app (functions/search/app.py's, or `app`) with the model, index and settings
    installed through its dependency overrides. Returns (app, settings)."""
    from moodboard.deps import get_embedder, get_history, get_index
    from moodboard.embedder import Embedder
    from moodboard.runtime import open_index
    from moodboard.settings import Settings, get_settings

    if app is None:
        from search.app import app

    settings = Settings(model_dir=str(bundle), index_dir=str(index_dir), precision=precision,
                        cache_dir=Path(tempfile.gettempdir()) / "moodboard-bench")
    embedder = embedder or Embedder.load(bundle, precision=precision)
    loaded = loaded or open_index(index_dir, embedder.fingerprint)
    app.dependency_overrides.update({
        get_settings: lambda: settings, get_embedder: lambda: embedder, get_index: lambda: loaded,
        get_history: lambda: None,
    })
    return app, settings


def _check(response: Any) -> Any:
    if response.status_code != 200:
        raise RuntimeError(f"POST /search answered {response.status_code}: {response.text[:300]}")
    return response


def start_server(bundle: Path, index_dir: Path, precision: str) -> tuple[subprocess.Popen, str]:
    """A uvicorn child process serving the app on 127.0.0.1; returns it once /health answers."""
    import httpx

    from benchmarks.perf.common import REPO, child_env, free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.perf.query_e2e", "--serve", "--model", str(bundle),
                             "--index", str(index_dir), "--precision", precision, "--port", str(port)],
                            cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the benchmark server exited ({proc.returncode}): "
                               f"{proc.stderr.read().decode(errors='replace')[-800:] if proc.stderr else ''}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"the benchmark server did not answer within {SERVER_START_TIMEOUT:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(ctx: Any) -> dict[str, Any]:
    """Measure and return {"rows", "details"}."""
    from moodboard.model_bundle import load_manifest
    from moodboard.runtime import open_index

    from benchmarks.perf import fixtures
    from benchmarks.perf.common import progress

    p = ctx.profile
    bundle = fixtures.model_bundle(ctx)
    index_dir = fixtures.search_index(ctx, bundle, p.e2e_size)
    jpeg = fixtures.jpeg_bytes(500, seed=ctx.seed)
    details: dict[str, Any] = {"index_size": p.e2e_size, "model_size": p.model_size, "jpeg_bytes": len(jpeg),
                               "text_query": TEXT_QUERY, "image_category": IMAGE_CATEGORY, "precisions": {}}
    progress.print(f"  loading the {p.e2e_size:,}-product index")
    loaded = open_index(index_dir, load_manifest(bundle, verify=False).fingerprint)
    for precision in ("fp32", "int8"):
        details["precisions"][precision] = _measure(ctx, bundle, index_dir, loaded, precision, jpeg)
    return {"rows": _rows(details["precisions"], p.e2e_size), "details": details}


def _measure(ctx: Any, bundle: Path, index_dir: Path, loaded: Any, precision: str, jpeg: bytes) -> dict[str, Any]:
    """Every contender of one precision, in the same rounds."""
    import httpx
    from moodboard.embedder import Embedder
    from moodboard.images import decode_image
    from moodboard.query import QueryParams, gist_search, type_prompt
    from moodboard.search_routes import create_search_app

    from benchmarks.perf.common import interleaved, progress
    from benchmarks.perf.embedding import embedder_with_spinning, spinning_name, spins

    p = ctx.profile
    progress.print(f"  {precision}: loading the model")
    embedder = Embedder.load(bundle, precision=precision)
    app, settings = app_with(bundle, index_dir, precision, embedder, loaded)
    # The same sessions with the text cache off: the type prompt is embedded on every query again.
    uncached = Embedder(manifest=embedder.manifest, precision=precision, vision=embedder._vision, text=embedder._text,
                        tokenizer=embedder.tokenizer, preprocessor=embedder.preprocessor,
                        batch_size=embedder.batch_size, text_cache_size=0)
    uncached_app, _ = app_with(bundle, index_dir, precision, uncached, loaded, app=create_search_app(settings))
    numbers = itertools.count()

    def text_query() -> dict[str, str]:
        return {**TEXT_QUERY, "text": f"{TEXT_QUERY['text']} no. {next(numbers)}"}

    # The same routes with the vision session's threads spinning (faster alone, see the embedding section).
    shipped = spins(embedder)
    vision_spinning = embedder_with_spinning(embedder, bundle, True, text_spinning=False)
    other_app, _ = app_with(bundle, index_dir, precision, vision_spinning, loaded, app=create_search_app(settings))

    def decode() -> Any:
        return decode_image(jpeg, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)

    params = QueryParams.from_defaults(settings.query)  # what the route builds for a request without params
    prompt = type_prompt(IMAGE_CATEGORY)
    files = {"image": ("mood.jpg", jpeg, "image/jpeg")}
    form = {"category": IMAGE_CATEGORY}
    loop = asyncio.new_event_loop()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
    other = httpx.AsyncClient(transport=httpx.ASGITransport(app=other_app), base_url="http://bench")
    no_cache = httpx.AsyncClient(transport=httpx.ASGITransport(app=uncached_app), base_url="http://bench")
    server = None
    try:
        progress.print(f"  {precision}: starting uvicorn on 127.0.0.1")
        server, base = start_server(bundle, index_dir, precision)
        with httpx.Client(base_url=base, timeout=60) as http:
            contenders = {
                "text: model only": lambda: embedder.embed_texts([type_prompt(TEXT_QUERY["category"]),
                                                                  text_query()["text"]]),
                "text: gist_search": lambda: gist_search(loaded, embedder, category=TEXT_QUERY["category"],
                                                         text=text_query()["text"], params=params),
                "text: app in-process": lambda: _check(loop.run_until_complete(
                    client.post("/search", json=text_query()))),
                "text: app over HTTP": lambda: _check(http.post("/search", json=text_query())),
                "text: app in-process, other spinning": lambda: _check(loop.run_until_complete(
                    other.post("/search", json=text_query()))),
                "text: app in-process, no text cache": lambda: _check(loop.run_until_complete(
                    no_cache.post("/search", json=text_query()))),
                "image: model only": lambda: (embedder.embed_images([decode()]), embedder.embed_texts([prompt])),
                "image: gist_search": lambda: gist_search(loaded, embedder, image=decode(),
                                                          category=IMAGE_CATEGORY, params=params),
                "image: app in-process": lambda: _check(loop.run_until_complete(
                    client.post("/search", files=files, data=form))),
                "image: app over HTTP": lambda: _check(http.post("/search", files=files, data=form)),
                "image: app in-process, other spinning": lambda: _check(loop.run_until_complete(
                    other.post("/search", files=files, data=form))),
                "image: app in-process, no text cache": lambda: _check(loop.run_until_complete(
                    no_cache.post("/search", files=files, data=form))),
            }
            progress.print(f"  {precision}: {p.e2e_requests} requests per contender")
            # The app's CloudWatch EMF metrics are printed to stdout every 100 values: keep the tables clean.
            with contextlib.redirect_stdout(io.StringIO()):
                timings = interleaved(contenders, p.e2e_requests, warmup=3)
            return {"shipped spinning": spinning_name(shipped),
                    "other spinning": "vision spinning on, text off",
                    **timings}
    finally:
        if server is not None:
            stop_server(server)
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(other.aclose())
        loop.run_until_complete(no_cache.aclose())
        loop.close()
        app.dependency_overrides.clear()


def _rows(by_precision: dict[str, Any], n: int) -> list[dict]:
    from benchmarks.perf.common import row

    rows = []
    for precision, t in by_precision.items():
        for kind in ("text", "image"):
            inproc, http = t[f"{kind}: app in-process"], t[f"{kind}: app over HTTP"]
            library, model = t[f"{kind}: gist_search"], t[f"{kind}: model only"]
            target_ms = TEXT_TARGET_MS if kind == "text" else IMAGE_TARGET_MS[precision]
            has_target = kind == "image" or precision == "fp32"
            rows.append(row(f"{kind} query p50, in-process, {precision} ({n:,} products)", inproc["p50"], "ms",
                            baseline="gist_search call", baseline_value=library["p50"], ratio_kind="relative",
                            target=f"<= {target_ms:.0f} ms" if has_target else None,
                            met=inproc["p50"] <= target_ms if has_target else None,
                            note=f"p95 {inproc['p95']:.1f}, p99 {inproc['p99']:.1f} ms; "
                                 f"model work alone {model['p50']:.1f} ms"))
            rows.append(row(f"{kind} query p50, HTTP loopback, {precision}", http["p50"], "ms",
                            baseline="in-process", baseline_value=inproc["p50"], ratio_kind="relative",
                            note=f"p95 {http['p95']:.1f}, p99 {http['p99']:.1f} ms"))
            before = t[f"{kind}: app in-process, no text cache"]
            rows.append(row(f"{kind} query p50, in-process, {precision}: text cache on (shipped)", inproc["p50"], "ms",
                            baseline="text cache off (type prompt embedded on every query, as before)",
                            baseline_value=before["p50"],
                            note=f"cache off: p95 {before['p95']:.1f} ms"
                                 + (f"; off would {'meet' if before['p50'] <= target_ms else 'miss'} "
                                    f"<= {target_ms:.0f} ms" if has_target else "")))
            other = t[f"{kind}: app in-process, other spinning"]
            verdict = "would meet" if other["p50"] <= target_ms else "would miss"
            rows.append(row(f"{kind} query p50, in-process, {precision}, onnxruntime {t['other spinning']}",
                            other["p50"], "ms", baseline=f"shipped ({t['shipped spinning']})",
                            baseline_value=inproc["p50"],
                            note=f"p95 {other['p95']:.1f} ms; {verdict} <= {target_ms:.0f} ms" if has_target else
                            f"p95 {other['p95']:.1f} ms"))
    return rows


def serve(args: argparse.Namespace) -> None:
    """The child: load everything first (so /health means ready), then serve on 127.0.0.1."""
    import uvicorn

    app, _ = app_with(args.model, args.index, args.precision)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="serve the search app for the end-to-end benchmark")
    parser.add_argument("--serve", action="store_true", required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args(argv))


if __name__ == "__main__":
    main()
