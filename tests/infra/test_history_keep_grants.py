"""Keeping a round run's searches in the stack: the evaluations function (which serves POST
/rounds/{id}/runs) may UpdateItem the history table itself, naming only the key and `ttl` and
returning nothing, and the runtime's update (HistoryStore.keep) fits inside that grant."""

from __future__ import annotations

import re
from typing import Any

from moodboard.history import HistoryStore

from infra_cdk.routes import app_routes
from tests.infra.conftest import Synth
from tests.infra.test_stack import WRITE_ACTIONS, as_list, function_ids, refs, role_of, role_statements, table_ids

ALLOWED = ["search_id", "ttl"]


def history_writes(synth: Synth) -> list[dict[str, Any]]:
    history = table_ids(synth)["history"]
    statements = role_statements(synth, role_of(synth, function_ids(synth)["evaluations"]))
    return [s for s in statements if history in refs(s["Resource"]) and set(as_list(s["Action"])) & set(WRITE_ACTIONS)]


def test_the_run_route_is_served_by_evaluations() -> None:
    (route,) = [r for r in app_routes() if (r.method, r.path) == ("POST", "/rounds/{round_id}/runs")]
    assert route.function == "evaluations"


def test_evaluations_may_only_remove_a_history_records_ttl(any_synth: Synth) -> None:
    (keep,) = history_writes(any_synth)
    assert as_list(keep["Action"]) == ["dynamodb:UpdateItem"]
    assert as_list(keep["Resource"]) == [{"Fn::GetAtt": [table_ids(any_synth)["history"], "Arn"]}]  # no index/*
    assert keep["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:Attributes": ALLOWED},
                                 "StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"}}
    search = role_statements(any_synth, role_of(any_synth, function_ids(any_synth)["search"]))
    assert not any("dynamodb:UpdateItem" in as_list(s["Action"]) for s in search)


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {}


def test_the_runtime_update_names_only_the_granted_attributes() -> None:
    client = RecordingClient()
    HistoryStore(client, "history").keep(["s1"])
    (call,) = client.calls
    named = set(call["Key"]) | set(call.get("ExpressionAttributeNames", {}).values())
    expressions = call["UpdateExpression"] + " " + call.get("ConditionExpression", "")
    named |= set(re.findall(r"\b[a-z_]+\b", expressions)) - {"attribute_exists"}  # REMOVE is upper case
    assert named <= set(ALLOWED), named
    assert call.get("ReturnValues", "NONE") == "NONE"
