// One result card: the picture in a fixed square box (alt = title), the title (clamped to two lines)
// linking to the product's detail view or the shop, the price, the score on hover/focus, thumbs up/
// down rating buttons (real <button>s with aria-pressed; pressing a pressed one clears the rating),
// "More like this" and "Less like this". The card is one Tab stop; the arrow keys move inside it.

import { apiUrl, request } from "./api.js";
import { formatPrice, h, svg } from "./dom.js";
import { explainRatingError, setErrorBox } from "./errors.js";
import { myRating, rememberRating } from "./my-ratings.js";
import { refreshTabStop, rovingCard } from "./roving.js";

const THUMB_PATH =
  "M2 10h4v11H2zM8 21h9.2a2 2 0 0 0 2-1.6l1.6-8A2 2 0 0 0 18.8 9H14l.8-4.2A2 2 0 0 0 12.9 2.4L8 9z";

function thumbIcon(down) {
  return svg(
    "svg",
    { viewBox: "0 0 24 24", width: 20, height: 20, "aria-hidden": "true", focusable: "false", class: down ? "thumb-down" : "" },
    svg("path", { d: THUMB_PATH, fill: "currentColor" }),
  );
}

/** The product link if it is an absolute http(s) URL, else "" (never a javascript: or data: link). */
export function webUrl(value) {
  if (typeof value !== "string" || !value) return "";
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : "";
  } catch {
    return "";
  }
}

/** Format a cosine score for people: two decimals. */
export function formatScore(score) {
  const value = Number(score);
  return Number.isFinite(value) ? value.toFixed(2) : "";
}

/** The shop link of a product: only ever an http(s) URL; null when it has none. */
export function shopLink(product, text, extra = {}) {
  const shopUrl = webUrl(product.product_url);
  if (!shopUrl) return null;
  return h("a", { href: shopUrl, target: "_blank", rel: "noopener", ...extra }, text,
    h("span", { class: "visually-hidden" }, " (opens the shop in a new tab)"));
}

/** The product's picture for a card or the detail view. */
export async function productImage(product, { width = 240, height = 240, loading = "lazy" } = {}) {
  const source = product.image_url ? await apiUrl(product.image_url) : "";
  return source
    ? h("img", { src: source, alt: product.title || "Product", loading, width, height, decoding: "async" })
    : h("div", { class: "no-image", role: "img", "aria-label": product.title || "Product" }, "No image");
}

let cardCount = 0;

/**
 * Build the card for one result.
 * options.searchId: the search that returned it (rating needs it; without one no rating buttons).
 * options.page: where "my ratings" are filed (the page's search, as a query string).
 * options.detailHref: the product's detail view; the title links there (else to the shop).
 * options.onDetail(result, event): follow the title link inside the page.
 * options.onSimilar(result): "More like this".  options.onLess(result): "Less like this" (optional).
 * options.onStatus(message): report outcomes to the page's live region.
 */
export async function renderCard(result, { searchId, page = "", detailHref, onDetail, onSimilar, onLess, onStatus }) {
  cardCount += 1;
  const titleId = `card-title-${cardCount}`;
  const name = result.title || result.id;
  const score = formatScore(result.score);
  const scoreText = score ? `Match score ${score}` : "";
  const image = await productImage(result);
  const link = detailHref
    ? h("a", { href: detailHref, class: "detail-link", title: scoreText || false,
        onClick: (event) => onDetail && onDetail(result, event) }, name)
    : shopLink(result, name, { title: scoreText || false }) || h("span", {}, name);
  const error = h("div", { class: "card-error", role: "alert", hidden: true });
  const rating = searchId ? ratingGroup(result, { searchId, page, error, onStatus }) : null;

  const card = h(
    "li",
    { class: "card", dataset: searchId ? { productId: result.id, searchId } : { productId: result.id } },
    h(
      "article",
      { "aria-labelledby": titleId },
      h("div", { class: "card-media", title: scoreText || false }, image,
        score ? h("span", { class: "score", "data-score": score }, scoreText) : null),
      h("h3", { id: titleId, class: "card-title" }, link),
      h("p", { class: "card-meta" }, h("span", { class: "price" }, formatPrice(result.price, result.currency))),
      h("div", { class: "card-actions" },
        rating,
        h("div", { class: "card-buttons" },
          onSimilar ? h("button", { type: "button", class: "button-small similar", onClick: () => onSimilar(result) },
            "More like this", h("span", { class: "visually-hidden" }, `: ${name}`)) : null,
          onLess ? h("button", { type: "button", class: "button-small less", onClick: () => onLess(result) },
            "Less like this", h("span", { class: "visually-hidden" }, `: ${name}`)) : null)),
      error,
    ),
  );
  rovingCard(card);
  return card;
}

function ratingGroup(result, { searchId, page, error, onStatus }) {
  const name = result.title || result.id;
  const up = h("button", { type: "button", class: "rate rate-up", "aria-pressed": "false", "data-rating": "1",
    "aria-label": `Good match: ${name}` }, thumbIcon(false));
  const down = h("button", { type: "button", class: "rate rate-down", "aria-pressed": "false", "data-rating": "-1",
    "aria-label": `Poor match: ${name}` }, thumbIcon(true));
  const group = h("div", { class: "rating", role: "group", "aria-label": `Rate ${name}` },
    h("span", { class: "rate-label", "aria-hidden": "true" }, "Good match?"), up, down);

  function show(rating) {
    up.setAttribute("aria-pressed", String(rating === 1));
    down.setAttribute("aria-pressed", String(rating === -1));
    if (rating) group.dataset.rated = String(rating);
    else delete group.dataset.rated;
  }
  const mine = myRating(page, result.id);
  if (mine) show(mine.rating);

  async function send(rating) {
    const stored = myRating(page, result.id);
    if (rating === 0) {
      if (!stored) return;
      try {
        await request(`evaluations/${encodeURIComponent(stored.searchId)}/${encodeURIComponent(result.id)}`, { method: "DELETE" });
      } catch (failure) {
        if (failure.status !== 404) throw failure; // already gone: cleared all the same
      }
      rememberRating(page, result.id, 0);
      return;
    }
    await request("evaluations", { method: "POST", json: { search_id: searchId, product_id: result.id, rating } });
    rememberRating(page, result.id, rating, searchId);
  }

  async function rate(button, rating) {
    const card = group.closest(".card");
    up.disabled = down.disabled = true;
    try {
      await send(rating);
      show(rating);
      setErrorBox(error, null);
      onStatus(rating === 0 ? `Cleared your rating of ${name}.` : `Saved: ${rating === 1 ? "good" : "poor"} match for ${name}.`);
    } catch (failure) {
      const retry = h("button", { type: "button", class: "button-small retry", onClick: () => rate(button, rating) },
        "Retry", h("span", { class: "visually-hidden" }, ` rating ${name}`));
      setErrorBox(error, explainRatingError(failure), retry);
      error.scrollIntoView({ block: "nearest", behavior: "instant" });
    } finally {
      up.disabled = down.disabled = false;
      if (card) refreshTabStop(card);
      if (!error.hidden && error.querySelector(".retry")) error.querySelector(".retry").focus();
      else button.focus();
    }
  }
  const toggle = (button, rating) => () => rate(button, button.getAttribute("aria-pressed") === "true" ? 0 : rating);
  up.addEventListener("click", toggle(up, 1));
  down.addEventListener("click", toggle(down, -1));
  return group;
}
