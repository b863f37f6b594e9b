"""`moodboard eval` through the real pipeline: tiny ONNX bundle, generated catalog, index bundle,
the API's gist_search, report.json and report.html."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from moodboard_local.cli import main

pytestmark = pytest.mark.slow

REPORT_KEYS = {"meta", "catalog", "config", "zero_shot", "image_to_image", "gist", "sweep", "served", "examples",
               "checks", "held_out_queries", "timings", "figures"}


@pytest.fixture(scope="module")
def eval_run(tiny_bundle: Path, demo_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval")
    code = main(["eval", str(demo_catalog), "--model", str(tiny_bundle), "--out", str(out), "--queries", "12",
                 "--sweep", "0,0.5,2", "--json"])
    assert code == 0
    return out


def test_eval_writes_report_json_with_expected_keys(eval_run: Path) -> None:
    report = json.loads((eval_run / "report.json").read_text())

    assert REPORT_KEYS <= set(report)
    assert report["meta"]["tiny_model"] is True
    assert report["catalog"]["products"] == 60
    assert len(report["zero_shot"]["by_category"]) == 6
    assert {"precision_at_10", "recall_at_50", "map"} <= set(report["zero_shot"]["overall"])
    assert report["image_to_image"]["held_out"] == 12
    assert report["image_to_image"]["candidates"] == 48
    assert [row["w_type"] for row in report["sweep"]] == [0.0, 0.5, 2.0]
    # the tiny bundle carries no threshold of its own: the default, said so, and the one the gist used
    assert (report["meta"]["near_copy_threshold"], report["meta"]["near_copy_threshold_from"]) == (0.95, "default")
    assert report["gist"]["near_copy_threshold"] == report["meta"]["near_copy_threshold"]


def test_eval_in_category_share_is_one_through_the_filtered_search(eval_run: Path) -> None:
    report = json.loads((eval_run / "report.json").read_text())

    assert report["gist"]["in_category_share"] == 1.0
    assert all(row["in_category_share"] == 1.0 for row in report["sweep"])
    assert report["served"]["path"] == "moodboard.query.gist_search"
    assert report["served"]["queries"] == 12
    assert report["served"]["in_category_share"] == 1.0
    assert report["checks"]["in_category_share_is_1"] is True


def test_eval_writes_html_and_charts(eval_run: Path) -> None:
    html = (eval_run / "report.html").read_text()
    report = json.loads((eval_run / "report.json").read_text())

    assert "tiny <b>random</b> model" in html
    for name, magic in (("per_category", b"\x89PNG"), ("sweep", b"\x89PNG"), ("contact_sheet", b"\xff\xd8\xff")):
        figure = eval_run / report["figures"][name]
        assert figure.read_bytes()[: len(magic)] == magic
        assert f'src="{figure.name}"' in html


def test_eval_reuses_the_cached_index_on_a_second_run(eval_run: Path, tiny_bundle: Path, demo_catalog: Path) -> None:
    code = main(["eval", str(demo_catalog), "--model", str(tiny_bundle), "--out", str(eval_run), "--queries", "6",
                 "--sweep", "1", "--json"])
    report = json.loads((eval_run / "report.json").read_text())

    assert code == 0
    assert (report["meta"]["embedded"], report["meta"]["reused"]) == (0, 60)


def test_eval_with_ratings_and_compare(tmp_path: Path) -> None:
    rows = []
    for side, good in (("mA", 4), ("mB", 1)):
        for s in range(10):
            for rank in range(5):
                rows.append({"search_id": f"{side}-{s}", "product_id": f"p{rank}", "rater": "alice", "rank": rank,
                             "rating": 1 if rank < good else -1, "model_fingerprint": side, "index_version": "i1",
                             "category": "dress", "weights": {"w_image": 1.0, "w_type": 0.6}})
    ratings = tmp_path / "ratings.jsonl"
    ratings.write_text("".join(json.dumps(r) + "\n" for r in rows))

    code = main(["eval", "--ratings", str(ratings), "--compare", "mA", "mB", "--out", str(tmp_path / "out"), "--json"])
    report = json.loads((tmp_path / "out" / "report.json").read_text())

    assert code == 0
    assert report["ratings"]["count"] == 100
    assert report["compare"]["significant"] is True
    assert report["compare"]["difference"] == pytest.approx(0.6)
    assert "<b>significant</b>" in (tmp_path / "out" / "report.html").read_text()


def test_eval_without_catalog_or_ratings_fails_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval"]) == 2
    assert "give a CATALOG to evaluate" in capsys.readouterr().err


def test_eval_catalog_without_model_fails_with_a_message(
    demo_catalog: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(demo_catalog)]) == 2
    assert "give --model DIR" in capsys.readouterr().err
