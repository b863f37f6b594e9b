"""Cohen's and Fleiss' kappa, precision@k / nDCG@k with intervals and the paired comparison, against
values computed by hand (worked in the comments) and, where scipy has the same figure, against scipy."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from moodboard import measures
from moodboard.agreement import agreement, cohen_kappa, fleiss_kappa


@dataclass
class R:
    search_id: str
    product_id: str
    rater: str
    rating: int
    rank: int = 0
    grade: int | None = None


def test_cohen_kappa_hand_computed_2x2_table() -> None:
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15.
    # p_o = 35/50 = 0.7; A says yes 25/50, B 30/50: p_e = .5*.6 + .5*.4 = 0.5; kappa = (.7-.5)/(1-.5) = 0.4
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    k = cohen_kappa(pairs)
    assert k.observed == pytest.approx(0.7)
    assert k.expected == pytest.approx(0.5)
    assert k.kappa == pytest.approx(0.4)
    assert k.items == 50


def test_cohen_kappa_undefined_when_every_label_is_the_same() -> None:
    k = cohen_kappa([(1, 1), (1, 1)])
    assert k.kappa is None and k.observed == 1.0 and "undefined" in (k.note or "")


def test_fleiss_kappa_hand_computed_three_raters() -> None:
    # items: (+,+,+) P=1; (+,+,-) P=(2*1)/(3*2)=1/3; (-,-,-) P=1 -> P-bar = 7/9
    # p(+) = 5/9, p(-) = 4/9 -> P_e = 41/81; kappa = (63/81 - 41/81) / (40/81) = 22/40 = 0.55
    k = fleiss_kappa([{1: 3}, {1: 2, -1: 1}, {-1: 3}])
    assert k.observed == pytest.approx(7 / 9)
    assert k.expected == pytest.approx(41 / 81)
    assert k.kappa == pytest.approx(0.55)


def test_fleiss_kappa_fleiss_1971_style_table() -> None:
    # The 10 subjects x 14 raters x 5 categories example of Fleiss' kappa (Wikipedia):
    # P-bar = 0.378, P_e = 0.213, kappa = 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    k = fleiss_kappa([dict(enumerate(row)) for row in table])
    assert k.observed == pytest.approx(0.378, abs=5e-4)
    assert k.expected == pytest.approx(0.213, abs=5e-4)
    assert k.kappa == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_undefined_without_an_item_rated_twice() -> None:
    assert fleiss_kappa([{1: 1}, {-1: 1}]).kappa is None


def test_agreement_from_ratings_two_raters() -> None:
    # Shared items p1..p4: alice +,+,-,-; bob +,-,-,- -> p_o = 3/4; alice + 2/4, bob + 1/4:
    # p_e = .5*.25 + .5*.75 = .5 -> kappa = .5. p5 (alice only) takes no part.
    alice = [R("s", f"p{i}", "alice", v) for i, v in enumerate([1, 1, -1, -1, 1], start=1)]
    bob = [R("s", f"p{i}", "bob", v) for i, v in enumerate([1, -1, -1, -1], start=1)]
    result = agreement(alice + bob)
    assert result.items_shared == 4
    assert result.raters == ("alice", "bob")
    [pair] = result.cohen
    assert pair.raters == ("alice", "bob") and pair.kappa == pytest.approx(0.5)
    # Two raters: Fleiss' P-bar = 3/4 as well; p(+) = 3/8, P_e = 9/64 + 25/64 = 34/64 -> (48-34)/(64-34) = 14/30
    assert result.fleiss is not None and result.fleiss.kappa == pytest.approx(14 / 30)


def test_agreement_on_grades_skips_ratings_without_one() -> None:
    ratings = [R("s", "p1", "a", 1, grade=3), R("s", "p1", "b", 1, grade=2), R("s", "p2", "a", 1, grade=None),
               R("s", "p2", "b", 1, grade=1)]
    result = agreement(ratings, label="grade")
    assert result.items_shared == 1
    assert result.cohen[0].observed == 0.0


def test_wilson_interval_matches_known_values_and_scipy() -> None:
    # 8 of 10: centre (0.8 + 1.96^2/20) / (1 + 1.96^2/10) = 0.7167, half 0.2266 -> (0.4902, 0.9433)
    low, high = measures.wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    from scipy.stats import binomtest

    ci = binomtest(13, 40).proportion_ci(confidence_level=0.95, method="wilson")
    assert measures.wilson_interval(13, 40) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert measures.wilson_interval(0, 0) is None


def test_search_ndcg_hand_computed() -> None:
    # ranks 0,1,2 rated down, up, up (k=3): DCG = 1/log2 3 + 1/log2 4 = 1.13093; ideal 1 + 1/log2 3
    # = 1.63093 -> 0.69343
    ratings = [R("s", "a", "x", -1, 0), R("s", "b", "x", 1, 1), R("s", "c", "x", 1, 2)]
    assert measures.search_ndcg(ratings, 3) == pytest.approx((1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3)))
    assert measures.search_ndcg(ratings, 3) == pytest.approx(0.69343, abs=1e-5)
    # grades: rank 0 grade 3 (gain 1), rank 1 grade 0 ... ideal = served -> 1.0
    graded = [R("s", "a", "x", 1, 0, grade=3), R("s", "b", "x", -1, 1, grade=0)]
    assert measures.search_ndcg(graded, 5) == pytest.approx(1.0)
    assert measures.search_ndcg([R("s", "a", "x", -1, 0)], 5) is None


def test_configuration_metrics_precision_and_intervals() -> None:
    ratings = [R("s1", "a", "x", 1, 0), R("s1", "b", "x", -1, 1), R("s2", "c", "x", 1, 0), R("s2", "d", "x", 1, 7)]
    out = measures.configuration_metrics(ratings, ks=[5])
    micro = out["precision_at"]["5"]
    assert micro.value == pytest.approx(2 / 3) and micro.n == 3
    per_search = out["search_precision_at"]["5"]
    assert per_search.value == pytest.approx(0.75) and per_search.n == 2  # (1/2 + 1) / 2
    assert per_search.ci_low <= per_search.value <= per_search.ci_high


def test_bootstrap_interval_close_to_scipy() -> None:
    import numpy as np
    from scipy.stats import bootstrap

    values = [0.1, 0.4, 0.35, 0.8, 0.55, 0.6, 0.2, 0.9, 0.45, 0.3]
    low, high = measures.bootstrap_mean_interval(values)
    ref = bootstrap((np.array(values),), np.mean, method="percentile", n_resamples=2000,
                    random_state=np.random.default_rng(7)).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.03) and high == pytest.approx(ref.high, abs=0.03)
    assert measures.bootstrap_mean_interval([0.5, 0.5]) == (0.5, 0.5)
    assert measures.bootstrap_mean_interval([0.5]) is None


def test_paired_comparison_hand_computed() -> None:
    # d = 0.2, 0.4, 0.6: of the 8 sign flips only +++ and --- reach |mean| 0.4 -> p = 2/8.
    # d_z = 0.4 / sd(0.2, 0.4, 0.6) = 0.4 / 0.2 = 2.0
    a = {"q1": 0.9, "q2": 0.8, "q3": 0.7, "only-a": 1.0}
    b = {"q1": 0.7, "q2": 0.4, "q3": 0.1, "only-b": 0.0}
    result = measures.paired_comparison(a, b)
    assert result.searches == 3
    assert result.difference.value == pytest.approx(0.4)
    assert result.p_value == pytest.approx(0.25) and result.exact
    assert result.effect_size == pytest.approx(2.0)
    assert result.mean_a == pytest.approx(0.8) and result.mean_b == pytest.approx(0.4)


def test_sign_flip_p_value_counts_ties() -> None:
    # d = 1,1,1,-1: sum 2; sums of four +-1 reaching |2|: 1+1+4+4 = 10 of 16 -> 0.625; d_z = 0.5 / 1
    p, exact = measures.sign_flip_p_value([1, 1, 1, -1])
    assert (p, exact) == (pytest.approx(0.625), True)
    assert measures.cohen_dz([1, 1, 1, -1]) == pytest.approx(0.5)


def test_sign_flip_p_value_matches_scipy_paired_permutation_test() -> None:
    import numpy as np
    from scipy.stats import permutation_test

    x = np.array([0.9, 0.5, 0.7, 0.4, 0.8, 0.6, 0.3, 0.7, 0.5, 0.9, 0.2, 0.6])
    y = np.array([0.6, 0.6, 0.4, 0.5, 0.3, 0.6, 0.4, 0.2, 0.5, 0.7, 0.3, 0.1])
    ref = permutation_test((x, y), lambda u, v, axis: np.mean(u - v, axis=axis), permutation_type="samples",
                           n_resamples=np.inf, alternative="two-sided", vectorized=True)
    p, exact = measures.sign_flip_p_value(list(x - y))
    assert exact and p == pytest.approx(ref.pvalue)
    sampled, exact = measures.sign_flip_p_value(list(x - y), exact_max=4)
    assert not exact and sampled == pytest.approx(ref.pvalue, abs=0.02)


def test_paired_comparison_needs_shared_searches() -> None:
    assert measures.paired_comparison({"a": 1.0}, {"b": 0.0}).note == "no search was rated under both configurations"
    one = measures.paired_comparison({"a": 1.0}, {"a": 0.0})
    assert one.p_value is None and one.difference.value == 1.0
