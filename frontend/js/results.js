// One result card: image (alt = title), title linking out, price, score on hover/focus,
// "More like this", and thumbs up/down rating buttons (real <button>s with aria-pressed).

import { apiUrl, request } from "./api.js";
import { formatPrice, h, svg } from "./dom.js";

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

/**
 * Build the card for one result.
 * options.searchId: the search that returned it (rating needs it; without one no rating buttons).
 * options.onSimilar(result): "More like this".
 * options.onStatus(message): report rating outcomes to the page's live region.
 */
export async function renderCard(result, { searchId, onSimilar, onStatus }) {
  const titleId = `title-${cssSafe(result.id)}-${Math.random().toString(36).slice(2, 8)}`;
  const score = formatScore(result.score);
  const scoreText = score ? `Match score ${score}` : "";
  const imageSource = result.image_url ? await apiUrl(result.image_url) : "";
  const image = imageSource
    ? h("img", { src: imageSource, alt: result.title || "Product", loading: "lazy", width: 240, height: 240 })
    : h("div", { class: "no-image", role: "img", "aria-label": result.title || "Product" }, "No image");
  const shopUrl = webUrl(result.product_url);
  const link = shopUrl
    ? h("a", { href: shopUrl, target: "_blank", rel: "noopener", title: scoreText || false }, result.title || result.id,
        h("span", { class: "visually-hidden" }, " (opens the shop in a new tab)"))
    : h("span", {}, result.title || result.id);

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
        searchId ? ratingGroup(result, searchId, onStatus) : null,
        h("button", { type: "button", class: "button-small similar", onClick: () => onSimilar(result) },
          "More like this", h("span", { class: "visually-hidden" }, `: ${result.title || result.id}`))),
    ),
  );
  return card;
}

function ratingGroup(result, searchId, onStatus) {
  const name = result.title || result.id;
  const up = h("button", { type: "button", class: "rate rate-up", "aria-pressed": "false", "data-rating": "1",
    "aria-label": `Good match: ${name}` }, thumbIcon(false));
  const down = h("button", { type: "button", class: "rate rate-down", "aria-pressed": "false", "data-rating": "-1",
    "aria-label": `Poor match: ${name}` }, thumbIcon(true));
  const group = h("div", { class: "rating", role: "group", "aria-label": `Rate ${name}` },
    h("span", { class: "rate-label", "aria-hidden": "true" }, "Good match?"), up, down);

  async function rate(button, rating) {
    if (button.getAttribute("aria-pressed") === "true") return;
    up.disabled = down.disabled = true;
    try {
      await request("evaluations", { method: "POST", json: { search_id: searchId, product_id: result.id, rating } });
      up.setAttribute("aria-pressed", String(rating === 1));
      down.setAttribute("aria-pressed", String(rating === -1));
      group.dataset.rated = String(rating);
      onStatus(`Saved: ${rating === 1 ? "good" : "poor"} match for ${name}.`);
    } catch (error) {
      onStatus(`Your rating for ${name} was not saved: ${error.message}`);
    } finally {
      up.disabled = down.disabled = false;
      button.focus();
    }
  }
  up.addEventListener("click", () => rate(up, 1));
  down.addEventListener("click", () => rate(down, -1));
  return group;
}

function cssSafe(value) {
  return String(value).replace(/[^a-zA-Z0-9_-]/g, "_");
}
