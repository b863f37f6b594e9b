"""The catalog evaluation: how well a model bundle retrieves products of the right type.

Everything here works on an `EvalSet` (product ids, categories and their precomputed image
embeddings) plus a text-embedding callable, so tests inject fixed embeddings in place of a model
and the CLI passes vectors cached in an index bundle plus `Embedder.embed_texts`. Relevance is the
catalog's own label: a result is relevant when it has the query's category.

- zero-shot text-to-image: "a photo of a <category>" ranks the WHOLE catalog;
- image-to-image: sampled catalog images are held out (embedded, but not candidates) and query the
  rest; same-category precision@k;
- gist diagnostics: the blended query (w_image * image + w_type * type prompt) searched through a
  real ProductIndex with the category filter on: in-category share (must be 1.0), near-copy rate
  against the query image, diversity of the top k (mean pairwise cosine), mean similarity to the
  query image, and the same-category share of the same query without the filter;
- a sweep of those diagnostics over w_type with w_image fixed.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from moodboard.catalog import Product
from moodboard.index import IndexBuilder, ProductIndex
from moodboard.vectors import Vector, l2_normalize

from benchmarks.quality import metrics

logger = logging.getLogger(__name__)

TextEmbed = Callable[[Sequence[str]], Vector]
PromptFn = Callable[[str], str]

PRECISION_K = 10
RECALL_K = 50
DIVERSITY_K = 10
DEFAULT_QUERIES = 100
DEFAULT_SWEEP = (0.0, 0.25, 0.5, 1.0, 2.0)
EXAMPLE_RESULTS = 5
EXAMPLE_QUERIES = 6
SEED = 7
FINGERPRINT_INJECTED = "injected-embeddings"


def default_prompt(category: str) -> str:
    """The product-type prompt the search API uses (moodboard.query.type_prompt)."""
    from moodboard.query import type_prompt

    return type_prompt(category)


@dataclass
class EvalSet:
    """Products with their categories and L2-normalised image embeddings (row i = product i)."""

    ids: list[str]
    categories: list[str]
    vectors: Vector
    products: list[Product] = field(default_factory=list)
    fingerprint: str = FINGERPRINT_INJECTED

    def __post_init__(self) -> None:
        self.vectors = l2_normalize(np.asarray(self.vectors, dtype=np.float32))
        if not (len(self.ids) == len(self.categories) == self.vectors.shape[0]):
            raise ValueError(
                f"{len(self.ids)} ids, {len(self.categories)} categories, {self.vectors.shape[0]} vectors"
            )
        if not self.products:
            self.products = [
                Product(id=pid, title=pid, category=cat, image=f"injected:{pid}")
                for pid, cat in zip(self.ids, self.categories)
            ]
        self._labels = np.asarray(self.categories, dtype=object)

    @classmethod
    def from_index(cls, index: ProductIndex, *, ignore: Iterable[str] = ()) -> EvalSet:
        """The products and stored vectors of an index bundle, minus the ignored categories."""
        skip = set(ignore)
        products = [p for p in index.products() if p.category not in skip]
        vectors = index.vectors_at([index.label_of(p.id) for p in products])
        return cls(
            ids=[p.id for p in products],
            categories=[p.category for p in products],
            vectors=vectors,
            products=products,
            fingerprint=index.manifest.model_fingerprint,
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def category_names(self) -> list[str]:
        """Categories, largest first (ties by name)."""
        counts = self.category_counts()
        return sorted(counts, key=lambda c: (-counts[c], c))

    def category_counts(self) -> dict[str, int]:
        names, counts = np.unique(self._labels.astype(str), return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts)}

    def is_category(self, category: str) -> np.ndarray:
        """Boolean mask of the rows in a category."""
        return self._labels == category


# --- zero-shot text-to-image ----------------------------------------------------------------------


def zero_shot(data: EvalSet, embed_text: TextEmbed, *, prompt: PromptFn = default_prompt,
              k_precision: int = PRECISION_K, k_recall: int = RECALL_K,
              examples: int = EXAMPLE_RESULTS) -> dict[str, Any]:
    """Rank the whole catalog by each category's prompt; precision@k, recall@k and AP per
    category, their means over categories (AP's mean is mAP)."""
    categories = data.category_names()
    prompts = [prompt(c) for c in categories]
    texts = l2_normalize(embed_text(prompts))
    by_category: dict[str, dict[str, Any]] = {}
    for category, text, vector in zip(categories, prompts, texts):
        scores = data.vectors @ vector
        order = np.argsort(-scores, kind="stable")
        relevant = data.is_category(category)[order]
        n = int(relevant.sum())
        by_category[category] = {
            "prompt": text,
            "count": n,
            f"precision_at_{k_precision}": metrics.precision_at_k(relevant, k_precision),
            f"recall_at_{k_recall}": metrics.recall_at_k(relevant, k_recall, n),
            "average_precision": metrics.average_precision(relevant, n),
            "top": [data.ids[i] for i in order[:examples]],
            "top_scores": [round(float(scores[i]), 4) for i in order[:examples]],
        }
    overall = {
        f"precision_at_{k_precision}": _mean(r[f"precision_at_{k_precision}"] for r in by_category.values()),
        f"recall_at_{k_recall}": _mean(r[f"recall_at_{k_recall}"] for r in by_category.values()),
        "map": _mean(r["average_precision"] for r in by_category.values()),
        "categories": len(by_category),
        "chance_precision": _mean(r["count"] / len(data) for r in by_category.values()) if len(data) else None,
    }
    return {"by_category": by_category, "overall": overall, "k_precision": k_precision, "k_recall": k_recall}


# --- image-to-image -------------------------------------------------------------------------------


def sample_queries(data: EvalSet, n: int, *, seed: int = SEED) -> np.ndarray:
    """Row indices of up to n held-out query images, spread round-robin over the categories so
    small ones are represented; a category always keeps at least one candidate."""
    rng = np.random.default_rng(seed)
    pools = {c: list(rng.permutation(np.flatnonzero(data.is_category(c)))) for c in sorted(data.category_counts())}
    budget = {c: max(len(rows) - 1, 0) for c, rows in pools.items()}
    chosen: list[int] = []
    while len(chosen) < n and any(budget.values()):
        for category in sorted(pools):
            if len(chosen) >= n:
                break
            if budget[category]:
                chosen.append(int(pools[category].pop()))
                budget[category] -= 1
    return np.asarray(sorted(chosen), dtype=np.int64)


def candidate_mask(data: EvalSet, queries: np.ndarray) -> np.ndarray:
    """True for rows that may be returned (everything but the held-out queries)."""
    mask = np.ones(len(data), dtype=bool)
    mask[queries] = False
    return mask


def image_to_image(data: EvalSet, queries: np.ndarray, *, k: int = PRECISION_K) -> dict[str, Any]:
    """Same-category precision@k of each held-out query image over the remaining catalog."""
    candidates = np.flatnonzero(candidate_mask(data, queries))
    labels = np.asarray(data.categories, dtype=object)
    per_query: list[tuple[str, float, float]] = []
    for q in queries:
        scores = data.vectors[candidates] @ data.vectors[q]
        order = candidates[np.argsort(-scores, kind="stable")]
        relevant = labels[order] == data.categories[q]
        n = int(relevant.sum())
        per_query.append((data.categories[q], metrics.precision_at_k(relevant, k),
                          metrics.average_precision(relevant, n)))
    by_category: dict[str, dict[str, Any]] = {}
    for category in sorted({c for c, _, _ in per_query}):
        rows = [(p, ap) for c, p, ap in per_query if c == category]
        by_category[category] = {"queries": len(rows), f"precision_at_{k}": _mean(p for p, _ in rows),
                                 "average_precision": _mean(ap for _, ap in rows)}
    overall = {
        "queries": len(per_query),
        f"precision_at_{k}": _mean(p for _, p, _ in per_query),
        f"precision_at_{k}_by_category_mean": _mean(r[f"precision_at_{k}"] for r in by_category.values()),
        "map": _mean(ap for _, _, ap in per_query),
    }
    return {"by_category": by_category, "overall": overall, "k": k, "held_out": len(queries),
            "candidates": int(candidates.size)}


# --- gist diagnostics through the real filtered search ---------------------------------------------


def candidate_index(data: EvalSet, queries: np.ndarray) -> ProductIndex:
    """A ProductIndex over every product except the held-out queries: the real search path
    (category filter, exact or hnswlib) the diagnostics go through. The bundle is written to a
    temporary folder and read back; the folder goes once it is loaded (the vectors stay mapped)."""
    rows = np.flatnonzero(candidate_mask(data, queries))
    builder = IndexBuilder(data.dim, data.fingerprint)
    builder.add([data.products[i] for i in rows], data.vectors[rows])
    with tempfile.TemporaryDirectory(prefix="moodboard-eval-") as folder:
        builder.write(Path(folder) / "index")
        return ProductIndex.open(Path(folder) / "index", verify=False)


def blend(image: Vector, type_vector: Vector, *, w_image: float, w_type: float) -> Vector:
    """The gist query without free text: normalize(w_image * image + w_type * type prompt)."""
    return l2_normalize(w_image * np.asarray(image, np.float32) + w_type * np.asarray(type_vector, np.float32))


def gist_diagnostics(data: EvalSet, index: ProductIndex, type_vectors: dict[str, Vector], queries: np.ndarray, *,
                     w_image: float, w_type: float, near_copy_threshold: float,
                     k: int = DIVERSITY_K, examples: int = 0) -> dict[str, Any]:
    """Search each held-out query's blended vector within its category through `index` and measure
    what a shopper would see in the top k (before the near-copy drop, so the rate shows how often
    the drop has work to do)."""
    row_of = {pid: i for i, pid in enumerate(data.ids)}
    in_category: list[float] = []
    near_copy: list[float] = []
    diversity: list[float] = []
    similarity: list[float] = []
    unfiltered: list[float] = []
    shown: list[dict[str, Any]] = []
    for q in queries:
        category = data.categories[q]
        image = data.vectors[q]
        query = blend(image, type_vectors[category], w_image=w_image, w_type=w_type)
        hits = index.search(query, k, category=category)
        if not hits:
            continue
        rows = np.asarray([row_of[h.product.id] for h in hits])
        to_image = data.vectors[rows] @ image
        in_category.append(float(np.mean([h.product.category == category for h in hits])))
        near_copy.append(float(np.mean(to_image > near_copy_threshold)))
        similarity.append(float(np.mean(to_image)))
        pairwise = metrics.mean_pairwise_cosine(data.vectors[rows])
        if pairwise is not None:
            diversity.append(pairwise)
        free = index.search(query, k)
        unfiltered.append(metrics.precision_at_k([h.product.category == category for h in free], k))
        if len(shown) < examples and category not in {e["category"] for e in shown}:
            shown.append({"kind": "image", "query": data.ids[q], "category": category,
                          "results": [h.product.id for h in hits[:EXAMPLE_RESULTS]],
                          "scores": [round(h.score, 4) for h in hits[:EXAMPLE_RESULTS]]})
    result: dict[str, Any] = {
        "w_image": w_image,
        "w_type": w_type,
        "queries": len(in_category),
        "k": k,
        "in_category_share": _mean(in_category),
        "near_copy_rate": _mean(near_copy),
        "near_copy_threshold": near_copy_threshold,
        "diversity_mean_pairwise_cosine": _mean(diversity),
        "mean_similarity_to_query_image": _mean(similarity),
        f"unfiltered_same_category_precision_at_{k}": _mean(unfiltered),
    }
    if examples:
        result["examples"] = shown
    return result


def prompt_vectors(data: EvalSet, embed_text: TextEmbed, *, prompt: PromptFn = default_prompt) -> dict[str, Vector]:
    """One normalised prompt embedding per category."""
    categories = sorted(data.category_counts())
    vectors = l2_normalize(embed_text([prompt(c) for c in categories]))
    return dict(zip(categories, vectors))


def weight_sweep(data: EvalSet, index: ProductIndex, type_vectors: dict[str, Vector], queries: np.ndarray, *,
                 w_types: Sequence[float], w_image: float, near_copy_threshold: float,
                 k: int = DIVERSITY_K) -> list[dict[str, Any]]:
    """The gist diagnostics at each w_type (w_image fixed): how type steering trades image
    similarity and near-copies for diversity."""
    return [gist_diagnostics(data, index, type_vectors, queries, w_image=w_image, w_type=float(w),
                             near_copy_threshold=near_copy_threshold, k=k)
            for w in w_types]


# --- the served path: moodboard.query.gist_search with real images --------------------------------


@dataclass
class ServedCheck:
    """What the served-path check needs: the model the index was built with and a way to open a
    product's image (None when it cannot be opened, e.g. a URL in an offline run)."""

    embedder: Any
    open_image: Callable[[str], Any]
    limit: int | None = None


def served_diagnostics(data: EvalSet, index: ProductIndex, queries: np.ndarray, check: ServedCheck, *,
                       w_image: float, w_type: float, near_copy_threshold: float,
                       k: int = DIVERSITY_K, examples: int = 0) -> dict[str, Any]:
    """Run held-out query images through moodboard.query.gist_search (embedding, blend, category
    filter, near-copy drop) exactly as the search API does, and measure what it returns."""
    from moodboard.query import QueryParams, gist_search

    params = QueryParams(w_image=w_image, w_type=w_type, near_copy_threshold=near_copy_threshold, k=k,
                         offset=0, mmr_lambda=None)
    row_of = {pid: i for i, pid in enumerate(data.ids)}
    in_category: list[float] = []
    near_copy: list[float] = []
    dropped = skipped = 0
    shown: list[dict[str, Any]] = []
    for q in queries[: check.limit]:
        image = check.open_image(data.products[q].image)
        if image is None:
            skipped += 1
            continue
        category = data.categories[q]
        result = gist_search(index, check.embedder, image=image, category=category, text=None, negative=None,
                             params=params)
        dropped += result.dropped_near_copies
        if not result.hits:
            continue
        rows = np.asarray([row_of[h.product.id] for h in result.hits])
        in_category.append(float(np.mean([h.product.category == category for h in result.hits])))
        near_copy.append(float(np.mean(data.vectors[rows] @ data.vectors[q] > near_copy_threshold)))
        if len(shown) < examples and category not in {e["category"] for e in shown}:
            shown.append({"kind": "image", "query": data.ids[q], "category": category,
                          "results": [h.product.id for h in result.hits[:EXAMPLE_RESULTS]],
                          "scores": [round(h.score, 4) for h in result.hits[:EXAMPLE_RESULTS]]})
    result_row: dict[str, Any] = {
        "path": "moodboard.query.gist_search",
        "queries": len(in_category),
        "skipped_unopenable": skipped,
        "k": k,
        "w_image": w_image,
        "w_type": w_type,
        "in_category_share": _mean(in_category),
        "near_copy_rate_after_drop": _mean(near_copy),
        "dropped_near_copies": dropped,
    }
    if examples:
        result_row["examples"] = shown
    return result_row


# --- the whole run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalConfig:
    """Knobs of one evaluation run (defaults match the search API's)."""

    queries: int = DEFAULT_QUERIES
    sweep: tuple[float, ...] = DEFAULT_SWEEP
    w_image: float = 1.0
    w_type: float = 0.6
    near_copy_threshold: float = 0.95
    k_precision: int = PRECISION_K
    k_recall: int = RECALL_K
    seed: int = SEED


def evaluate(data: EvalSet, embed_text: TextEmbed, config: EvalConfig = EvalConfig(), *,
             prompt: PromptFn = default_prompt, served: ServedCheck | None = None) -> dict[str, Any]:
    """Zero-shot, image-to-image, gist diagnostics at the configured weights and the weight sweep;
    with `served`, also the held-out queries through the API's own gist_search.

    Returns a JSON-ready dict; `timings` holds seconds per part.
    """
    if len(data) < 2:
        raise ValueError("the evaluation needs at least two products")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    zs = zero_shot(data, embed_text, prompt=prompt, k_precision=config.k_precision, k_recall=config.k_recall)
    timings["zero_shot"] = time.perf_counter() - started

    mark = time.perf_counter()
    queries = sample_queries(data, config.queries, seed=config.seed)
    i2i = image_to_image(data, queries, k=config.k_precision)
    timings["image_to_image"] = time.perf_counter() - mark

    mark = time.perf_counter()
    index = candidate_index(data, queries)
    types = prompt_vectors(data, embed_text, prompt=prompt)
    gist = gist_diagnostics(data, index, types, queries, w_image=config.w_image, w_type=config.w_type,
                            near_copy_threshold=config.near_copy_threshold, k=config.k_precision,
                            examples=EXAMPLE_QUERIES)
    sweep = weight_sweep(data, index, types, queries, w_types=config.sweep, w_image=config.w_image,
                         near_copy_threshold=config.near_copy_threshold, k=config.k_precision)
    timings["gist_and_sweep"] = time.perf_counter() - mark
    served_result = None
    if served is not None:
        mark = time.perf_counter()
        served_result = served_diagnostics(data, index, queries, served, w_image=config.w_image,
                                           w_type=config.w_type, near_copy_threshold=config.near_copy_threshold,
                                           k=config.k_precision, examples=EXAMPLE_QUERIES)
        timings["served"] = time.perf_counter() - mark
    examples = gist.pop("examples", [])
    served_examples = served_result.pop("examples", []) if served_result else []
    examples = served_examples or examples  # what the API serves (after the near-copy drop) when known
    text_examples = [{"kind": "text", "query": r["prompt"], "category": c, "results": r["top"],
                      "scores": r["top_scores"]}
                     for c, r in list(zs["by_category"].items())[:EXAMPLE_QUERIES]]
    return {
        "catalog": {"products": len(data), "categories": data.category_counts(), "dim": data.dim},
        "config": {**asdict(config), "sweep": list(config.sweep)},
        "zero_shot": zs,
        "image_to_image": i2i,
        "gist": gist,
        "sweep": sweep,
        "served": served_result,
        "examples": {"text": text_examples, "image": examples},
        "checks": {"in_category_share_is_1": _all_in_category(gist, served_result, sweep)},
        "held_out_queries": [data.ids[i] for i in queries],
        "timings": timings,
    }


def _all_in_category(*results: dict[str, Any] | list[dict[str, Any]] | None) -> bool:
    """True when every filtered search measured returned only products of the query's category."""
    shares = []
    for result in results:
        rows = result if isinstance(result, list) else [result] if result else []
        shares += [row["in_category_share"] for row in rows if row.get("in_category_share") is not None]
    return bool(shares) and all(share == 1.0 for share in shares)


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None
