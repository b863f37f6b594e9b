"""Ranking metrics, pure functions over relevance lists and vectors (no model, no I/O).

A ranking is described by its relevance list: `relevance[i]` is the gain of the result at 0-based
rank i (True/1 for relevant, False/0 for not; graded gains are allowed where noted). Every function
takes the number of relevant items in the whole collection where the metric needs it, because a
truncated list cannot know how many relevant items it missed.

Definitions (Manning, Raghavan & Schütze, "Introduction to Information Retrieval", ch. 8;
Järvelin & Kekäläinen 2002 for nDCG):
- precision@k = relevant results in the top k / k (a list shorter than k counts the gap as misses);
- recall@k = relevant results in the top k / all relevant items;
- average precision = mean over the relevant items of precision at the rank each is found
  (items never retrieved contribute 0), mAP is its mean over queries;
- nDCG@k = DCG@k / ideal DCG@k with linear gains and a log2(rank + 2) discount;
- mean pairwise cosine of a result list: lower means more diverse.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Relevance = Sequence[float] | npt.NDArray[np.floating] | npt.NDArray[np.bool_]


def _gains(relevance: Relevance) -> npt.NDArray[np.float64]:
    return np.asarray(relevance, dtype=np.float64).reshape(-1)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def precision_at_k(relevance: Relevance, k: int) -> float:
    """Share of the top k results that are relevant (binary relevance)."""
    _check_k(k)
    gains = _gains(relevance)[:k]
    return float(np.count_nonzero(gains > 0)) / k


def recall_at_k(relevance: Relevance, k: int, n_relevant: int) -> float:
    """Share of all `n_relevant` relevant items found in the top k; 0.0 when there are none."""
    _check_k(k)
    if n_relevant <= 0:
        return 0.0
    gains = _gains(relevance)[:k]
    return float(np.count_nonzero(gains > 0)) / n_relevant


def average_precision(relevance: Relevance, n_relevant: int | None = None) -> float:
    """Average precision of one ranking; relevant items missing from the list count as 0.

    `n_relevant` defaults to the relevant items present in the list (right when the list ranks the
    whole collection); 0.0 when there is nothing relevant.
    """
    hits = _gains(relevance) > 0
    total = int(hits.sum()) if n_relevant is None else int(n_relevant)
    if total <= 0:
        return 0.0
    ranks = np.flatnonzero(hits)
    precisions = np.arange(1, ranks.size + 1) / (ranks + 1)
    return float(precisions.sum()) / total


def mean_average_precision(rankings: Sequence[Relevance], n_relevant: Sequence[int] | None = None) -> float:
    """Mean of average precision over queries (0.0 for no queries)."""
    if not rankings:
        return 0.0
    totals = n_relevant if n_relevant is not None else [None] * len(rankings)
    return float(np.mean([average_precision(r, n) for r, n in zip(rankings, totals)]))


def dcg_at_k(relevance: Relevance, k: int) -> float:
    """Discounted cumulative gain of the top k with linear gains: sum gain_i / log2(i + 2)."""
    _check_k(k)
    gains = _gains(relevance)[:k]
    return float((gains / np.log2(np.arange(gains.size) + 2)).sum())


def ndcg_at_k(relevance: Relevance, k: int, ideal: Relevance | None = None) -> float | None:
    """nDCG@k: DCG of the ranking over DCG of the ideal ranking.

    `ideal` is every gain that could have been ranked (sorted here, best first); by default the
    gains of the list itself, which is right when the list holds every judged item. None when the
    ideal DCG is 0 (nothing relevant: the metric is undefined rather than 0 or 1).
    """
    best = np.sort(_gains(relevance if ideal is None else ideal))[::-1]
    ideal_dcg = dcg_at_k(best, k)
    if ideal_dcg <= 0:
        return None
    return dcg_at_k(relevance, k) / ideal_dcg


def ideal_binary(n_relevant: int) -> npt.NDArray[np.float64]:
    """The ideal gains of a binary task with `n_relevant` relevant items (for ndcg_at_k)."""
    return np.ones(max(int(n_relevant), 0), dtype=np.float64)


def mean_pairwise_cosine(vectors: npt.ArrayLike) -> float | None:
    """Mean cosine similarity over distinct pairs of rows (rows are normalised here); None for
    fewer than two rows. Lower means a more diverse result list."""
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 2:
        return None
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = matrix / np.maximum(norms, 1e-12)
    sims = unit @ unit.T
    n = unit.shape[0]
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))
