"""The shopper's page of issue 15 in real Chromium, each point at 390x844 and at 1280x800: errors in
sight, results first, an even grid, cancel, drag and drop from another page, ratings that come back
and can be cleared, one Tab stop per card, 44 px touch targets, /docs offline."""

from __future__ import annotations

import io
import time
from urllib.parse import urlparse

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import HIDDEN_CATEGORIES, SLOW_SECONDS
from tests.browser.support import (
    CATEGORY,
    DESKTOP,
    board_sources,
    in_viewport,
    open_search,
    screenshot,
    size_name,
    submit_search,
    wait_for_results,
)

pytestmark = pytest.mark.browser


def focused_inside(page: Page, selector: str) -> bool:
    return page.eval_on_selector(selector, "element => element.contains(document.activeElement)")


# ---------- 1. errors where the eye is ----------

@pytest.mark.parametrize(
    ("path", "plain", "technical"),
    [
        ("/big.jpg", "That picture is 20 MB; the limit is 10 MB.", "FetchTooLarge"),
        ("/nopin.html", "We couldn't find a picture on that page.", "og:image"),
    ],
    ids=["too-large", "page-without-picture"],
)
def test_a_picture_error_is_beside_the_picture_in_view_focused_and_plain(
        any_page: Page, app_url: str, image_server: str, path: str, plain: str, technical: str) -> None:
    page = any_page
    open_search(page, app_url)
    submit_search(page, image_url=f"{image_server}{path}")

    error = page.locator("#picture-error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")  # announced
    expect(error.locator(".error-text")).to_contain_text(plain)
    assert focused_inside(page, "#picture-error")
    assert in_viewport(page, "#picture-error")
    details = error.locator("details")
    expect(details).not_to_have_attribute("open", "")  # the technical detail is folded away
    expect(details.locator("summary")).to_have_text("Technical details")
    assert technical in details.text_content() and technical not in error.locator(".error-text").inner_text()
    expect(page.get_by_label("Image or Pinterest pin URL")).to_have_attribute("aria-invalid", "true")
    screenshot(page, f"search-error-{size_name(page)}")


def test_an_unknown_product_type_error_is_beside_the_product_type(any_page: Page, app_url: str,
                                                                    image_server: str) -> None:
    page = any_page
    open_search(page, app_url, f"?image_url={image_server}/mood.jpg&category=spaceship")

    error = page.locator("#category-error")
    expect(error.locator(".error-text")).to_have_text(
        "We don't have the product type “spaceship”. Choose one from the list.")
    assert "/categories" not in error.locator(".error-text").inner_text()
    assert focused_inside(page, "#category-error") and in_viewport(page, "#category-error")


def _failing_once(status: int):
    calls = {"n": 0}

    def handle(route: Route) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            route.fulfill(status=status, content_type="application/json",
                          body='{"detail": "DynamoDB failed to store the evaluation (Throttled)", '
                               '"error": "StoreError"}')
        else:
            route.continue_()
    return handle


def test_a_failed_rating_shows_on_its_card_and_can_be_retried(any_page: Page, app_url: str, image_server: str,
                                                               api: httpx.Client) -> None:
    page = any_page
    open_search(page, app_url, "?k=12")
    submit_search(page, image_url=f"{image_server}/mood.jpg")
    wait_for_results(page)
    card = page.locator("#results .card").nth(5)
    card.scroll_into_view_if_needed()
    page.route("**/evaluations", _failing_once(503))
    up = card.get_by_role("button", name="Good match")

    up.click()
    error = card.locator(".card-error")
    expect(error).to_be_visible()
    expect(error.locator(".error-text")).to_contain_text("Your rating wasn't saved.")
    assert "StoreError" in error.locator("details").text_content()
    assert in_viewport(page, "#results .card:nth-child(6) .card-error")
    retry = card.get_by_role("button", name="Retry")
    expect(retry).to_be_focused()
    expect(up).to_have_attribute("aria-pressed", "false")

    retry.click()
    expect(up).to_have_attribute("aria-pressed", "true")
    expect(error).to_be_hidden()
    ratings = api.get("/evaluations", params={"limit": 500}).json()["items"]
    assert any(item["search_id"] == card.get_attribute("data-search-id")
               and item["product_id"] == card.get_attribute("data-product-id") for item in ratings)


# ---------- 2. results first ----------

def test_after_a_phone_search_the_results_are_in_view_and_the_form_is_a_summary_bar(
        phone_page: Page, app_url: str, image_server: str) -> None:
    page = phone_page
    open_search(page, app_url)
    submit_search(page, image_url=f"{image_server}/mood.jpg")
    wait_for_results(page)

    assert in_viewport(page, "#results-heading")
    assert in_viewport(page, "#results .card:first-child .card-media")
    expect(page.locator("#results-heading")).to_be_focused()
    bar = page.locator("#summary-bar")
    expect(bar).to_be_visible()
    expect(bar.locator("img")).to_have_attribute("src", f"{image_server}/mood.jpg")
    expect(bar).to_contain_text(CATEGORY)
    expect(page.locator("#search-form")).to_be_hidden()
    screenshot(page, "search-phone-results-first")

    bar.get_by_role("button", name="Edit search").click()
    expect(page.locator("#search-form")).to_be_visible()
    expect(page.get_by_label("Image or Pinterest pin URL")).to_be_focused()
    assert board_sources(page) == [f"{image_server}/mood.jpg"]


def test_on_a_desktop_the_picture_stays_large_beside_the_results(page: Page, app_url: str,
                                                                 image_server: str) -> None:
    open_search(page, app_url)
    submit_search(page, image_url=f"{image_server}/mood.jpg")
    wait_for_results(page)
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")

    assert page.evaluate("window.scrollY") > 300  # the last row of results is in view ...
    picture = page.locator("#summary-bar img")
    assert in_viewport(page, "#summary-bar img")  # ... and so is the picture
    box = picture.bounding_box()
    card = page.locator("#results .card .card-media").first.bounding_box()
    assert box["width"] >= 300 and box["width"] > card["width"]  # large enough to compare
    assert box["x"] + box["width"] <= page.locator("#results").bounding_box()["x"]  # beside the results
    screenshot(page, "search-desktop-scrolled")


# ---------- 3. an even grid ----------

def _odd_shapes(route: Route) -> None:
    """Product pictures of very different shapes: wide, tall and square, by product."""
    shape = [(480, 160), (160, 480), (300, 300)][sum(map(ord, route.request.url)) % 3]
    buffer = io.BytesIO()
    Image.new("RGB", shape, (40 + shape[0] % 200, 90, 160)).save(buffer, "JPEG")
    route.fulfill(status=200, content_type="image/jpeg", body=buffer.getvalue())


def test_every_card_picture_has_the_same_rendered_size_and_prices_align(any_page: Page, app_url: str,
                                                                        image_server: str) -> None:
    page = any_page
    page.route("**/products/*/image", _odd_shapes)
    open_search(page, app_url, "?k=8")
    submit_search(page, image_url=f"{image_server}/mood.jpg")
    wait_for_results(page)
    page.wait_for_function(
        "[...document.querySelectorAll('#results img')].every(img => img.complete && img.naturalWidth)")

    shapes = page.eval_on_selector_all("#results .card", """cards => cards.map(card => {
        const img = card.querySelector('.card-media img').getBoundingClientRect();
        const price = card.querySelector('.price').getBoundingClientRect();
        const natural = card.querySelector('.card-media img');
        return {w: Math.round(img.width), h: Math.round(img.height), top: Math.round(img.top),
                price: Math.round(price.top - img.top), ratio: natural.naturalWidth / natural.naturalHeight};
    })""")
    assert len({round(shape["ratio"], 1) for shape in shapes}) > 1  # the pictures really differ
    assert len({(shape["w"], shape["h"]) for shape in shapes}) == 1
    assert shapes[0]["w"] == shapes[0]["h"]
    assert len({shape["price"] for shape in shapes}) == 1  # titles clamped: prices on one line per row


# ---------- 8. cancel, drag and drop, my ratings, one Tab stop, touch targets, /docs ----------

def test_a_slow_picture_site_can_be_cancelled(any_page: Page, app_url: str, image_server: str) -> None:
    page = any_page
    open_search(page, app_url)
    started = time.monotonic()
    submit_search(page, image_url=f"{image_server}/slow/mood.jpg")

    cancel = page.get_by_role("button", name="Cancel")
    expect(cancel).to_be_visible(timeout=3000)
    cancel.click()
    elapsed = time.monotonic() - started
    expect(page.locator("#status")).to_have_text("Search cancelled. Your pictures and choices are still in the form.")
    expect(page.get_by_role("button", name="Find products")).to_be_enabled()
    expect(cancel).to_be_hidden()
    assert elapsed < SLOW_SECONDS - 1
    expect(page.get_by_role("alert")).to_have_count(0)
    assert board_sources(page) == [f"{image_server}/slow/mood.jpg"]


DROP = """([selector, data]) => {
    const transfer = new DataTransfer();
    for (const [type, value] of Object.entries(data)) transfer.setData(type, value);
    const target = document.querySelector(selector);
    for (const type of ['dragenter', 'dragover', 'drop']) {
        target.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }
}"""


def test_a_picture_dragged_from_another_page_joins_the_board(any_page: Page, app_url: str,
                                                             image_server: str) -> None:
    page = any_page
    open_search(page, app_url)

    page.evaluate(DROP, ["#dropzone", {"text/uri-list": f"# dragged\r\n{image_server}/mood.jpg\r\n"}])
    assert board_sources(page) == [f"{image_server}/mood.jpg"]
    page.get_by_role("combobox", name="Product type").select_option(CATEGORY)
    page.get_by_role("button", name="Find products").click()
    wait_for_results(page)

    page.get_by_role("button", name="Edit search").click()
    html = (f'<a href="https://elsewhere.example/board"><img src="{image_server}/mood.png" '
            'alt="a picture" onerror="window.pwned = 1"></a>')
    page.evaluate(DROP, ["#dropzone", {"text/html": html, "text/uri-list": "https://elsewhere.example/board"}])
    assert board_sources(page)[-1] == f"{image_server}/mood.png"  # the <img>, not the link around it
    assert page.evaluate("window.pwned") is None

    page.evaluate(DROP, ["#dropzone", {"text/plain": "just words"}])
    expect(page.locator("#picture-error .error-text")).to_contain_text("That drop held no picture we can use")


def test_my_ratings_come_back_after_a_reload_and_can_be_cleared(any_page: Page, app_url: str, image_server: str,
                                                                api: httpx.Client) -> None:
    page = any_page
    open_search(page, app_url)
    submit_search(page, image_url=f"{image_server}/mood.jpg")
    wait_for_results(page)
    first = page.locator("#results .card").first
    product_id = first.get_attribute("data-product-id")
    search_id = first.get_attribute("data-search-id")
    first.get_by_role("button", name="Poor match").click()
    expect(first.get_by_role("button", name="Poor match")).to_have_attribute("aria-pressed", "true")

    page.reload()
    wait_for_results(page)
    again = page.locator(f'#results .card[data-product-id="{product_id}"]')
    assert again.get_attribute("data-search-id") != search_id  # a reload is a new search ...
    poor = again.get_by_role("button", name="Poor match")
    expect(poor).to_have_attribute("aria-pressed", "true")  # ... and my rating is still shown

    poor.click()  # pressing a pressed rating clears it
    expect(poor).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#status")).to_contain_text("Cleared your rating")
    ratings = api.get("/evaluations", params={"limit": 500}).json()["items"]
    assert not any(item["search_id"] == search_id and item["product_id"] == product_id for item in ratings)
    page.reload()
    wait_for_results(page)
    expect(page.locator(f'#results .card[data-product-id="{product_id}"] .rate-down')).to_have_attribute(
        "aria-pressed", "false")


def test_each_card_is_one_tab_stop_with_arrow_keys_inside(any_page: Page, app_url: str, image_server: str) -> None:
    page = any_page
    open_search(page, app_url)
    submit_search(page, image_url=f"{image_server}/mood.jpg")
    wait_for_results(page)
    cards = page.locator("#results .card")
    stops = page.eval_on_selector_all("#results .card", """cards => cards.map(
        card => card.querySelectorAll('a[tabindex="0"], button[tabindex="0"]').length)""")
    assert stops and all(count == 1 for count in stops)

    cards.first.locator("h3 a").focus()
    page.keyboard.press("Tab")
    expect(cards.nth(1).locator("h3 a")).to_be_focused()  # Tab leaves the card
    page.keyboard.press("Shift+Tab")
    expect(cards.first.locator("h3 a")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(cards.first.get_by_role("button", name="Good match")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(cards.first.get_by_role("button", name="Poor match")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(cards.first.get_by_role("button", name="More like this")).to_be_focused()
    page.keyboard.press("End")
    expect(cards.first.get_by_role("button", name="Less like this")).to_be_focused()
    page.keyboard.press("ArrowRight")  # wraps around
    expect(cards.first.locator("h3 a")).to_be_focused()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    expect(cards.first.get_by_role("button", name="Less like this")).to_be_focused()  # the card remembers


def test_touch_targets_are_at_least_44_px(phone_page: Page, app_url: str, image_server: str) -> None:
    page = phone_page
    open_search(page, app_url)
    page.get_by_text("Refine (optional)").click()
    small_before = _small_targets(page)
    submit_search(page, image_url=f"{image_server}/mood.jpg")
    wait_for_results(page)

    assert small_before == [] and _small_targets(page) == []
    assert page.locator("#results .rate").count() > 0


def _small_targets(page: Page) -> list[str]:
    return page.evaluate("""() => [...document.querySelectorAll(
            'main button, main select, main input:not([type=file]), main summary, main .button, main .button-small')]
        .filter(element => element.getClientRects().length && getComputedStyle(element).visibility !== 'hidden')
        .map(element => [element, element.getBoundingClientRect()])
        .filter(([, box]) => box.width < 44 || box.height < 44)
        .map(([element, box]) => `${element.tagName}#${element.id}.${element.className} ${box.width}x${box.height}`)""")


def test_a_product_type_hidden_by_the_catalog_option_is_not_offered(any_page: Page, app_url: str,
                                                                    api: httpx.Client) -> None:
    page = any_page
    open_search(page, app_url)

    offered = page.eval_on_selector_all("#category option", "options => options.map(option => option.value)")
    assert HIDDEN_CATEGORIES[0] not in offered
    assert {CATEGORY, "lamp", "shoes", "bag", "hat"} <= set(offered)
    response = api.post("/search", json={"text": "soft", "category": HIDDEN_CATEGORIES[0], "k": 2})
    assert response.status_code == 200  # hidden from the list, still searchable by name


def test_api_docs_render_with_the_network_cut_to_loopback(any_page: Page, app_url: str) -> None:
    page = any_page
    blocked: list[str] = []

    def only_loopback(route: Route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    page.context.route("**/*", only_loopback)
    page.goto(f"{app_url}/docs")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("moodboard search API")
    expect(page.locator(".opblock-summary-path", has_text="/search").first).to_be_visible()
    assert blocked == []
    if page.viewport_size == DESKTOP:
        screenshot(page, "api-docs-offline")

