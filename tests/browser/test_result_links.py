"""Result cards and the product view link out only to http(s) shop pages, whatever product_url an index holds."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

pytestmark = pytest.mark.browser

RENDER = """async (productUrl) => {
  const { renderCard } = await import("./js/results.js");
  const card = await renderCard({ id: "p1", title: "A lamp", product_url: productUrl, score: 0.5 },
                                { searchId: null, onSimilar: () => {}, onStatus: () => {} });
  const link = card.querySelector("h3 a");
  return link ? link.getAttribute("href") : null;
}"""


@pytest.mark.parametrize("product_url", ["javascript:alert(document.cookie)", " JavaScript:alert(1)",
                                         "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)",
                                         "/relative/page", "//evil.example/x", "", None])
def test_a_card_never_links_to_a_non_http_url(page: Page, app_url: str, product_url: str | None) -> None:
    page.goto(f"{app_url}/")
    assert page.evaluate(RENDER, product_url) is None


def test_a_card_links_to_an_https_shop_page(page: Page, app_url: str) -> None:
    page.goto(f"{app_url}/")
    assert page.evaluate(RENDER, "https://shop.example/lamp?id=1") == "https://shop.example/lamp?id=1"


SHOP_LINK = """async (productUrl) => {
  const { shopLink } = await import("./js/results.js");
  const link = shopLink({ id: "p1", title: "A lamp", product_url: productUrl }, "See it in the shop");
  return link ? [link.getAttribute("href"), link.rel, link.target] : null;
}"""


@pytest.mark.parametrize("product_url", ["javascript:alert(1)", "data:text/html,x", "//evil.example/x", None])
def test_the_product_views_shop_link_is_never_a_non_http_url(page: Page, app_url: str, product_url: str | None) -> None:
    page.goto(f"{app_url}/")
    assert page.evaluate(SHOP_LINK, product_url) is None
    assert page.evaluate(SHOP_LINK, "https://shop.example/a") == ["https://shop.example/a", "noopener", "_blank"]
