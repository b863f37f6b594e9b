"""The team's evaluation loop in headless Chromium against its own `moodboard serve` (a data folder of
its own, two named members: alice an admin, bob a team member): two raters grade one round (desktop and phone widths), the report's
agreement and comparison figures, the ratings table filtered and exported, a load's dry run and its
confirmed load followed live, a rollback from the page with a shared link working again after it,
and a restart with the team's data still there.

The tests of this module share one server and build on each other in file order (the round the first
makes is the one the others read), as a team's session would.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moodboard.artifacts import ArtifactStore
from moodboard_local.demo_catalog import generate_demo_catalog
from moodboard_local.local_data import LocalData
from playwright.sync_api import Browser, Page, expect

from tests.browser.support import ADMIN_TOKEN, CATEGORY, DESKTOP, PHONE, UI_TIMEOUT_MS, screenshot
from tests.browser.test_accessibility import assert_no_violations
from tests.serving import ServeProcess, free_port, running_serve
from tests.unit.test_artifacts import make_bundle

pytestmark = pytest.mark.browser

K = 3


@dataclass
class Stack:
    """One `moodboard serve` with its own data folder, restartable on the same port."""

    model: Path
    catalog: Path
    work: Path
    port: int = field(default_factory=free_port)
    tokens: dict[str, str] = field(default_factory=dict)
    served: ServeProcess | None = None
    moto: str = ""
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        return self.work / "data"

    def start(self, *, with_catalog: bool) -> None:
        env = {
            "MOODBOARD_ADMIN_TOKEN": ADMIN_TOKEN,
            "MOODBOARD_INDEX_REFRESH_SECONDS": "1",
            "MOODBOARD_CACHE_DIR": str(self.work / "cache"),
            "XDG_CACHE_HOME": str(self.work / "xdg-cache"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.work / "no-credentials"),
        }
        args = ["--model", str(self.model), "--aws", "moto", "--allow-loopback-fetch", "--data-dir", str(self.data)]
        if with_catalog:
            args += ["--catalog", str(self.catalog)]
        self.starts += 1
        self.served = running_serve(args, env=env, cwd=self.work, log=self.work / f"serve-{self.starts}.log",
                                    port=self.port)
        self.moto = self.served.moto_endpoint

    def stop(self) -> None:
        if self.served is not None:
            self.served.stop()
            self.served = None

    def client(self, token: str = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


@pytest.fixture(scope="module")
def stack(tiny_bundle: Path, demo_catalog: Path, tmp_path_factory: pytest.TempPathFactory,
          image_server: str) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("rounds-serve")
    team = LocalData(work / "data").team()
    server = Stack(model=tiny_bundle, catalog=demo_catalog, work=work,
                   tokens={"alice": team.add("alice", admin=True), "bob": team.add("bob")})
    try:
        server.start(with_catalog=True)
        with server.client() as admin:
            for picture, category in (("mood.jpg", CATEGORY), ("mood.png", "shoes")):
                made = admin.post("/search-urls", json={"url": f"{image_server}/{picture}", "category": category})
                assert made.status_code == 201, made.text
        yield server
    finally:
        server.stop()


def open_page(browser: Browser, viewport: dict[str, int]) -> tuple[Any, Page, list[str]]:
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return context, page, errors


def sign_in_as(page: Page, stack: Stack, name: str, view: str) -> None:
    page.goto(f"{stack.url}/team.html#{view}")
    page.get_by_label("Access token").fill(stack.tokens.get(name, ADMIN_TOKEN))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signed-in-as")).to_have_text(
        re.compile(rf"^Signed in as {re.escape(name)} \((admin|team member)\)$"))


def grade_run(page: Page, thumbs: list[int]) -> None:
    """Press Good match (1) or Poor match (-1) on the queue's results in order, waiting for each to save."""
    rows = page.locator("#round-queue .grade-row")
    expect(rows).to_have_count(len(thumbs))
    for i, value in enumerate(thumbs):
        row = rows.nth(i)
        button = row.locator(".thumb-up" if value > 0 else ".thumb-down")
        button.click()
        expect(row.locator(".card-error")).to_be_hidden()
        expect(button).to_have_attribute("aria-pressed", "true")


def report(stack: Stack, round_id: str) -> dict[str, Any]:
    with stack.client() as admin:
        return admin.get(f"/rounds/{round_id}/report").json()


def the_round(stack: Stack) -> dict[str, Any]:
    with stack.client() as admin:
        return admin.get("/rounds").json()["items"][0]


ALICE_RUN1 = [1, -1, 1, 1, 1, -1]
ALICE_RUN2 = [1, 1, 1, -1, 1, 1]
BOB_RUN1 = [1, -1, -1, 1, 1, -1]


def test_two_raters_work_through_one_round(browser: Browser, stack: Stack) -> None:
    # alice on a desktop: create the round from the saved URLs, run it twice, grade both runs
    context, page, errors = open_page(browser, DESKTOP)
    try:
        sign_in_as(page, stack, "alice", "rounds")
        page.get_by_label("Name of the new round").fill("Spring round")
        page.get_by_label("Results graded per picture").fill(str(K))
        page.get_by_role("button", name="Create round").click()
        expect(page.locator("#round-title")).to_contain_text("Round “Spring round”: 2 pictures, top 3 results")
        expect(page.locator("#round-queue")).to_contain_text("has not run yet")
        assert_no_violations(page, "a new round before its first run")

        page.get_by_role("button", name="Run this round on the served index").click()
        expect(page.locator("#queue-run option")).to_have_count(1)
        grade_run(page, ALICE_RUN1)
        # each picture's own line follows the grading, as the run's total does
        for item in page.locator("#round-queue .queue-item").all():
            expect(item.locator(".hint")).to_contain_text(f"you graded {K} of {K}")
        # the optional 0-3 grade and comment, reached from the first result
        first = page.locator("#round-queue .grade-row").first
        first.locator("summary").click()
        first.get_by_label("Grade (0-3, optional)").select_option("2")
        first.get_by_label("Comment (optional)").fill("close, but the colour is off")
        first.get_by_role("button", name=re.compile("Save grade and comment")).click()
        expect(page.locator("#team-status")).to_contain_text("Saved your rating")
        expect(page.locator("#my-progress")).to_contain_text("You (alice) have graded 6 of 6")
        assert_no_violations(page, "a round's queue with a grade and comment open")

        page.get_by_label("Picture weight (w_image)").fill("0.5")  # run 2: another configuration
        page.get_by_role("button", name="Run this round on the served index").click()
        expect(page.locator("#queue-run option")).to_have_count(2)
        expect(page.locator("#queue-run option").nth(1)).to_contain_text("w_image 0.50")
        expect(page.locator("#queue-run option").nth(0)).not_to_contain_text("w_image 0.50")
        expect(page.locator("#queue-run")).to_have_value(re.compile(".+"))
        expect(page.locator("#my-progress")).to_contain_text("graded 0 of 6")
        grade_run(page, ALICE_RUN2)
        assert errors == []
    finally:
        context.close()

    round_ = the_round(stack)
    with stack.client(stack.tokens["alice"]) as alice:
        mine = [r for r in alice.get("/evaluations", params={"source": "team", "limit": 500}).json()["items"]
                if r["rater"] == "alice"]
    assert len(mine) == 12
    graded = [r for r in mine if r["grade"] is not None]
    assert [(r["grade"], r["comment"], r["rating"]) for r in graded] == [(2, "close, but the colour is off", 1)]

    # bob on a phone: opens the round from the list, grades the first run
    context, page, errors = open_page(browser, PHONE)
    try:
        sign_in_as(page, stack, "bob", "rounds")
        page.locator(f'#rounds-table tr[data-round-id="{round_["round_id"]}"]').get_by_role("link", name=re.compile("Open")).click()
        expect(page.locator("#queue-run option")).to_have_count(2)
        page.get_by_label("Run to grade").select_option(round_["runs"][0]["run_id"])
        expect(page.locator("#my-progress")).to_contain_text("You (bob) have graded 0 of 6")
        grade_run(page, BOB_RUN1)
        expect(page.locator("#progress-table")).to_contain_text("bob")
        screenshot(page, "round-queue-phone", full_page=False)
        assert_no_violations(page, "a round's queue on a phone")
        assert errors == []
    finally:
        context.close()

    figures = report(stack, round_["round_id"])
    progress = {p["rater"]: p["rated"] for p in figures["runs"][0]["progress"]}
    assert progress == {"alice": 6, "bob": 6}
    assert {p["rater"]: p["rated"] for p in figures["runs"][1]["progress"]} == {"alice": 6, "bob": 0}


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def test_the_report_shows_agreement_and_the_paired_comparison(browser: Browser, stack: Stack) -> None:
    round_ = the_round(stack)
    figures = report(stack, round_["round_id"])
    cohen = figures["agreement"]["cohen"][0]
    assert cohen["raters"] == ["alice", "bob"] and cohen["items"] == 6
    # thumbs of alice and bob on run 1's six results (hand count): they agree on 5 of 6; alice 4 up 2 down,
    # bob 3 up 3 down, so chance agreement is 4/6*3/6 + 2/6*3/6 = 1/2 and kappa (5/6 - 1/2) / (1/2) = 2/3
    assert cohen["observed"] == pytest.approx(5 / 6) and cohen["kappa"] == pytest.approx(2 / 3)
    comparison = figures["comparisons"][0]
    assert comparison["precision"]["searches"] == 2

    for viewport, name in ((DESKTOP, "round-report-desktop"), (PHONE, "round-report-phone")):
        context, page, errors = open_page(browser, viewport)
        try:
            sign_in_as(page, stack, "alice", f"rounds/{round_['round_id']}")
            agreement = page.locator("#agreement-table")
            expect(agreement).to_contain_text("Cohen's kappa, alice and bob")
            expect(agreement).to_contain_text(fmt(cohen["kappa"]))
            expect(agreement).to_contain_text("Fleiss' kappa, alice, bob")
            table = page.locator("#comparison-table")
            precision = comparison["precision"]
            expect(table).to_contain_text(f"P@{comparison['k']}")
            expect(table).to_contain_text(fmt(precision["difference"]["value"]))
            expect(table).to_contain_text(fmt(precision["p_value"], 3))
            expect(table).to_contain_text(fmt(precision["effect_size"]))
            measures = page.locator("#measures-table")
            p5 = figures["runs"][0]["metrics"]["precision_at"]["5"]
            expect(measures).to_contain_text(f"{fmt(p5['ci_low'])} – {fmt(p5['ci_high'])}")
            expect(measures).to_contain_text("nDCG@10")
            page.locator("#report-heading").scroll_into_view_if_needed()
            screenshot(page, name, full_page=viewport == DESKTOP)
            assert_no_violations(page, "the round report")
            assert errors == []
        finally:
            context.close()


def test_the_ratings_table_filters_and_exports(browser: Browser, stack: Stack) -> None:
    for viewport in (PHONE, DESKTOP):
        context, page, errors = open_page(browser, viewport)
        try:
            sign_in_as(page, stack, "alice", "ratings")
            view = page.locator("#view-ratings")
            rows = page.locator("#ratings-table tbody tr")
            expect(rows).to_have_count(18)
            view.get_by_label("Rater").select_option("bob")
            expect(rows).to_have_count(6)
            view.get_by_label("Product type").select_option("shoes")
            expect(rows).to_have_count(3)
            expect(page.locator("#ratings-caption")).to_have_text("Ratings: 3 of 18")
            model = view.get_by_label("Model").locator("option").nth(1).text_content()
            assert re.fullmatch(r".+ @ [0-9a-f]{6}", model or ""), model  # source @ short fingerprint
            expect(view.get_by_label("Round").locator("option")).to_have_text(["All", "Spring round"])
            assert_no_violations(page, "the ratings table filtered")

            with page.expect_download() as download:
                page.get_by_role("button", name="Export CSV").click()
            exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
            assert len(exported) == 3
            assert {(r["rater"], r["category"], r["round"]) for r in exported} == {("bob", "shoes", "Spring round")}
            assert sorted(r["rating"] for r in exported) == sorted(str(v) for v in BOB_RUN1[3:])

            view.get_by_label("Product type").select_option("")
            view.get_by_label("Rater").select_option("alice")
            with page.expect_download() as download:
                page.get_by_role("button", name="Export JSONL").click()
            lines = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
            assert len(lines) == 12 and {line["rater"] for line in lines} == {"alice"}
            assert [(line["grade"], line["comment"]) for line in lines if line["grade"] is not None] == [
                (2, "close, but the colour is off")]
            if viewport == DESKTOP:
                screenshot(page, "ratings-desktop", full_page=True)
            assert errors == []
        finally:
            context.close()


NEXT_KEY = "catalogs/next/catalog.csv"
BAD_ROW = ",No id here,lamp,images/none.jpg,1\n"  # 4 columns of the demo's 8: rejected


def next_catalog(tmp: Path) -> Path:
    """A small catalog (4 lamps and 4 sofas with their pictures) and one malformed row."""
    catalog = generate_demo_catalog(tmp / "next", per_category=4, categories=["lamp", "sofa"])
    with catalog.open("a", encoding="utf-8") as fh:
        fh.write(BAD_ROW)
    return catalog


def upload_catalog(stack: Stack, tmp: Path) -> str:
    """Put next_catalog and its pictures in the stack's bucket under catalogs/next/ (as a shop would)."""
    catalog = next_catalog(tmp)
    s3 = boto3.client("s3", endpoint_url=stack.moto, region_name="us-east-1",
                      aws_access_key_id="moto-local", aws_secret_access_key="moto-local")
    s3.upload_file(str(catalog), "moodboard-local-artifacts", NEXT_KEY)
    for image in (catalog.parent / "images").iterdir():
        s3.upload_file(str(image), "moodboard-local-artifacts", f"catalogs/next/images/{image.name}")
    return NEXT_KEY


def archive_catalog(tmp: Path) -> Path:
    """next_catalog as a .zip with its pictures, plus a product whose picture the archive lacks."""
    catalog = next_catalog(tmp)
    with catalog.open("a", encoding="utf-8") as fh:
        fh.write("ghost-1,Ghost lamp,lamp,images/ghost-1.jpg,https://shop.example/ghost-1,20.00,EUR,sand\n")
    archive = tmp / "next.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(catalog, "catalog.csv")
        for image in sorted((catalog.parent / "images").iterdir()):
            zf.write(image, f"images/{image.name}")
    return archive


def wait_for_version(stack: Stack, version: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if httpx.get(f"{stack.url}/version", timeout=10).json()["index"]["version"] == version:
            return
        time.sleep(0.5)
    pytest.fail(f"the server did not switch to index {version}")


def fits_the_width(page: Page, viewport: dict[str, int]) -> None:
    """No horizontal scroll: nothing on the page is wider than the viewport (names the culprits if not)."""
    width = viewport["width"]
    wide = page.evaluate(f"""() => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > {width + 1}).slice(0, 5)
        .map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))""")
    assert page.evaluate("document.documentElement.scrollWidth") <= width, wide


@pytest.fixture(scope="module")
def served_first(stack: Stack) -> str:
    """CURRENT as the load tests first find it: each run of the flow starts from it and rolls back to it."""
    with stack.client() as admin:
        return admin.get("/admin/indexes").json()["current"]


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_a_dry_run_a_confirmed_load_then_a_rollback_from_the_page(browser: Browser, stack: Stack, image_server: str,
                                                                   tmp_path: Path, served_first: str,
                                                                   viewport: dict[str, int]) -> None:
    """The whole load page at one width. On the phone the catalog is an archive uploaded from the page
    (one of its products has no picture in it); on the desktop a CSV already in the bucket."""
    phone = viewport == PHONE
    width = "phone" if phone else "desktop"
    with stack.client() as admin:
        before = admin.get("/admin/indexes").json()["current"]
        products_before = admin.get("/version").json()["index"]["count"]
    assert before == served_first  # the run before this one rolled back to where it started
    shared = f"{stack.url}/?image_url={image_server}/mood.jpg&category={CATEGORY}"

    context, page, errors = open_page(browser, viewport)
    try:
        # the dry run: what the load would change, nothing published, confirmation needed
        sign_in_as(page, stack, "alice", "load")
        if phone:
            page.get_by_label("Catalog file").set_input_files(archive_catalog(tmp_path))
            page.get_by_role("button", name="Upload and dry run").click()
            expect(page.get_by_label("Catalog key in the bucket")).to_have_value(
                re.compile(r"^uploads/catalogs/[0-9a-f]{32}/next\.zip$"))
        else:
            page.get_by_label("Catalog key in the bucket").fill(upload_catalog(stack, tmp_path))
            page.get_by_role("button", name="Dry run", exact=True).click()
        stats = page.locator("#diff-stats")
        expect(stats).to_contain_text(f"{products_before} → 8")
        expect(page.locator("#diff-details")).to_contain_text("Product types lost")
        expect(page.locator("#diff-details")).to_contain_text("dress")
        expect(page.locator("#diff-rejects")).to_contain_text("wrong column count")
        if phone:  # the archive's product without its picture: rejected by the dry run, as the load would
            expect(stats.locator(".stat", has_text="rows rejected").locator(".value")).to_have_text("2")
            expect(page.locator("#diff-rejects tr", has_text="ghost-1")).to_contain_text(
                "image file images/ghost-1.jpg is not in the catalog's files")
        expect(page.locator("#confirm-reasons")).to_contain_text("This load removes")
        start = page.get_by_role("button", name="Load and publish")
        expect(start).to_be_disabled()
        with stack.client() as admin:
            assert admin.get("/admin/indexes").json()["current"] == before  # a dry run never publishes
        fits_the_width(page, viewport)
        screenshot(page, f"catalog-dry-run-{width}", full_page=True)
        assert_no_violations(page, f"a dry run that needs confirmation ({width})")

        # the confirmed load, followed live, with its rejects
        page.get_by_label("I understand what this load removes; publish it anyway").check()
        expect(start).to_be_enabled()
        start.click()
        expect(page.locator("#job-status")).to_contain_text("succeeded", timeout=120_000)
        expect(page.locator("#job-status")).to_contain_text("published with 8 products")
        expect(page.locator("#job-rejects-table")).to_contain_text("wrong column count")
        if phone:
            expect(page.locator("#job-rejects-table tr", has_text="ghost-1")).to_contain_text("cannot read image file")
        fits_the_width(page, viewport)
        assert_no_violations(page, f"a finished load with its rejects ({width})")
        with stack.client() as admin:
            loaded = admin.get("/admin/indexes").json()["current"]
        assert loaded != before
        wait_for_version(stack, loaded)
        refused = httpx.post(f"{stack.url}/search", json={"image_url": f"{image_server}/mood.jpg",
                                                          "category": CATEGORY}, timeout=60)
        assert refused.status_code in (404, 422), refused.text  # the shared link's product type is gone

        # the index versions: another admin rolls back first, so the page's promotion is a plain 409
        page.goto(f"{stack.url}/team.html#indexes")
        rows = page.locator("#indexes-table tbody tr")
        expect(page.locator(f'#indexes-table tr[data-version="{loaded}"]')).to_contain_text("current")
        old = page.locator(f'#indexes-table tr[data-version="{before}"]')
        expect(old).to_contain_text("previous")
        expect(old).to_contain_text(re.compile(r" @ [0-9a-f]{6}"))
        assert rows.count() >= 2
        with stack.client() as admin:
            assert admin.post(f"/admin/indexes/{before}/promote", json={}).status_code == 200
        old.get_by_role("button", name=re.compile("Promote")).click()
        expect(page.locator("#team-error")).to_contain_text("Not promoted:")
        expect(page.locator("#team-error")).to_contain_text("someone changed it first")
        with stack.client() as admin:
            assert admin.get("/admin/indexes").json()["current"] == before
            assert admin.post(f"/admin/indexes/{loaded}/promote", json={}).status_code == 200
        wait_for_version(stack, loaded)

        # the rollback itself, from the page
        page.reload()
        expect(page.locator(f'#indexes-table tr[data-version="{loaded}"]')).to_contain_text("current")
        page.locator(f'#indexes-table tr[data-version="{before}"]').get_by_role("button", name=re.compile("Promote")).click()
        expect(page.locator("#team-status")).to_contain_text(f"Index {before} is now current")
        expect(page.locator(f'#indexes-table tr[data-version="{before}"]')).to_contain_text("current")
        expect(page.locator("#team-error")).to_be_hidden()
        fits_the_width(page, viewport)
        # the list itself fits too: a long catalog key wraps instead of hiding Promote off to the side
        assert page.evaluate("""() => { const t = document.getElementById('indexes-table');
            return t.offsetWidth <= t.parentElement.clientWidth; }"""), "the index versions scroll sideways"
        screenshot(page, f"index-versions-{width}", full_page=True)
        assert_no_violations(page, f"index versions after a rollback ({width})")
        wait_for_version(stack, before)

        # the shared link works again
        page.goto(shared)
        expect(page.locator("#results .card").first).to_be_visible()
        expect(page.locator("#category")).to_have_value(CATEGORY)
        assert errors == []
    finally:
        context.close()
    with stack.client() as admin:
        assert admin.get("/admin/indexes").json()["current"] == served_first


def test_the_load_and_index_pages_at_phone_width(browser: Browser, stack: Stack, tmp_path: Path) -> None:
    context, page, errors = open_page(browser, PHONE)
    try:
        sign_in_as(page, stack, "alice", "load")
        page.get_by_label("Catalog key in the bucket").fill("catalogs/none.csv")
        page.get_by_role("button", name="Dry run", exact=True).click()
        expect(page.locator("#team-error")).to_contain_text("Dry run failed: no catalog at 'catalogs/none.csv'")
        expect(page.locator("#dry-run")).to_be_hidden()
        assert_no_violations(page, "the load page with a dry-run error on a phone")

        # a version built with another model: listed, but its promotion is refused plainly
        s3 = boto3.client("s3", endpoint_url=stack.moto, region_name="us-east-1",
                          aws_access_key_id="moto-local", aws_secret_access_key="moto-local")
        store = ArtifactStore("moodboard-local-artifacts", s3)
        current = store.current()
        other = store.upload_version(make_bundle(tmp_path / "other", fingerprint="another-model-0001")).version
        page.goto(f"{stack.url}/team.html#indexes")
        row = page.locator(f'#indexes-table tr[data-version="{other}"]')
        expect(row).to_contain_text("model @ anothe")
        row.get_by_role("button", name=re.compile("Promote")).click()
        expect(page.locator("#team-error")).to_contain_text(f"Not promoted: index {other} was built with model")
        expect(page.locator("#team-error")).to_contain_text("CURRENT was not changed")
        assert store.current().version == current.version
        fits_the_width(page, PHONE)
        assert_no_violations(page, "a refused promotion on a phone")

        # alice's admin role taken away while she is signed in: her promotion is the API's 403, in words
        team = LocalData(stack.data).team()
        team.set_role("alice", "member")
        try:
            row.get_by_role("button", name=re.compile("Promote")).click()
            expect(page.locator("#team-error")).to_have_text(
                f"Could not promote {other}: promoting an index version needs the admin role; ask an admin")
        finally:
            team.set_role("alice", "admin")
        assert store.current().version == current.version
        assert errors == []
    finally:
        context.close()

    # bob, a team member: no Promote button and no catalog load, each with the reason
    context, page, errors = open_page(browser, PHONE)
    try:
        sign_in_as(page, stack, "bob", "indexes")
        expect(page.locator("#signed-in-as")).to_have_text("Signed in as bob (team member)")
        expect(page.locator(f'#indexes-table tr[data-version="{other}"]')).to_contain_text("admins promote")
        expect(page.locator("#indexes-table").get_by_role("button", name=re.compile("Promote"))).to_have_count(0)
        expect(page.locator("#indexes-admin-note")).to_contain_text("needs the admin role. Ask an admin")
        expect(page.locator("nav").get_by_role("link", name="Catalog load")).to_be_hidden()
        assert_no_violations(page, "the index versions for a team member")
        page.goto(f"{stack.url}/team.html#load")
        expect(page.locator("#load-admin-note")).to_be_visible()
        expect(page.get_by_label("Catalog key in the bucket")).to_be_hidden()
        expect(page.get_by_label("Catalog file")).to_be_hidden()
        assert errors == []
    finally:
        context.close()


def test_the_team_data_survives_a_restart(browser: Browser, stack: Stack) -> None:
    with stack.client() as admin:
        rounds_before = admin.get("/rounds").json()["items"]
        ratings_before = admin.get("/evaluations", params={"source": "team", "limit": 500}).json()["items"]
        indexes_before = admin.get("/admin/indexes").json()
        urls_before = admin.get("/search-urls").json()["items"]
    stack.stop()
    stack.start(with_catalog=False)
    with stack.client() as admin:
        assert admin.get("/rounds").json()["items"] == rounds_before
        ratings_after = admin.get("/evaluations", params={"source": "team", "limit": 500}).json()["items"]
        assert sorted(ratings_after, key=json.dumps) == sorted(ratings_before, key=json.dumps)
        after = admin.get("/admin/indexes").json()
        assert (after["current"], [v["version"] for v in after["items"]]) == (
            indexes_before["current"], [v["version"] for v in indexes_before["items"]])
        assert admin.get("/search-urls").json()["items"] == urls_before

    context, page, errors = open_page(browser, PHONE)
    try:
        sign_in_as(page, stack, "bob", f"rounds/{rounds_before[0]['round_id']}")  # his token still works
        page.get_by_label("Run to grade").select_option(rounds_before[0]["runs"][0]["run_id"])
        expect(page.locator("#my-progress")).to_contain_text("You (bob) have graded 6 of 6")
        expect(page.locator("#agreement-table")).to_contain_text("Cohen's kappa, alice and bob")

        page.goto(f"{stack.url}/team.html#rounds/no-such-round")  # an unknown round: the error names the list
        expect(page.locator("#team-error")).to_contain_text("no evaluation round 'no-such-round'")
        expect(page.locator("#team-error")).to_contain_text("/rounds")
        expect(page.locator("#round-detail")).to_be_hidden()
        expect(page.locator("#rounds-table tbody tr")).to_have_count(1)
        assert errors == []
    finally:
        context.close()
