"""Where should a category search switch from exact numpy to a graph of the category's own?

Builds a ProductIndex over N structured vectors (clusters on a low-dimensional subspace plus noise,
nearest-neighbour cosine about 0.89 like real CLIP embeddings; isotropic random vectors would be the
unrealistic worst case) with categories of several sizes, then times, per category, the paths
ProductIndex.search can take: exact (numpy over the category's rows, the index's `_exact`), the
category's own hnswlib graph (built here for every category with the builder's `build_graph`,
searched through the index's own `_walk`), and the global graph's filtered walk (the path above the
switch before category graphs), with the recall@k of both graph paths against exact.
Categories are assigned two ways: "random" (independent of the clusters) and "clustered" (a
category is a run of clusters, as product types are in a real embedding space: most queries then
lie outside the category they search, the hard case for graph walks).

    python benchmarks/index_switch.py            # 100k vectors, k=24; takes a few minutes
    python benchmarks/index_switch.py --n 20000  # quick look

Absolute times are noisy on a shared machine; the two paths are timed side by side in one run.
Results: docs/index-switch.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import statistics
import sys
import time
from pathlib import Path

# One BLAS thread, set before numpy loads: a search serves one query at a time, and on a shared
# machine multi-threaded BLAS adds scheduler jitter of several ms to a single matrix-vector product.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions"))

from moodboard.catalog import Product
from moodboard.index import Hit, IndexBuilder, ProductIndex
from moodboard.index.builder import build_graph
from moodboard.index.manifest import EF_CATEGORY, EF_FILTERED, MANIFEST_FILE

SIZES = (250, 1_000, 2_500, 5_000, 10_000, 20_000, 40_000)


def structured_vectors(n: int, dim: int = 512, *, seed: int = 0, clusters: int = 256, rank: int = 32,
                       spread: float = 0.5, noise: float = 0.035) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in `clusters` clusters on a random `rank`-dimensional subspace plus isotropic
    noise; returns (vectors, cluster id per row)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
    centers = rng.standard_normal((clusters, rank))
    assign = rng.integers(0, clusters, n)
    low = centers[assign] + spread * rng.standard_normal((n, rank))
    x = low @ basis.T + noise * rng.standard_normal((n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), assign


def categories_for(n: int, clusters: np.ndarray, mode: str, seed: int) -> np.ndarray:
    """Category name per row: the SIZES categories (that fit) plus 'rest'."""
    order = np.argsort(clusters, kind="stable") if mode == "clustered" else np.random.default_rng(seed).permutation(n)
    names = np.full(n, "rest", dtype=object)
    start = 0
    for size in SIZES:
        if start + size > n:
            break
        names[order[start:start + size]] = f"c{size}"
        start += size
    return names


def time_it(fn, queries: np.ndarray) -> tuple[float, list]:
    results, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        results.append(fn(q))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, results


def build(n: int, seed: int, folder: Path) -> tuple[ProductIndex, np.ndarray, np.ndarray]:
    """The bundle of n products at `folder` (reused when it holds n), without category graphs: the
    measurement builds its own."""
    vectors, clusters = structured_vectors(n, seed=seed)
    if (folder / MANIFEST_FILE).is_file():
        index = ProductIndex.open(folder)
        if len(index) == n:
            print(f"reusing the index at {folder}", flush=True)
            return index, vectors, clusters
    builder = IndexBuilder(vectors.shape[1], "bench", switch=n + 1)
    builder.add([Product(id=f"p{i}", title=f"p{i}", category="rest", image=f"/x/{i}.jpg") for i in range(n)], vectors)
    t0 = time.perf_counter()
    builder.write(folder)
    print(f"built {n} in {time.perf_counter() - t0:.1f}s", flush=True)
    return ProductIndex.open(folder), vectors, clusters


def assign(index: ProductIndex, names: np.ndarray) -> None:
    """Give products new categories in place. The global graph does not depend on categories, so
    both assignments share one build (a benchmark shortcut through the index's internals)."""
    groups: dict[str, list[int]] = {}
    for label, name in enumerate(names):
        index._products[label] = index._products[label].model_copy(update={"category": name})
        groups.setdefault(name, []).append(label)
    index._members = {name: np.asarray(labels, dtype=np.int64) for name, labels in groups.items()}
    index._rows = {}
    index._graphs = {}


def filtered_walk(index: ProductIndex, q: np.ndarray, k: int, labels: np.ndarray) -> list:
    """The old path: the global graph walked with a filter to the category (exact when it comes back short)."""
    members = set(labels.tolist())
    found, distances = index._knn(index._hnsw, q, k, EF_FILTERED, members.__contains__)
    if found.shape[1] < k:
        return index._exact(q, labels, None, k, None)
    return [Hit(index._products[int(label)], 1.0 - float(distance), int(label))
            for label, distance in zip(found[0], distances[0])]


def run(index: ProductIndex, vectors: np.ndarray, clusters: np.ndarray, k: int, n_queries: int,
        mode: str, seed: int) -> list[dict]:
    n = len(index)
    assign(index, categories_for(n, clusters, mode, seed))
    rng = np.random.default_rng(seed + 1)
    queries = vectors[rng.choice(n, n_queries, replace=False)] + 0.02 * rng.standard_normal((n_queries, vectors.shape[1]))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    unfiltered, _ = time_it(lambda q: index.search(q, k), queries)
    print(f"[{mode}] unfiltered hnswlib {unfiltered:.2f} ms/query", flush=True)
    rows = []
    for name in sorted(index._members, key=lambda c: (c == "rest", len(c), c)):
        labels = index._members[name]
        matrix = index._category_rows(name)
        gather_ms, _ = time_it(lambda q, labels=labels: index._exact(q, labels, None, k, None), queries)
        exact_ms, exact = time_it(lambda q, labels=labels, matrix=matrix: index._exact(q, labels, matrix, k, None), queries)
        graph_ms, graph = time_it(lambda q, labels=labels: filtered_walk(index, q, k, labels), queries)
        t0 = time.perf_counter()
        own = build_graph(index._vectors, labels)
        own_build_s = time.perf_counter() - t0
        own_ms, own_hits = time_it(lambda q, labels=labels, own=own:
                                   index._walk(own, q, k, None, labels, EF_CATEGORY), queries)
        recall = _recall(graph, exact)
        own_recall = _recall(own_hits, exact)
        rows.append({"mode": mode, "size": labels.size, "gather_ms": gather_ms, "exact_ms": exact_ms,
                     "hnsw_ms": graph_ms, "recall": recall, "own_ms": own_ms, "own_recall": own_recall,
                     "own_build_s": own_build_s})
        print(f"[{mode}] {name:>7} size {labels.size:>6}: exact {exact_ms:6.2f} ms "
              f"(gathering rows per query {gather_ms:6.2f} ms)  category graph {own_ms:5.2f} ms recall@{k} "
              f"{own_recall:.3f} (built in {own_build_s:.1f} s)  hnsw filtered {graph_ms:6.2f} ms  "
              f"recall@{k} {recall:.3f}", flush=True)
    return rows


def _recall(found: list, exact: list) -> float:
    return float(np.mean([len({h.label for h in f} & {h.label for h in e}) / len(e) for f, e in zip(found, exact)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=24)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--mode", choices=("random", "clustered", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", type=Path, help="write the built index here, or load it if present")
    args = parser.parse_args()
    modes = ("random", "clustered") if args.mode == "both" else (args.mode,)
    with tempfile.TemporaryDirectory(prefix="moodboard-index-switch-") as scratch:
        index, vectors, clusters = build(args.n, args.seed, args.reuse or Path(scratch) / "index")
        rows = [row for mode in modes for row in run(index, vectors, clusters, args.k, args.queries, mode, args.seed)]
    print(f"\n| assignment | category size | exact numpy ms | exact, gathering rows per query ms "
          f"| category graph ms | category graph recall@{args.k} | category graph build s "
          f"| hnswlib filtered ms | filtered recall@{args.k} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['mode']} | {row['size']} | {row['exact_ms']:.2f} | {row['gather_ms']:.2f} "
              f"| {row['own_ms']:.2f} | {row['own_recall']:.3f} | {row['own_build_s']:.1f} "
              f"| {row['hnsw_ms']:.2f} | {row['recall']:.3f} |")


if __name__ == "__main__":
    main()
