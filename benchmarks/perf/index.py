"""Section 2, index: hnswlib (through moodboard.index.ProductIndex) against exact numpy search.

At each size (10k, 100k; 1M with --full) on STRUCTURED 512-d vectors (fixtures.structured_vectors:
clusters on a 32-d subspace plus noise, mean nearest-neighbour cosine ~0.87 like real CLIP
embeddings, measured and reported): build time, single-query p50, recall@10 against exact, memory.
At one size (100k; 1M with --full) the filtered search at 50/20/10/1 % category share against
exact search over the category's rows, and what ProductIndex.search does there (it searches a
category of at most `ProductIndex.switch` products exactly): whether the switch point is right.
Categories are assigned two ways: at random (independent of the clusters: members are scattered
over the whole graph) and as runs of whole clusters (as product types group in a real embedding
space, so most queries lie outside the category they search). Both are hard cases for a filtered
graph walk, in different ways.

The raw hnswlib figures go through ProductIndex._hnsw (the hnswlib object the index searches: a
benchmark shortcut); the exact baselines are plain numpy; ProductIndex.search is timed as shipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.perf import fixtures
from benchmarks.perf.common import Context, interleaved, mib, one_blas_thread, progress, row, time_once

K = 10
FILTER_SHARES = {"c50": 0.50, "c20": 0.20, "c10": 0.10, "c1": 0.01}
EF_SWEEP = (32, 64, 128)
RECALL_TARGET = 0.98
SPEEDUP_TARGET = 10.0
MAX_TIMED_FILTERED = 50  # timed queries per filtered path (exact over 500k rows takes ~0.5 s each)


def run(ctx: Context) -> dict[str, Any]:
    """Measure and return {"rows", "details", "notes"}."""
    from moodboard.index import EF_CONSTRUCTION, EF_SEARCH, SWITCH, M

    p = ctx.profile
    details: dict[str, Any] = {"k": K, "data": "structured (clustered, 32-d subspace + noise)",
                               "build": {"M": M, "ef_construction": EF_CONSTRUCTION, "ef_search": EF_SEARCH},
                               "switch": SWITCH, "sizes": {}}
    rows: list[dict] = []
    notes: list[str] = []
    for n in p.index_sizes:
        progress.print(f"  {n:,} vectors")
        size = _one_size(ctx, n, filtered=(n == p.filter_size))
        details["sizes"][str(n)] = size
        rows += _size_rows(n, size)
        if "filtered" in size:
            rows += _filtered_rows(n, size["filtered"], "random")
            rows += _filtered_rows(n, size["filtered_clustered"], "clustered")
            notes += _switch_verdict(n, size["filtered"], SWITCH, "random")
            notes += _switch_verdict(n, size["filtered_clustered"], SWITCH, "clustered")
    cosines = ", ".join(f"{s['nn_cosine']:.3f} at {int(n):,}" for n, s in details["sizes"].items())
    notes.insert(0, f"data: structured vectors, mean nearest-neighbour cosine {cosines}")
    return {"rows": rows, "details": details, "notes": notes}


def _record_bytes(categories: list[str], sample: int = 5_000) -> float:
    """Python heap bytes per product record (tracemalloc over building a sample of them)."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        records = fixtures.synthetic_products(min(sample, len(categories)), categories[:sample])
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return used / max(len(records), 1)


def _exact_topk(matrix: np.ndarray, queries: np.ndarray, k: int, chunk: int = 100_000) -> np.ndarray:
    """Exact top-k row numbers for a batch of queries (ground truth), in row chunks."""
    best_scores = np.full((queries.shape[0], 0), -np.inf, np.float32)
    best_ids = np.zeros((queries.shape[0], 0), np.int64)
    for start in range(0, matrix.shape[0], chunk):
        scores = queries @ matrix[start:start + chunk].T
        take = min(k, scores.shape[1])
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        best_scores = np.concatenate([best_scores, np.take_along_axis(scores, part, 1)], axis=1)
        best_ids = np.concatenate([best_ids, part + start], axis=1)
        keep = np.argsort(-best_scores, axis=1)[:, :k]
        best_scores, best_ids = np.take_along_axis(best_scores, keep, 1), np.take_along_axis(best_ids, keep, 1)
    return best_ids


def _recall(found: list[np.ndarray] | np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(map(int, f)) & set(map(int, t))) / len(t) for f, t in zip(found, truth)]))


def _exact_one(matrix: np.ndarray, q: np.ndarray, k: int = K) -> np.ndarray:
    """The exact baseline for one query: a matrix-vector product and a partial sort."""
    scores = matrix @ q
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top])]


def _cycling(fn: Callable[[np.ndarray], Any], queries: np.ndarray) -> Callable[[], Any]:
    it = itertools.cycle(queries)
    return lambda: fn(next(it))


def _one_size(ctx: Context, n: int, *, filtered: bool) -> dict[str, Any]:
    p = ctx.profile
    vectors, clusters = fixtures.structured_vectors(n, seed=ctx.seed, with_clusters=True)
    queries = fixtures.queries_near(vectors, min(p.index_queries, n), seed=ctx.seed)
    truth = _exact_topk(vectors, queries, K)
    categories = fixtures.category_names(n, FILTER_SHARES if filtered else {}, seed=ctx.seed)
    products = fixtures.synthetic_products(n, categories)
    build_s, index = time_once(lambda: fixtures.build_product_index(products, vectors, "bench"))
    hnsw = index._hnsw
    if index.label_of(products[-1].id) != n - 1:
        raise RuntimeError("ProductIndex no longer gives labels in insertion order; the recall figures assume it")
    out: dict[str, Any] = {
        "n": n, "nn_cosine": fixtures.mean_nn_cosine(vectors, seed=ctx.seed), "queries": int(queries.shape[0]),
        "build_s": round(build_s, 2), "build_vectors_per_s": round(n / build_s, 1),
        "memory": {"vectors_bytes": int(vectors.nbytes), "hnsw_bytes": int(hnsw.index_file_size()),
                   "product_records_bytes": int(_record_bytes(categories) * n)},
    }
    from moodboard.index import EF_SEARCH

    ef_default = EF_SEARCH
    sweep = {}
    for ef in EF_SWEEP:
        hnsw.set_ef(ef)
        labels, _ = hnsw.knn_query(queries, k=K, num_threads=1)
        sweep[str(ef)] = {"recall": _recall(labels, truth)}
    hnsw.set_ef(ef_default)
    contenders: dict[str, Any] = {
        "exact": _cycling(lambda q: _exact_one(vectors, q), queries),
        "hnsw": _cycling(lambda q: hnsw.knn_query(q, k=K, num_threads=1), queries),
        "ProductIndex.search": _cycling(lambda q: index.search(q, K), queries),
    }
    single = one_blas_thread()
    if single is not None:
        contenders["exact (1 BLAS thread)"] = (contenders["exact"], single)
    timings = interleaved(contenders, min(p.index_queries, 200))
    for ef in EF_SWEEP:
        hnsw.set_ef(ef)
        sweep[str(ef)]["p50_ms"] = interleaved({"hnsw": _cycling(lambda q: hnsw.knn_query(q, k=K, num_threads=1),
                                                                 queries)}, 100)["hnsw"]["p50"]
    hnsw.set_ef(ef_default)
    found = [np.array([h.label for h in index.search(q, K)]) for q in queries]
    out.update({
        "ef_search": ef_default, "latency_ms": timings, "ef_sweep": sweep,
        "recall": {"hnsw": sweep[str(ef_default)]["recall"] if str(ef_default) in sweep else None,
                   "ProductIndex.search": _recall(found, truth)},
        "exact_gb_per_s": round(vectors.nbytes / (timings["exact"]["p50"] / 1000) / 1e9, 2),
    })
    if filtered:
        out["filtered"] = _filtered(index, vectors, queries, categories)
        by_cluster = fixtures.category_names(n, FILTER_SHARES, seed=ctx.seed, clusters=clusters)
        out["filtered_clustered"] = _filtered(index, vectors, queries, by_cluster, shipped=False)
    return out


def _filtered(index: Any, vectors: np.ndarray, queries: np.ndarray, categories: list[str], *,
              shipped: bool = True) -> dict[str, Any]:
    """Per category share: exact over the category's rows (gathered per query, and from a
    pre-gathered contiguous matrix), hnswlib's filtered walk (raw, at the index's filtered ef), and
    ProductIndex.search (what ships: exact up to the switch, else the filtered walk). The index was
    built with the random assignment; for another assignment (`shipped=False`) ProductIndex.search
    is not timed and its recall follows its rule (1.0 up to the switch, else the walk's)."""
    names = np.asarray(categories, dtype=object)
    return {name: {"share": share, **_filtered_one(index, vectors, queries, name, np.nonzero(names == name)[0],
                                                   shipped=shipped)}
            for name, share in FILTER_SHARES.items()}


def _filtered_one(index: Any, vectors: np.ndarray, queries: np.ndarray, name: str, labels: np.ndarray, *,
                  shipped: bool) -> dict[str, Any]:
    """One category (its labels are row numbers: the index was built in order)."""
    import moodboard.index as index_module

    ef_filtered = getattr(index_module, "EF_FILTERED", index_module.EF_SEARCH)
    switch = getattr(index, "switch", index_module.SWITCH)
    hnsw = index._hnsw
    timed = queries[:MAX_TIMED_FILTERED]
    members = set(labels.tolist())
    sub = np.ascontiguousarray(vectors[labels])
    truth = labels[_exact_topk(sub, queries, K)]

    def walk(q: np.ndarray) -> np.ndarray:
        hnsw.set_ef(max(ef_filtered, K))
        try:
            return hnsw.knn_query(q, k=K, num_threads=1, filter=members.__contains__)[0][0]
        except RuntimeError:  # fewer than k found
            return np.zeros(0, np.int64)

    graph = [walk(q) for q in queries]
    contenders: dict[str, Any] = {
        "exact (gather rows)": _cycling(lambda q: _exact_one(vectors[labels], q), timed),
        "exact (contiguous)": _cycling(lambda q: _exact_one(sub, q), timed),
        "hnsw filtered": _cycling(walk, timed),
    }
    single = one_blas_thread()
    if single is not None:
        contenders["exact (contiguous, 1 BLAS thread)"] = (contenders["exact (contiguous)"], single)
    if shipped:
        contenders["ProductIndex.search"] = _cycling(lambda q: index.search(q, K, category=name), timed)
    timings = interleaved(contenders, timed.shape[0], block=5)
    path = "exact" if labels.size <= switch else "hnsw filtered"
    walk_recall = _recall(graph, truth)
    if shipped:
        index_recall = _recall([np.array([h.label for h in index.search(q, K, category=name)]) for q in queries], truth)
    else:
        index_recall = 1.0 if path == "exact" else walk_recall
    return {
        "size": int(labels.size), "ef": ef_filtered, "path": path, "latency_ms": timings,
        "recall": {"hnsw filtered": walk_recall, "ProductIndex.search": index_recall},
        "product_index": "measured" if shipped else "modelled (its rule applied to the measured paths)",
    }


def _size_rows(n: int, s: dict[str, Any]) -> list[dict]:
    lat, rec = s["latency_ms"], s["recall"]
    speedup = lat["exact"]["p50"] / lat["hnsw"]["p50"]
    big = n >= 100_000
    rows = [
        row(f"{n:,}: hnswlib query p50 (k={K})", lat["hnsw"]["p50"], "ms", baseline="exact numpy",
            baseline_value=lat["exact"]["p50"],
            target=f">= {SPEEDUP_TARGET:.0f}x faster than exact" if n == 100_000 else None,
            met=speedup >= SPEEDUP_TARGET if n == 100_000 else None,
            note=f"exact scans {s['exact_gb_per_s']} GB/s (memory bandwidth bound)"
                 + (f"; with 1 BLAS thread {lat['exact (1 BLAS thread)']['p50']:.2f} ms"
                    if "exact (1 BLAS thread)" in lat else "")),
        row(f"{n:,}: hnswlib recall@{K} (ef={s['ef_search']})", rec["hnsw"], "", baseline="exact", baseline_value=1.0,
            better="higher", target=f">= {RECALL_TARGET}" if big else None,
            met=rec["hnsw"] >= RECALL_TARGET if big else None,
            note="ef " + ", ".join(f"{ef}: {v['recall']:.3f} / {v['p50_ms']:.2f} ms"
                                   for ef, v in s["ef_sweep"].items())),
        row(f"{n:,}: ProductIndex.search p50 (incl. Hit records)", lat["ProductIndex.search"]["p50"], "ms",
            baseline="raw hnswlib", baseline_value=lat["hnsw"]["p50"], ratio_kind="relative",
            note=f"recall {rec['ProductIndex.search']:.3f}"),
        row(f"{n:,}: build (ProductIndex upserts, all cores)", s["build_s"], "s", baseline="exact needs no build",
            note=f"{s['build_vectors_per_s']:,.0f} vectors/s"),
        row(f"{n:,}: memory, hnswlib graph + vectors", mib(s["memory"]["hnsw_bytes"]), "MiB",
            baseline="exact: vectors only", baseline_value=mib(s["memory"]["vectors_bytes"]), ratio_kind="relative",
            note=f"ProductIndex holds the graph, its own copy of the vectors and the product records "
                 f"(~{mib(s['memory']['product_records_bytes']):,.0f} MiB): ~"
                 f"{mib(sum(s['memory'].values())):,.0f} MiB in all"),
    ]
    return rows


def _filtered_rows(n: int, filtered: dict[str, Any], assignment: str) -> list[dict]:
    rows = []
    for f in filtered.values():
        lat, rec = f["latency_ms"], f["recall"]
        label = f"{n:,}, {f['share'] * 100:g}% category ({f['size']:,}, {assignment})"
        rows.append(row(f"{label}: hnswlib filtered p50", lat["hnsw filtered"]["p50"], "ms",
                        baseline="exact over the category's rows", baseline_value=lat["exact (contiguous)"]["p50"],
                        note=f"recall {rec['hnsw filtered']:.3f}; exact gathering scattered rows per query "
                             f"{lat['exact (gather rows)']['p50']:.2f} ms"
                             + (f"; exact with 1 BLAS thread {lat['exact (contiguous, 1 BLAS thread)']['p50']:.2f} ms"
                                if "exact (contiguous, 1 BLAS thread)" in lat else "")))
        rows.append(row(f"{label}: ProductIndex.search recall@{K} ({f['path']})", rec["ProductIndex.search"], "",
                        baseline="exact", baseline_value=1.0, better="higher", target=f">= {RECALL_TARGET}",
                        met=rec["ProductIndex.search"] >= RECALL_TARGET,
                        note=f"p50 {lat['ProductIndex.search']['p50']:.2f} ms" if "ProductIndex.search" in lat
                        else "modelled: the index's rule on the measured paths"))
    return rows


def _switch_verdict(n: int, filtered: dict[str, Any], switch: int, assignment: str) -> list[str]:
    """Is ProductIndex.switch between the largest category where exact search wins and the smallest
    where hnswlib's filtered walk wins (with recall >= RECALL_TARGET)? Exact is taken from
    contiguous rows, as the index keeps a contiguous copy of each category it searches exactly.
    Also estimates the crossover: exact costs ~a*m for a category of m rows, the filtered walk
    ~b*n/m (it visits about n/m nodes per node that passes), so they meet at m = sqrt(b*n/a)."""
    points = sorted((f["size"], f["latency_ms"]["exact (contiguous)"]["p50"], f["latency_ms"]["hnsw filtered"]["p50"],
                     f["recall"]["hnsw filtered"]) for f in filtered.values())
    hnsw_wins = [size for size, exact, graph, recall in points if graph < exact and recall >= RECALL_TARGET]
    exact_wins = [size for size, *_ in points if size not in hnsw_wins]
    sizes = np.array([pt[0] for pt in points], float)
    a = float(np.sum(sizes * [pt[1] for pt in points]) / np.sum(sizes * sizes))
    b = float(np.mean([pt[2] * pt[0] / n for pt in points]))
    crossover = (b * n / a) ** 0.5
    estimate = f"fitted crossover ~{crossover:,.0f} products (exact {a * 1000:.2f} us/row, walk {b:.2f} ms / share)"
    if not hnsw_wins:
        return [(f"{assignment} categories: at {n:,} exact search won at every measured category size up to "
                 f"{points[-1][0]:,}; {estimate}; the switch {switch:,} is "
                 f"{'right' if switch >= points[-1][0] else 'too low'}")]
    lo = max([s for s in exact_wins if s < min(hnsw_wins)], default=0)
    hi = min(hnsw_wins)
    verdict = "right (between them)" if lo <= switch < hi else "outside that bracket"
    return [(f"{assignment} categories: at {n:,} exact search (contiguous rows) wins up to {lo:,} products, "
             f"hnswlib filtered from {hi:,}: the switch {switch:,} is {verdict}; {estimate}")]
