"""axe-core accessibility checks of every page state, at phone and desktop widths.

axe-core ships inside the axe-playwright-python wheel and is injected into the page, so nothing is
fetched at run time.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.support import (
    DESKTOP,
    PHONE,
    open_search,
    sign_in,
    submit_search,
    wait_for_results,
)

axe_sync = pytest.importorskip(
    "axe_playwright_python.sync_playwright", reason="needs axe-playwright-python (the dev extra)"
)

pytestmark = pytest.mark.browser


def assert_no_violations(page: Page, state: str) -> None:
    results = axe_sync.Axe().run(page)
    assert results.violations_count == 0, f"{state}:\n{results.generate_report()}"


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_search_page_states_have_no_axe_violations(browser: Browser, app_url: str, image_server: str,
                                                   viewport: dict[str, int]) -> None:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    try:
        open_search(page, app_url)
        assert_no_violations(page, "empty search page")

        submit_search(page, image_url=f"{image_server}/slow/mood.jpg")
        expect(page.get_by_role("button", name="Cancel")).to_be_visible()
        assert_no_violations(page, "a slow search with its Cancel button")
        page.get_by_role("button", name="Cancel").click()

        page.get_by_role("button", name="Remove your picture").click()
        submit_search(page, image_url=f"{image_server}/mood.jpg")
        wait_for_results(page)
        page.locator("#results .card").first.get_by_role("button", name="Good match").click()
        expect(page.locator("#results .card .rate-up").first).to_have_attribute("aria-pressed", "true")
        assert_no_violations(page, "search page with results, the form folded into its summary")

        page.route("**/evaluations", lambda route: route.fulfill(status=503, body="{}"))
        page.locator("#results .card").nth(1).get_by_role("button", name="Poor match").click()
        expect(page.locator("#results .card").nth(1).locator(".card-error")).to_be_visible()
        assert_no_violations(page, "a rating that failed on its card")

        page.get_by_role("button", name="Edit search").click()
        page.get_by_role("button", name="Remove your picture").click()
        page.get_by_label("Image or Pinterest pin URL").fill(f"{image_server}/notes.txt")
        page.get_by_role("button", name="Find products").click()
        expect(page.get_by_role("alert")).to_be_visible()
        page.locator("#picture-error summary").click()  # technical details unfolded
        assert_no_violations(page, "search page with a picture error")
    finally:
        context.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_moodboard_region_less_like_and_product_view_have_no_axe_violations(
        browser: Browser, app_url: str, image_server: str, viewport: dict[str, int]) -> None:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    try:
        open_search(page, app_url)
        for name in ("mood.jpg", "mood.png", "wide.jpg"):
            page.get_by_label("Image or Pinterest pin URL").fill(f"{image_server}/{name}")
            page.get_by_role("button", name="Add", exact=True).click()
        page.get_by_role("button", name="Select a region of your picture 2").click()
        page.keyboard.press("ArrowRight")
        expect(page.locator("#board .region-outline").nth(1)).to_be_visible()
        assert_no_violations(page, "a moodboard of three weighted pictures, drawing a region")

        page.get_by_role("button", name="Done").click()
        page.get_by_role("combobox", name="Product type").select_option("dress")
        page.get_by_role("button", name="Find products").click()
        wait_for_results(page)
        page.locator("#results .card").first.get_by_role("button", name="Less like this").click()
        expect(page.locator("#status")).to_contain_text("less like 1 product")
        assert_no_violations(page, "moodboard results, less like one product, the form folded")

        page.get_by_role("button", name="Edit search").click()
        expect(page.locator("#less-list .chip")).to_be_visible()
        assert_no_violations(page, "the form open again with its less-like chip")

        page.locator("#results .card").first.locator("h3 a").click()
        expect(page.locator("#similar .card").first).to_be_visible()
        page.locator("#similar .card").first.get_by_role("button", name="Good match").click()
        expect(page.locator("#similar .card .rate-up").first).to_have_attribute("aria-pressed", "true")
        assert_no_violations(page, "a product's view with a rated More like this")
    finally:
        context.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_team_pages_have_no_axe_violations(browser: Browser, app_url: str, viewport: dict[str, int]) -> None:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    try:
        page.goto(f"{app_url}/team.html")
        expect(page.get_by_label("Access token")).to_be_visible()
        assert_no_violations(page, "sign-in")

        sign_in(page, app_url, "urls")
        expect(page.locator("#urls-table tbody tr").first).to_be_visible()
        assert_no_violations(page, "search URLs")
        for view, ready in [("history", "#history-table tbody tr"), ("dashboard", "#overall .stat")]:
            page.get_by_role("link", name={"history": "Search history", "dashboard": "Evaluation dashboard"}[view]).click()
            expect(page.locator(ready).first).to_be_visible()
            assert_no_violations(page, view)
    finally:
        context.close()
