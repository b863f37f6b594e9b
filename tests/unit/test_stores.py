"""DynamoDB repositories against moto: history, evaluations, search URLs, jobs, and the load runners."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from moodboard.errors import Conflict, InvalidCursor, NotFound, StoreError
from moodboard.evaluations import EvaluationStore, rater_key
from moodboard.history import HistoryStore, make_history_record
from moodboard.load_jobs import MAX_REJECTS, JobStore, LambdaLoadRunner, ThreadLoadRunner
from moodboard.search_urls import SearchUrlRequest, SearchUrlStore
from moodboard.settings import Settings
from moodboard.tables import TABLES, create_tables

WEIGHTS = {"w_image": 1.0, "w_type": 0.6, "w_text": 0.5, "w_neg": 0.3}


@pytest.fixture
def dynamodb(settings: Settings) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=settings.aws_region)
        create_tables(client, settings)
        yield client


@pytest.fixture
def history(dynamodb: Any, settings: Settings) -> HistoryStore:
    return HistoryStore(dynamodb, settings.history_table)


@pytest.fixture
def evaluations(dynamodb: Any, settings: Settings) -> EvaluationStore:
    return EvaluationStore(dynamodb, settings.evaluations_table)


@pytest.fixture
def jobs(dynamodb: Any, settings: Settings) -> JobStore:
    return JobStore(dynamodb, settings.jobs_table)


def _search(search_id: str = "s1", *, offset: int = 0, model: str = "fp-a", now: float | None = None, **kw: Any):
    return make_history_record(
        search_id=search_id,
        kind="image",
        category=kw.pop("category", "Dress"),
        params={"weights": WEIGHTS, "k": 4, "offset": offset, "near_copy_threshold": 0.95},
        result_ids=kw.pop("result_ids", ["p0", "p1", "p2", "p3"]),
        model_fingerprint=model,
        index_version=kw.pop("index_version", "v1"),
        ttl_days=30,
        now=now,
    )


def test_create_tables_matches_specs_and_is_idempotent(dynamodb: Any, settings: Settings) -> None:
    names = sorted(getattr(settings, spec.settings_field) for spec in TABLES)
    assert sorted(dynamodb.list_tables()["TableNames"]) == names
    assert create_tables(dynamodb, settings) == []
    evaluations = dynamodb.describe_table(TableName=settings.evaluations_table)["Table"]
    assert [k["AttributeName"] for k in evaluations["KeySchema"]] == ["search_id", "product_rater"]
    ttl = dynamodb.describe_time_to_live(TableName=settings.history_table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "ttl"


def test_create_tables_accepts_a_service_resource(settings: Settings) -> None:
    with mock_aws():
        resource = boto3.resource("dynamodb", region_name=settings.aws_region)

        created = create_tables(resource, settings)

        assert sorted(created) == sorted(t.name for t in resource.tables.all())
        assert len(created) == len(TABLES)


def test_history_round_trip_keeps_floats_and_ttl(history: HistoryStore, dynamodb: Any, settings: Settings) -> None:
    record = _search(now=1_800_000_000.0)
    history.put(record)

    back = history.get("s1")

    assert back == record
    assert back.params["weights"]["w_type"] == 0.6
    assert back.ttl == 1_800_000_000 + 30 * 86_400
    raw = dynamodb.get_item(TableName=settings.history_table, Key={"search_id": {"S": "s1"}})["Item"]
    assert raw["params"]["M"]["weights"]["M"]["w_type"] == {"N": "0.6"}


def _raw_history(dynamodb: Any, settings: Settings, search_id: str) -> dict[str, Any] | None:
    return dynamodb.get_item(TableName=settings.history_table, Key={"search_id": {"S": search_id}}).get("Item")


def test_history_keep_removes_the_ttl_of_those_searches_only(history: HistoryStore, dynamodb: Any,
                                                               settings: Settings) -> None:
    ids = [f"s{i:03d}" for i in range(200)]  # a round's most items (moodboard.rounds.MAX_ITEMS)
    for search_id in [*ids, "other"]:
        history.put(_search(search_id, now=1_800_000_000.0))
    assert all("ttl" in _raw_history(dynamodb, settings, sid) for sid in [*ids, "other"])

    history.keep([*ids, ids[0]])  # a search named twice is kept once

    assert [sid for sid in ids if "ttl" in _raw_history(dynamodb, settings, sid)] == []
    assert _raw_history(dynamodb, settings, "other")["ttl"] == {"N": str(1_800_000_000 + 30 * 86_400)}
    kept = history.get(ids[0])
    assert kept.ttl is None and kept.result_ids == ["p0", "p1", "p2", "p3"]  # only the ttl went
    history.keep([ids[0]])  # again: nothing changes
    assert history.get(ids[0]) == kept
    with pytest.raises(NotFound):
        history.keep(["other", "gone"])
    assert _raw_history(dynamodb, settings, "gone") is None  # the update never creates a record


def test_history_put_accepts_a_plain_dict(history: HistoryStore) -> None:
    history.put(_search().model_dump() | {"image_source": "url"})

    assert history.get("s1").model_extra == {"image_source": "url"}


def test_history_get_unknown_search_raises_not_found(history: HistoryStore) -> None:
    with pytest.raises(NotFound, match="'nope'"):
        history.get("nope")


def test_history_recent_is_newest_first_and_pages(history: HistoryStore) -> None:
    for i in range(5):
        history.put(_search(f"s{i}", now=1_800_000_000.0 + i))

    first = history.recent(limit=2)
    second = history.recent(limit=2, cursor=first.next_cursor)
    third = history.recent(limit=2, cursor=second.next_cursor)

    assert [r.search_id for r in first.items + second.items + third.items] == ["s4", "s3", "s2", "s1", "s0"]
    assert third.next_cursor is None or history.recent(limit=2, cursor=third.next_cursor).items == []


@pytest.mark.parametrize("cursor", ["not-base64!", "eyJhIjogMX0", "W10"])
def test_history_recent_bad_cursor_raises_invalid_cursor(history: HistoryStore, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        history.recent(limit=2, cursor=cursor)


def test_rate_creates_then_updates_one_item(evaluations: EvaluationStore, dynamodb: Any, settings: Settings) -> None:
    search = _search()

    first, created = evaluations.rate(search, product_id="p2", rater="ann", rating=1, score=4, comment="nice")
    second, created_again = evaluations.rate(search, product_id="p2", rater="ann", rating=-1)

    assert (created, created_again) == (True, False)
    assert dynamodb.scan(TableName=settings.evaluations_table)["Count"] == 1
    assert second.rating == -1 and second.score is None and second.comment is None
    assert second.created_at == first.created_at
    assert second.revisions == 2
    assert evaluations.get("s1", "p2", "ann") == second


def test_rate_copies_search_context(evaluations: EvaluationStore) -> None:
    record, _ = evaluations.rate(_search(offset=20, model="fp-b"), product_id="p3", rater="ann", rating=1)

    assert (record.rank, record.model_fingerprint, record.index_version, record.category) == (23, "fp-b", "v1", "Dress")
    assert record.weights == WEIGHTS


def test_rate_product_not_in_search_raises_conflict(evaluations: EvaluationStore) -> None:
    with pytest.raises(Conflict) as info:
        evaluations.rate(_search(), product_id="elsewhere", rater="ann", rating=1)
    assert info.value.details == {"search_id": "s1", "product_id": "elsewhere"}


def test_rate_same_product_by_two_raters_keeps_both(evaluations: EvaluationStore) -> None:
    evaluations.rate(_search(), product_id="p0", rater="ann", rating=1)
    evaluations.rate(_search(), product_id="p0", rater="bob", rating=-1)

    assert sorted(r.rater for r in evaluations.scan()) == ["ann", "bob"]


def test_rater_key_escapes_separator_so_keys_never_collide() -> None:
    assert rater_key("a#b", "c") != rater_key("a", "b#c")
    assert rater_key("p1", "x%23y") != rater_key("p1", "x#y")


def test_evaluations_page_filters_and_paginates(evaluations: EvaluationStore) -> None:
    for model, search_id in [("fp-a", "s1"), ("fp-b", "s2")]:
        for product in ["p0", "p1", "p2", "p3"]:
            evaluations.rate(_search(search_id, model=model), product_id=product, rater="ann", rating=1)

    first = evaluations.page(model_fingerprint="fp-a", limit=3)
    second = evaluations.page(model_fingerprint="fp-a", limit=3, cursor=first.next_cursor)

    assert len(first.items) == 3 and first.next_cursor
    assert len(second.items) == 1 and second.next_cursor is None
    assert {r.model_fingerprint for r in first.items + second.items} == {"fp-a"}
    assert {r.product_id for r in first.items + second.items} == {"p0", "p1", "p2", "p3"}
    assert len(evaluations.page(category="Lamp").items) == 0


def test_search_urls_add_list_delete(dynamodb: Any, settings: Settings) -> None:
    store = SearchUrlStore(dynamodb, settings.search_urls_table)
    first = store.add(SearchUrlRequest(url="https://www.pinterest.com/pin/1/", category="Dress"), created_by="ann")
    second = store.add(SearchUrlRequest(url="https://example.com/a.jpg", category="Lamp", note="warm"))

    assert [e.id for e in store.all()] == [first.id, second.id]
    store.delete(first.id)
    assert store.all() == [second]
    with pytest.raises(NotFound):
        store.delete(first.id)


def test_jobs_create_update_get(jobs: JobStore) -> None:
    job = jobs.create("catalogs/spring.csv")
    jobs.set_progress(job.job_id, 3, 10, stage="embedding")
    rejects = [{"line": i, "reason": "no image"} for i in range(MAX_REJECTS + 5)]
    jobs.update(job.job_id, status="succeeded", rejects=rejects, result={"version": "v2"})

    back = jobs.get(job.job_id)

    assert back.status == "succeeded"
    assert back.progress == {"done": 3, "total": 10, "stage": "embedding"}
    assert len(back.rejects) == MAX_REJECTS and back.rejects_total == MAX_REJECTS + 5
    assert back.result == {"version": "v2"} and back.catalog_key == "catalogs/spring.csv"


def test_jobs_update_unknown_job_raises_not_found(jobs: JobStore) -> None:
    with pytest.raises(NotFound):
        jobs.update("nope", status="running")
    with pytest.raises(NotFound):
        jobs.get("nope")


def test_store_on_missing_table_raises_store_error(dynamodb: Any) -> None:
    with pytest.raises(StoreError, match="ResourceNotFoundException"):
        HistoryStore(dynamodb, "no-such-table").get("s1")


def test_lambda_load_runner_invokes_asynchronously() -> None:
    client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    payload = json.dumps({"job_id": "j1", "catalog_key": "catalogs/a.csv"}).encode()
    with Stubber(client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 202, "Payload": io.BytesIO(b"")},
            {"FunctionName": "moodboard-loader", "InvocationType": "Event", "Payload": payload},
        )
        LambdaLoadRunner(client, "moodboard-loader").start("j1", "catalogs/a.csv")
        stub.assert_no_pending_responses()


def test_lambda_load_runner_failure_raises_store_error() -> None:
    client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_client_error("invoke", "ResourceNotFoundException", http_status_code=404)
        with pytest.raises(StoreError, match="Lambda failed to start the loader"):
            LambdaLoadRunner(client, "missing").start("j1", "catalogs/a.csv")


def test_thread_load_runner_marks_a_crashed_load_failed(jobs: JobStore) -> None:
    job = jobs.create("catalogs/a.csv")

    def crash(job_id: str, catalog_key: str) -> None:
        raise RuntimeError(f"cannot read {catalog_key}")

    runner = ThreadLoadRunner(crash, jobs)
    runner.start(job.job_id, job.catalog_key)
    runner.threads[0].join(timeout=10)

    back = jobs.get(job.job_id)
    assert back.status == "failed" and back.error == "RuntimeError: cannot read catalogs/a.csv"


# --- numbers beyond DynamoDB's range, deeply nested cursors (issue 11) ---------------------------


def test_history_stores_numbers_below_dynamodb_range_as_zero(history: HistoryStore) -> None:
    weights = {"w_image": 1.0, "w_type": 5e-324, "w_text": 1e-200, "w_neg": 1.5e-130}
    record = make_history_record(search_id="tiny", kind="image+text", category="dress",
                                 params={"weights": weights, "mmr_lambda": 1e-300, "near_copy_threshold": -1e-131},
                                 result_ids=["p0"], model_fingerprint="fp-a", index_version="v1", ttl_days=1)

    history.put(record)
    stored = history.get("tiny")

    assert stored.params["weights"] == {"w_image": 1.0, "w_type": 0, "w_text": 0, "w_neg": 1.5e-130}
    assert stored.params["mmr_lambda"] == 0 and stored.params["near_copy_threshold"] == 0


@pytest.mark.parametrize("value", [1e126, -1e200, float("inf"), float("nan")])
def test_history_refuses_numbers_dynamodb_cannot_hold(history: HistoryStore, value: float) -> None:
    record = _search("huge")
    record.params["weights"] = {"w_image": value}

    with pytest.raises(StoreError, match="cannot store"):
        history.put(record)


def test_to_dynamo_keeps_every_float_dynamodb_can_hold_exactly() -> None:
    from decimal import Decimal

    from moodboard.dynamo import from_dynamo, to_dynamo

    for value in (1e-130, -1e-130, 9.99e125, 0.1, 1 / 3, -0.0, 123456.789):
        assert float(from_dynamo(to_dynamo(value))) == value
    assert to_dynamo(1e-131) == Decimal(0)


@pytest.mark.parametrize("payload", [b"[" * 3000, b'{"a":[' * 510, b'{"search_id": {"S": ["x"]}}'])
def test_history_recent_deeply_nested_cursor_raises_invalid_cursor(history: HistoryStore, payload: bytes) -> None:
    import base64

    with pytest.raises(InvalidCursor, match="not one this listing returned"):
        history.recent(limit=2, cursor=base64.urlsafe_b64encode(payload).decode())
