// Small DOM helpers shared by the pages: build elements without innerHTML (API text is never
// parsed as markup), announce status, and show the demo-model banner.

import { loadConfig, request } from "./api.js";

/**
 * Create an element: h("a", {href, class: "x", onClick: fn}, child, "text", ...).
 * Attributes starting with "on" become listeners; false/null attributes are skipped.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** Create an SVG element with attributes. */
export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined) element.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Put a message in an aria-live region (the element keeps its role/aria-live from the HTML). */
export function announce(element, message) {
  element.textContent = message;
}

/** Show or hide an error box (role="alert") with one readable line. */
export function showError(element, message) {
  element.textContent = message || "";
  element.hidden = !message;
}

/** Format a price with the catalog currency when the browser knows it. */
export function formatPrice(price, currency) {
  if (price === null || price === undefined || price === "") return "";
  const value = Number(price);
  if (!Number.isFinite(value)) return String(price);
  if (currency) {
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(value);
    } catch {
      return `${value.toFixed(2)} ${currency}`;
    }
  }
  return value.toFixed(2);
}

/** Format an ISO time or epoch seconds for tables. */
export function formatTime(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = typeof value === "number" ? new Date(value < 1e12 ? value * 1000 : value) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/**
 * Say what the served model is: a trained one (GET /version's model.trained) by its own description,
 * also when its base was the random test model (which a server before that fix also called tiny);
 * else the "demo model" banner when config.json or GET /version says it is the untrained random one.
 * Returns true when the demo banner is shown.
 */
export async function showDemoBannerIfTiny(banner) {
  const config = await loadConfig();
  let model = null;
  try {
    const version = await request("version");
    model = (version && version.model) || null;
  } catch {
    model = null;
  }
  if (model && model.trained && model.description) {
    showModelBanner(banner, model.description);
    return false;
  }
  const tiny = Boolean(config.tinyModel || (model && model.tiny));
  if (tiny) setDemoBanner(banner, true);
  return tiny;
}

/** A model trained on this catalog (`moodboard train`, e.g. the offline LiT model): say exactly what it is. */
export function showModelBanner(banner, description) {
  banner.replaceChildren(h("strong", {}, "Model:"), ` ${description}`);
  banner.hidden = false;
}

/** Show the demo banner (a search response can also say tiny_model: true). */
export function setDemoBanner(banner, tiny) {
  if (tiny) banner.hidden = false;
}
