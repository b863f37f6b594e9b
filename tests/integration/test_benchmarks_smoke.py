"""The performance suite's quick mode runs to the end and writes every section (no speed asserted).

It runs `python -m benchmarks.perf --quick` in a subprocess with its own cache (tiny bundle, small
sizes), as CI does, then checks the JSON: the machine, each section without an error, rows that
carry their same-run baselines and ratios, and the details each section promises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SECTIONS = {"embed", "index", "query", "cold", "loader"}
ROW_KEYS = {"name", "value", "unit", "baseline", "baseline_value", "ratio", "ratio_kind", "better", "target", "met"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("perf")
    out = tmp / "results" / "perf.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "functions"), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.perf", "--quick", "--out", str(out), "--cache", str(tmp / "cache")],
        cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=1200,
    )
    assert proc.returncode == 0, f"quick run failed:\n{proc.stderr[-3000:]}"
    assert out.is_file(), "the quick run wrote no JSON"
    return json.loads(out.read_text())


@pytest.mark.slow
def test_quick_run_writes_machine_and_every_section(report: dict[str, Any]) -> None:
    assert report["mode"] == "quick"
    assert report["machine"]["cores"] >= 1
    assert report["machine"]["cpu_model"]
    assert "onnxruntime" in report["machine"]["versions"]
    assert set(report["sections"]) == SECTIONS
    errors = {name: s["error"] for name, s in report["sections"].items() if "error" in s}
    assert errors == {}


@pytest.mark.slow
def test_quick_run_rows_carry_baselines_and_ratios(report: dict[str, Any]) -> None:
    for name, section in report["sections"].items():
        assert section["rows"], f"{name} has no rows"
        for r in section["rows"]:
            assert ROW_KEYS <= set(r), f"{name}: {r['name']} lacks {ROW_KEYS - set(r)}"
            if r["baseline_value"] not in (None, 0) and r["value"] not in (None, 0):
                assert r["ratio"] is not None and r["ratio"] > 0, f"{name}: {r['name']} has no ratio"
    targets = {t["section"] for t in report["targets"]}
    assert targets == SECTIONS
    assert all(isinstance(t["met"], bool) for t in report["targets"])


@pytest.mark.slow
def test_quick_run_details_hold_each_sections_figures(report: dict[str, Any]) -> None:
    s = report["sections"]
    embed = s["embed"]["details"]
    assert {"torch", "fp32", "int8"} <= set(embed["image_batch1_ms"])
    assert 0 < embed["parity"]["int8_vs_fp32_image_cosine"]["mean"] <= 1.0001
    assert {"vision fp32", "vision int8", "text fp32", "text int8"} <= set(embed["session_options"])
    assert set(embed["back_to_back_ms"]) == {"fp32", "int8"}
    assert s["embed"]["recommendations"]

    sizes = s["index"]["details"]["sizes"]
    only = sizes[next(iter(sizes))]
    assert 0 <= only["recall"]["hnsw"] <= 1
    assert {"c50", "c10", "c1"} <= set(only["filtered"]) and {"c50", "c10", "c1"} <= set(only["filtered_clustered"])
    assert any("switch" in note for note in s["index"]["notes"])

    query = s["query"]["details"]["precisions"]
    for precision in ("fp32", "int8"):
        assert {"text: app in-process", "text: app over HTTP", "image: app in-process", "image: app over HTTP",
                "image: app in-process, other spinning", "text: app in-process, no text cache",
                "image: app in-process, no text cache"} <= set(query[precision])
        assert query[precision]["image: app over HTTP"]["n"] > 0

    variants = s["cold"]["details"]["variants"]
    assert {"shipped (preload, sealed bundles)", "sequential loads (no preload), sealed"} <= set(variants)
    for name, variant in variants.items():
        phases = variant["median"]["phases_s"]
        loads = {"model load", "index load"} if name.startswith("sequential") else {"model + index load (side by side)"}
        assert {"import", "first search", *loads} <= set(phases), name
        assert variant["median"]["process_start_to_first_search_s"] > 0

    jobs = s["loader"]["details"]["jobs"]
    assert {j["precision"] for j in jobs.values()} == {"fp32", "int8"}
    assert all(j["embedded"] > 0 and j["peak_rss_bytes"] > 0 for j in jobs.values())
