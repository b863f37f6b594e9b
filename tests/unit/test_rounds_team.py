"""Local team members (tokens kept hashed, no shared token) and evaluation rounds: the store against
moto, run validation, and the round report's progress, measures, comparison and agreement."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moodboard.errors import Conflict, NotFound
from moodboard.history import HistoryRecord
from moodboard.rounds import (
    Round,
    RoundItem,
    RoundRequest,
    RoundStore,
    RunRequest,
    UnknownRound,
    round_from_request,
    round_report,
    validate_run,
)
from moodboard.team import LocalTeam
from moto import mock_aws

TABLE = "moodboard-rounds-test"


def test_team_add_gives_a_token_stored_only_as_a_digest(tmp_path: Path) -> None:
    team = LocalTeam(tmp_path / "data" / "team.json")
    alice = team.add("alice")
    bob = team.add("bob")
    assert alice != bob
    assert team.who(alice) == "alice" and team.who(bob) == "bob"
    assert team.who("not-a-token") is None and team.who("") is None
    text = (tmp_path / "data" / "team.json").read_text()
    assert alice not in text and bob not in text
    assert stat.S_IMODE((tmp_path / "data" / "team.json").stat().st_mode) == 0o600
    assert [m.name for m in LocalTeam(tmp_path / "data" / "team.json").members()] == ["alice", "bob"]


def test_team_refuses_duplicates_reserved_names_and_rotates(tmp_path: Path) -> None:
    team = LocalTeam(tmp_path / "team.json")
    old = team.add("alice")
    with pytest.raises(Conflict):
        team.add("alice")
    for bad in ("admin", "anonymous", "shopper:x", "", "a/b"):
        with pytest.raises(Conflict):
            team.add(bad)
    new = team.add("alice", rotate=True)
    assert team.who(old) is None and team.who(new) == "alice"
    team.remove("alice")
    assert team.who(new) is None
    with pytest.raises(NotFound):
        team.remove("alice")


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "round_id", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "round_id", "AttributeType": "S"}])
        yield client


@dataclass
class Url:
    url: str
    category: str
    note: str | None = None


def two_item_round() -> Round:
    request = RoundRequest(name="Spring", k=3, items=[RoundItem(item_id="i1", image_url="https://pin.example/1",
                                                                category="dress")],
                           search_url_ids=["u1"])
    made = round_from_request(request, created_by="alice", urls={"u1": Url("https://pin.example/2", "Shoes")})
    made.items[1].item_id = "i2"
    return made


def search(search_id: str, category: str, *, model: str = "fpA", index: str = "v1", results: int = 3,
           weights: dict[str, float] | None = None) -> HistoryRecord:
    return HistoryRecord(search_id=search_id, created_at="2026-12-01T00:00:00.000Z", kind="image",
                         category=category, params={"weights": weights or {"w_image": 1.0}},
                         result_ids=[f"{search_id}-p{i}" for i in range(results)], model_fingerprint=model,
                         index_version=index, ttl=0)


def test_round_store_round_trip_and_unknown_round(dynamodb: Any) -> None:
    store = RoundStore(dynamodb, TABLE)
    made = store.create(two_item_round())
    assert store.get(made.round_id) == made
    assert [r.round_id for r in store.all()] == [made.round_id]
    with pytest.raises(UnknownRound) as caught:
        store.get("nope", list_url="http://127.0.0.1:8000/rounds")
    assert caught.value.status_code == 404 and caught.value.details["list_url"] == "http://127.0.0.1:8000/rounds"
    with pytest.raises(NotFound):
        round_from_request(RoundRequest(name="x", search_url_ids=["gone"]), created_by="a", urls={})


def test_runs_are_validated_and_appended_once(dynamodb: Any) -> None:
    store = RoundStore(dynamodb, TABLE)
    made = store.create(two_item_round())
    searches = {"s1": search("s1", "dress"), "s2": search("s2", "shoes")}
    run = validate_run(made, RunRequest(searches={"i1": "s1", "i2": "s2"}, model_source="openai/clip"), searches,
                       created_by="alice")
    assert run.model == "openai/clip @ fpA" and run.index_version == "v1"
    stored = store.add_run(made.round_id, run, runs_before=0)
    assert [r.run_id for r in stored.runs] == [run.run_id]
    with pytest.raises(Conflict):  # someone else added a run meanwhile
        store.add_run(made.round_id, run, runs_before=0)
    with pytest.raises(Conflict):  # an item without a search
        validate_run(made, RunRequest(searches={"i1": "s1"}), searches, created_by="alice")
    with pytest.raises(Conflict):  # a search of another product type
        validate_run(made, RunRequest(searches={"i1": "s2", "i2": "s1"}), searches, created_by="alice")
    mixed = {"s1": search("s1", "dress"), "s2": search("s2", "shoes", index="v2")}
    with pytest.raises(Conflict):  # two configurations in one run
        validate_run(made, RunRequest(searches={"i1": "s1", "i2": "s2"}), mixed, created_by="alice")


@dataclass
class Rating:
    search_id: str
    product_id: str
    rater: str
    rating: int
    rank: int
    grade: int | None = None


def test_round_report_progress_measures_comparison_and_agreement() -> None:
    made = two_item_round()
    a_searches = {"a1": search("a1", "dress"), "a2": search("a2", "shoes")}
    b_searches = {"b1": search("b1", "dress", model="fpB"), "b2": search("b2", "shoes", model="fpB")}
    run_a = validate_run(made, RunRequest(searches={"i1": "a1", "i2": "a2"}), a_searches, created_by="alice")
    made.runs.append(run_a)
    run_b = validate_run(made, RunRequest(searches={"i1": "b1", "i2": "b2"}), b_searches, created_by="alice")
    made.runs.append(run_b)
    ratings = []
    # run A: alice rates all 6 results; bob rates the first search's 3 (agreeing on 2 of 3)
    for sid, values in (("a1", [1, -1, 1]), ("a2", [-1, -1, 1])):
        ratings += [Rating(sid, f"{sid}-p{i}", "alice", v, i) for i, v in enumerate(values)]
    ratings += [Rating("a1", f"a1-p{i}", "bob", v, i) for i, v in enumerate([1, 1, 1])]
    # run B: alice rates everything up
    for sid in ("b1", "b2"):
        ratings += [Rating(sid, f"{sid}-p{i}", "alice", 1, i) for i in range(3)]
    ratings.append(Rating("unrelated", "x", "alice", 1, 0))
    report = round_report(made, ratings, ks=[3], raters=["carol"])
    assert report["raters"] == ["alice", "bob", "carol"]
    first, second = report["runs"]
    assert {p["rater"]: (p["rated"], p["total"]) for p in first["progress"]} == {
        "alice": (6, 6), "bob": (3, 6), "carol": (0, 6)}
    # run A per item precision@3: i1 = (2 alice + 3 bob up) / 6 = 5/6, i2 = 1/3 -> mean 7/12
    assert first["metrics"]["search_precision_at"]["3"]["value"] == pytest.approx(7 / 12)
    assert second["metrics"]["search_precision_at"]["3"]["value"] == pytest.approx(1.0)
    [comparison] = report["comparisons"]
    precision = comparison["precision"]
    # B - A per item: 1 - 5/6 and 1 - 1/3 -> mean 5/12; 2 searches: p = 2/4 (exact sign flips)
    assert precision["searches"] == 2 and precision["difference"]["value"] == pytest.approx(5 / 12)
    assert precision["p_value"] == pytest.approx(0.5) and precision["exact"]
    # alice vs bob on a1: +,-,+ vs +,+,+ -> p_o 2/3, p_e = (2/3)(1) + (1/3)(0) = 2/3 -> kappa 0
    agreement = report["agreement"]
    assert agreement["items_shared"] == 3
    assert agreement["cohen"][0]["kappa"] == pytest.approx(0.0)


def test_cli_team_add_list_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from moodboard_local.cli import main

    data = str(tmp_path / "data")
    assert main(["team", "add", "alice", "--data-dir", data]) == 0
    token = capsys.readouterr().out.strip().rsplit(" ", 1)[-1]
    assert LocalTeam(tmp_path / "data" / "team.json").who(token) == "alice"
    assert main(["team", "add", "alice", "--data-dir", data]) == 2  # exists: one-line error, exit 2
    assert main(["team", "list", "--data-dir", data]) == 0 and "alice" in capsys.readouterr().out
    assert main(["team", "remove", "alice", "--data-dir", data]) == 0
    assert LocalTeam(tmp_path / "data" / "team.json").who(token) is None


def test_cli_team_add_admin_list_shows_roles_and_role_changes_it(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from moodboard_local.cli import main

    data = str(tmp_path / "data")
    team = LocalTeam(tmp_path / "data" / "team.json")
    assert main(["team", "add", "boss", "--admin", "--data-dir", data]) == 0
    out = capsys.readouterr().out
    token = out.strip().rsplit(" ", 1)[-1]
    assert "an admin" in out and team.member(token).role == "admin"
    assert main(["team", "add", "alice", "--data-dir", data]) == 0 and "a team member" in capsys.readouterr().out
    assert main(["team", "list", "--data-dir", data]) == 0
    listed = [line.split()[:2] for line in capsys.readouterr().out.splitlines()]
    assert listed == [["alice", "member"], ["boss", "admin"]]
    # a new token keeps the role; `role` changes it and keeps the token
    rotated = (main(["team", "add", "boss", "--rotate", "--data-dir", data]),
               capsys.readouterr().out.strip().rsplit(" ", 1)[-1])
    assert rotated[0] == 0 and team.member(rotated[1]).role == "admin" and team.who(token) is None
    assert main(["team", "role", "boss", "member", "--data-dir", data]) == 0
    assert team.member(rotated[1]).role == "member"
    assert main(["team", "role", "alice", "--data-dir", data]) == 2  # no role named: one-line error, exit 2
    assert main(["team", "role", "nobody", "admin", "--data-dir", data]) == 2


def test_cli_team_unknown_member_points_at_team_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from moodboard_local.cli import main

    data = str(tmp_path / "data")
    assert main(["team", "add", "alice", "--data-dir", data]) == 0
    capsys.readouterr()
    for argv in (["team", "remove", "nobody"], ["team", "role", "nobody", "admin"]):
        assert main([*argv, "--data-dir", data]) == 2
        err = capsys.readouterr().err
        # one line naming the CLI command that lists members (no HTTP route does)
        assert err.splitlines() == ["error: no team member 'nobody' (see `moodboard team list`)"]
    with pytest.raises(NotFound) as raised:
        LocalTeam(tmp_path / "data" / "team.json").remove("nobody")
    assert raised.value.details == {}
