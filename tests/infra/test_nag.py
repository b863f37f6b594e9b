"""cdk-nag AwsSolutions checks on both stack configurations: no unsuppressed finding, and every
suppression specific, justified and actually used."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from typing import Any

import pytest

from tests.infra.conftest import Synth

pytestmark = pytest.mark.slow

MIN_REASON = 40
VAGUE = re.compile(r"\b(todo|tbd|n/a|not needed|false positive|suppress(ed)?|ignored?)\b", re.IGNORECASE)
# Suppressed rows of the CSV report: "[<finding>] <reason>" for findings matched by applies_to.
FINDING = re.compile(r"^\[(?P<finding>[^\]]+)\] (?P<reason>.*)$", re.DOTALL)


def findings(synth: Synth, kind: str) -> list[str]:
    from aws_cdk.assertions import Match

    find = getattr(synth.annotations, f"find_{kind}")
    return [f"{m.id}: {str(m.entry.data)[:200]}" for m in find("*", Match.string_like_regexp("AwsSolutions-.*"))]


def suppressions(synth: Synth) -> list[tuple[str, dict[str, Any]]]:
    """(logical id, suppression) for every cdk-nag suppression in the template."""
    found = []
    for logical_id, resource in synth.resources.items():
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            found.append((logical_id, rule))
    return found


def report(synth: Synth) -> list[dict[str, str]]:
    (path,) = synth.outdir.glob("AwsSolutions*NagReport.csv")
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_awssolutions_reports_no_unsuppressed_error(any_synth: Synth) -> None:
    assert findings(any_synth, "error") == []


def test_awssolutions_reports_no_unsuppressed_warning(any_synth: Synth) -> None:
    assert findings(any_synth, "warning") == []


def test_the_report_covers_every_resource_kind_we_deploy(any_synth: Synth) -> None:
    rules = {row["Rule ID"] for row in report(any_synth)}
    for rule in ("AwsSolutions-S1", "AwsSolutions-S10", "AwsSolutions-DDB3", "AwsSolutions-IAM4",
                 "AwsSolutions-IAM5", "AwsSolutions-APIG1", "AwsSolutions-COG2", "AwsSolutions-CFR4",
                 "AwsSolutions-CFR7", "AwsSolutions-L1", "AwsSolutions-SNS3"):
        assert rule in rules, rule
    assert not [row for row in report(any_synth) if row["Compliance"] == "Non-Compliant"]


def test_every_suppression_gives_a_specific_reason(any_synth: Synth) -> None:
    rules_by_reason: dict[str, set[str]] = defaultdict(set)
    entries = suppressions(any_synth)
    assert entries
    for logical_id, rule in entries:
        reason = rule["reason"]
        assert len(reason) >= MIN_REASON, (logical_id, rule["id"], reason)
        assert not VAGUE.search(reason), (logical_id, reason)
        rules_by_reason[reason].add(rule["id"])
    shared = {reason: ids for reason, ids in rules_by_reason.items() if len(ids) > 1}
    assert shared == {}, "one reason copied across different rules"


def test_wildcard_suppressions_on_our_roles_name_each_wildcard(any_synth: Synth) -> None:
    roles = {any_synth.logical_id(fn.role) for fn in any_synth.stack.functions.all.values()}
    checked = 0
    for logical_id, rule in suppressions(any_synth):
        if logical_id in roles and rule["id"] == "AwsSolutions-IAM5":
            assert rule.get("applies_to"), f"{logical_id} suppresses every IAM5 finding"
            assert "Action::*" not in rule["applies_to"]
            checked += 1
    assert checked == len(roles)


def test_every_suppression_and_wildcard_entry_is_used(any_synth: Synth) -> None:
    used: set[tuple[str, str, str | None]] = set()
    for row in report(any_synth):
        if row["Compliance"] == "Suppressed":
            match = FINDING.match(row["Exception Reason"])
            reason, finding = (match["reason"], match["finding"]) if match else (row["Exception Reason"], None)
            used.add((row["Rule ID"], reason, finding))
    unused = []
    for logical_id, rule in suppressions(any_synth):
        mine = [finding for rule_id, reason, finding in used if (rule_id, reason) == (rule["id"], rule["reason"])]
        if not mine:
            unused.append((logical_id, rule["id"]))
        for entry in rule.get("applies_to", []):
            if isinstance(entry, str):
                hit = entry in mine
            else:
                pattern = re.compile(entry["regex"].strip("/"))
                hit = any(finding and pattern.search(finding) for finding in mine)
            if not hit:
                unused.append((logical_id, rule["id"], entry))
    assert unused == []


def test_tls_suppression_exists_only_without_a_custom_domain(default_synth: Synth, domain_synth: Synth) -> None:
    def cfr4(synth: Synth) -> list[str]:
        return [rule["reason"] for _, rule in suppressions(synth) if rule["id"] == "AwsSolutions-CFR4"]

    assert cfr4(default_synth)
    assert cfr4(domain_synth) == []
    assert any(row["Rule ID"] == "AwsSolutions-CFR4" and row["Compliance"] == "Compliant"
               for row in report(domain_synth))
