"""The search page in real headless Chromium against `moodboard serve` (tiny model, generated catalog)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.support import (
    CATEGORY,
    board_sources,
    open_search,
    result_cards,
    result_ids,
    screenshot,
    submit_search,
    wait_for_results,
)

pytestmark = pytest.mark.browser


def test_search_by_image_url_shows_results_in_the_category(page: Page, app_url: str, image_server: str) -> None:
    open_search(page, app_url, "?k=8")
    submit_search(page, image_url=f"{image_server}/mood.jpg")
    wait_for_results(page)

    cards = result_cards(page)
    assert 0 < len(cards) <= 8
    assert all(card["id"].startswith(f"{CATEGORY}-") for card in cards)
    assert all(card["alt"] == card["title"] and card["title"] for card in cards)
    assert all(parse_qs(urlparse(card["href"]).query)["product"] == [card["id"]] for card in cards)
    assert all(card["price"] for card in cards)
    assert len({card["searchId"] for card in cards}) == 1
    query = parse_qs(urlparse(page.url).query)
    assert query["image_url"] == [f"{image_server}/mood.jpg"]
    assert query["category"] == [CATEGORY]
    expect(page.locator("#status")).to_contain_text(f"in “{CATEGORY}”")
    assert board_sources(page) == [f"{image_server}/mood.jpg"]
    page.wait_for_function("[...document.querySelectorAll('#results img')].every(img => img.complete && img.naturalWidth > 0)")
    page.evaluate("window.scrollTo(0, 0)")
    score = page.locator("#results .card .score").first
    expect(score).to_have_css("opacity", "0")
    page.locator("#results .card").first.hover()
    expect(score).to_have_css("opacity", "1")
    expect(score).to_contain_text("Match score")
    assert -1.0 <= float(score.get_attribute("data-score")) <= 1.0
    screenshot(page, "search-desktop", full_page=True)


def test_search_by_page_url_uses_its_og_image(page: Page, app_url: str, image_server: str) -> None:
    open_search(page, app_url)
    submit_search(page, image_url=f"{image_server}/pin.html")
    wait_for_results(page)

    assert board_sources(page) == [f"{image_server}/mood.jpg"]  # the pin's og:image, not the page
    assert result_ids(page)


def test_search_by_uploaded_image_shows_preview_and_results(page: Page, app_url: str, upload_image: Path) -> None:
    open_search(page, app_url)
    page.locator("#image-file").set_input_files(str(upload_image))
    expect(page.locator("#board .pic-image")).to_be_visible()
    expect(page.locator("#board .pic-caption")).to_contain_text("my-moodboard.png")
    submit_search(page, category="lamp")
    wait_for_results(page)

    assert all(product_id.startswith("lamp-") for product_id in result_ids(page))
    query = parse_qs(urlparse(page.url).query)
    assert query.get("src") == ["upload"] and "image_url" not in query
    expect(page.locator("#share-note")).to_be_visible()


def test_upload_larger_than_the_body_limit_is_shrunk_in_the_browser(page: Page, app_url: str,
                                                                    tmp_path: Path) -> None:
    """A 13 MB photo would be refused with 413 (limit 12 MB); the page sends a 1024-pixel JPEG."""
    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (1900, 2400, 3), dtype=np.uint8)
    big = tmp_path / "huge-photo.png"
    Image.fromarray(noise).save(big, compress_level=0)
    assert big.stat().st_size > 12 * 1024 * 1024
    open_search(page, app_url)
    page.locator("#image-file").set_input_files(str(big))
    submit_search(page, category="lamp")
    wait_for_results(page)  # the original would have been refused with 413

    assert all(product_id.startswith("lamp-") for product_id in result_ids(page))


def test_rating_by_keyboard_is_stored_and_changeable(page: Page, app_url: str, image_server: str,
                                                     api: httpx.Client) -> None:
    open_search(page, app_url)
    submit_search(page, image_url=f"{image_server}/mood.jpg")
    wait_for_results(page)
    card = page.locator("#results .card").first
    product_id = card.get_attribute("data-product-id")
    search_id = card.get_attribute("data-search-id")
    up = card.get_by_role("button", name="Good match")
    down = card.get_by_role("button", name="Poor match")

    up.focus()
    page.keyboard.press("Enter")
    expect(up).to_have_attribute("aria-pressed", "true")
    expect(down).to_have_attribute("aria-pressed", "false")
    assert _stored_ratings(api, search_id) == {product_id: 1}

    page.keyboard.press("ArrowRight")
    expect(down).to_be_focused()
    page.keyboard.press("Space")
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#status")).to_contain_text("Saved: poor match")
    assert _stored_ratings(api, search_id) == {product_id: -1}


def _stored_ratings(api: httpx.Client, search_id: str) -> dict[str, int]:
    response = api.get("/evaluations", params={"limit": 500})
    assert response.status_code == 200, response.text
    return {item["product_id"]: item["rating"] for item in response.json()["items"] if item["search_id"] == search_id}


def test_reloading_a_shared_url_reruns_the_same_search(page: Page, browser: Browser, app_url: str, image_server: str,
                                                       api: httpx.Client) -> None:
    open_search(page, app_url)
    page.get_by_text("Refine (optional)").click()
    page.get_by_label("Also looks like").fill("summer")
    page.get_by_label("Vibe vs. product type").fill("12")
    submit_search(page, image_url=f"{image_server}/mood.jpg")
    wait_for_results(page)
    first = result_ids(page)
    shared = page.url
    assert parse_qs(urlparse(shared).query)["vibe"] == ["12"]
    search_id = page.locator("#results .card").first.get_attribute("data-search-id")
    record = next(item for item in api.get("/history", params={"limit": 200}).json()["items"]
                  if item["search_id"] == search_id)
    assert record["params"]["weights"]["w_image"] == pytest.approx(1.2)
    assert record["params"]["weights"]["w_type"] == pytest.approx(0.4)
    assert record["params"]["text"] == "summer"

    page.reload()
    wait_for_results(page)
    assert result_ids(page) == first
    expect(page.get_by_label("Also looks like")).to_have_value("summer")

    other = browser.new_context().new_page()
    try:
        other.goto(shared)
        wait_for_results(other)
        assert result_ids(other) == first
        assert board_sources(other) == [f"{image_server}/mood.jpg"]
        expect(other.locator("#category")).to_have_value(CATEGORY)  # in the folded form
    finally:
        other.context.close()


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/notes.txt", "That link is neither a picture nor a page with a picture"),
     ("http://localhost:1/nothing", "We couldn't get the picture from that website")],
    ids=["non-image", "unreachable"],
)
def test_bad_picture_url_shows_readable_error_and_keeps_input(page: Page, app_url: str, image_server: str,
                                                              path: str, expected: str) -> None:
    url = path if path.startswith("http") else f"{image_server}{path}"
    open_search(page, app_url)
    submit_search(page, image_url=url)

    error = page.get_by_role("alert")
    expect(error).to_be_visible()
    expect(error.locator(".error-text")).to_contain_text(expected)
    assert "[object" not in error.inner_text() and "undefined" not in error.inner_text()
    assert board_sources(page) == [url]
    expect(page.get_by_role("combobox", name="Product type")).to_have_value(CATEGORY)
    expect(page.locator("#results .card")).to_have_count(0)


def test_network_failure_shows_readable_error_and_keeps_input(page: Page, app_url: str, image_server: str) -> None:
    open_search(page, app_url)
    page.route("**/search", lambda route: route.abort("connectionrefused"))
    submit_search(page, image_url=f"{image_server}/mood.jpg")

    expect(page.get_by_role("alert").locator(".error-text")).to_have_text(
        "Could not reach the moodboard service. Check your connection and try again.")
    assert board_sources(page) == [f"{image_server}/mood.jpg"]
    expect(page.get_by_role("button", name="Find products")).to_be_enabled()


def test_search_without_product_type_asks_for_one(page: Page, app_url: str, image_server: str) -> None:
    open_search(page, app_url)
    page.get_by_label("Image or Pinterest pin URL").fill(f"{image_server}/mood.jpg")
    page.get_by_role("button", name="Find products").click()

    expect(page.get_by_role("alert")).to_contain_text("Choose a product type")
    expect(page.get_by_role("combobox", name="Product type")).to_be_focused()
    expect(page.get_by_role("combobox", name="Product type")).to_have_attribute("aria-invalid", "true")


def test_load_more_appends_the_next_page(page: Page, app_url: str, image_server: str) -> None:
    open_search(page, app_url, "?k=4")
    submit_search(page, image_url=f"{image_server}/mood.jpg")
    wait_for_results(page)
    first = result_ids(page)
    assert len(first) == 4

    page.get_by_role("button", name="Load more").click()
    expect(page.locator("#results .card")).to_have_count(8)
    ids = result_ids(page)
    assert ids[:4] == first
    assert len(set(ids)) == 8


def test_more_like_this_opens_the_products_view_and_back_restores(page: Page, app_url: str, image_server: str) -> None:
    open_search(page, app_url)
    submit_search(page, image_url=f"{image_server}/mood.jpg")
    wait_for_results(page)
    before = result_ids(page)
    first = page.locator("#results .card").first
    title = first.locator("h3 a").text_content()

    first.get_by_role("button", name="More like this").click()
    expect(page.locator("#similar-heading")).to_have_text(f"More like “{title}”")
    expect(page.locator("#similar-heading")).to_be_focused()
    expect(page.locator("#detail-title")).to_have_text(title)  # the anchor product is shown
    similar = page.eval_on_selector_all("#similar .card", "cards => cards.map(c => c.dataset.productId)")
    assert similar and all(product_id.startswith(f"{CATEGORY}-") for product_id in similar)
    assert before[0] not in similar

    page.get_by_role("button", name="Back to results").click()
    expect(page.locator("#results-section")).to_be_visible()
    assert result_ids(page) == before
    expect(page.locator(f'#results .card[data-product-id="{before[0]}"] h3 a')).to_be_focused()


def test_demo_model_banner_is_shown_for_the_tiny_model(page: Page, app_url: str) -> None:
    open_search(page, app_url)

    banner = page.locator("#demo-banner")
    expect(banner).to_be_visible()
    expect(banner).to_have_text("Demo model: results from an untrained model are not meaningful.")


def test_phone_width_has_no_horizontal_scroll(phone_page: Page, app_url: str, image_server: str) -> None:
    page = phone_page
    open_search(page, app_url, "?k=6")
    screenshot(page, "search-phone-empty")
    submit_search(page, image_url=f"{image_server}/mood.jpg")
    wait_for_results(page)

    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    columns = page.eval_on_selector("#results", "list => getComputedStyle(list).gridTemplateColumns.split(' ').length")
    assert columns == 2
    page.wait_for_function("[...document.querySelectorAll('#results img')].slice(0, 4).every(img => img.complete)")
    screenshot(page, "search-phone")
