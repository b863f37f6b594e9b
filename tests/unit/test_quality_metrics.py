"""Ranking metrics and the catalog harness on fixed, injected embeddings where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.quality import harness, metrics
from benchmarks.quality.harness import EvalConfig, EvalSet

# --- pure metrics: hand-made case ------------------------------------------------------------------

# Ranks 1..6 hold relevant, miss, relevant, miss, miss, relevant; a 4th relevant item is never retrieved.
HAND = [1, 0, 1, 0, 0, 1]
HAND_RELEVANT = 4


def test_precision_at_k_hand_case() -> None:
    assert metrics.precision_at_k(HAND, 3) == pytest.approx(2 / 3)  # 2 of the top 3
    assert metrics.precision_at_k(HAND, 5) == pytest.approx(0.4)  # 2 of the top 5
    assert metrics.precision_at_k(HAND, 10) == pytest.approx(0.3)  # 3 found, a list of 6 counts 4 misses


def test_recall_at_k_hand_case() -> None:
    assert metrics.recall_at_k(HAND, 3, HAND_RELEVANT) == pytest.approx(0.5)  # 2 of 4
    assert metrics.recall_at_k(HAND, 6, HAND_RELEVANT) == pytest.approx(0.75)  # 3 of 4


def test_average_precision_hand_case() -> None:
    # (P@1 + P@3 + P@6) / 4 = (1 + 2/3 + 3/6) / 4 = 2.1666667 / 4
    assert metrics.average_precision(HAND, HAND_RELEVANT) == pytest.approx(0.5416667, abs=1e-6)
    # Without the unretrieved item: the same sum over the 3 relevant items in the list.
    assert metrics.average_precision(HAND) == pytest.approx(0.7222222, abs=1e-6)


def test_ndcg_hand_case() -> None:
    # DCG@6 = 1/log2(2) + 1/log2(4) + 1/log2(7) = 1 + 0.5 + 0.3562072 = 1.8562072
    # ideal (4 relevant) = 1 + 1/log2(3) + 1/log2(4) + 1/log2(5) = 2.5616063
    assert metrics.dcg_at_k(HAND, 6) == pytest.approx(1.8562072, abs=1e-6)
    assert metrics.ndcg_at_k(HAND, 6, ideal=metrics.ideal_binary(HAND_RELEVANT)) == pytest.approx(0.7246263, abs=1e-6)


def test_ndcg_graded_hand_case() -> None:
    # gains 3,2,0,1: DCG = 3 + 2/log2(3) + 0 + 1/log2(5) = 4.6925361; ideal 3,2,1,0 = 3 + 2/log2(3) + 1/2 = 4.7618595
    assert metrics.ndcg_at_k([3, 2, 0, 1], 4) == pytest.approx(0.9854419, abs=1e-6)


def test_ndcg_without_relevant_items_is_undefined() -> None:
    assert metrics.ndcg_at_k([0, 0, 0], 3) is None


def test_perfect_ranking_scores_one_everywhere() -> None:
    ranking = [1] * 5 + [0] * 20
    assert metrics.precision_at_k(ranking, 5) == 1.0
    assert metrics.recall_at_k(ranking, 5, 5) == 1.0
    assert metrics.average_precision(ranking, 5) == 1.0
    assert metrics.ndcg_at_k(ranking, 10) == 1.0


def test_reversed_ranking_scores_low() -> None:
    ranking = [0] * 20 + [1] * 5
    assert metrics.precision_at_k(ranking, 5) == 0.0
    assert metrics.recall_at_k(ranking, 10, 5) == 0.0
    # (1/21 + 2/22 + 3/23 + 4/24 + 5/25) / 5 = 0.6356296 / 5 = 0.1271259: below the 0.2 of a random order
    assert metrics.average_precision(ranking, 5) == pytest.approx(0.1271259, abs=1e-6)
    assert metrics.ndcg_at_k(ranking, 10, ideal=metrics.ideal_binary(5)) == 0.0


def test_mean_pairwise_cosine_hand_case() -> None:
    # pairs: (x, y) 0, (x, diag) 0.7071, (y, diag) 0.7071 -> mean 0.4714
    assert metrics.mean_pairwise_cosine([[1, 0], [0, 1], [1, 1]]) == pytest.approx(0.4714045, abs=1e-6)
    assert metrics.mean_pairwise_cosine([[2, 0], [5, 0]]) == pytest.approx(1.0)
    assert metrics.mean_pairwise_cosine([[1, 0]]) is None


def test_precision_rejects_k_below_one() -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        metrics.precision_at_k([1], 0)


# --- the harness on injected embeddings ------------------------------------------------------------

CATEGORIES = ["dress", "lamp", "shoes"]
PER_CATEGORY = 15
DIM = 8


def prompt(category: str) -> str:
    return f"a photo of a {category}"


def clustered_set(seed: int = 0) -> EvalSet:
    """Each category is a tight cluster around its own axis: any sane ranker separates them."""
    rng = np.random.default_rng(seed)
    ids, cats, rows = [], [], []
    for c, category in enumerate(CATEGORIES):
        for i in range(PER_CATEGORY):
            vector = np.zeros(DIM)
            vector[c] = 1.0
            vector[3 + (i % 5)] = 0.3 * rng.random()
            ids.append(f"{category}-{i:02d}")
            cats.append(category)
            rows.append(vector)
    return EvalSet(ids=ids, categories=cats, vectors=np.asarray(rows, np.float32))


def axis_text(sign: float = 1.0):
    """Text embedding that maps 'a photo of a <category>' to (sign times) that category's axis."""

    def embed(texts):
        out = np.zeros((len(texts), DIM), np.float32)
        for row, text in enumerate(texts):
            out[row, CATEGORIES.index(text.removeprefix("a photo of a "))] = sign
        return out

    return embed


def test_zero_shot_perfect_ranker_scores_one() -> None:
    result = harness.zero_shot(clustered_set(), axis_text(), prompt=prompt)
    overall = result["overall"]
    assert overall["precision_at_10"] == 1.0
    assert overall["recall_at_50"] == 1.0
    assert overall["map"] == 1.0
    assert result["by_category"]["lamp"]["prompt"] == "a photo of a lamp"
    assert result["by_category"]["lamp"]["count"] == PER_CATEGORY


def test_zero_shot_reversed_ranker_scores_low() -> None:
    result = harness.zero_shot(clustered_set(), axis_text(-1.0), prompt=prompt)
    overall = result["overall"]
    assert overall["precision_at_10"] == 0.0
    # Each category's 15 items come last of 45: AP = mean_j j / (30 + j) over j = 1..15, about 0.20,
    # below the 1/3 a random order would score.
    assert overall["map"] < overall["chance_precision"]
    assert overall["map"] == pytest.approx(np.mean([j / (30 + j) for j in range(1, 16)]), abs=1e-9)


def test_sample_queries_is_spread_over_categories_and_seeded() -> None:
    data = clustered_set()
    queries = harness.sample_queries(data, 6, seed=3)
    assert sorted(data.categories[i] for i in queries) == ["dress", "dress", "lamp", "lamp", "shoes", "shoes"]
    assert np.array_equal(queries, harness.sample_queries(data, 6, seed=3))


def test_sample_queries_keeps_a_candidate_in_every_category() -> None:
    data = EvalSet(ids=["a", "b", "c"], categories=["x", "x", "y"], vectors=np.eye(3, dtype=np.float32))
    queries = harness.sample_queries(data, 10)
    assert [data.ids[i] for i in queries] == ["a"] or [data.ids[i] for i in queries] == ["b"]


def test_image_to_image_holds_queries_out_and_scores_perfect_clusters() -> None:
    data = clustered_set()
    queries = harness.sample_queries(data, 6)
    result = harness.image_to_image(data, queries, k=10)
    assert result["candidates"] == len(data) - 6
    assert result["overall"]["precision_at_10"] == 1.0
    assert set(result["by_category"]) == set(CATEGORIES)


def test_image_to_image_never_returns_the_query_itself() -> None:
    # Query 0 has a unique direction: were it a candidate it would be its own top hit (score 1).
    vectors = np.asarray([[1, 0], [0, 1], [0.1, 1]], np.float32)
    data = EvalSet(ids=["q", "a", "b"], categories=["x", "x", "y"], vectors=vectors)
    result = harness.image_to_image(data, np.asarray([0]), k=1)
    # The best remaining candidate is "b" (y), not "a": the hand answer is precision 0.
    assert result["overall"]["precision_at_1"] == 0.0


def near_copy_set() -> EvalSet:
    """Category A: the query a0, an exact copy a1 and nine others at cosine 0.8 to it that lean 0.48
    toward the type axis (dim 3); category B at cosine 0.9 to the query."""
    rows, ids, cats = [], [], []
    query = np.array([1.0, 0.0, 0.0, 0.0])
    for i in range(11):
        rows.append(query if i < 2 else np.array([0.8, 0.36 * np.cos(i), 0.36 * np.sin(i), 0.48]))
        ids.append(f"a{i}")
        cats.append("A")
    for i in range(5):
        rows.append(np.array([0.9, 0.0, 0.0, 0.436]))  # closer to the query than most of A
        ids.append(f"b{i}")
        cats.append("B")
    return EvalSet(ids=ids, categories=cats, vectors=np.asarray(rows, np.float32))


def test_gist_diagnostics_hand_case() -> None:
    data = near_copy_set()
    queries = np.asarray([0])
    index = harness.candidate_index(data, queries)
    types = {"A": np.array([0, 0, 0, 1], np.float32), "B": np.array([0, 0, 0, 1], np.float32)}
    result = harness.gist_diagnostics(data, index, types, queries, w_image=1.0, w_type=0.0,
                                      near_copy_threshold=0.95, k=10)
    assert result["queries"] == 1
    assert result["in_category_share"] == 1.0
    # Top 10 within A is all of a1..a10; only a1 (cosine 1.0) is above 0.95.
    assert result["near_copy_rate"] == pytest.approx(0.1)
    # Similarity to the query image: (1.0 + 9 * 0.8) / 10 = 0.82
    assert result["mean_similarity_to_query_image"] == pytest.approx(0.82, abs=1e-5)
    # Without the filter the B products (cosine 0.9) outrank the A ones at 0.8: 5 of the top 10 are B.
    assert result["unfiltered_same_category_precision_at_10"] == pytest.approx(0.5)


def test_weight_sweep_moves_toward_the_type_prompt() -> None:
    data = near_copy_set()
    queries = np.asarray([0])
    index = harness.candidate_index(data, queries)
    types = {"A": np.array([0, 0, 0, 1], np.float32), "B": np.array([0, 0, 0, 1], np.float32)}
    rows = harness.weight_sweep(data, index, types, queries, w_types=[0.0, 1.0, 4.0], w_image=1.0,
                                near_copy_threshold=0.95, k=5)
    assert [r["w_type"] for r in rows] == [0.0, 1.0, 4.0]
    assert all(r["in_category_share"] == 1.0 for r in rows)
    # Scores within A: the copy a1 = 1, the others 0.8 + 0.48 * w_type. At w_type 0 the copy is 1 of
    # the top 5 (rate 0.2); from w_type > 0.42 the nine others outrank it and the rate falls to 0.
    assert rows[0]["near_copy_rate"] == pytest.approx(0.2)
    assert rows[-1]["near_copy_rate"] == 0.0


def test_evaluate_reports_every_part_on_injected_embeddings() -> None:
    data = clustered_set()
    report = harness.evaluate(data, axis_text(), EvalConfig(queries=6, sweep=(0.0, 1.0)), prompt=prompt)
    assert report["zero_shot"]["overall"]["map"] == 1.0
    assert report["image_to_image"]["overall"]["precision_at_10"] == 1.0
    assert report["gist"]["in_category_share"] == 1.0
    assert [row["w_type"] for row in report["sweep"]] == [0.0, 1.0]
    assert report["checks"]["in_category_share_is_1"] is True
    assert len(report["held_out_queries"]) == 6
    assert report["served"] is None
    assert {e["category"] for e in report["examples"]["image"]} == set(CATEGORIES)
