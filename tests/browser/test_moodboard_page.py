"""Issue 15 items 4-7 in real Chromium, at 390x844 and 1280x800: a moodboard of several weighted
pictures, a region of a picture, a product's own view from a shared URL with a rateable "More like
this", and "less like this" by example; each with the link that shares it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.support import (
    CATEGORY,
    board_sources,
    open_search,
    result_ids,
    screenshot,
    size_name,
    wait_for_results,
)

pytestmark = pytest.mark.browser


def history_record(api: httpx.Client, search_id: str) -> dict:
    items = api.get("/history", params={"limit": 200}).json()["items"]
    return next(item for item in items if item["search_id"] == search_id)


def add_picture(page: Page, url: str) -> None:
    page.get_by_label("Image or Pinterest pin URL").fill(url)
    page.get_by_role("button", name="Add", exact=True).click()


def test_a_three_picture_moodboard_search_and_its_shared_link(any_page: Page, browser: Browser, app_url: str,
                                                             image_server: str, api: httpx.Client) -> None:
    page = any_page
    open_search(page, app_url)
    urls = [f"{image_server}/mood.jpg", f"{image_server}/mood.png", f"{image_server}/wide.jpg"]
    for url in urls:
        add_picture(page, url)
    assert board_sources(page) == urls
    page.get_by_label("Weight of your picture 1").fill("2")
    expect(page.locator("#board .pic").first.locator("output")).to_have_text("×2")
    page.get_by_role("combobox", name="Product type").select_option(CATEGORY)
    page.get_by_role("button", name="Find products").click()
    wait_for_results(page)

    query = parse_qs(urlparse(page.url).query)
    assert query["image_url"] == urls and query["weights"] == ["2,1,1"]
    search_id = page.locator("#results .card").first.get_attribute("data-search-id")
    images = history_record(api, search_id)["params"]["images"]
    assert [(image["weight"], image["share"]) for image in images] == [(2, 0.5), (1, 0.25), (1, 0.25)]
    expect(page.locator("#summary-bar img")).to_have_count(3)
    expect(page.locator("#summary-text")).to_contain_text("3 pictures")
    screenshot(page, f"moodboard-{size_name(page)}")
    first = result_ids(page)

    other = browser.new_context(viewport=page.viewport_size).new_page()
    try:
        other.goto(page.url)
        wait_for_results(other)
        assert result_ids(other) == first
        assert board_sources(other) == urls
        assert other.eval_on_selector_all("#board input[type=range]", "inputs => inputs.map(i => i.value)") == [
            "2", "1", "1"]
    finally:
        other.context.close()


def draw_region(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag a rectangle on the first board picture, corners given as fractions of the picture."""
    page.get_by_role("button", name="Select a region").first.click()
    surface = page.locator("#board .pic-surface.drawing")
    expect(surface).to_be_focused()
    box = surface.bounding_box()
    page.mouse.move(box["x"] + start[0] * box["width"], box["y"] + start[1] * box["height"])
    page.mouse.down()
    middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    page.mouse.move(box["x"] + middle[0] * box["width"], box["y"] + middle[1] * box["height"], steps=4)
    page.mouse.move(box["x"] + end[0] * box["width"], box["y"] + end[1] * box["height"], steps=4)
    page.mouse.up()


def test_a_region_search_and_its_shared_link(any_page: Page, browser: Browser, app_url: str, image_server: str,
                                            api: httpx.Client) -> None:
    page = any_page
    open_search(page, app_url)
    add_picture(page, f"{image_server}/wide.jpg")
    draw_region(page, (0.1, 0.2), (0.6, 0.9))
    expect(page.locator("#board .region-outline")).to_be_visible()
    expect(page.locator("#board .region-text")).to_contain_text("Region: from 10% across and 20% down, 50% wide")
    screenshot(page, f"region-drawing-{size_name(page)}")
    page.get_by_role("button", name="Done").click()
    page.get_by_role("combobox", name="Product type").select_option(CATEGORY)
    page.get_by_role("button", name="Find products").click()
    wait_for_results(page)

    boxes = parse_qs(urlparse(page.url).query)["boxes"][0]
    x, y, width, height = map(float, boxes.split(","))
    assert (x, y, width, height) == pytest.approx((0.1, 0.2, 0.5, 0.7), abs=0.02)
    search_id = page.locator("#results .card").first.get_attribute("data-search-id")
    box = history_record(api, search_id)["params"]["images"][0]["box"]
    assert box == pytest.approx({"x": x, "y": y, "width": width, "height": height}, abs=1e-6)
    expect(page.locator("#summary-bar .region-outline")).to_be_visible()
    first = result_ids(page)

    whole = api.post("/search", json={"image_url": f"{image_server}/wide.jpg", "category": CATEGORY}).json()
    assert [r["score"] for r in whole["results"][:3]] != pytest.approx(
        [float(s) for s in page.eval_on_selector_all("#results .score", "s => s.map(e => e.dataset.score)")][:3],
        abs=1e-3)  # the region is what was searched

    other = browser.new_context(viewport=page.viewport_size).new_page()
    try:
        other.goto(page.url)
        wait_for_results(other)
        assert result_ids(other) == first
        expect(other.locator("#summary-bar .region-outline")).to_be_visible()
    finally:
        other.context.close()


def test_a_region_can_be_set_with_the_keyboard(any_page: Page, app_url: str, image_server: str) -> None:
    page = any_page
    open_search(page, app_url)
    add_picture(page, f"{image_server}/mood.jpg")
    page.get_by_role("button", name="Select a region").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#board .pic-surface.drawing")).to_be_focused()
    for key in ["ArrowRight", "ArrowRight", "Shift+ArrowLeft"]:
        page.keyboard.press(key)
    expect(page.locator("#board .region-text")).to_have_text(
        "Region: from 29% across and 25% down, 48% wide and 50% high.")


def test_a_product_view_opened_from_a_shared_url_rates_its_more_like_this(any_page: Page, app_url: str,
                                                                          api: httpx.Client) -> None:
    page = any_page
    product = api.get("/products/dress-0003").json()
    page.goto(f"{app_url}/?product=dress-0003")

    expect(page.locator("#detail-title")).to_have_text(product["title"])
    expect(page.locator("#detail .detail-price")).not_to_be_empty()
    shop = page.locator("#detail-product").get_by_role("link", name="See it in the shop")
    expect(shop).to_have_attribute("href", product["product_url"])
    expect(page.locator("#similar-heading")).to_have_text(f"More like “{product['title']}”")
    cards = page.locator("#similar .card")
    expect(cards.first).to_be_visible()
    search_id = cards.first.get_attribute("data-search-id")
    assert search_id and "dress-0003" not in page.eval_on_selector_all(
        "#similar .card", "cards => cards.map(c => c.dataset.productId)")
    screenshot(page, f"product-detail-{size_name(page)}", full_page=True)

    rated = cards.nth(1)
    rated.get_by_role("button", name="Good match").click()
    expect(rated.get_by_role("button", name="Good match")).to_have_attribute("aria-pressed", "true")
    ratings = api.get("/evaluations", params={"limit": 500}).json()["items"]
    stored = [item for item in ratings if item["search_id"] == search_id]
    assert [(item["product_id"], item["rating"]) for item in stored] == [(rated.get_attribute("data-product-id"), 1)]
    assert history_record(api, search_id)["kind"] == "similar"

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy link to this product").click()
    expect(page.locator("#similar-status")).to_have_text("Link copied.")
    assert page.evaluate("navigator.clipboard.readText()") == f"{app_url}/?product=dress-0003"


def test_a_results_title_opens_its_view_and_back_returns(any_page: Page, app_url: str, image_server: str) -> None:
    page = any_page
    open_search(page, app_url, f"?image_url={image_server}/mood.jpg&category={CATEGORY}")
    wait_for_results(page)
    before = result_ids(page)
    card = page.locator("#results .card").nth(2)
    card.locator("h3 a").click()

    expect(page.locator("#detail-title")).to_be_focused()
    assert parse_qs(urlparse(page.url).query)["product"] == [before[2]]
    page.go_back()
    expect(page.locator("#results-section")).to_be_visible()
    assert result_ids(page) == before  # the same results, not a new search
    page.go_forward()
    expect(page.locator("#detail-title")).to_be_visible()


def test_less_like_this_refines_the_search_and_the_link_keeps_it(any_page: Page, app_url: str, image_server: str,
                                                                 api: httpx.Client) -> None:
    page = any_page
    open_search(page, app_url, f"?image_url={image_server}/mood.jpg&category={CATEGORY}&k=6")
    wait_for_results(page)
    before = result_ids(page)
    first = page.locator("#results .card").first
    title = first.locator("h3 a").text_content()

    first.get_by_role("button", name="Less like this").click()
    expect(page.locator("#status")).to_contain_text("less like 1 product")
    after = result_ids(page)
    assert before[0] not in after and after
    assert parse_qs(urlparse(page.url).query)["less"] == [before[0]]
    record = history_record(api, page.locator("#results .card").first.get_attribute("data-search-id"))
    assert record["params"]["less_like"] == [{"product_id": before[0], "weight": record["params"]["weights"]["w_neg"]}]
    assert record["params"]["weights"]["w_neg"] > 0

    page.get_by_role("button", name="Edit search").click()
    chip = page.locator("#less-list .chip")
    expect(chip).to_have_text(f"{title}×")
    page.reload()
    wait_for_results(page)
    assert result_ids(page) == after
    page.get_by_role("button", name="Edit search").click()
    page.get_by_role("button", name=f"Stop avoiding {title}").click()
    wait_for_results(page)
    expect(page.locator("#less-like")).to_be_hidden()
    assert "less" not in parse_qs(urlparse(page.url).query)
