"""The team pages (sign-in, search URLs, history, evaluation dashboard) in headless Chromium."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.support import (
    ADMIN_TOKEN,
    CATEGORY,
    board_sources,
    screenshot,
    sign_in,
    wait_for_results,
)

pytestmark = pytest.mark.browser


def rated_search(api: httpx.Client, image_server: str) -> tuple[str, str]:
    """Run a search and rate its top result as the team (the dashboard shows team judgements) through
    the API; returns (search_id, product_id)."""
    response = api.post("/search", json={"image_url": f"{image_server}/mood.jpg", "category": CATEGORY, "k": 6})
    assert response.status_code == 200, response.text
    body = response.json()
    product_id = body["results"][0]["id"]
    rating = api.post("/team/evaluations", json={"search_id": body["search_id"], "product_id": product_id,
                                                 "rating": 1})
    assert rating.status_code == 200, rating.text
    return body["search_id"], product_id


def test_wrong_token_is_refused_with_a_readable_message(page: Page, app_url: str) -> None:
    page.goto(f"{app_url}/team.html")
    page.get_by_label("Access token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert").filter(has_text="token")).to_contain_text("That token was not accepted")
    expect(page.locator("#team")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('moodboard.token')") is None


def test_history_lists_recent_searches_and_runs_one_again(page: Page, app_url: str, image_server: str,
                                                          api: httpx.Client) -> None:
    search_id, _ = rated_search(api, image_server)
    sign_in(page, app_url, "history")

    row = page.locator(f'#history-table tr[data-search-id="{search_id}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text(CATEGORY)
    expect(row).to_contain_text(f"{image_server}/mood.jpg")
    expect(row).to_contain_text(re.compile(r"tiny-random-clip @ [0-9a-f]{6}"))  # source @ short fingerprint
    assert page.evaluate("sessionStorage.getItem('moodboard.token')") == ADMIN_TOKEN
    screenshot(page, "team-history-desktop", full_page=True)

    row.get_by_role("link", name="Run again").click()
    wait_for_results(page)
    expect(page.locator("#category")).to_have_value(CATEGORY)  # in the folded form
    expect(page.locator("#summary-text")).to_contain_text(CATEGORY)


def test_dashboard_shows_precision_and_counts_with_a_chart(page: Page, app_url: str, image_server: str,
                                                           api: httpx.Client) -> None:
    rated_search(api, image_server)
    summary = api.get("/evaluations/summary").json()
    sign_in(page, app_url, "dashboard")

    overall = page.locator("#overall")
    expect(overall).to_contain_text("precision@5")
    expect(overall.locator(".stat").first).to_contain_text(str(summary["total"]))
    expect(page.locator("#summary-table tbody")).to_contain_text(re.compile(r" @ [0-9a-f]{6}"))
    chart = page.locator("#precision-chart svg[role=img]")
    expect(chart).to_be_visible()
    assert chart.locator(".chart-row").count() == len(summary["by_model_fingerprint"])
    expect(page.locator("#counts-chart .bar-good").first).to_be_visible()

    page.get_by_label("Group by").select_option("by_category")
    expect(page.locator("#summary-table tbody")).to_contain_text(CATEGORY)
    expect(page.locator("#summary-caption")).to_have_text("Ratings by product type")
    screenshot(page, "team-dashboard-desktop", full_page=True)


def test_search_urls_can_be_added_run_and_deleted(page: Page, app_url: str, image_server: str,
                                                  api: httpx.Client) -> None:
    url = f"{image_server}/mood.jpg?round=1"
    sign_in(page, app_url, "urls")
    page.get_by_label("Image or pin URL").fill(url)
    page.locator("#url-category").select_option("lamp")
    page.get_by_label("Note (optional)").fill("evaluation round 1")
    page.get_by_role("button", name="Add URL").click()

    row = page.locator("#urls-table tbody tr", has_text=url)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("evaluation round 1")
    stored = [item for item in api.get("/search-urls").json()["items"] if item["url"] == url]
    assert len(stored) == 1 and stored[0]["category"] == "lamp"

    row.get_by_role("link", name="Run").click()
    wait_for_results(page)
    assert board_sources(page) == [url]
    expect(page.locator("#category")).to_have_value("lamp")

    page.go_back()
    row = page.locator("#urls-table tbody tr", has_text=url)
    row.get_by_role("button", name="Delete").click()
    expect(page.locator("#urls-table tbody tr", has_text=url)).to_have_count(0)
    assert [item for item in api.get("/search-urls").json()["items"] if item["url"] == url] == []


def test_team_pages_work_at_phone_width(phone_page: Page, app_url: str, image_server: str,
                                        api: httpx.Client) -> None:
    rated_search(api, image_server)
    sign_in(phone_page, app_url, "dashboard")

    expect(phone_page.locator("#precision-chart svg")).to_be_visible()
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= phone_page.viewport_size["width"]
    screenshot(phone_page, "team-dashboard-phone", full_page=True)
