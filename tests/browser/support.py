"""Constants and page helpers shared by the browser tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM = Path(os.environ.get("MOODBOARD_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
ADMIN_TOKEN = "browser-test-admin-token"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
UI_TIMEOUT_MS = 30_000
CATEGORY = "dress"


def size_name(page: Page) -> str:
    """"phone" or "desktop": the page's width, for the names of screenshots taken at both."""
    return "phone" if page.viewport_size["width"] == PHONE["width"] else "desktop"


def screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Write docs/screenshots/<name>.png (committed; the README shows search-desktop.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled", caret="hide")
    return path


def open_search(page: Page, app_url: str, query: str = "") -> None:
    """Open the search page and wait until the product types are loaded."""
    page.goto(f"{app_url}/{query}")
    expect(page.locator(f'#category option[value="{CATEGORY}"]')).to_have_count(1)


def submit_search(page: Page, *, image_url: str | None = None, upload: Path | None = None,
                  category: str = CATEGORY) -> None:
    """Fill the picture and product type and press "Find products" (a typed link joins the board)."""
    if image_url is not None:
        page.get_by_label("Image or Pinterest pin URL").fill(image_url)
    if upload is not None:
        page.locator("#image-file").set_input_files(str(upload))
    page.get_by_role("combobox", name="Product type").select_option(category)
    page.get_by_role("button", name="Find products").click()


def wait_for_results(page: Page) -> None:
    """Wait until a search has finished and shows at least one result."""
    expect(page.locator("#results .card").first).to_be_visible()
    expect(page.locator("#results")).to_have_attribute("aria-busy", "false")


def board_sources(page: Page) -> list[str]:
    """The src of each picture on the moodboard, in order."""
    return page.eval_on_selector_all("#board .pic-image", "images => images.map(img => img.getAttribute('src'))")


def in_viewport(page: Page, selector: str) -> bool:
    """Whether the whole of the first element matching selector is inside the viewport (to a pixel)."""
    return page.eval_on_selector(selector, """element => {
        const box = element.getBoundingClientRect();
        return box.height > 0 && box.top >= -1 && box.left >= -1 && box.bottom <= window.innerHeight + 1
            && box.right <= window.innerWidth + 1;
    }""")


def result_ids(page: Page) -> list[str]:
    """Product ids of the shown results, in order."""
    return page.eval_on_selector_all("#results .card", "cards => cards.map(card => card.dataset.productId)")


def result_cards(page: Page, selector: str = "#results") -> list[dict[str, Any]]:
    """What each shown card exposes: id, search id, image alt, title, its link (to the product's
    view), price."""
    return page.eval_on_selector_all(f"{selector} .card", """cards => cards.map(card => ({
        id: card.dataset.productId,
        searchId: card.dataset.searchId,
        alt: card.querySelector('img') ? card.querySelector('img').alt : null,
        imageLoaded: card.querySelector('img') ? card.querySelector('img').complete && card.querySelector('img').naturalWidth > 0 : false,
        title: card.querySelector('h3 a').textContent,
        href: card.querySelector('h3 a').href,
        price: card.querySelector('.price').textContent,
    }))""")


def sign_in(page: Page, app_url: str, view: str = "urls") -> None:
    """Open a team view and sign in with the admin token."""
    page.goto(f"{app_url}/team.html#{view}")
    page.get_by_label("Access token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#team")).to_be_visible()
