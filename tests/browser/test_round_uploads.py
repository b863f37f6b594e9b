"""Uploaded pictures as round inspirations, in headless Chromium against a `moodboard serve` of its own
(the Stack of test_evaluation_rounds): a team member adds a picture file with its product type to a new
round (phone and desktop widths); a file that is not a picture is refused with the search's message and
no round is made; the round runs (the page fetches the stored picture as the member and searches it as
an upload) and a result is rated; after a restart the picture and the round are still there."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from moodboard_local.local_data import LocalData
from playwright.sync_api import Browser, Page, expect

from tests.browser.support import CATEGORY, DESKTOP, PHONE, screenshot
from tests.browser.test_accessibility import assert_no_violations
from tests.browser.test_evaluation_rounds import Stack, fits_the_width, open_page, sign_in_as

pytestmark = pytest.mark.browser

K = 3


@pytest.fixture(scope="module")
def stack(tiny_bundle: Path, demo_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("round-uploads-serve")
    team = LocalData(work / "data").team()
    server = Stack(model=tiny_bundle, catalog=demo_catalog, work=work, tokens={"alice": team.add("alice")})
    server.start(with_catalog=True)
    try:
        yield server
    finally:
        server.stop()


def rounds(stack: Stack) -> list[dict]:
    with stack.client(stack.tokens["alice"]) as alice:
        return alice.get("/rounds").json()["items"]


def picture_loaded(page: Page) -> None:
    """The queue's uploaded picture is shown from a blob: URL (fetched with the token) and decoded."""
    image = page.locator("#round-queue .queue-picture img").first
    page.wait_for_function("""() => {
        const img = document.querySelector('#round-queue .queue-picture img');
        return img && img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0;
    }""")
    expect(image).to_have_attribute("alt", "Uploaded picture 1")


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_a_member_makes_runs_and_rates_a_round_of_an_uploaded_picture(browser: Browser, stack: Stack,
                                                                      upload_image: Path, tmp_path: Path,
                                                                      viewport: dict[str, int]) -> None:
    not_a_picture = tmp_path / "notes.txt"
    not_a_picture.write_text("a shopping list, not a picture")
    before = rounds(stack)
    name = f"Uploads on {'a phone' if viewport == PHONE else 'a desktop'}"
    context, page, errors = open_page(browser, viewport)
    try:
        sign_in_as(page, stack, "alice", "rounds")
        page.get_by_label("Name of the new round").fill(name)
        page.get_by_label("Results graded per picture").fill(str(K))
        page.get_by_label("Include the saved search URLs").uncheck()
        page.get_by_role("button", name="Add a picture").click()
        expect(page.get_by_label("Picture 1", exact=True)).to_be_focused()
        page.get_by_label("Picture 1", exact=True).set_input_files(str(upload_image))
        page.get_by_label("Product type for picture 1").select_option(CATEGORY)

        # a second file that is not a picture: refused as /search refuses it, and no round is made
        page.get_by_role("button", name="Add a picture").click()
        page.get_by_label("Picture 2", exact=True).set_input_files(str(not_a_picture))
        page.get_by_label("Product type for picture 2").select_option("shoes")
        fits_the_width(page, viewport)
        assert_no_violations(page, "the new-round form with two pictures")
        page.get_by_role("button", name="Create round").click()
        expect(page.locator("#team-error")).to_contain_text(
            "Could not create the round: picture 2 (notes.txt): not a supported image")
        expect(page.get_by_label("Picture 2", exact=True)).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_label("Picture 2", exact=True)).to_be_focused()
        assert rounds(stack) == before
        page.evaluate("document.getElementById('team-error').scrollIntoView()")
        screenshot(page, f"round-upload-form-{'phone' if viewport == PHONE else 'desktop'}", full_page=False)

        page.get_by_role("button", name="Remove picture 2").click()
        expect(page.get_by_label("Picture 2", exact=True)).to_have_count(0)
        page.get_by_role("button", name="Create round").click()
        expect(page.locator("#round-title")).to_contain_text(f"Round “{name}”: 1 picture, top {K} results")
        expect(page.locator("#team-error")).to_be_hidden()

        page.get_by_role("button", name="Run this round on the served index").click()
        expect(page.locator("#queue-run option")).to_have_count(1)
        picture_loaded(page)
        rows = page.locator("#round-queue .grade-row")
        expect(rows).to_have_count(K)
        rows.first.locator(".thumb-up").click()
        expect(rows.first.locator(".thumb-up")).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#my-progress")).to_contain_text(f"You (alice) have graded 1 of {K}")
        fits_the_width(page, viewport)
        assert_no_violations(page, "a round of an uploaded picture, run and rated")
        screenshot(page, f"round-upload-{'phone' if viewport == PHONE else 'desktop'}", full_page=False)
        assert errors == []
    finally:
        context.close()

    made = next(r for r in rounds(stack) if r["name"] == name)
    (item,) = made["items"]
    sha = hashlib.sha256(upload_image.read_bytes()).hexdigest()
    assert (item["picture"], item["image_url"], item["category"]) == (f"{sha}.png", None, CATEGORY)
    (run,) = made["runs"]
    with stack.client(stack.tokens["alice"]) as alice:
        history = alice.get("/history", params={"limit": 200}).json()["items"]
        (search,) = [h for h in history if h["search_id"] == run["searches"][item["item_id"]]]
        assert search["params"]["image_sha256"] == sha and search["params"]["image_source"] == "upload"
        ratings = alice.get("/evaluations", params={"source": "team", "limit": 500}).json()["items"]
    assert [(r["rater"], r["rating"]) for r in ratings if r["search_id"] in run["searches"].values()] == [("alice", 1)]


def test_an_uploaded_picture_survives_a_restart(browser: Browser, stack: Stack, upload_image: Path) -> None:
    made = rounds(stack)
    assert made, "runs after the test that makes the rounds"
    stack.stop()
    stack.start(with_catalog=False)
    assert rounds(stack) == made
    item = made[0]["items"][0]
    with stack.client(stack.tokens["alice"]) as alice:
        picture = alice.get(f"/rounds/{made[0]['round_id']}/items/{item['item_id']}/picture")
    assert picture.status_code == 200 and picture.content == upload_image.read_bytes()

    context, page, errors = open_page(browser, PHONE)
    try:
        sign_in_as(page, stack, "alice", f"rounds/{made[0]['round_id']}")
        expect(page.locator("#my-progress")).to_contain_text(f"You (alice) have graded 1 of {K}")
        picture_loaded(page)
        assert errors == []
    finally:
        context.close()
