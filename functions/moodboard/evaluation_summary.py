"""Summaries of ratings: precision@k and counts, overall and by model, index, category and weights.

Pure Python (the evaluations Lambda never imports numpy). precision@k is the share of +1 among
the rated results whose 0-based rank is below k, every (search, product, rater) rating counted
once (micro-averaged); it is None when no result below rank k was rated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from moodboard.evaluations import EvaluationRecord

DEFAULT_KS = (5, 10)


class GroupStats(BaseModel):
    """Counts and precision@k for one group of ratings."""

    key: str | None
    count: int
    positive: int
    negative: int
    mean_score: float | None
    precision_at: dict[int, float | None]
    rated_at: dict[int, int]


class Summary(BaseModel):
    """Overall stats plus one list per grouping, largest group first."""

    total: int
    ks: list[int]
    overall: GroupStats
    by_model_fingerprint: list[GroupStats]
    by_index_version: list[GroupStats]
    by_category: list[GroupStats]
    by_weights: list[GroupStats]


def weights_key(weights: Mapping[str, Any] | None) -> str:
    """A stable label for a set of query weights, e.g. "w_image=1,w_neg=0.3,w_text=0.5,w_type=0.6"."""
    if not weights:
        return ""
    return ",".join(f"{name}={_number(value)}" for name, value in sorted(weights.items()))


def _number(value: Any) -> str:
    return "none" if value is None else format(float(value), "g")


def group_stats(key: str | None, ratings: Iterable[EvaluationRecord], ks: Iterable[int] = DEFAULT_KS) -> GroupStats:
    """Counts and precision@k over `ratings`."""
    ks = sorted(set(ks))
    count = positive = 0
    scores: list[int] = []
    rated_at = dict.fromkeys(ks, 0)
    positive_at = dict.fromkeys(ks, 0)
    for rating in ratings:
        count += 1
        good = rating.rating > 0
        positive += good
        if rating.score is not None:
            scores.append(rating.score)
        for k in ks:
            if rating.rank < k:
                rated_at[k] += 1
                positive_at[k] += good
    return GroupStats(
        key=key,
        count=count,
        positive=positive,
        negative=count - positive,
        mean_score=sum(scores) / len(scores) if scores else None,
        precision_at={k: positive_at[k] / rated_at[k] if rated_at[k] else None for k in ks},
        rated_at=rated_at,
    )


def summarize(ratings: Iterable[EvaluationRecord], ks: Iterable[int] = DEFAULT_KS) -> Summary:
    """Overall stats and stats grouped by model fingerprint, index version, category and weights."""
    ratings = list(ratings)
    ks = sorted(set(ks))
    keys: dict[str, Callable[[EvaluationRecord], str | None]] = {
        "model_fingerprint": lambda r: r.model_fingerprint,
        "index_version": lambda r: r.index_version,
        "category": lambda r: r.category,
        "weights": lambda r: weights_key(r.weights),
    }
    grouped = {name: _by(ratings, key, ks) for name, key in keys.items()}
    return Summary(
        total=len(ratings),
        ks=ks,
        overall=group_stats(None, ratings, ks),
        **{f"by_{name}": groups for name, groups in grouped.items()},
    )


def _by(
    ratings: list[EvaluationRecord], key: Callable[[EvaluationRecord], str | None], ks: list[int]
) -> list[GroupStats]:
    groups: dict[str | None, list[EvaluationRecord]] = {}
    for rating in ratings:
        groups.setdefault(key(rating), []).append(rating)
    stats = [group_stats(name, members, ks) for name, members in groups.items()]
    return sorted(stats, key=lambda s: (-s.count, s.key or ""))
