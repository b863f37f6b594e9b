"""The evaluations Lambda through its handler, with API Gateway HTTP API (v2) events, against moto."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from evaluations import app as evaluations_app
from moodboard.deps import get_load_runner
from moodboard.dynamo import deserialize
from moodboard.errors import StoreError
from moodboard.evaluation_summary import summarize, weights_key
from moodboard.evaluations import EvaluationRecord
from moodboard.history import HistoryStore, make_history_record
from moodboard.load_jobs import JobStore
from moodboard.runtime import Runtime, set_runtime
from moodboard.settings import Settings, get_settings
from moodboard.tables import create_tables

ROOT = Path(__file__).parents[2]
EVENTS = ROOT / "tests" / "events"
TOKEN = "test-admin-token"
W1 = {"w_image": 1.0, "w_type": 0.6, "w_text": 0.5, "w_neg": 0.3}
W2 = {"w_image": 0.5, "w_type": 1.0, "w_text": 0.5, "w_neg": 0.0}
SUB = "7d8e9f10-1112-1314-1516-171819202122"

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@dataclass
class FakeLambdaContext:
    function_name: str = "moodboard-evaluations"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:moodboard-evaluations"
    aws_request_id: str = "8f6c1e8a-0000-4000-8000-000000000001"


class FakeLoadRunner:
    """Records the loads it was asked to start; raises `error` instead when given one."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.error = error

    def start(self, job_id: str, catalog_key: str) -> None:
        if self.error:
            raise self.error
        self.calls.append((job_id, catalog_key))


@dataclass
class Api:
    """Calls the Lambda handler with v2 events built from tests/events/evaluations_*.json."""

    dynamodb: Any
    settings: Settings
    runner: FakeLoadRunner

    def configure(self, **changes: Any) -> None:
        self.settings = self.settings.model_copy(update=changes)
        evaluations_app.app.dependency_overrides[get_settings] = lambda: self.settings

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: str = "",
        token: str | None = None,
        claims: bool = False,
        raw_body: str | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        template = "evaluations_admin_jwt.json" if claims else "evaluations_post.json"
        event = copy.deepcopy(json.loads((EVENTS / template).read_text()))
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["requestContext"]["http"]["method"] = method
        event["routeKey"] = event["requestContext"]["routeKey"] = "$default"
        event["rawQueryString"] = query
        event.pop("queryStringParameters", None)
        event["headers"].pop("authorization", None)
        event["headers"].pop("content-length", None)
        if token is not None:
            event["headers"]["authorization"] = f"Bearer {token}"
        if body is not None or raw_body is not None:
            event["headers"]["content-type"] = "application/json"
        event["body"] = raw_body if raw_body is not None else None if body is None else json.dumps(body)
        response = evaluations_app.handler(event, FakeLambdaContext())
        text = response.get("body") or ""
        return response["statusCode"], response["headers"], json.loads(text) if text else None

    def rate(self, search_id: str, product_id: str, rating: int, **extra: Any) -> tuple[int, Any]:
        status, _, body = self.call(
            "POST", "/evaluations", body={"search_id": search_id, "product_id": product_id, "rating": rating, **extra}
        )
        return status, body

    def add_search(self, search_id: str, result_ids: list[str], **kw: Any) -> None:
        record = make_history_record(
            search_id=search_id,
            kind="image",
            category=kw.get("category", "Dress"),
            params={"weights": kw.get("weights", W1), "k": len(result_ids), "offset": kw.get("offset", 0)},
            result_ids=result_ids,
            model_fingerprint=kw.get("model", "mA"),
            index_version=kw.get("index_version", "i1"),
            ttl_days=30,
        )
        HistoryStore(self.dynamodb, self.settings.history_table).put(record)


@pytest.fixture
def api(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=settings.aws_region)
        create_tables(dynamodb, settings)
        runner = FakeLoadRunner()
        set_runtime(Runtime(settings, dynamodb=dynamodb))
        overrides = evaluations_app.app.dependency_overrides
        overrides[get_settings] = lambda: settings
        overrides[get_load_runner] = lambda: runner
        try:
            yield Api(dynamodb, settings, runner)
        finally:
            overrides.clear()
            set_runtime(None)


def test_evaluations_app_import_stays_light() -> None:
    code = (
        "import sys, evaluations.app\n"
        "heavy = [m for m in ('numpy', 'onnxruntime', 'hnswlib', 'PIL', 'torch') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_post_evaluation_creates_then_updates_once(api: Api) -> None:
    api.add_search("s1", ["p0", "p1", "p2"])

    status, first = api.rate("s1", "p1", 1, score=5, comment="love the palette")
    again_status, again = api.rate("s1", "p1", -1, score=2)

    assert (status, first["created"]) == (200, True)
    assert (again_status, again["created"]) == (200, False)
    evaluation = again["evaluation"]
    assert (evaluation["rating"], evaluation["score"], evaluation["comment"]) == (-1, 2, None)
    assert evaluation["created_at"] == first["evaluation"]["created_at"]
    assert (evaluation["rater"], evaluation["rank"], evaluation["model_fingerprint"]) == ("anonymous", 1, "mA")
    assert api.dynamodb.scan(TableName=api.settings.evaluations_table)["Count"] == 1


def test_post_evaluation_product_not_in_search_returns_409(api: Api) -> None:
    api.add_search("s1", ["p0", "p1"])

    status, body = api.rate("s1", "p9", 1)

    assert status == 409
    assert body == {
        "detail": "product 'p9' was not a result of search 's1'",
        "error": "Conflict",
        "search_id": "s1",
        "product_id": "p9",
    }


def test_post_evaluation_unknown_search_returns_404(api: Api) -> None:
    status, body = api.rate("missing", "p0", 1)

    assert status == 404
    assert (body["error"], body["search_id"]) == ("NotFound", "missing")


@pytest.mark.parametrize(
    "extra",
    [
        {"rating": 0}, {"rating": 2}, {"rating": True}, {"rating": "1"},
        {"score": 0}, {"score": 6}, {"comment": "x" * 1001}, {"ratings": 1},
    ],
)
def test_post_evaluation_bad_fields_return_422(api: Api, extra: dict[str, Any]) -> None:
    api.add_search("s1", ["p0"])
    body = {"search_id": "s1", "product_id": "p0", "rating": 1} | extra

    status, _, response = api.call("POST", "/evaluations", body=body)

    assert status == 422
    assert response["error"] == "RequestValidationError"


def test_post_evaluation_rater_comes_from_body_then_jwt(api: Api) -> None:
    api.add_search("s1", ["p0"])

    _, by_body = api.rate("s1", "p0", 1, rater="ann")
    api.configure(trust_gateway_auth=True)
    status, _, by_jwt = api.call(
        "POST", "/evaluations", body={"search_id": "s1", "product_id": "p0", "rating": 1, "rater": "ann"}, claims=True
    )

    assert by_body["evaluation"]["rater"] == "ann"
    assert (status, by_jwt["evaluation"]["rater"], by_jwt["created"]) == (200, SUB, True)


def test_delete_evaluation_clears_the_raters_rating_only(api: Api) -> None:
    api.add_search("s1", ["p0", "p1"])
    api.rate("s1", "p0", 1)
    api.rate("s1", "p0", -1, rater="ann")
    api.rate("s1", "p1", 1)

    status, _, body = api.call("DELETE", "/evaluations/s1/p0")
    again, _, missing = api.call("DELETE", "/evaluations/s1/p0")

    assert (status, body) == (204, None)
    assert (again, missing["error"], missing["product_id"]) == (404, "NotFound", "p0")
    items = [deserialize(item) for item in api.dynamodb.scan(TableName=api.settings.evaluations_table)["Items"]]
    assert sorted((item["product_id"], item["rater"]) for item in items) == [("p0", "ann"), ("p1", "anonymous")]
    assert api.call("DELETE", "/evaluations/s1/p0", query="rater=ann")[0] == 204
    assert api.rate("s1", "p0", 1)[1]["created"] is True  # a cleared rating can be given again


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/evaluations"),
        ("GET", "/evaluations/summary"),
        ("GET", "/history"),
        ("GET", "/search-urls"),
        ("POST", "/search-urls"),
        ("DELETE", "/search-urls/abc"),
        ("POST", "/admin/load"),
        ("GET", "/admin/load/abc"),
    ],
)
def test_admin_routes_without_auth_return_401(api: Api, method: str, path: str) -> None:
    status, headers, body = api.call(method, path, body={} if method == "POST" else None)

    assert status == 401
    assert headers["www-authenticate"] == "Bearer"
    assert body["error"] == "Unauthorized"


def test_admin_route_wrong_token_401_right_token_200(api: Api) -> None:
    assert api.call("GET", "/history", token="wrong")[0] == 401
    assert api.call("GET", "/history", token=TOKEN)[:3:2] == (200, {"items": [], "next_cursor": None})


def test_admin_route_with_gateway_claims_when_trusted(api: Api) -> None:
    api.add_search("s1", ["p0"])
    api.configure(trust_gateway_auth=True)

    status, _, body = api.call("GET", "/history", claims=True)
    no_claims_status = api.call("GET", "/history", token=TOKEN)[0]

    assert status == 200 and [r["search_id"] for r in body["items"]] == ["s1"]
    assert no_claims_status == 401


def test_history_lists_newest_first_with_cursor(api: Api) -> None:
    for i in range(3):
        api.add_search(f"s{i}", ["p0"])

    _, _, first = api.call("GET", "/history", query="limit=2", token=TOKEN)
    _, _, second = api.call("GET", "/history", query=f"limit=2&cursor={first['next_cursor']}", token=TOKEN)

    assert [r["search_id"] for r in first["items"] + second["items"]] == ["s2", "s1", "s0"]
    assert api.call("GET", "/history", query="cursor=garbage", token=TOKEN)[0] == 400


def _summary_fixture(api: Api) -> None:
    """Three searches, 11 stored ratings; expected figures are worked out by hand in the tests."""
    api.add_search("s1", [f"p{i}" for i in range(12)], model="mA", index_version="i1", category="Dress", weights=W1)
    api.add_search("s2", [f"q{i}" for i in range(6)], model="mB", index_version="i2", category="Lamp", weights=W2)
    api.add_search("s3", [f"r{i}" for i in range(4)], model="mA", index_version="i1", category="Dress", offset=10)
    api.rate("s1", "p2", 1)  # replaced below by -1: counted once, as -1
    for product, rating in [("p0", 1), ("p1", 1), ("p2", -1), ("p4", 1), ("p5", -1), ("p9", 1), ("p11", -1)]:
        api.rate("s1", product, rating)
    api.rate("s2", "q0", -1)
    api.rate("s2", "q1", 1, score=4)
    api.rate("s2", "q3", -1, score=2)
    api.rate("s3", "r0", 1)  # rank 10: outside both @5 and @10


def test_summary_precision_at_k_matches_hand_computed(api: Api) -> None:
    _summary_fixture(api)

    status, _, summary = api.call("GET", "/evaluations/summary", query="source=shopper", token=TOKEN)

    assert status == 200
    assert summary["total"] == 11
    overall = summary["overall"]
    # rank < 5: p0+ p1+ p2- p4+ q0- q1+ q3- -> 4/7; rank < 10 adds p5- p9+ -> 5/9
    assert overall["precision_at"] == {"5": pytest.approx(4 / 7), "10": pytest.approx(5 / 9)}
    assert overall["rated_at"] == {"5": 7, "10": 9}
    assert (overall["positive"], overall["negative"]) == (6, 5)
    models = {g["key"]: g for g in summary["by_model_fingerprint"]}
    assert models["mA"]["count"] == 8 and models["mB"]["count"] == 3
    assert models["mA"]["precision_at"] == {"5": 0.75, "10": pytest.approx(4 / 6)}
    assert models["mB"]["precision_at"] == {"5": pytest.approx(1 / 3), "10": pytest.approx(1 / 3)}
    assert (models["mA"]["mean_score"], models["mB"]["mean_score"]) == (None, 3.0)
    assert {g["key"]: g["count"] for g in summary["by_index_version"]} == {"i1": 8, "i2": 3}
    assert {g["key"]: g["count"] for g in summary["by_category"]} == {"Dress": 8, "Lamp": 3}
    assert {g["key"]: g["count"] for g in summary["by_weights"]} == {
        "w_image=1,w_neg=0.3,w_text=0.5,w_type=0.6": 8,
        "w_image=0.5,w_neg=0,w_text=0.5,w_type=1": 3,
    }


def test_summary_and_list_filter_by_model(api: Api) -> None:
    _summary_fixture(api)

    _, _, summary = api.call("GET", "/evaluations/summary", query="model_fingerprint=mB&source=all", token=TOKEN)
    _, _, page = api.call("GET", "/evaluations", query="model_fingerprint=mB&limit=2", token=TOKEN)
    next_page = f"model_fingerprint=mB&cursor={page['next_cursor']}"
    _, _, rest = api.call("GET", "/evaluations", query=next_page, token=TOKEN)

    assert summary["total"] == 3 and summary["overall"]["precision_at"]["5"] == pytest.approx(1 / 3)
    assert sorted(e["product_id"] for e in page["items"] + rest["items"]) == ["q0", "q1", "q3"]
    assert rest["next_cursor"] is None


def test_summarize_without_ratings_has_no_precision() -> None:
    summary = summarize([])

    assert summary.total == 0 and summary.overall.precision_at == {5: None, 10: None}
    assert summary.by_model_fingerprint == []


def test_summarize_counts_every_rater_once() -> None:
    def rating(rater: str, value: int) -> EvaluationRecord:
        return EvaluationRecord(
            search_id="s", product_id="p", rater=rater, rating=value, created_at="t", updated_at="t",
            rank=0, model_fingerprint="m", index_version="i", weights=W1,
        )

    summary = summarize([rating("ann", 1), rating("bob", -1), rating("cy", 1)], ks=(1,))

    assert summary.overall.precision_at == {1: pytest.approx(2 / 3)}
    assert weights_key(W1) == "w_image=1,w_neg=0.3,w_text=0.5,w_type=0.6"


def test_search_urls_crud(api: Api) -> None:
    status, _, created = api.call(
        "POST", "/search-urls", body={"url": "https://www.pinterest.com/pin/42/", "category": "Dress"}, token=TOKEN
    )
    _, _, listed = api.call("GET", "/search-urls", token=TOKEN)
    deleted = api.call("DELETE", f"/search-urls/{created['id']}", token=TOKEN)[0]
    _, _, after = api.call("GET", "/search-urls", token=TOKEN)
    again, _, missing = api.call("DELETE", f"/search-urls/{created['id']}", token=TOKEN)

    assert status == 201 and created["created_by"] == "admin"
    assert listed == {"items": [created]}
    assert (deleted, after, again, missing["error"]) == (204, {"items": []}, 404, "NotFound")


def test_search_url_with_another_scheme_returns_422(api: Api) -> None:
    body = {"url": "file:///etc/passwd", "category": "Dress"}

    status, _, _ = api.call("POST", "/search-urls", body=body, token=TOKEN)

    assert status == 422


def test_admin_load_creates_job_and_starts_runner(api: Api) -> None:
    status, _, started = api.call("POST", "/admin/load", body={"catalog_key": "catalogs/spring.csv"}, token=TOKEN)
    job_id = started["job_id"]
    _, _, queued = api.call("GET", f"/admin/load/{job_id}", token=TOKEN)
    jobs = JobStore(api.dynamodb, api.settings.jobs_table)
    jobs.set_progress(job_id, 40, 60)
    jobs.update(job_id, rejects=[{"line": 7, "reason": "missing image"}])
    _, _, running = api.call("GET", f"/admin/load/{job_id}", token=TOKEN)

    assert status == 202 and api.runner.calls == [(job_id, "catalogs/spring.csv")]
    assert (queued["status"], queued["progress"], queued["rejects"], queued["error"]) == ("queued", {}, [], None)
    assert (running["status"], running["progress"]) == ("running", {"done": 40, "total": 60})
    assert running["rejects"] == [{"line": 7, "reason": "missing image"}]


def test_admin_load_runner_failure_marks_job_failed(api: Api) -> None:
    api.runner.error = StoreError("Lambda failed to start the loader (TooManyRequestsException)")

    status, _, body = api.call("POST", "/admin/load", body={"catalog_key": "catalogs/a.csv"}, token=TOKEN)
    items = api.dynamodb.scan(TableName=api.settings.jobs_table)["Items"]

    assert (status, body["error"]) == (503, "StoreError")
    assert [i["status"]["S"] for i in items] == ["failed"]


def test_admin_load_without_loader_configured_returns_500(api: Api) -> None:
    evaluations_app.app.dependency_overrides.pop(get_load_runner)

    status, _, body = api.call("POST", "/admin/load", body={"catalog_key": "catalogs/a.csv"}, token=TOKEN)

    assert (status, body["error"]) == (500, "ConfigError")
    assert api.dynamodb.scan(TableName=api.settings.jobs_table)["Count"] == 0


def test_admin_load_unknown_job_returns_404(api: Api) -> None:
    status, _, body = api.call("GET", "/admin/load/nope", token=TOKEN)

    assert (status, body["error"], body["job_id"]) == (404, "NotFound", "nope")


# --- deeply nested JSON (issue 11) ---------------------------------------------------------------

DEEP = 5000


@pytest.mark.parametrize("raw_body", [
    "[" * DEEP + "]" * DEEP,
    '{"search_id": ' + "[" * DEEP + "]" * DEEP + ', "product_id": "p0", "rating": 1}',
    '{"search_id": "s1", "product_id": "p0", "rating": 1, "comment": ' + '{"a":' * DEEP + "1" + "}" * DEEP + "}",
], ids=["body", "field", "object-field"])
def test_post_evaluation_deeply_nested_json_returns_422(api: Api, raw_body: str) -> None:
    api.add_search("s1", ["p0"])

    status, _, body = api.call("POST", "/evaluations", raw_body=raw_body)

    assert status == 422
    assert body == {"detail": "the JSON body nests arrays or objects more than 32 levels deep",
                    "error": "NestingTooDeep", "max_depth": 32}


@pytest.mark.parametrize("path", ["/history", "/evaluations"])
@pytest.mark.parametrize("payload", [b"[" * 3000, b'{"a":[' * 510, b'{"search_id": [[[[]]]]}'],
                         ids=["arrays", "objects-and-arrays", "shallow-but-too-deep"])
def test_admin_listing_with_a_deeply_nested_cursor_returns_400(api: Api, path: str, payload: bytes) -> None:
    cursor = base64.urlsafe_b64encode(payload).decode().rstrip("=")[:4096]

    status, _, body = api.call("GET", path, query=f"cursor={cursor}", token=TOKEN)

    assert status == 400
    assert body == {"detail": "the cursor is not one this listing returned", "error": "InvalidCursor"}


def test_admin_load_records_the_confirmation_on_the_job(api: Api) -> None:
    _, _, plain = api.call("POST", "/admin/load", body={"catalog_key": "catalogs/spring.csv"}, token=TOKEN)
    status, _, confirmed = api.call("POST", "/admin/load", body={"catalog_key": "catalogs/spring.csv", "confirm": True},
                                    token=TOKEN)
    bad, _, _ = api.call("POST", "/admin/load", body={"catalog_key": "catalogs/spring.csv", "confirm": "maybe"},
                         token=TOKEN)

    assert status == 202 and bad == 422
    jobs = JobStore(api.dynamodb, api.settings.jobs_table)
    assert jobs.get(plain["job_id"]).confirm is False and jobs.confirmed(plain["job_id"]) is False
    assert jobs.get(confirmed["job_id"]).confirm is True and jobs.confirmed(confirmed["job_id"]) is True
    _, _, shown = api.call("GET", f"/admin/load/{confirmed['job_id']}", token=TOKEN)
    assert shown["confirm"] is True
