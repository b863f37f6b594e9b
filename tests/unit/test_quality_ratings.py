"""Human-rating metrics against hand-computed values on a small fixture, the export readers, the
local stack's paginated GET /evaluations, and the A/B test."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from operator import attrgetter
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from fastapi.testclient import TestClient
from moodboard.dynamo import serialize
from moodboard.errors import RatingsError
from moodboard.settings import Settings
from moto import mock_aws

from benchmarks.quality import ratings as rq

W1 = {"w_image": 1.0, "w_type": 0.6}
W2 = {"w_image": 0.5, "w_type": 1.0}


def item(search_id: str, product_id: str, rank: int, rating: int, *, rater: str = "alice", model: str = "mA",
         index: str = "i1", category: str = "Dress", score: int | None = None, **extra: Any) -> dict[str, Any]:
    """One evaluations-table item as EvaluationStore writes it."""
    row = {"search_id": search_id, "product_id": product_id, "rater": rater, "rating": rating, "rank": rank,
           "model_fingerprint": model, "index_version": index, "category": category,
           "created_at": "2026-11-25T07:00:00.000Z", "updated_at": "2026-11-25T07:00:00.000Z", "revisions": 1}
    if score is not None:
        row["score"] = score
    if "params" not in extra:
        row["weights"] = W1
    return row | extra


# s1 (model mA, Dress): ranks 0,1,2 rated +1,-1,+1 (scores 5 and 2 on the first two; weights in params).
# s2 (model mA, Shoes): rank 0 -1, rank 3 +1.
# s3 (model mB, index i2, Dress): rank 0 rated +1 by alice and -1 by bob; rank 12 +1 (outside k=10).
FIXTURE = [
    item("s1", "p1", 0, 1, score=5, params={"weights": W1, "k": 24}),
    item("s1", "p2", 1, -1, score=2, params={"weights": W1, "k": 24}),
    item("s1", "p3", 2, 1, params={"weights": W1, "k": 24}),
    item("s2", "p4", 0, -1, rater="bob", category="Shoes"),
    item("s2", "p5", 3, 1, rater="bob", category="Shoes"),
    item("s3", "p6", 0, 1, model="mB", index="i2", weights=W2),
    item("s3", "p6", 0, -1, rater="bob", model="mB", index="i2", weights=W2),
    item("s3", "p7", 12, 1, model="mB", index="i2", weights=W2),
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_group_metrics_match_hand_computed_values() -> None:
    summary = rq.summarize([rq.parse_item(row) for row in FIXTURE], ks=(5, 10))
    overall = summary["overall"]

    assert (overall["ratings"], overall["searches"], overall["raters"]) == (8, 3, 2)
    assert (overall["positive"], overall["negative"]) == (5, 3)
    assert overall["mean_score"] == pytest.approx(3.5)  # (5 + 2) / 2
    # precision@10: 7 ratings above rank 10 (p7 at rank 12 is not), 4 of them +1 -> 4/7.
    p10 = overall["precision_at"]["10"]
    assert (p10["value"], p10["n"]) == (pytest.approx(4 / 7), 7)
    # Wilson, z = 1.96, p = 4/7, n = 7: centre (p + z²/2n) / (1 + z²/n) = 0.546120, half-width
    # z * sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n) = 0.295661 -> [0.250459, 0.841780].
    assert (p10["ci_low"], p10["ci_high"]) == (pytest.approx(0.250459, abs=1e-5), pytest.approx(0.841780, abs=1e-5))
    assert overall["precision_at"]["5"]["value"] == pytest.approx(4 / 7)
    # Per-search precision@10: s1 2/3, s2 1/2, s3 1/2 -> mean 0.555556.
    assert overall["search_precision_at"]["10"]["value"] == pytest.approx(0.555556, abs=1e-6)
    # nDCG@10 per search (gain 1 for +1, raters averaged, unrated = 0):
    #   s1: DCG 1 + 1/log2(4) = 1.5;  ideal 1 + 1/log2(3) = 1.630930 -> 0.919721
    #   s2: DCG 1/log2(5) = 0.430677; ideal 1                       -> 0.430677
    #   s3: p6 gain 0.5 at rank 0, p7 outside: DCG 0.5; ideal 1 + 0.5/log2(3) = 1.315465 -> 0.380094
    # mean = (0.919721 + 0.430677 + 0.380094) / 3 = 0.576830
    ndcg = overall["ndcg_at"]["10"]
    assert ndcg["value"] == pytest.approx(0.576830, abs=1e-6)
    assert (ndcg["n"], ndcg["searches_without_positive"]) == (3, 0)
    assert ndcg["ci_low"] <= ndcg["value"] <= ndcg["ci_high"]


def test_groups_split_by_model_index_category_and_weights() -> None:
    summary = rq.summarize([rq.parse_item(row) for row in FIXTURE], ks=(10,))

    by_model = {row["key"]: row for row in summary["by_model_fingerprint"]}
    assert by_model["mA"]["precision_at"]["10"]["value"] == pytest.approx(3 / 5)  # s1 + s2: 3 of 5
    assert by_model["mB"]["precision_at"]["10"]["value"] == pytest.approx(1 / 2)  # s3: 1 of 2 above rank 10
    assert {row["key"]: row["ratings"] for row in summary["by_index_version"]} == {"i1": 5, "i2": 3}
    assert {row["key"]: row["ratings"] for row in summary["by_category"]} == {"Dress": 6, "Shoes": 2}
    assert {row["key"]: row["ratings"] for row in summary["by_weights"]} == {
        "w_image=1,w_type=0.6": 5, "w_image=0.5,w_type=1": 3}


def test_search_without_positive_has_no_ndcg() -> None:
    ratings = [rq.parse_item(item("s9", "p1", 0, -1)), rq.parse_item(item("s9", "p2", 1, -1))]
    assert rq.search_ndcg(ratings, 10) is None
    summary = rq.summarize(ratings, ks=(10,))
    assert summary["overall"]["ndcg_at"]["10"]["searches_without_positive"] == 1
    assert summary["overall"]["ndcg_at"]["10"]["value"] is None


def test_csv_jsonl_and_dynamodb_exports_read_the_same(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "ratings.jsonl", FIXTURE)
    keyed = [dict(row, product_rater=f"{row['product_id']}#{row['rater']}") for row in FIXTURE]
    typed = write_jsonl(tmp_path / "export.jsonl", [{"Item": serialize(row)} for row in keyed])
    csv_path = tmp_path / "ratings.csv"
    columns = sorted({key for row in FIXTURE for key in row})
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in FIXTURE:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()})

    expected = [rq.parse_item(row) for row in FIXTURE]
    for path in (jsonl, typed, csv_path):
        assert rq.read_ratings(path) == expected, path.name
    assert expected[0].weights == W1  # from params.weights


def test_dynamodb_scan_output_and_gzipped_s3_export_read_the_same(tmp_path: Path) -> None:
    typed = [serialize(dict(row, product_rater=f"{row['product_id']}#{row['rater']}")) for row in FIXTURE]
    scan = tmp_path / "scan.json"  # aws dynamodb scan --table-name ... --output json
    scan.write_text(json.dumps({"Items": typed, "Count": len(typed), "ScannedCount": len(typed)}))
    export = tmp_path / "abc123.json.gz"  # DynamoDB export to S3, DYNAMODB_JSON format
    export.write_bytes(gzip.compress("".join(json.dumps({"Item": t}) + "\n" for t in typed).encode()))

    expected = [rq.parse_item(row) for row in FIXTURE]
    assert rq.read_ratings(scan) == expected
    assert rq.read_ratings(export) == expected


def test_read_ratings_skips_bad_items_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ratings.jsonl", [FIXTURE[0], {**FIXTURE[1], "rating": 3}, {"search_id": "x"}])
    assert [r.product_id for r in rq.read_ratings(path)] == ["p1"]


def test_read_ratings_without_any_rating_raises(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ratings.jsonl", [{"search_id": "x"}])
    with pytest.raises(RatingsError, match="holds no readable ratings"):
        rq.read_ratings(path)


def test_read_ratings_unknown_format_raises(tmp_path: Path) -> None:
    path = tmp_path / "ratings.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(RatingsError, match="cannot tell the format"):
        rq.read_ratings(path)


# --- A/B --------------------------------------------------------------------------------------------


def ab_fixture(good_a: int, good_b: int, *, searches: int = 20, per_search: int = 5) -> list[rq.Rating]:
    """`searches` searches per side, `per_search` rated results each, the first good_* rated +1."""
    rows = []
    for side, good, model in (("a", good_a, "mA"), ("b", good_b, "mB")):
        for s in range(searches):
            for rank in range(per_search):
                rows.append(item(f"{side}{s}", f"p{rank}", rank, 1 if rank < good else -1, model=model))
    return [rq.parse_item(row) for row in rows]


def test_compare_clearly_different_versions_is_significant() -> None:
    result = rq.compare(ab_fixture(4, 1), "mA", "mB", k=10)

    assert result["field"] == "model_fingerprint"
    assert result["difference"] == pytest.approx(0.6)  # 4/5 - 1/5 in every search
    assert result["p_value"] < 0.001
    assert result["significant"] is True
    assert result["difference_ci"] == (pytest.approx(0.6), pytest.approx(0.6))
    assert result["naive_z_test"]["p_value"] < 0.001


def test_compare_identical_versions_is_not_significant() -> None:
    result = rq.compare(ab_fixture(3, 3), "mA", "mB", k=10)

    assert result["difference"] == 0.0
    assert result["p_value"] == pytest.approx(1.0)
    assert result["significant"] is False
    assert result["naive_z_test"]["z"] == 0.0


def test_compare_small_noisy_difference_is_not_significant() -> None:
    # Two searches per side, 3/5 vs 2/5 positive: far too little evidence.
    result = rq.compare(ab_fixture(3, 2, searches=2), "mA", "mB", k=10)
    assert result["significant"] is False
    assert result["p_value"] > 0.05


def test_compare_unknown_version_raises() -> None:
    with pytest.raises(RatingsError, match="'mA' and 'mZ' are not both values"):
        rq.compare(ab_fixture(3, 3), "mA", "mZ")


def test_compare_index_versions_by_name() -> None:
    ratings = [rq.parse_item(row) for row in FIXTURE]
    result = rq.compare(ratings, "i1", "i2", k=10)
    assert result["field"] == "index_version"
    assert result["significant"] is False  # one search on the i2 side
    assert result["note"] == "needs at least two rated searches on each side"


# --- over HTTP --------------------------------------------------------------------------------------


def test_fetch_ratings_follows_cursors_with_the_token() -> None:
    pages = {None: ({"items": FIXTURE[:3], "next_cursor": "c1"}), "c1": {"items": FIXTURE[3:], "next_cursor": None}}
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("authorization") != "Bearer tok":
            return httpx.Response(401, json={"detail": "no"})
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        ratings = rq.fetch_ratings("http://127.0.0.1:8000/", "tok", client=client)

    assert [r.product_id for r in ratings] == [row["product_id"] for row in FIXTURE]
    assert [str(r.url.path) for r in seen] == ["/evaluations", "/evaluations"]
    assert seen[1].url.params["cursor"] == "c1"


def test_fetch_ratings_refused_token_raises() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(401, json={"detail": "no"}))
    with httpx.Client(transport=transport) as client, pytest.raises(RatingsError, match="refused the admin token"):
        rq.fetch_ratings("http://127.0.0.1:8000/evaluations", "wrong", client=client)


def test_fetch_ratings_rejects_non_http_url() -> None:
    with pytest.raises(RatingsError, match="must be an http"):
        rq.fetch_ratings("file:///etc/passwd", "tok")


@pytest.fixture
def local_stack(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Any, Settings]]:
    """The evaluations app against moto, as `moodboard serve` runs it (no socket: TestClient)."""
    from evaluations import app as evaluations_app
    from moodboard.runtime import Runtime, set_runtime
    from moodboard.settings import get_settings
    from moodboard.tables import create_tables

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=settings.aws_region)
        create_tables(dynamodb, settings)
        set_runtime(Runtime(settings, dynamodb=dynamodb))
        evaluations_app.app.dependency_overrides[get_settings] = lambda: settings
        try:
            with TestClient(evaluations_app.app) as client:
                yield client, dynamodb, settings
        finally:
            evaluations_app.app.dependency_overrides.clear()
            set_runtime(None)


def test_fetch_ratings_from_the_local_stack_matches_the_export(local_stack: tuple[TestClient, Any, Settings]) -> None:
    from moodboard.history import HistoryStore, make_history_record

    client, dynamodb, settings = local_stack
    history = HistoryStore(dynamodb, settings.history_table)
    searches = {"s1": ("mA", "i1", "Dress", ["p1", "p2", "p3"]), "s2": ("mA", "i1", "Shoes", ["p4", "x", "y", "p5"])}
    for search_id, (model, index, category, results) in searches.items():
        history.put(make_history_record(search_id=search_id, kind="image", category=category,
                                        params={"weights": W1}, result_ids=results, model_fingerprint=model,
                                        index_version=index, ttl_days=1))
    for row in FIXTURE[:5]:
        body = {"search_id": row["search_id"], "product_id": row["product_id"], "rating": row["rating"],
                "rater": row["rater"], **({"score": row["score"]} if "score" in row else {})}
        assert client.post("/evaluations", json=body).status_code == 200

    fetched = rq.fetch_ratings("http://testserver", "test-admin-token", client=client, page_size=2)

    key = attrgetter("search_id", "product_id", "rater")
    expected = sorted((rq.parse_item(row) for row in FIXTURE[:5]), key=key)
    assert sorted(fetched, key=key) == expected
    # The same numbers as from the export: s1 2/3, s2 1/2 -> 3 of 5.
    assert rq.summarize(fetched)["overall"]["precision_at"]["10"]["value"] == pytest.approx(3 / 5)
