"""A round's uploaded pictures in the stack: the search function (whose team route stores them) may
put objects under rounds/pictures/ and nowhere else, evaluations may read them and list that prefix
only (to check a picture is stored when a round is created), and the prefix is the runtime's."""

from __future__ import annotations

from moodboard.round_pictures import PICTURES_PREFIX

from infra_cdk import functions as infra_functions
from tests.infra.conftest import Synth
from tests.infra.test_index_grants import s3_statements
from tests.infra.test_stack import as_list, function_ids, role_of, role_statements, s3_prefixes


def test_the_pictures_prefix_is_the_runtime_one_and_outside_the_trigger() -> None:
    assert infra_functions.ROUND_PICTURES_PREFIX == PICTURES_PREFIX
    assert not PICTURES_PREFIX.startswith(("catalogs/", "indexes/", "loads/", "uploads/"))


def test_search_may_only_create_round_pictures(any_synth: Synth) -> None:
    assert s3_prefixes(any_synth, "search", "s3:PutObject") == {f"{PICTURES_PREFIX}*"}
    assert f"{PICTURES_PREFIX}*" not in s3_prefixes(any_synth, "search", "s3:GetObject*")
    statements = role_statements(any_synth, role_of(any_synth, function_ids(any_synth)["search"]))
    (put,) = [s for s in statements if "s3:PutObject" in as_list(s["Action"])]
    assert put["Condition"] == {"Null": {"s3:if-none-match": "false"}}  # create-only: never replaces a picture
    assert not any(a.startswith(("s3:Delete", "s3:Abort")) for s in statements for a in as_list(s["Action"]))


def test_evaluations_reads_round_pictures_and_lists_only_their_prefix(any_synth: Synth) -> None:
    assert f"{PICTURES_PREFIX}*" in s3_prefixes(any_synth, "evaluations", "s3:GetObject")
    assert f"{PICTURES_PREFIX}*" not in s3_prefixes(any_synth, "evaluations", "s3:PutObject")
    listings = [s for s in s3_statements(any_synth) if "s3:ListBucket" in as_list(s["Action"])]
    assert {"StringLike": {"s3:prefix": [f"{PICTURES_PREFIX}*"]}} in [s["Condition"] for s in listings]
    assert all("Condition" in s for s in listings)  # never the whole bucket
