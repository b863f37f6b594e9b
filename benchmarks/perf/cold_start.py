"""Section 4, cold start: a fresh process from its start to the first answered search.

The parent starts `python -m benchmarks.perf.cold_start --child ...` with the full-size fp32 bundle
and a 100k-product index; the child stamps each phase with time.perf_counter and prints one JSON
line: import (the search app, onnxruntime, hnswlib and the query modules), the loads, first search
(an image query, 500x500 JPEG upload, through the app in process, as Mangum would call it), and a
second search as the warm baseline. Interpreter start is the parent's spawn time to the child's
first line. Variants:

- shipped: what the search Lambda's init does (MOODBOARD_PRELOAD, moodboard.runtime.Runtime.preload):
  model and index load side by side, their files checked against the seals that a first
  verification left (moodboard.integrity; the image build seals the baked model);
- sequential: the same loads one after the other (model, then index), as on a first request
  without preload: the baseline of the preload;
- first start, no seal yet: the seals are deleted before each run, so the served model graphs and
  the index files are hashed in full (a bundle that was never verified on this file system);
- no sha256 verify: preload with verify=False, the floor of what verification can cost.

Files come from the page cache (they were just built or read): a Lambda that reads its image from
disk pays more on the first start.

This module imports only the standard library at the top (a few milliseconds, counted in the
interpreter start), so the child's import phase measures what the search Lambda imports, not the
benchmark's own tooling.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

CHILD_STARTED_WALL = time.time()
CHILD_STARTED = time.perf_counter()

MARKER = "COLD-START-RESULT "
TARGET_S = 3.0
VARIANTS = {"first start, no seal yet (hashes the served files)": ["--unseal"],
            "shipped (preload, sealed bundles)": [],
            "sequential loads (no preload), sealed": ["--sequential"],
            "no sha256 verify (preload)": ["--no-verify"]}
SHIPPED = "shipped (preload, sealed bundles)"


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Run the phases in this fresh process and return their durations (seconds)."""
    marks = {"start": CHILD_STARTED}
    from search.app import app  # the Lambda's entry module

    marks["import app"] = time.perf_counter()
    for module in ("onnxruntime", "hnswlib", "moodboard.embedder", "moodboard.index.product_index", "moodboard.query"):
        importlib.import_module(module)  # what the first request would import lazily
    marks["import"] = time.perf_counter()
    import tempfile

    from moodboard.deps import get_history
    from moodboard.runtime import Runtime, set_runtime
    from moodboard.settings import Settings, get_settings

    settings = Settings(model_dir=str(args.model), index_dir=str(args.index), precision=args.precision,
                        cache_dir=Path(tempfile.gettempdir()) / "moodboard-cold")
    app.dependency_overrides.update({get_settings: lambda: settings, get_history: lambda: None})
    if args.no_verify:
        from concurrent.futures import ThreadPoolExecutor

        from moodboard.deps import get_index
        from moodboard.embedder import Embedder
        from moodboard.index import ProductIndex
        from moodboard.model_bundle import load_manifest

        fingerprint = load_manifest(args.model, verify=False).fingerprint
        with ThreadPoolExecutor(2) as pool:  # what Runtime.preload does, with verify=False
            model = pool.submit(Embedder.load, args.model, precision=args.precision, verify=False)
            index = pool.submit(ProductIndex.open, args.index, expected_fingerprint=fingerprint, verify=False).result()
            runtime = Runtime(settings, embedder=model.result())
        app.dependency_overrides[get_index] = lambda: index
        marks["model + index load (side by side)"] = time.perf_counter()
    elif args.sequential:
        runtime = Runtime(settings)
        runtime.embedder()
        marks["model load"] = time.perf_counter()
        runtime.index()
        marks["index load"] = time.perf_counter()
    else:
        runtime = Runtime(settings)
        runtime.preload()
        marks["model + index load (side by side)"] = time.perf_counter()
    set_runtime(runtime)

    import asyncio

    import httpx

    image = args.image.read_bytes()

    async def search() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cold") as client:
            response = await client.post("/search", files={"image": ("mood.jpg", image, "image/jpeg")},
                                         data={"category": "dress"})
            if response.status_code != 200:
                raise RuntimeError(f"first search answered {response.status_code}: {response.text[:300]}")

    asyncio.run(search())
    marks["first search"] = time.perf_counter()
    asyncio.run(search())
    marks["warm search"] = time.perf_counter()
    names = list(marks)
    phases = {name: marks[name] - marks[prev] for prev, name in itertools.pairwise(names)}
    phases["import app"] = marks["import app"] - marks["start"]
    phases["import"] = marks["import"] - marks["start"]
    from benchmarks.perf.proc import peak_rss_bytes

    peak = peak_rss_bytes()
    return {"started_wall": CHILD_STARTED_WALL, "phases_s": phases,
            "to_first_search_s": marks["first search"] - marks["start"], "peak_rss_bytes": peak,
            "load_breakdown_s": _safe_breakdown(args) if args.breakdown else None}


def _safe_breakdown(args: argparse.Namespace) -> dict[str, float] | None:
    """The breakdown reaches into module internals; if they changed, skip it rather than fail the run."""
    try:
        return load_breakdown(args.model, args.index, args.precision)
    except Exception as exc:  # noqa: BLE001 - a diagnostic, never the measurement
        sys.stderr.write(f"load breakdown skipped: {type(exc).__name__}: {exc}\n")
        return None


def load_breakdown(model: Path, index: Path, precision: str) -> dict[str, float]:
    """What model and index loading spend their time on, step by step (run after the timed phases,
    files warm in the page cache like the phases' own reads): sha256 of every file, the two
    onnxruntime sessions, the tokenizer, the vectors, the hnswlib graph, the product records."""
    import hashlib

    import hnswlib
    import numpy as np
    from moodboard.embedder import ClipTokenizer, _session, available_cpus
    from moodboard.index import ProductIndex
    from moodboard.integrity import MANIFEST_FILE
    from moodboard.model_bundle import graph_path, load_manifest

    def timed(fn: Any) -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    def sha256_all(folder: Path, names: list[str]) -> None:
        for name in names:
            digest = hashlib.sha256()
            with (folder / name).open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)

    manifest = load_manifest(model, verify=False)
    index_manifest = json.loads((index / MANIFEST_FILE).read_text())
    threads = available_cpus()
    served = [manifest.files.vision[precision], manifest.files.text[precision], manifest.files.tokenizer,
              manifest.files.preprocess]

    def vectors(folder: Path) -> None:
        from moodboard.index.stored_vectors import read_stored_vectors

        if (folder / "vectors.npy").exists():
            np.load(folder / "vectors.npy")
        else:
            np.ascontiguousarray(read_stored_vectors(folder / "index.bin", dim=index_manifest["dim"],
                                                     elements=index_manifest["elements"]).matrix)

    def graph() -> None:
        hnsw = hnswlib.Index(space="cosine", dim=index_manifest["dim"])
        hnsw.load_index(str(index / "index.bin"), max_elements=max(index_manifest["elements"], 1))

    return {
        "model: sha256 of the served files (first start only), one thread": timed(lambda: sha256_all(model, served)),
        "model: vision session": timed(lambda: _session(graph_path(manifest, model, "vision", precision), threads)),
        "model: text session": timed(lambda: _session(graph_path(manifest, model, "text", precision), threads)),
        "model: tokenizer": timed(lambda: ClipTokenizer.from_file(model / manifest.files.tokenizer,
                                                                  context_length=manifest.context_length,
                                                                  pad_id=manifest.text.pad_id)),
        "index: sha256 of the bundle files (first start only), one thread":
            timed(lambda: sha256_all(index, sorted(index_manifest["sha256"]))),
        # Bundles of format /3 keep their vectors in index.bin only (moodboard.index.stored_vectors).
        "index: vectors (mapped from index.bin, or a /2 bundle's vectors.npy)": timed(lambda: vectors(index)),
        "index: hnswlib graph": timed(graph),
        "index: ProductIndex.open without sha256 (graph, vectors, records)":
            timed(lambda: ProductIndex.open(index, verify=False)),
    }


def spawn(model: Path, index: Path, image: Path, precision: str, extra: list[str]) -> dict[str, Any]:
    """One cold start in a fresh interpreter; adds the spawn-to-first-line and the total wall time."""
    import subprocess

    from benchmarks.perf.common import REPO, child_env

    command = [sys.executable, "-m", "benchmarks.perf.cold_start", "--child", "--model", str(model),
               "--index", str(index), "--image", str(image), "--precision", precision, *extra]
    if "--unseal" in extra:
        from moodboard.integrity import SEAL_FILE

        for folder in (model, index):
            (folder / SEAL_FILE).unlink(missing_ok=True)
    spawned = time.time()
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True, check=False,
                          timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"cold-start child failed ({proc.returncode}): {proc.stderr[-800:]}")
    result = json.loads(lines[-1][len(MARKER):])
    result["interpreter_start_s"] = result.pop("started_wall") - spawned
    result["process_start_to_first_search_s"] = result["interpreter_start_s"] + result["to_first_search_s"]
    result["wall_s"] = time.perf_counter() - started
    return result


def import_breakdown(top: int = 10) -> dict[str, float]:
    """Seconds per top-level package when importing the search app (python -X importtime, one
    fresh process): the largest cumulative time seen for any module of that package."""
    import subprocess

    from benchmarks.perf.common import REPO, child_env

    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import search.app"], cwd=REPO,
                          env=child_env(), capture_output=True, text=True, check=False, timeout=600)
    by_package: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        package = parts[2].strip().split(".")[0]
        by_package[package] = max(by_package.get(package, 0), int(parts[1]))
    ranked = sorted(by_package.items(), key=lambda item: -item[1])[:top]
    return {name: round(us / 1e6, 3) for name, us in ranked}


def run(ctx: Any) -> dict[str, Any]:
    """Measure and return {"rows", "details"}."""
    import statistics
    import subprocess

    from benchmarks.perf import fixtures
    from benchmarks.perf.common import progress

    p = ctx.profile
    bundle = fixtures.model_bundle(ctx)
    index = fixtures.search_index(ctx, bundle, p.cold_size)
    image = ctx.cache / "mood-500.jpg"
    if not image.exists():
        image.write_bytes(fixtures.jpeg_bytes(500, seed=ctx.seed))
    bare = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - started)
    details: dict[str, Any] = {"model_size": p.model_size, "precision": "fp32", "index_size": p.cold_size,
                               "bare_python_s": statistics.median(bare), "variants": {},
                               "import_breakdown_s": import_breakdown()}
    for variant, extra in VARIANTS.items():
        runs = []
        for i in range(p.cold_reps):
            progress.print(f"  {variant}: run {i + 1} of {p.cold_reps}")
            breakdown = ["--breakdown"] if i == 0 and variant == SHIPPED else []
            runs.append(spawn(bundle, index, image, "fp32", extra + breakdown))
        median = sorted(runs, key=lambda r: r["process_start_to_first_search_s"])[len(runs) // 2]
        details["variants"][variant] = {"runs": runs, "median": median}
    imports = ", ".join(f"{name} {sec:.2f} s" for name, sec in details["import_breakdown_s"].items())
    notes = [f"importing the search app, largest cumulative time per package (nested): {imports}"]
    steps = details["variants"][SHIPPED]["runs"][0].get("load_breakdown_s")
    if steps:
        details["load_breakdown_s"] = steps
        notes.append("load steps one by one (files in the page cache): "
                     + ", ".join(f"{name} {sec:.2f} s" for name, sec in steps.items()))
    return {"rows": _rows(details), "details": details, "notes": notes}


def _rows(details: dict[str, Any]) -> list[dict]:
    from benchmarks.perf.common import row

    rows = []
    shipped_total = details["variants"][SHIPPED]["median"]["process_start_to_first_search_s"]
    for variant, v in details["variants"].items():
        m = v["median"]
        total, ph = m["process_start_to_first_search_s"], m["phases_s"]
        shipped = variant == SHIPPED
        note = f"peak RSS {m['peak_rss_bytes'] / 2**20:,.0f} MiB; {len(v['runs'])} run(s), median"
        if shipped:
            rows.append(row(f"{variant}: process start to first answered search", total, "s",
                            baseline="bare `python -c pass`", baseline_value=details["bare_python_s"],
                            ratio_kind="relative", target=f"<= {TARGET_S:.0f} s", met=total <= TARGET_S, note=note))
        else:
            rows.append(row(f"{variant}: process start to first answered search", total, "s",
                            baseline="shipped", baseline_value=shipped_total, ratio_kind="relative", note=note))
        loads = [k for k in ("model load", "index load", "model + index load (side by side)") if k in ph]
        parts = {"interpreter start": m["interpreter_start_s"], **{k: ph[k] for k in ("import", *loads,
                                                                                        "first search")}}
        for name, seconds in parts.items():
            rows.append(row(f"  {variant}: {name}", seconds, "s", baseline="share of the total",
                            baseline_value=total, ratio_kind="relative",
                            note=f"of which the search app {ph['import app']:.2f} s" if name == "import" else
                            f"warm search {ph['warm search'] * 1000:.0f} ms" if name == "first search" else None))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one cold start (the child of the cold-start section)")
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--sequential", action="store_true", help="load the model, then the index (no preload)")
    parser.add_argument("--unseal", action="store_true", help="(parent only) delete the bundles' seals first")
    parser.add_argument("--breakdown", action="store_true", help="time the load steps one by one afterwards")
    result = child(parser.parse_args(argv))
    sys.stdout.write(MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
