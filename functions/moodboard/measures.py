"""Match quality from team ratings: precision@k and nDCG@k with confidence intervals, and the paired
comparison of two configurations over the same searches.

Pure Python (the evaluations Lambda never imports numpy or scipy); the same definitions as the
offline harness (benchmarks/quality/ratings.py), which uses scipy:

- gain of one rating: its 0-3 grade / 3 when it has one, else 1 for thumbs up and 0 for down;
- precision@k: share of thumbs up among ratings of results ranked above k. Reported micro-averaged
  (every (search, product, rater) once) with a Wilson score interval, and as the mean of per-search
  precision with a percentile bootstrap interval over searches (ratings of one search are not
  independent, so the searches are the units);
- nDCG@k per search: a product's gain is the mean of its raters' gains; DCG sums gain / log2(rank + 2)
  over ranks below k, unrated results counting as not relevant; the ideal DCG ranks the same rated
  gains best first. A search with no gain at all has no nDCG and is counted apart;
- paired comparison: a round re-run on another configuration rates the *same* searches, so each
  search gives one difference d_i = metric_A - metric_B. The test is the permutation test of the
  harness made paired: under "no difference" each d_i's sign is exchangeable, so the p-value is the
  share of the 2^n sign flips whose mean |d| is at least the observed one (all of them enumerated up
  to EXACT_MAX_SEARCHES, else PERMUTATIONS random ones, (hits + 1) / (draws + 1)). Effect size:
  Cohen's d_z = mean(d) / sd(d) (sample sd), with the mean difference and its bootstrap interval.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

DEFAULT_KS = (5, 10)
CONFIDENCE = 0.95
Z_95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000
PERMUTATIONS = 9999
EXACT_MAX_SEARCHES = 16
SEED = 7
MAX_GRADE = 3
_TIE = 1e-12


class Judged(Protocol):
    """What the measures need of one rating."""

    search_id: str
    product_id: str
    rater: str
    rating: int
    rank: int


@dataclass(frozen=True)
class Estimate:
    """A figure with its interval and how many units it rests on (None where undefined)."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    method: str


@dataclass(frozen=True)
class Paired:
    """Configuration A against B over the searches both were rated on."""

    searches: int
    mean_a: float | None
    mean_b: float | None
    difference: Estimate
    p_value: float | None
    exact: bool
    effect_size: float | None
    test: str = "paired permutation test (sign flips of per-search differences), two-sided"
    note: str | None = None


def gain(rating: Judged) -> float:
    """The 0-3 grade scaled to 0..1 when given, else 1 for thumbs up, 0 for down."""
    grade = getattr(rating, "grade", None)
    if grade is not None:
        return float(grade) / MAX_GRADE
    return 1.0 if rating.rating > 0 else 0.0


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion; None for no trials."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of already sorted values."""
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def bootstrap_mean_interval(values: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES,
                            confidence: float = CONFIDENCE, seed: int = SEED) -> tuple[float, float] | None:
    """Percentile bootstrap interval of a mean; None for fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    if all(v == values[0] for v in values):
        return float(values[0]), float(values[0])
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1 - confidence) / 2
    return _percentile(means, tail), _percentile(means, 1 - tail)


def by_search(ratings: Iterable[Judged], key: Callable[[Judged], str] | None = None) -> dict[str, list[Judged]]:
    """Ratings grouped by search (or by `key`, e.g. a round item shared across configurations)."""
    grouped: dict[str, list[Judged]] = defaultdict(list)
    for rating in ratings:
        grouped[key(rating) if key else rating.search_id].append(rating)
    return dict(grouped)


def search_precision(ratings: Sequence[Judged], k: int) -> float | None:
    """Share of thumbs up among one search's ratings ranked above k; None when none was rated."""
    top = [r for r in ratings if r.rank < k]
    return sum(r.rating > 0 for r in top) / len(top) if top else None


def dcg(gains: Sequence[float], k: int) -> float:
    """sum gain_i / log2(i + 2) over the first k gains (0-based ranks)."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains[:k]))


def search_ndcg(ratings: Sequence[Judged], k: int) -> float | None:
    """nDCG@k of one search (see the module docstring); None when no rated result has any gain."""
    gains: dict[str, list[float]] = defaultdict(list)
    ranks: dict[str, int] = {}
    for rating in ratings:
        gains[rating.product_id].append(gain(rating))
        ranks[rating.product_id] = min(rating.rank, ranks.get(rating.product_id, rating.rank))
    product_gain = {pid: sum(g) / len(g) for pid, g in gains.items()}
    served = [0.0] * k
    for pid, value in product_gain.items():
        if ranks[pid] < k:
            served[ranks[pid]] = value
    ideal = dcg(sorted(product_gain.values(), reverse=True), k)
    return dcg(served, k) / ideal if ideal > 0 else None


def per_search(ratings: Iterable[Judged], k: int, metric: str = "precision",
               key: Callable[[Judged], str] | None = None) -> dict[str, float]:
    """Each search's precision@k or nDCG@k (searches where it is undefined are left out)."""
    compute = search_precision if metric == "precision" else search_ndcg
    values = {name: compute(group, k) for name, group in by_search(ratings, key).items()}
    return {name: value for name, value in values.items() if value is not None}


def _mean_estimate(values: Sequence[float], seed: int) -> Estimate:
    interval = bootstrap_mean_interval(values, seed=seed)
    return Estimate(sum(values) / len(values) if values else None, interval[0] if interval else None,
                    interval[1] if interval else None, len(values), "bootstrap over searches")


def precision_at(ratings: Sequence[Judged], k: int) -> Estimate:
    """Micro precision@k (every rating once) with its Wilson interval."""
    top = [r for r in ratings if r.rank < k]
    good = sum(r.rating > 0 for r in top)
    interval = wilson_interval(good, len(top))
    return Estimate(good / len(top) if top else None, interval[0] if interval else None,
                    interval[1] if interval else None, len(top), "wilson")


def configuration_metrics(ratings: Sequence[Judged], ks: Iterable[int] = DEFAULT_KS, *,
                          key: Callable[[Judged], str] | None = None, seed: int = SEED) -> dict[str, object]:
    """Counts, precision@k (micro with Wilson; mean over searches with bootstrap) and nDCG@k (mean
    over searches with bootstrap) for the ratings of one configuration."""
    ratings = list(ratings)
    out: dict[str, object] = {
        "ratings": len(ratings),
        "searches": len(by_search(ratings, key)),
        "raters": len({r.rater for r in ratings}),
        "positive": sum(r.rating > 0 for r in ratings),
        "precision_at": {}, "search_precision_at": {}, "ndcg_at": {},
    }
    for k in sorted(set(ks)):
        out["precision_at"][str(k)] = precision_at(ratings, k)  # type: ignore[index]
        out["search_precision_at"][str(k)] = _mean_estimate(  # type: ignore[index]
            list(per_search(ratings, k, "precision", key).values()), seed)
        out["ndcg_at"][str(k)] = _mean_estimate(list(per_search(ratings, k, "ndcg", key).values()), seed)  # type: ignore[index]
    return out


def paired_comparison(a: Mapping[str, float], b: Mapping[str, float], *, permutations: int = PERMUTATIONS,
                      exact_max: int = EXACT_MAX_SEARCHES, seed: int = SEED) -> Paired:
    """Compare two configurations' per-search values over the searches both have (see the module
    docstring for the test and the effect size)."""
    shared = sorted(set(a) & set(b))
    n = len(shared)
    if n == 0:
        return Paired(0, None, None, Estimate(None, None, None, 0, "bootstrap over searches"), None, False, None,
                      note="no search was rated under both configurations")
    diffs = [a[name] - b[name] for name in shared]
    mean_a = sum(a[name] for name in shared) / n
    mean_b = sum(b[name] for name in shared) / n
    observed = sum(diffs) / n
    interval = bootstrap_mean_interval(diffs, seed=seed)
    difference = Estimate(observed, interval[0] if interval else None, interval[1] if interval else None, n,
                          "bootstrap over searches")
    if n < 2:
        return Paired(n, mean_a, mean_b, difference, None, False, None,
                      note="needs at least two searches rated under both configurations")
    p_value, exact = sign_flip_p_value(diffs, permutations=permutations, exact_max=exact_max, seed=seed)
    return Paired(n, mean_a, mean_b, difference, p_value, exact, cohen_dz(diffs))


def cohen_dz(diffs: Sequence[float]) -> float | None:
    """Cohen's d_z: mean difference over the sample sd of the differences; None when the sd is 0."""
    n = len(diffs)
    if n < 2:
        return None
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    return mean / sd if sd > 0 else None


def sign_flip_p_value(diffs: Sequence[float], *, permutations: int = PERMUTATIONS,
                      exact_max: int = EXACT_MAX_SEARCHES, seed: int = SEED) -> tuple[float, bool]:
    """Two-sided p-value of the mean of paired differences by flipping their signs; (p, exact)."""
    n = len(diffs)
    observed = abs(sum(diffs))
    if n <= exact_max:
        hits = 0
        for mask in range(1 << n):
            total = sum(-d if mask >> i & 1 else d for i, d in enumerate(diffs))
            hits += abs(total) >= observed - _TIE
        return hits / (1 << n), True
    rng = random.Random(seed)
    hits = 0
    for _ in range(permutations):
        total = sum(d if rng.random() < 0.5 else -d for d in diffs)
        hits += abs(total) >= observed - _TIE
    return (hits + 1) / (permutations + 1), False
