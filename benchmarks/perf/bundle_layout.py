"""Index bundle layout (issue 16, point 4): the vectors stored once (format /3, in hnswlib's index.bin)
against the layout before (format /2: the same floats again in vectors.npy), at 100k products.

    python -m benchmarks.perf.bundle_layout [--size 100000] [--reps 5] [--out F.json]

One bundle is built with the shipped IndexBuilder (structured vectors, the E2E category shares,
synthetic products); its /2 twin is the same files plus vectors.npy and a /2 manifest, exactly what
the /2 builder wrote. Measured on both, side by side: the bytes (what a search Lambda downloads from
S3 at each cold start), ProductIndex.open in fresh processes (interleaved, page cache warm, the
median of `reps`), the first exact category search (it gathers the category's rows: from a
contiguous file or from index.bin's strided records) and the exact top 10 of queries over each
layout's vectors (the same ids, or how many differ). The float16 alternative (vectors.npy as
float16 beside index.bin) is measured for the record: its size and the recall@10 of exact search
over float16-rounded vectors.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.perf.common import DEFAULT_CACHE, child_env, ensure_path, progress
from benchmarks.perf.fixtures import E2E_CATEGORIES, cached, category_names, queries_near, structured_vectors

ensure_path()

FINGERPRINT = "bench-layout-0000"
CHILD_CODE = """
import json, sys, time
started = time.perf_counter()
from moodboard.index import ProductIndex
imported = time.perf_counter()
index = ProductIndex.open(sys.argv[1], verify=False)
loaded = time.perf_counter()
category = max(index.categories(), key=index.categories().get)
index.search(index.vector(next(index.products()).id), 10, category=category)
searched = time.perf_counter()
from benchmarks.perf.proc import peak_rss_bytes
print(json.dumps({"load_s": loaded - imported, "first_category_search_s": searched - loaded,
                  "peak_rss_bytes": peak_rss_bytes()}))
"""


def build(cache: Path, n: int, seed: int = 0) -> tuple[Path, Path, np.ndarray]:
    """(/3 bundle, /2 twin, the vectors) for n products, cached."""
    from moodboard.index import IndexBuilder
    from moodboard.integrity import sha256_file
    from moodboard.vectors import l2_normalize

    from benchmarks.perf.fixtures import synthetic_products

    vectors = l2_normalize(structured_vectors(n, 512, seed=seed))

    def write(staging: Path) -> None:
        progress.print(f"  building a {n:,}-product bundle (format /3) and its /2 twin (once)")
        builder = IndexBuilder(512, FINGERPRINT)
        builder.add(synthetic_products(n, category_names(n, E2E_CATEGORIES, seed=seed)), vectors)
        builder.write(staging / "v3")
        shutil.copytree(staging / "v3", staging / "v2")
        np.save(staging / "v2" / "vectors.npy", vectors)
        manifest = json.loads((staging / "v2" / "manifest.json").read_text())
        manifest["format"] = "moodboard-index/2"
        manifest["sha256"]["vectors.npy"] = sha256_file(staging / "v2" / "vectors.npy")
        (staging / "v2" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    root = cached(cache / f"layout-{n}", write)
    return root / "v3", root / "v2", vectors


def sizes(bundle: Path) -> dict[str, int]:
    """Bytes per file of a bundle (dot-files such as the seal are never uploaded)."""
    return {f.relative_to(bundle).as_posix(): f.stat().st_size for f in sorted(bundle.rglob("*"))
            if f.is_file() and not f.name.startswith(".")}


def load_in_child(bundle: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD_CODE, str(bundle)], capture_output=True, text=True,
                         env=child_env(), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    scores = queries @ vectors.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth)]))


def run(n: int, reps: int, cache: Path) -> dict[str, Any]:
    from moodboard.index.stored_vectors import read_stored_vectors

    v3, v2, vectors = build(cache, n)
    result: dict[str, Any] = {"products": n, "sizes": {"v2": sizes(v2), "v3": sizes(v3)}}
    for name in ("v2", "v3"):
        result[f"{name}_bytes"] = sum(result["sizes"][name].values())
    stored = read_stored_vectors(v3 / "index.bin", dim=512, elements=n)
    in_index = stored[np.arange(n)]
    result["max_abs_difference_index_bin_vs_npy"] = float(np.abs(in_index - np.load(v2 / "vectors.npy")).max())
    result["records_out_of_label_order"] = 0 if stored.rows is None else int((stored.rows != np.arange(n)).sum())
    queries = queries_near(vectors, 200, seed=5)
    truth = exact_top(vectors, queries)
    result["recall_at_10_index_bin_vectors"] = recall(exact_top(in_index, queries), truth)
    half = vectors.astype(np.float16)
    result["recall_at_10_float16_vectors"] = recall(exact_top(half.astype(np.float32), queries), truth)
    result["float16_bundle_bytes"] = result["v3_bytes"] + half.nbytes + 128  # vectors.npy as float16 beside index.bin
    samples: dict[str, list[dict[str, float]]] = {"v2": [], "v3": []}
    load_in_child(v2), load_in_child(v3)  # warm the page cache for both
    for _ in range(reps):
        for name, bundle in (("v2", v2), ("v3", v3)):
            samples[name].append(load_in_child(bundle))
    for name in samples:
        for key in ("load_s", "first_category_search_s", "peak_rss_bytes"):
            result[f"{name}_{key}_median"] = statistics.median(s[key] for s in samples[name])
    result["samples"] = samples
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = run(args.size, args.reps, args.cache)
    result["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    summary = {k: v for k, v in result.items() if k not in ("samples", "sizes")}
    print(json.dumps({**summary, "sizes": result["sizes"]}, indent=2))


if __name__ == "__main__":
    main()
