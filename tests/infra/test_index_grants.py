"""The evaluations function's S3 access for index versions (GET /admin/indexes, promote) and a load's
dry run (POST /admin/load/dry-run): exactly
the keys moodboard.index_versions touches, scoped to indexes/ and the CURRENT key, with the
wildcards cdk-nag's IAM5 would flag suppressed for a stated reason."""

from __future__ import annotations

from typing import Any

from moodboard.artifacts import CURRENT_KEY, INDEX_PREFIX
from moodboard.catalog_diff import CATALOG_PREFIX
from moodboard.catalog_uploads import UPLOAD_PREFIX
from moodboard.index.manifest import PRODUCTS_FILE
from moodboard.index_versions import CARD_PREFIX
from moodboard.integrity import MANIFEST_FILE
from moodboard.round_pictures import PICTURES_PREFIX

from infra_cdk import functions as infra_functions
from tests.infra.conftest import Synth
from tests.infra.test_stack import as_list, function_ids, refs, role_of, role_statements


def s3_statements(synth: Synth) -> list[dict[str, Any]]:
    statements = role_statements(synth, role_of(synth, function_ids(synth)["evaluations"]))
    return [s for s in statements if any(a.startswith("s3:") for a in as_list(s["Action"]))]


def keys(resource: Any) -> str:
    """The object key pattern of an artifacts-bucket ARN (Fn::Join [bucket ARN, '/key']), '' for the bucket."""
    return resource["Fn::Join"][1][-1].lstrip("/") if "Fn::Join" in resource else ""


def test_the_infra_keys_are_the_runtime_keys() -> None:
    assert infra_functions.CURRENT_KEY == CURRENT_KEY
    assert infra_functions.INDEX_VERSIONS_PREFIX == INDEX_PREFIX
    assert infra_functions.INDEX_CARDS_PREFIX == CARD_PREFIX
    assert MANIFEST_FILE == "manifest.json"


def test_evaluations_reads_cards_manifests_and_current_and_writes_only_current(any_synth: Synth) -> None:
    bucket = any_synth.logical_id(any_synth.stack.storage.artifacts_bucket)
    granted: dict[str, set[str]] = {}
    for statement in s3_statements(any_synth):
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                assert bucket in refs(resource), resource
                granted.setdefault(action, set()).add(keys(resource))
    assert granted == {
        "s3:ListBucket": {""},
        "s3:GetObject": {CURRENT_KEY, f"{CARD_PREFIX}*", f"{INDEX_PREFIX}*/{MANIFEST_FILE}",
                         f"{CATALOG_PREFIX}*", f"{UPLOAD_PREFIX}*", f"{INDEX_PREFIX}*/{PRODUCTS_FILE}",
                         f"{PICTURES_PREFIX}*"},  # a round's uploaded pictures (moodboard.round_pictures)
        "s3:PutObject": {CURRENT_KEY, f"{UPLOAD_PREFIX}*"},  # the presigned catalog upload
    }
    listing = next(s for s in s3_statements(any_synth) if "s3:ListBucket" in as_list(s["Action"]))
    assert listing["Condition"] == {"StringEquals": {"s3:prefix": [INDEX_PREFIX]}}


def test_the_wildcards_are_suppressed_with_their_reason(any_synth: Synth) -> None:
    role = any_synth.resources[role_of(any_synth, function_ids(any_synth)["evaluations"])]
    policies = [p for p in any_synth.of_type("AWS::IAM::Policy").values()
                if {"Ref": role_of(any_synth, function_ids(any_synth)["evaluations"])} in p["Properties"]["Roles"]]
    suppressions = [s for p in [role, *policies]
                    for s in p.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
                    if s["id"] == "AwsSolutions-IAM5"]
    assert suppressions
    reason = " ".join(s["reason"] for s in suppressions)
    assert "index-cards/" in reason and "manifest.json" in reason and "CURRENT" in reason
    applies = [str(a) for s in suppressions for a in s.get("applies_to", [])]
    assert any("index-cards" in a for a in applies) and any("manifest" in a for a in applies)
