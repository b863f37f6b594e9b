"""Two models side by side in the team's loop, in headless Chromium at phone width: `moodboard serve
--model A --compare-model B` (two tiny random CLIPs of different seeds, so different fingerprints),
a round run from the team page once on each model through "Run this round on", and the report naming
both models ("source @ short fingerprint") and comparing the two runs picture by picture.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.browser.support import ADMIN_TOKEN, CATEGORY, PHONE, UI_TIMEOUT_MS, screenshot
from tests.browser.test_accessibility import assert_no_violations
from tests.serving import running_serve

OTHER_SEED = 7
OTHER_SOURCE = "tiny-random-clip-seed7"
K = 3


@pytest.fixture(scope="module")
def other_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny random CLIP (another seed, so another fingerprint), exported the real way."""
    from model_export.export import export_checkpoint
    from model_export.hub import Checkpoint
    from model_export.tiny import build_tiny_clip

    root = tmp_path_factory.mktemp("other-model")
    checkpoint = build_tiny_clip(root / "checkpoint", seed=OTHER_SEED)
    return export_checkpoint(Checkpoint(path=checkpoint, source_id=OTHER_SOURCE, revision="local"),
                             root / "bundle", tiny=True)


@dataclass
class Served:
    url: str
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)


@pytest.fixture(scope="module")
def two_models(tiny_bundle: Path, other_bundle: Path, demo_catalog: Path, image_server: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("compare-serve")
    env = {
        "MOODBOARD_ADMIN_TOKEN": ADMIN_TOKEN,
        "MOODBOARD_CACHE_DIR": str(work / "cache"),
        "XDG_CACHE_HOME": str(work / "xdg-cache"),
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-credentials"),
    }
    args = ["--model", str(tiny_bundle), "--compare-model", str(other_bundle), "--catalog", str(demo_catalog),
            "--aws", "moto", "--allow-loopback-fetch", "--data-dir", str(work / "data")]
    with running_serve(args, env=env, cwd=work, log=work / "serve.log") as serve:
        served = Served(serve.url, serve.log)
        with served.client() as admin:
            for picture, category in (("mood.jpg", CATEGORY), ("mood.png", "shoes")):
                made = admin.post("/search-urls", json={"url": f"{image_server}/{picture}", "category": category})
                assert made.status_code == 201, made.text
        yield served


def test_a_round_runs_on_both_served_models_and_the_report_compares_them(browser: Browser,
                                                                          two_models: Served) -> None:
    with two_models.client() as admin:
        models = admin.get("/models").json()["models"]
        urls = admin.get("/search-urls").json()["items"]
        made = admin.post("/rounds", json={"name": "base vs seed 7", "k": K, "search_url_ids": [u["id"] for u in urls]})
        assert made.status_code == 201, made.text
    round_id = made.json()["round_id"]
    default, other = models
    assert default["default"] and not other["default"] and other["name"].startswith(f"{OTHER_SOURCE} @ ")
    assert f"compared model {other['name']}" in two_models.log.read_text()

    context = browser.new_context(viewport=PHONE)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    asked: list[str] = []
    page.on("request", lambda sent: asked.append("?".join(filter(None, urlsplit(sent.url)[2:4]))))
    try:
        page.goto(f"{two_models.url}/team.html#rounds/{round_id}")
        page.get_by_label("Access token").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        choice = page.get_by_label("Run this round on")
        expect(choice).to_be_visible()
        expect(choice.locator("option")).to_have_text([f"{default['name']} (default)", other["name"]])
        for i, model in enumerate((default, other), start=1):
            choice.select_option(model["fingerprint"])
            page.get_by_role("button", name="Run this round on the served index").click()
            expect(page.locator("#queue-run option")).to_have_count(i)
            expect(page.locator("#queue-run option").nth(i - 1)).to_contain_text(f"Run {i}: {model['name']} · index")

        with two_models.client() as admin:
            round_ = admin.get(f"/rounds/{round_id}").json()
            runs = [(run["model_fingerprint"], run["index_version"]) for run in round_["runs"]]
            assert runs == [(m["fingerprint"], m["index_version"]) for m in (default, other)]
            # every result of run 1 is a good match, only the first of each picture in run 2
            queue = admin.get(f"/rounds/{round_id}/queue").json()
            for run, good in zip(queue["runs"], (K, 1)):
                for item in run["items"]:
                    for rank, product_id in enumerate(item["result_ids"][:K]):
                        rated = admin.post("/team/evaluations", json={
                            "search_id": item["search_id"], "product_id": product_id,
                            "rating": 1 if rank < good else -1})
                        assert rated.status_code == 200, rated.text
            figures = admin.get(f"/rounds/{round_id}/report").json()

        # the queue asks the compared model's index for run 2's products and images (?model=), the default
        # one's for run 1's: a product only the compared model's index holds still has its title and picture
        assert [run["model_fingerprint"] for run in queue["runs"]] == [default["fingerprint"], other["fingerprint"]]
        compared = f"?model={other['fingerprint']}"
        for run, query in zip(reversed(queue["runs"]), (compared, "")):
            page.get_by_label("Run to grade").select_option(run["run_id"])
            ids = [quote(pid, safe="") for item in run["items"] for pid in item["result_ids"]]
            images = page.locator("#round-queue .grade-row img")
            expect(images).to_have_count(len(ids))
            for image, pid in zip(images.all(), ids):
                src = re.compile(rf"/products/{re.escape(pid)}/image{re.escape(query)}$")
                expect(image).to_have_attribute("src", src)
        run2 = {f"/products/{quote(pid, safe='')}{compared}"
                for item in queue["runs"][1]["items"] for pid in item["result_ids"]}
        assert run2 and run2 <= set(asked)

        page.reload()
        comparison = page.locator("#comparison-table")
        expect(comparison).to_contain_text(re.compile(rf"{re.escape(other['name'])} · index \S+ vs "
                                                      rf"{re.escape(default['name'])} · index"))
        precision = figures["comparisons"][0]["precision"]
        assert precision["searches"] == 2 and precision["mean_a"] < precision["mean_b"] == 1.0
        expect(comparison).to_contain_text(f"{precision['mean_a']:.2f}")
        expect(comparison).to_contain_text(f"{precision['difference']['value']:.2f}")
        measures = page.locator("#measures-table")
        expect(measures).to_contain_text(f"Run 1: {default['name']}")
        expect(measures).to_contain_text(f"Run 2: {other['name']}")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.get_by_label("Run this round on").scroll_into_view_if_needed()
        screenshot(page, "round-model-choice-phone")
        assert_no_violations(page, "the round with two models served")
        assert errors == []
    finally:
        context.close()
