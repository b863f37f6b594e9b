"""Sharded loads on this machine (issue 16): `moodboard load --workers N` with 1 and 2 worker processes
against the one-process `moodboard load`, on the same generated catalog, each in a fresh process
with an empty --out (nothing reused), runs interleaved.

    python -m benchmarks.perf.sharded_loader [--products 2000] [--shard-size 250] [--rounds 2]
                                             [--precision int8] [--out F.json]

It uses the full-size ViT-B/32-shaped model with random weights (same compute as the real one;
benchmarks.perf.fixtures.model_bundle) and the generated catalog of the loader section. Reported:
wall time from process start to the published bundle, products per second, the per-shard worker
times (`shard_seconds` of the JSON report: fetch, decode, thumbnails, embedding and the shard's
writes), the share of the CPU other processes used meanwhile, and the model-load overhead of a
worker process (a `--workers` run with one product).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.perf.common import DEFAULT_CACHE, PROFILES, Context, child_env, ensure_path, load_average, progress
from benchmarks.perf.fixtures import generated_catalog, model_bundle
from benchmarks.perf.proc import OthersCpu

ensure_path()


def load(catalog: Path, model: Path, out: Path, precision: str, extra: list[str]) -> dict[str, Any]:
    """One `moodboard load ... --json` in a fresh process; its report plus the wall time."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.parent / f".{out.name}.loads", ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "moodboard_local.cli", "load", str(catalog), "--model", str(model),
                           "--out", str(out), "--precision", precision, "--json", *extra],
                          capture_output=True, text=True, env=child_env(), check=True)
    wall = time.perf_counter() - started
    report = json.loads(done.stdout)
    return {"wall_s": wall, "loaded": report["loaded"], "embedded": report["embedded"],
            "images_per_s": report["embedded"] / wall, "shard_seconds": report.get("shard_seconds", {})}


def run(products: int, shard_size: int, rounds: int, precision: str, cache: Path) -> dict[str, Any]:
    ctx = Context(replace(PROFILES["default"], loader_sizes=(products, products)), cache=cache)
    model = model_bundle(ctx, "base")
    catalog = generated_catalog(ctx, products)
    contenders = {"one process (moodboard load)": [],
                  "--workers 1": ["--workers", "1", "--shard-size", str(shard_size)],
                  "--workers 2": ["--workers", "2", "--shard-size", str(shard_size)]}
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory(prefix="sharded-bench-") as tmp:
        out = Path(tmp) / "index"
        with OthersCpu() as others:
            for round_ in range(rounds):
                for name, extra in contenders.items():
                    progress.print(f"  round {round_ + 1}: {name}")
                    samples[name].append(load(catalog, model, out, precision, extra))
        one = generated_catalog(ctx, 1)
        overhead = load(one, model, out, precision, ["--workers", "1"])
    result: dict[str, Any] = {"products": products, "shard_size": shard_size, "precision": precision,
                              "rounds": rounds, "load_average_after": load_average(),
                              "others_cpu_share": others.share, "one_product_workers_1_wall_s": overhead["wall_s"],
                              "samples": samples}
    for name, runs in samples.items():
        result[name] = {"wall_s_median": statistics.median(r["wall_s"] for r in runs),
                        "images_per_s_median": statistics.median(r["images_per_s"] for r in runs)}
        shard_times = [t for r in runs for t in r["shard_seconds"].values()]
        if shard_times:
            result[name]["shard_s_median"] = statistics.median(shard_times)
            result[name]["shard_s_max"] = max(shard_times)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", choices=["fp32", "int8"], default="int8")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args.products, args.shard_size, args.rounds, args.precision, args.cache)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
