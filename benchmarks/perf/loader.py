"""Section 5, loader: images per second and peak memory of moodboard.ingest.load_catalog.

Each load runs in a fresh child process (`python -m benchmarks.perf.loader --child ...`) so its peak
resident memory (VmHWM, plus RSS sampled during the load itself) belongs to that load alone:
a generated catalog (images drawn by moodboard_local.demo_catalog) at two sizes with int8 (peak memory
must not grow with catalog size beyond the index the load builds), the smaller one with fp32 too
(int8 against fp32), and ../shared/data/clothing-dataset (real photos, 400x533 JPEGs) with both
precisions when it is on this machine (skipped with a note when it is not: it is never required).
The loader embeds with the full-size bundle, like production.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.perf.proc import peak_rss_bytes, rss_bytes

CHILD_STARTED = time.perf_counter()

MARKER = "LOADER-RESULT "
TARGET_IMAGES_PER_S = 15.0
TARGET_PEAK_BYTES = 2 * 1024**3
INDEX_FILES = ("index.bin", "vectors.npy", "products.jsonl")  # vectors.npy: bundles of format /2 only


class PeakSampler:
    """Samples this process's RSS every `interval` seconds on a daemon thread; `.peak` is the max."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Load the model, then the catalog into an index bundle; return throughput and memory."""
    import tempfile

    from moodboard.embedder import Embedder
    from moodboard.ingest import load_catalog
    from moodboard.settings import Settings

    rss_start = rss_bytes()
    embedder = Embedder.load(args.model, precision=args.precision)
    rss_model = rss_bytes()
    settings = Settings(cache_dir=Path(tempfile.gettempdir()) / "moodboard-bench-loader")
    with PeakSampler() as sampler:
        report = load_catalog(args.catalog, embedder, args.out, settings=settings)
    index_bytes = sum((args.out / name).stat().st_size for name in INDEX_FILES if (args.out / name).exists())
    return {
        "embedded": report.embedded, "image_failures": len(report.image_failures), "rejects": len(report.rejects),
        "seconds": report.seconds, "images_per_s": report.embedded / report.seconds if report.seconds else None,
        "rss_start_bytes": rss_start, "rss_after_model_bytes": rss_model, "load_peak_rss_bytes": sampler.peak,
        "peak_rss_bytes": peak_rss_bytes(),
        "index_bytes": index_bytes, "process_s": time.perf_counter() - CHILD_STARTED,
    }


def spawn(catalog: Path, model: Path, precision: str, out: Path) -> dict[str, Any]:
    """One load in a fresh process."""
    import subprocess

    from benchmarks.perf.common import REPO, child_env

    command = [sys.executable, "-m", "benchmarks.perf.loader", "--child", "--catalog", str(catalog),
               "--model", str(model), "--precision", precision, "--out", str(out)]
    proc = subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True, check=False,
                          timeout=6 * 3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"loader child failed ({proc.returncode}): {proc.stderr[-800:]}")
    return json.loads(lines[-1][len(MARKER):])


def run(ctx: Any) -> dict[str, Any]:
    """Measure and return {"rows", "details", "notes"}."""
    import shutil
    import tempfile

    from benchmarks.perf import fixtures
    from benchmarks.perf.common import load_average, progress

    p = ctx.profile
    bundle = fixtures.model_bundle(ctx)
    small, large = p.loader_sizes
    jobs = [("generated", small, "int8", fixtures.generated_catalog(ctx, small)),
            ("generated", large, "int8", fixtures.generated_catalog(ctx, large)),
            ("generated", p.loader_fp32_size, "fp32", fixtures.generated_catalog(ctx, p.loader_fp32_size))]
    notes = []
    dataset = fixtures.dataset_catalog(ctx, p.dataset_limit)
    if dataset is None:
        notes.append(f"clothing dataset not found at {fixtures.CLOTHING_DATASET}: skipped (it is optional)")
        progress.print(f"  [yellow]{notes[-1]}[/]")
    else:
        count = p.dataset_limit or _dataset_size()
        jobs += [("clothing-dataset", count, "int8", dataset), ("clothing-dataset", count, "fp32", dataset)]
    results: dict[str, Any] = {}
    for source, n, precision, catalog in jobs:
        key = f"{source} {n} {precision}"
        progress.print(f"  {key}")
        out = Path(tempfile.mkdtemp(prefix="loader-", dir=ctx.cache)) / "index"
        before = load_average()
        try:
            results[key] = {"source": source, "size": n, "precision": precision,
                            **spawn(catalog, bundle, precision, out),
                            "load_average": {"before": before, "after": load_average()}}
        finally:
            shutil.rmtree(out.parent, ignore_errors=True)
    embed_rate = _embedding_rate(ctx)
    details = {"model_size": p.model_size, "jobs": results, "embedding_only_images_per_s": embed_rate}
    return {"rows": _rows(results, small, large, embed_rate), "details": details, "notes": notes}


def _dataset_size() -> int:
    from benchmarks.perf import fixtures

    with (fixtures.CLOTHING_DATASET / "images.csv").open() as fh:
        return sum(1 for _ in fh) - 1


def _embedding_rate(ctx: Any) -> dict[str, float] | None:
    """Batch-16 images/s of the embedding section of this run, if it ran (the loader's ceiling)."""
    embed = ctx.results.get("embed", {})
    batch = embed.get("details", {}).get("throughput", {}).get("16")
    return batch["images_per_s"] if batch else None


def _rows(results: dict[str, Any], small: int, large: int, embed_rate: dict[str, float] | None) -> list[dict]:
    from benchmarks.perf.common import mib, row

    rows = []
    for key, r in results.items():
        peer = results.get(f"{r['source']} {r['size']} fp32")
        int8 = r["precision"] == "int8"
        rows.append(row(f"{key}: images/s", r["images_per_s"], "img/s",
                        baseline="same catalog, fp32" if int8 and peer else
                        "embedding alone (batch 16)" if embed_rate else None,
                        baseline_value=peer["images_per_s"] if int8 and peer else
                        (embed_rate or {}).get(r["precision"]),
                        better="higher", target=f">= {TARGET_IMAGES_PER_S:.0f} img/s" if int8 else None,
                        met=r["images_per_s"] >= TARGET_IMAGES_PER_S if int8 else None,
                        note=f"{r['embedded']:,} embedded in {r['seconds']:.0f} s; {r['image_failures']} image "
                             f"failures; machine load {r['load_average']['before'][:1]} -> "
                             f"{r['load_average']['after'][:1]}"))
        rows.append(row(f"{key}: peak RSS", mib(r["peak_rss_bytes"]), "MiB", baseline="after model load",
                        baseline_value=mib(r["rss_after_model_bytes"]), ratio_kind="relative",
                        target=f"< {TARGET_PEAK_BYTES / 2**30:.0f} GiB", met=r["peak_rss_bytes"] < TARGET_PEAK_BYTES,
                        note=f"peak during the load {mib(r['load_peak_rss_bytes']):,.0f} MiB; "
                             f"index bundle {mib(r['index_bytes']):,.0f} MiB"))
    a, b = results.get(f"generated {small} int8"), results.get(f"generated {large} int8")
    if a and b:
        growth = mib(b["load_peak_rss_bytes"] - a["load_peak_rss_bytes"])
        index_growth = mib(b["index_bytes"] - a["index_bytes"])
        rows.append(row(f"peak RSS during the load, {large:,} vs {small:,} products", mib(b["load_peak_rss_bytes"]),
                        "MiB", baseline=f"{small:,} products", baseline_value=mib(a["load_peak_rss_bytes"]),
                        ratio_kind="relative",
                        note=f"{large / small:.0f}x the products; +{growth:,.0f} MiB vs +{index_growth:,.0f} MiB "
                             f"of index data (vectors, graph, records): images are streamed, not held"))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one catalog load (the child of the loader section)")
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--precision", choices=("fp32", "int8"), default="int8")
    parser.add_argument("--out", type=Path, required=True)
    result = child(parser.parse_args(argv))
    sys.stdout.write(MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
