"""Section 2, index: hnswlib (through moodboard.index.ProductIndex) against exact numpy search.

At each size (10k, 100k; 1M with --full) on STRUCTURED 512-d vectors (fixtures.structured_vectors:
clusters on a 32-d subspace plus noise, mean nearest-neighbour cosine ~0.87 like real CLIP
embeddings, measured and reported): build time, single-query p50, recall@10 against exact, memory.

At one size (100k; 1M with --full) the category search at 50/20/10/1 % share, for two category
assignments: at random (independent of the clusters: members are scattered over the whole graph)
and as runs of whole clusters (as product types group in a real embedding space, so most queries
lie outside the category they search). Per share, side by side: exact search over the category's
rows (the baseline and the ground truth), what ProductIndex.search does (exact up to its switch, a
graph of the category's own above it), the category's own graph alone (also below the switch,
built for the comparison: is the switch right?), and the global graph's filtered walk, which
ProductIndex used above the switch before category graphs (the old baseline). Per assignment: what
the category graphs cost to build and hold, against the global graph alone.

Each index is a bundle written by moodboard.index.IndexBuilder and loaded as the search function
loads it; the builder's step timings give the global graph's build time and the category graphs'
cost. At the filtered size the random assignment's bundle serves the unfiltered figures too (the
global graph does not depend on categories); the clustered assignment is a second bundle of the same
vectors. The raw hnswlib figures go through ProductIndex internals (`_hnsw`, `_graphs`: a benchmark
shortcut) and builder.build_graph; exact baselines are plain numpy; ProductIndex.search is timed as
shipped.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.perf import fixtures
from benchmarks.perf.common import Context, interleaved, mib, one_blas_thread, progress, row, time_once

K = 10
FILTER_SHARES = {"c50": 0.50, "c20": 0.20, "c10": 0.10, "c1": 0.01}
EF_SWEEP = (32, 64, 128)
CATEGORY_EF_SWEEP = (256, 1024, 4096)
RECALL_TARGET = 0.98
SPEEDUP_TARGET = 10.0
MAX_TIMED_FILTERED = 50  # timed queries per filtered path (exact over 500k rows takes ~0.5 s each)
MAX_WALK_RECALL = 100  # queries for the old filtered walk's recall (a 1 % walk at 1M takes ~0.4 s each)
# The beam of the old path measured against: the global graph's walk filtered to a category.
EF_FILTERED = 256


def run(ctx: Context, *, sizes: tuple[int, ...] | None = None,
        assignments: tuple[str, ...] = ("random", "clustered")) -> dict[str, Any]:
    """Measure and return {"rows", "details", "notes"}: the profile's sizes, or only `sizes`, with
    the filtered figures for `assignments` at the profile's filter size."""
    from moodboard.index import manifest as index_module

    p = ctx.profile
    switch = _switch_for(ctx)
    details: dict[str, Any] = {"k": K, "data": "structured (clustered, 32-d subspace + noise)",
                               "build": {name.lower(): getattr(index_module, name) for name in
                                         ("M", "EF_CONSTRUCTION", "EF_SEARCH", "EF_CATEGORY",
                                          "EF_CATEGORY_OUTSIDE", "OUTSIDE_GAP")},
                               "switch": switch, "shipped_switch": index_module.SWITCH,
                               "assignments": list(assignments), "sizes": {}}
    rows: list[dict] = []
    notes: list[str] = []
    if switch != index_module.SWITCH:
        notes.append(f"quick mode: switch lowered from {index_module.SWITCH:,} to {switch:,} so that some "
                     f"categories get their own graph at {p.filter_size:,} products")
    for n in sizes or p.index_sizes:
        progress.print(f"  {n:,} vectors")
        size = _one_size(ctx, n, filtered=(n == p.filter_size), switch=switch, assignments=assignments)
        details["sizes"][str(n)] = size
        rows += _size_rows(n, size)
        for key, assignment in (("filtered", "random"), ("filtered_clustered", "clustered")):
            if key in size:
                rows += _graph_cost_rows(n, size[f"{key}_graphs"], size, assignment)
                rows += _filtered_rows(n, size[key], assignment)
                notes += _switch_verdict(n, size[key], switch, assignment)
    cosines = ", ".join(f"{s['nn_cosine']:.3f} at {int(n):,}" for n, s in details["sizes"].items())
    notes.insert(0, f"data: structured vectors, mean nearest-neighbour cosine {cosines}")
    return {"rows": rows, "details": details, "notes": notes}


def _switch_for(ctx: Context) -> int:
    """The shipped switch; quick mode's 2k index lowers it so its largest categories get graphs."""
    from moodboard.index.manifest import SWITCH

    return SWITCH if not ctx.quick else max(50, ctx.profile.filter_size // 8)


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


def _rss_bytes() -> int:
    """This process's resident set size (VmRSS), 0 where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


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


def _build(folder: Path, name: str, products: list, vectors: np.ndarray, switch: int) -> tuple[Any, dict[str, Any]]:
    """An index bundle of these products written with this switch and loaded; and what building it
    cost: the global graph's seconds, the category graphs' seconds, nodes and file bytes, and how much
    the process's RSS grew meanwhile."""
    from moodboard.index import ProductIndex

    rss_before = _rss_bytes()
    builder = fixtures.write_product_index(folder / name, products, vectors, "bench", switch=switch)
    index = ProductIndex.open(folder / name, verify=False)
    graphs = index.manifest.graphs
    elements = sum(entry.elements for entry in graphs)
    seconds = builder.seconds["category graphs"]
    return index, {
        "global_s": builder.seconds["global graph"], "build_s": round(seconds, 2), "elements": int(elements),
        "vectors_per_s": round(elements / seconds, 1) if seconds > 0 and elements else None,
        "bytes": int(sum((folder / name / entry.file).stat().st_size for entry in graphs)),
        "rss_growth_bytes": max(0, _rss_bytes() - rss_before),
        "categories": {entry.category: entry.count for entry in graphs},
    }


def _one_size(ctx: Context, n: int, *, filtered: bool, switch: int,
              assignments: tuple[str, ...] = ("random", "clustered")) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="moodboard-bench-index-") as folder:
        return _measure_size(ctx, n, Path(folder), filtered=filtered, switch=switch, assignments=assignments)


def _measure_size(ctx: Context, n: int, folder: Path, *, filtered: bool, switch: int,
                  assignments: tuple[str, ...]) -> dict[str, Any]:
    """The figures of one size. At the filtered size the bundle has the random categories and the
    switch (its global graph serves the unfiltered figures); at the others no category graph."""
    from moodboard.index.manifest import EF_SEARCH

    p = ctx.profile
    vectors, clusters = fixtures.structured_vectors(n, seed=ctx.seed, with_clusters=True)
    queries = fixtures.queries_near(vectors, min(p.index_queries, n), seed=ctx.seed)
    truth = _exact_topk(vectors, queries, K)
    categories = fixtures.category_names(n, FILTER_SHARES if filtered else {}, seed=ctx.seed)
    products = fixtures.synthetic_products(n, categories)
    random_filtered = filtered and "random" in assignments
    index, cost = _build(folder, "random", products, vectors, switch if random_filtered else n + 1)
    build_s = cost["global_s"]
    hnsw = index._hnsw
    if index.label_of(products[-1].id) != n - 1:
        raise RuntimeError("ProductIndex no longer gives labels in insertion order; the recall figures assume it")
    out: dict[str, Any] = {
        "n": n, "nn_cosine": fixtures.mean_nn_cosine(vectors, seed=ctx.seed), "queries": int(queries.shape[0]),
        "build_s": round(build_s, 2), "build_vectors_per_s": round(n / build_s, 1),
        "memory": {"vectors_bytes": int(vectors.nbytes), "hnsw_bytes": int(hnsw.index_file_size()),
                   "product_records_bytes": int(_record_bytes(categories) * n)},
    }
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
    if random_filtered:
        out["filtered_graphs"] = cost
        out["filtered"] = _filtered(index, vectors, queries, categories)
    if filtered and "clustered" in assignments:
        progress.print("    clustered categories: a second bundle of the same vectors")
        by_cluster = fixtures.category_names(n, FILTER_SHARES, seed=ctx.seed, clusters=clusters)
        index, out["filtered_clustered_graphs"] = _build(folder, "clustered", fixtures.synthetic_products(n, by_cluster),
                                                         vectors, switch)
        out["filtered_clustered"] = _filtered(index, vectors, queries, by_cluster)
    return out


def _filtered(index: Any, vectors: np.ndarray, queries: np.ndarray, categories: list[str]) -> dict[str, Any]:
    """Per category share: exact over the category's rows (gathered per query, and from a
    pre-gathered contiguous matrix), ProductIndex.search (what ships), the category's own graph
    (ProductIndex's above the switch; a throw-away one with the same parameters below it), and the
    old path, the global graph's filtered walk at EF_FILTERED."""
    names = np.asarray(categories, dtype=object)
    return {name: {"share": share, **_filtered_one(index, vectors, queries, name, np.nonzero(names == name)[0])}
            for name, share in FILTER_SHARES.items()}


def _filtered_one(index: Any, vectors: np.ndarray, queries: np.ndarray, name: str, labels: np.ndarray) -> dict[str, Any]:
    """One category (its labels are row numbers: the index was built in order)."""
    from moodboard.index.builder import build_graph
    from moodboard.index.manifest import EF_CATEGORY, EF_CATEGORY_OUTSIDE

    hnsw = index._hnsw
    timed = queries[:MAX_TIMED_FILTERED]
    members = set(labels.tolist())
    sub = np.ascontiguousarray(vectors[labels])
    truth = labels[_exact_topk(sub, queries, K)]
    shipped_graph = name in index._graphs
    if shipped_graph:
        graph, graph_build_s = index._graphs[name], None
    else:
        graph_build_s, graph = time_once(lambda: build_graph(index._vectors, labels))

    def walk(q: np.ndarray) -> np.ndarray:
        hnsw.set_ef(max(EF_FILTERED, K))
        try:
            return hnsw.knn_query(q, k=K, num_threads=1, filter=members.__contains__)[0][0]
        except RuntimeError:  # fewer than k found
            return np.zeros(0, np.int64)

    def own(q: np.ndarray, ef: int = EF_CATEGORY) -> np.ndarray:
        graph.set_ef(max(ef, K))
        return graph.knn_query(q, k=K, num_threads=1)[0][0]

    contenders: dict[str, Any] = {
        "exact (gather rows)": _cycling(lambda q: _exact_one(vectors[labels], q), timed),
        "exact (contiguous)": _cycling(lambda q: _exact_one(sub, q), timed),
        "hnsw filtered": _cycling(walk, timed),
        "category graph": _cycling(own, timed),
        "ProductIndex.search": _cycling(lambda q: index.search(q, K, category=name), timed),
    }
    single = one_blas_thread()
    if single is not None:
        contenders["exact (contiguous, 1 BLAS thread)"] = (contenders["exact (contiguous)"], single)
    timings = interleaved(contenders, timed.shape[0], block=5)
    walk_queries = queries[:MAX_WALK_RECALL]
    graph_sweep = {str(ef): _recall([own(q, ef) for q in queries], truth) for ef in CATEGORY_EF_SWEEP}
    graph.set_ef(EF_CATEGORY)
    outside = [index._outside(q, 1.0 - float(graph.knn_query(q, k=1, num_threads=1)[1][0][0])) for q in queries]
    return {
        "size": int(labels.size), "path": "category graph" if shipped_graph else "exact",
        "ef_filtered": EF_FILTERED, "ef_category": EF_CATEGORY, "ef_category_outside": EF_CATEGORY_OUTSIDE,
        "outside_share": float(np.mean(outside)), "latency_ms": timings,
        "recall": {"hnsw filtered": _recall([walk(q) for q in walk_queries], truth[:MAX_WALK_RECALL]),
                   "category graph": graph_sweep[str(EF_CATEGORY)],
                   "ProductIndex.search": _recall([np.array([h.label for h in index.search(q, K, category=name)])
                                                   for q in queries], truth)},
        "category_graph_ef_sweep": graph_sweep, "category_graph": "shipped" if shipped_graph else "built for the comparison",
        "category_graph_build_s": None if graph_build_s is None else round(graph_build_s, 2),
        "walk_recall_queries": int(walk_queries.shape[0]),
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
        row(f"{n:,}: build (IndexBuilder, all cores)", s["build_s"], "s", baseline="exact needs no build",
            note=f"{s['build_vectors_per_s']:,.0f} vectors/s; global graph only"),
        row(f"{n:,}: memory, hnswlib graph + vectors", mib(s["memory"]["hnsw_bytes"]), "MiB",
            baseline="exact: vectors only", baseline_value=mib(s["memory"]["vectors_bytes"]), ratio_kind="relative",
            note=f"ProductIndex holds the graph, its own copy of the vectors and the product records "
                 f"(~{mib(s['memory']['product_records_bytes']):,.0f} MiB): ~"
                 f"{mib(sum(s['memory'].values())):,.0f} MiB in all, before category graphs"),
    ]
    return rows


def _graph_cost_rows(n: int, g: dict[str, Any], s: dict[str, Any], assignment: str) -> list[dict]:
    """Build time and memory of the index with its category graphs against the global graph alone."""
    cats = ", ".join(f"{name} {count:,}" for name, count in g["categories"].items()) or "none"
    base_mem = s["memory"]["hnsw_bytes"] + s["memory"]["vectors_bytes"]
    rate = f"{g['vectors_per_s']:,.0f} vectors/s" if g["vectors_per_s"] else "no graph built"
    return [
        row(f"{n:,} ({assignment}): build with category graphs", s["build_s"] + g["build_s"], "s",
            baseline="global graph only", baseline_value=s["build_s"], ratio_kind="relative",
            note=f"category graphs {g['build_s']:.1f} s for {g['elements']:,} vectors ({rate}): {cats}"),
        row(f"{n:,} ({assignment}): memory, graphs + vectors with category graphs", mib(base_mem + g["bytes"]), "MiB",
            baseline="global graph + vectors", baseline_value=mib(base_mem), ratio_kind="relative",
            note=f"category graphs {mib(g['bytes']):,.0f} MiB (file size; process RSS grew "
                 f"{mib(g['rss_growth_bytes']):,.0f} MiB while the bundle was built and loaded)"),
    ]


def _filtered_rows(n: int, filtered: dict[str, Any], assignment: str) -> list[dict]:
    rows = []
    for f in filtered.values():
        lat, rec = f["latency_ms"], f["recall"]
        label = f"{n:,}, {f['share'] * 100:g}% category ({f['size']:,}, {assignment})"
        sweep = ", ".join(f"ef {ef}: {r:.3f}" for ef, r in f["category_graph_ef_sweep"].items())
        sweep += (f"; {f['outside_share']:.0%} of the queries lie outside it (searched again at ef "
                  f"{f['ef_category_outside']})")
        rows.append(row(f"{label}: ProductIndex.search recall@{K} ({f['path']})", rec["ProductIndex.search"], "",
                        baseline="old path: filtered walk of the global graph", baseline_value=rec["hnsw filtered"],
                        better="higher", target=f">= {RECALL_TARGET}", met=rec["ProductIndex.search"] >= RECALL_TARGET,
                        note=f"category graph alone ({f['category_graph']}) {sweep}"))
        rows.append(row(f"{label}: ProductIndex.search p50 ({f['path']})", lat["ProductIndex.search"]["p50"], "ms",
                        baseline="exact over the category's rows", baseline_value=lat["exact (contiguous)"]["p50"],
                        note=f"category graph alone {lat['category graph']['p50']:.2f} ms; exact gathering "
                             f"scattered rows per query {lat['exact (gather rows)']['p50']:.2f} ms"
                             + (f"; exact with 1 BLAS thread {lat['exact (contiguous, 1 BLAS thread)']['p50']:.2f} ms"
                                if "exact (contiguous, 1 BLAS thread)" in lat else "")))
        rows.append(row(f"{label}: old path, hnswlib filtered walk p50", lat["hnsw filtered"]["p50"], "ms",
                        baseline="exact over the category's rows", baseline_value=lat["exact (contiguous)"]["p50"],
                        note=f"recall {rec['hnsw filtered']:.3f} ({f['walk_recall_queries']} queries, ef "
                             f"{f['ef_filtered']})"))
    return rows


def _switch_verdict(n: int, filtered: dict[str, Any], switch: int, assignment: str) -> list[str]:
    """Is the switch between the largest category where exact search (contiguous rows, as the index
    keeps them) wins and the smallest where one walk of a category graph at EF_CATEGORY wins (with
    recall >= RECALL_TARGET)? Exact costs ~a*m for a category of m rows and a graph walk about the
    same at every size, so they meet near m = graph / a. (ProductIndex walks a category graph a
    second time, at a wider beam, for queries outside the category: its own rows show that.)"""
    points = sorted((f["size"], f["latency_ms"]["exact (contiguous)"]["p50"], f["latency_ms"]["category graph"]["p50"],
                     f["recall"]["category graph"]) for f in filtered.values())
    graph_wins = [size for size, exact, graph, recall in points if graph < exact and recall >= RECALL_TARGET]
    sizes = np.array([pt[0] for pt in points], float)
    a = float(np.sum(sizes * [pt[1] for pt in points]) / np.sum(sizes * sizes))
    graph_ms = float(np.median([pt[2] for pt in points]))
    estimate = (f"fitted crossover ~{graph_ms / a:,.0f} products (exact {a * 1000:.2f} us/row, "
                f"one category graph walk ~{graph_ms:.2f} ms)")
    lowest = min((recall for *_, recall in points), default=1.0)
    if not graph_wins:
        return [(f"{assignment} categories: at {n:,} exact search won at every measured category size up to "
                 f"{points[-1][0]:,}; {estimate}; one walk's recall >= {lowest:.3f}")]
    lo = max([s for s, *_ in points if s < min(graph_wins)], default=0)
    hi = min(graph_wins)
    if lo <= switch < hi:
        where = "right (between them)"
    elif switch >= hi:
        where = ("above them: exact search up to the switch costs more than a graph walk, but gives recall 1.0 "
                 "and needs no second copy of the vectors")
    else:
        where = "below them: exact search would still be faster above it"
    return [(f"{assignment} categories: at {n:,} exact search (contiguous rows) wins up to {lo:,} products, one category "
             f"graph walk from {hi:,}; the switch {switch:,} is {where}; {estimate}; one walk's recall >= {lowest:.3f}")]


def main(argv: list[str] | None = None) -> int:
    """The index section alone, at chosen sizes and category assignments (a trimmed --full run):

        python -m benchmarks.perf.index --full --size 1000000 --assignments clustered --out F.json
    """
    import argparse
    import time
    from datetime import UTC, datetime
    from pathlib import Path

    from benchmarks.perf import machine
    from benchmarks.perf.common import PROFILES, ensure_path, load_average
    from benchmarks.perf.proc import OthersCpu
    from benchmarks.perf.run import write

    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.index", description=main.__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full profile (filtered figures at 1M)")
    parser.add_argument("--size", type=int, action="append", help="index size (repeatable; default: the profile's)")
    parser.add_argument("--assignments", default="random,clustered", help="random, clustered or both")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ensure_path()
    ctx = Context(PROFILES["full" if args.full else "default"], seed=args.seed)
    assignments = tuple(a.strip() for a in args.assignments.split(",") if a.strip())
    started = time.perf_counter()
    report: dict[str, Any] = {"suite": "moodboard perf (issue 6), index section only", "mode": ctx.profile.name,
                              "profile": ctx.profile.__dict__, "sizes": args.size, "assignments": list(assignments),
                              "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "machine": machine.describe(), "sections": {}}
    before, others = load_average(), OthersCpu()
    with others:
        result = run(ctx, sizes=tuple(args.size) if args.size else None, assignments=assignments)
    result.update({"seconds": round(time.perf_counter() - started, 1),
                   "load_average": {"before": before, "after": load_average()},
                   "others_cpu_share": None if others.share is None else round(others.share, 3)})
    report["sections"]["index"] = result
    write(report, args.out, started, complete=True)
    progress.print(f"figures written to {args.out} (tables as Markdown: {args.out.with_suffix('.md')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
