"""Inter-rater agreement: Cohen's kappa for two raters, Fleiss' kappa for more.

Pure Python (the evaluations Lambda never imports numpy). An *item* is one result of one round
search (or of one logged search), rated by several team members; the label is what each gave it
(+1 / -1 thumbs, or a 0-3 grade). Only items rated by at least two people take part.

- Cohen's kappa (Cohen 1960), for one pair of raters over the items both rated:
  kappa = (p_o - p_e) / (1 - p_e), p_o the share of items they labelled alike, p_e the share
  expected by chance from each rater's own label frequencies.
- Fleiss' kappa (Fleiss 1971), for any number of raters: P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1))
  per item, P-bar their mean, p_j = sum_i n_ij / sum_i n_i, P_e = sum_j p_j^2,
  kappa = (P-bar - P_e) / (1 - P_e). Items rated by different numbers of people are allowed (each
  item's P_i uses its own n_i; the usual generalisation); with the same n everywhere this is
  exactly Fleiss' formula.

Kappa is undefined when chance agreement is 1 (every label the same): the result then carries
`kappa=None` and says why, rather than reporting 0 or 1.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Protocol


class Rated(Protocol):
    """What agreement needs of a rating: the item it is about, who gave it, and its label."""

    search_id: str
    product_id: str
    rater: str
    rating: int


@dataclass(frozen=True)
class Kappa:
    """A kappa with the figures it was computed from."""

    method: str
    kappa: float | None
    observed: float | None
    expected: float | None
    items: int
    raters: tuple[str, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class Agreement:
    """Agreement over the items rated by at least two people: Cohen's kappa per pair of raters who
    share items, Fleiss' kappa over all of them (None when no item has two raters)."""

    items_shared: int
    raters: tuple[str, ...]
    cohen: list[Kappa] = field(default_factory=list)
    fleiss: Kappa | None = None


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]], *, raters: tuple[str, ...] = ()) -> Kappa:
    """Cohen's kappa of two raters from their labels of the same items, one (a, b) pair per item."""
    n = len(pairs)
    if n == 0:
        return Kappa("cohen", None, None, None, 0, raters, note="no item rated by both")
    observed = sum(a == b for a, b in pairs) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    expected = sum(first[label] * second[label] for label in first) / (n * n)
    if expected >= 1.0:
        return Kappa("cohen", None, observed, expected, n, raters,
                     note="undefined: both raters gave every item the same label")
    return Kappa("cohen", (observed - expected) / (1.0 - expected), observed, expected, n, raters)


def fleiss_kappa(items: Sequence[Mapping[Hashable, int]]) -> Kappa:
    """Fleiss' kappa from per-item label counts ({label: how many raters gave it}); items with
    fewer than two ratings are left out."""
    kept = [{label: int(c) for label, c in counts.items() if c} for counts in items]
    kept = [counts for counts in kept if sum(counts.values()) >= 2]
    if not kept:
        return Kappa("fleiss", None, None, None, 0, note="no item rated by two or more")
    per_item = []
    totals: Counter[Hashable] = Counter()
    ratings = 0
    for counts in kept:
        n_i = sum(counts.values())
        per_item.append(sum(c * (c - 1) for c in counts.values()) / (n_i * (n_i - 1)))
        totals.update(counts)
        ratings += n_i
    observed = sum(per_item) / len(per_item)
    expected = sum((c / ratings) ** 2 for c in totals.values())
    if expected >= 1.0:
        return Kappa("fleiss", None, observed, expected, len(kept),
                     note="undefined: every rating gave the same label")
    return Kappa("fleiss", (observed - expected) / (1.0 - expected), observed, expected, len(kept))


def agreement(ratings: Iterable[Rated], *, label: str = "rating") -> Agreement:
    """Cohen's kappa for every pair of raters with shared items and Fleiss' kappa over every item
    rated by two or more, from stored ratings (one per item and rater; `label` names the field
    compared: "rating" for thumbs, "grade" for the 0-3 grade, where ratings without one are left out)."""
    by_item: dict[tuple[str, str], dict[str, Hashable]] = defaultdict(dict)
    for rating in ratings:
        value = getattr(rating, label, None)
        if value is None:
            continue
        by_item[(rating.search_id, rating.product_id)][rating.rater] = value
    shared = {key: labels for key, labels in by_item.items() if len(labels) >= 2}
    raters = tuple(sorted({rater for labels in shared.values() for rater in labels}))
    cohen = []
    for a, b in combinations(raters, 2):
        pairs = [(labels[a], labels[b]) for labels in shared.values() if a in labels and b in labels]
        if pairs:
            cohen.append(cohen_kappa(pairs, raters=(a, b)))
    fleiss = fleiss_kappa([Counter(labels.values()) for labels in shared.values()]) if shared else None
    if fleiss is not None:
        fleiss = Kappa(fleiss.method, fleiss.kappa, fleiss.observed, fleiss.expected, fleiss.items, raters,
                       fleiss.note)
    return Agreement(items_shared=len(shared), raters=raters, cohen=cohen, fleiss=fleiss)
