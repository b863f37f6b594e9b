"""Team routes against moto: named raters (own ratings only, shoppers kept apart), rounds (404 with the
list URL, a run, the report) and index versions (list, promote, fingerprint refusal)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from moodboard.archives import ArchiveLimits
from moodboard.artifacts import ArtifactStore
from moodboard.catalog_diff import CatalogTooLargeForDryRun, dry_run_in_bucket
from moodboard.evaluation_routes import create_evaluations_app
from moodboard.history import HistoryStore, make_history_record
from moodboard.runtime import Runtime, set_runtime
from moodboard.settings import Settings, get_settings
from moodboard.tables import create_tables
from moodboard.team import LocalTeam
from moto import mock_aws

from tests.unit.test_artifacts import make_bundle

BUCKET = "moodboard-team-test"
ADMIN = "admin-token-for-tests"


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, dict[str, str], Any]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        team = LocalTeam(tmp_path / "team.json")
        tokens = {"alice": team.add("alice"), "bob": team.add("bob"), "carol": team.add("carol", admin=True),
                  "admin": ADMIN}
        settings = Settings(admin_token=ADMIN, team_file=tmp_path / "team.json", artifacts_bucket=BUCKET,
                            cache_dir=tmp_path / "cache")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        create_tables(dynamodb, settings)
        set_runtime(Runtime(settings, dynamodb=dynamodb, s3=s3))
        app = create_evaluations_app()
        app.dependency_overrides[get_settings] = lambda: settings
        history = HistoryStore(dynamodb, settings.history_table)
        for sid, category, model in (("s1", "dress", "fpA"), ("s2", "shoes", "fpA"), ("t1", "dress", "fpB"),
                                     ("t2", "shoes", "fpB")):
            history.put(make_history_record(search_id=sid, kind="image", category=category,
                                            params={"weights": {"w_image": 1.0}, "k": 3},
                                            result_ids=[f"{sid}-p{i}" for i in range(3)], model_fingerprint=model,
                                            index_version="v1", ttl_days=1))
        try:
            yield TestClient(app), tokens, s3
        finally:
            set_runtime(None)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_members_rate_as_themselves_and_only_clear_their_own(api: Any) -> None:
    client, tokens, _ = api
    assert client.get("/team/me", headers=auth(tokens["alice"])).json() == {"name": "alice", "method": "member",
                                                                             "role": "member"}
    assert client.get("/team/me", headers=auth(tokens["carol"])).json()["role"] == "admin"
    assert client.get("/team/me", headers=auth(ADMIN)).json() == {"name": "admin", "method": "token", "role": "admin"}
    body = {"search_id": "s1", "product_id": "s1-p0", "rating": 1, "grade": 3, "comment": "the gist"}
    rated = client.post("/team/evaluations", json=body, headers=auth(tokens["alice"]))
    assert rated.status_code == 200
    record = rated.json()["evaluation"]
    assert (record["rater"], record["source"], record["grade"]) == ("alice", "team", 3)
    # a body naming another rater is refused (no such field), a grade above 3 too
    assert client.post("/team/evaluations", json=body | {"rater": "bob"}, headers=auth(tokens["alice"])).status_code == 422
    assert client.post("/team/evaluations", json=body | {"grade": 4}, headers=auth(tokens["alice"])).status_code == 422
    # bob cannot clear alice's rating: he has none of his own
    assert client.delete("/team/evaluations/s1/s1-p0", headers=auth(tokens["bob"])).status_code == 404
    # a shopper calling themselves alice writes shopper feedback beside, never over, alice's judgement
    shopper = client.post("/evaluations", json={"search_id": "s1", "product_id": "s1-p0", "rating": -1,
                                                "rater": "alice"})
    assert shopper.status_code == 200 and shopper.json()["evaluation"]["source"] == "shopper"
    team = client.get("/evaluations", params={"source": "team"}, headers=auth(ADMIN)).json()["items"]
    assert [(r["rater"], r["rating"]) for r in team] == [("alice", 1)]
    # alice changes, then clears, her own rating
    changed = client.post("/team/evaluations", json=body | {"rating": -1, "grade": 0}, headers=auth(tokens["alice"]))
    assert changed.json()["created"] is False and changed.json()["evaluation"]["grade"] == 0
    assert client.delete("/team/evaluations/s1/s1-p0", headers=auth(tokens["alice"])).status_code == 204
    assert client.get("/team/me", headers=auth("not-a-member")).status_code == 401


def test_round_runs_report_and_unknown_round(api: Any) -> None:
    client, tokens, _ = api
    alice = auth(tokens["alice"])
    missing = client.get("/rounds/nope", headers=alice)
    assert missing.status_code == 404 and missing.json()["list_url"].endswith("/rounds")
    made = client.post("/rounds", headers=alice, json={"name": "Spring", "k": 3, "items": [
        {"item_id": "i1", "image_url": "https://pin.example/1", "category": "dress"},
        {"item_id": "i2", "image_url": "https://pin.example/2", "category": "shoes"}]})
    assert made.status_code == 201
    round_id = made.json()["round_id"]
    for searches in ({"i1": "s1", "i2": "s2"}, {"i1": "t1", "i2": "t2"}):
        added = client.post(f"/rounds/{round_id}/runs", headers=alice, json={"searches": searches})
        assert added.status_code == 200
    wrong = client.post(f"/rounds/{round_id}/runs", headers=alice, json={"searches": {"i1": "s2", "i2": "s1"}})
    assert wrong.status_code == 409
    for who, sid, values in (("alice", "s1", [1, -1, 1]), ("bob", "s1", [1, 1, 1]), ("alice", "s2", [-1, -1, 1]),
                             ("alice", "t1", [1, 1, 1]), ("alice", "t2", [1, 1, 1])):
        for i, value in enumerate(values):
            response = client.post("/team/evaluations", headers=auth(tokens[who]),
                                   json={"search_id": sid, "product_id": f"{sid}-p{i}", "rating": value})
            assert response.status_code == 200
    report = client.get(f"/rounds/{round_id}/report", headers=alice).json()
    first = report["runs"][0]
    assert {p["rater"]: p["rated"] for p in first["progress"]} == {"alice": 6, "bob": 3}
    assert report["comparisons"][0]["precision"]["searches"] == 2
    assert report["agreement"]["cohen"][0]["raters"] == ["alice", "bob"]

    client.post("/team/evaluations", headers=auth(tokens["bob"]),
                json={"search_id": "s1", "product_id": "s1-p0", "rating": -1, "grade": 0, "comment": "off"})
    queue = client.get(f"/rounds/{round_id}/queue", headers=auth(tokens["bob"])).json()
    assert queue["rater"] == "bob" and len(queue["runs"]) == 2
    first_item = queue["runs"][0]["items"][0]
    assert first_item["search_id"] == "s1" and first_item["result_ids"] == ["s1-p0", "s1-p1", "s1-p2"]
    assert first_item["mine"]["s1-p0"] == {"rating": -1, "grade": 0, "comment": "off"}
    assert queue["runs"][1]["items"][0]["mine"] == {}  # bob has not rated run two; alice's ratings are hers
    assert client.get("/rounds/nope/queue", headers=alice).status_code == 404


def test_registering_a_run_keeps_its_searches_from_expiring(api: Any) -> None:
    client, tokens, _ = api
    alice = auth(tokens["alice"])
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    table = Settings().history_table

    def expires(search_id: str) -> bool:
        return "ttl" in dynamodb.get_item(TableName=table, Key={"search_id": {"S": search_id}})["Item"]

    made = client.post("/rounds", headers=alice, json={"name": "Keep", "k": 3, "items": [
        {"item_id": "i1", "image_url": "https://pin.example/1", "category": "dress"},
        {"item_id": "i2", "image_url": "https://pin.example/2", "category": "shoes"}]})
    round_id = made.json()["round_id"]
    assert all(expires(sid) for sid in ("s1", "s2", "t1", "t2"))
    # refused runs keep nothing: a search of another product type, an unknown search
    assert client.post(f"/rounds/{round_id}/runs", headers=alice,
                       json={"searches": {"i1": "t2", "i2": "t1"}}).status_code == 409
    assert client.post(f"/rounds/{round_id}/runs", headers=alice,
                       json={"searches": {"i1": "s1", "i2": "nope"}}).status_code == 404
    assert all(expires(sid) for sid in ("s1", "s2", "t1", "t2"))

    added = client.post(f"/rounds/{round_id}/runs", headers=alice, json={"searches": {"i1": "s1", "i2": "s2"}})

    assert added.status_code == 200
    assert (expires("s1"), expires("s2"), expires("t1"), expires("t2")) == (False, False, True, True)
    # the kept searches still answer the queue, a rating and the report
    queue = client.get(f"/rounds/{round_id}/queue", headers=alice).json()
    assert [i["result_ids"] for i in queue["runs"][0]["items"]] == [["s1-p0", "s1-p1", "s1-p2"],
                                                                     ["s2-p0", "s2-p1", "s2-p2"]]
    assert client.post("/team/evaluations", headers=alice,
                       json={"search_id": "s1", "product_id": "s1-p0", "rating": 1}).status_code == 200
    report = client.get(f"/rounds/{round_id}/report", headers=alice).json()
    assert report["runs"][0]["progress"] == [{"rater": "alice", "rated": 1, "total": 6}]


def test_index_versions_list_promote_and_refusals(api: Any, tmp_path: Path) -> None:
    client, tokens, s3 = api
    store = ArtifactStore(BUCKET, s3)
    first = store.publish(make_bundle(tmp_path / "a", seed=1)).version
    second = store.publish(make_bundle(tmp_path / "b", seed=2)).version
    other = store.upload_version(make_bundle(tmp_path / "c", seed=3, fingerprint="another-model")).version
    admin = auth(ADMIN)
    listing = client.get("/admin/indexes", headers=admin).json()
    assert listing["current"] == second and {v["version"] for v in listing["items"]} == {first, second, other}
    refused = client.post(f"/admin/indexes/{other}/promote", headers=admin, json={})
    assert refused.status_code == 409 and refused.json()["error"] == "IndexModelMismatch"
    unknown = client.post("/admin/indexes/20990101T000000Z-dead/promote", headers=admin, json={})
    assert unknown.status_code == 404 and unknown.json()["list_url"].endswith("/admin/indexes")
    stale = client.post(f"/admin/indexes/{first}/promote", headers=admin, json={"expected_version": first})
    assert stale.status_code == 409
    assert store.current().version == second
    rolled = client.post(f"/admin/indexes/{first}/promote", headers=admin, json={"expected_version": second})
    assert rolled.json() == {"version": first, "previous": second}
    assert client.get("/admin/indexes", headers={}).status_code == 401


@pytest.mark.parametrize(("method", "path", "body", "action"), [
    ("POST", "/admin/indexes/{first}/promote", {}, "promoting an index version"),
    ("POST", "/admin/load", {"catalog_key": "catalogs/next.csv"}, "loading a catalog"),
    ("POST", "/admin/load/dry-run", {"catalog_key": "catalogs/next.csv"}, "a catalog load's dry run"),
    ("POST", "/admin/catalog-uploads", {"filename": "next.csv", "size": 10}, "uploading a catalog"),
    ("GET", "/admin/load/some-job", None, "following a catalog load"),
])
def test_a_team_member_gets_403_on_what_changes_the_index_and_admins_pass(
        api: Any, tmp_path: Path, method: str, path: str, body: Any, action: str) -> None:
    client, tokens, s3 = api
    store = ArtifactStore(BUCKET, s3)
    first = store.publish(make_bundle(tmp_path / "a", seed=1)).version
    second = store.publish(make_bundle(tmp_path / "b", seed=2)).version
    s3.put_object(Bucket=BUCKET, Key="catalogs/next.csv", Body=b"id,title,category,image,price\n")
    url = path.format(first=first)

    refused = client.request(method, url, json=body, headers=auth(tokens["alice"]))

    assert refused.status_code == 403
    assert refused.json() == {"detail": f"{action} needs the admin role; ask an admin", "error": "Forbidden",
                              "role": "member", "needs": "admin"}
    assert store.current().version == second  # nothing moved
    assert client.get("/admin/indexes", headers=auth(tokens["alice"])).status_code == 200  # the list stays readable
    for admin in (ADMIN, tokens["carol"]):  # the admin token and an admin member get past the role check
        passed = client.request(method, url, json=body, headers=auth(admin))
        assert passed.status_code != 403 and passed.json().get("error") != "Forbidden", passed.text
    assert client.request(method, url, json=body).status_code == 401


def test_dry_run_of_a_catalog_in_the_bucket_publishes_nothing(api: Any, tmp_path: Path) -> None:
    client, tokens, s3 = api
    store = ArtifactStore(BUCKET, s3)
    current = store.publish(make_bundle(tmp_path / "a", seed=1, n=6)).version  # p0..p5: lamp, dress, ...
    rows = ["id,title,category,image,price",
            "p0,Product 0,lamp,https://img.example/0.jpg,1",  # kept (its image text differs: changed)
            "p9,New one,hat,https://img.example/9.jpg,2",
            ",No id,hat,https://img.example/8.jpg,3"]  # no id: rejected
    s3.put_object(Bucket=BUCKET, Key="catalogs/next.csv", Body="\n".join(rows).encode())
    carol = auth(tokens["carol"])  # an admin member
    diff = client.post("/admin/load/dry-run", headers=carol, json={"catalog_key": "catalogs/next.csv"})
    assert diff.status_code == 200, diff.text
    body = diff.json()
    assert (body["current_version"], body["before"], body["after"], body["added"], body["removed"]) == (
        current, 6, 2, 1, 5)
    assert body["categories_gained"] == ["hat"] and body["categories_lost"] == ["dress"]
    assert body["rejects_total"] == 1 and body["needs_confirmation"] is True and len(body["reasons"]) == 2
    assert store.current().version == current  # a dry run never publishes
    assert client.post("/admin/load/dry-run", headers=carol,
                       json={"catalog_key": "catalogs/missing.csv"}).status_code == 404
    assert client.post("/admin/load/dry-run", headers=carol,
                       json={"catalog_key": "indexes/CURRENT"}).status_code in (400, 422)
    assert client.post("/admin/load/dry-run", json={"catalog_key": "catalogs/next.csv"}).status_code == 401
    with pytest.raises(CatalogTooLargeForDryRun):
        dry_run_in_bucket(store, "catalogs/next.csv", max_removed_share=0.1, max_bytes=10,
                          limits=ArchiveLimits.from_settings(Settings()), cache_dir=tmp_path / "cache")
