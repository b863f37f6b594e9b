// Errors for shoppers: a plain sentence first, the technical detail folded away, shown beside the
// control that caused it, announced (role="alert"), scrolled into view and focused.

import { ApiError } from "./api.js";
import { h } from "./dom.js";

const MB = 1024 * 1024;

/** "20 MB", "900 KB": a byte count for people. */
export function formatBytes(bytes) {
  const value = Number(bytes);
  if (!Number.isFinite(value) || value < 0) return "";
  if (value >= 10 * MB) return `${Math.round(value / MB)} MB`;
  if (value >= MB) return `${Math.round((value / MB) * 10) / 10} MB`.replace(".0 MB", " MB");
  return `${Math.max(1, Math.round(value / 1024))} KB`;
}

/**
 * The picture's size and the limit, from the error's details: a byte-size 413 (ImageTooLarge,
 * FetchTooLarge, RequestTooLarge) carries max_bytes, and bytes when the size is known.
 */
function sizes(error) {
  const body = error.body || {};
  const known = (value) => (value === undefined || value === null ? NaN : Number(value));
  return { size: known(body.bytes), limit: known(body.max_bytes) };
}

function tooLarge(error, what) {
  const body = error.body || {};
  const { size, limit } = sizes(error);
  if (body.max_pixels !== undefined || body.max_decoded_bytes !== undefined) {
    return `${what} has too many pixels for us to read. Try a smaller copy of it.`;
  }
  if (Number.isFinite(size) && Number.isFinite(limit)) return `${what} is ${formatBytes(size)}; the limit is ${formatBytes(limit)}.`;
  if (Number.isFinite(limit)) return `${what} is too large; the limit is ${formatBytes(limit)}.`;
  return `${what} is too large. Try a smaller copy of it.`;
}

/**
 * A failed search (or other call) explained: {plain, technical, field}.
 * field says which control caused it: "picture", "category", "region" or "form".
 */
export function explainSearchError(error) {
  if (!(error instanceof ApiError)) {
    return { plain: "Something went wrong in this page. Try again.", technical: String(error && error.message), field: "form" };
  }
  const technical = technicalLine(error);
  if (error.status === 0) return { plain: error.message, technical, field: "form" };
  const code = error.code || "";
  const detail = String((error.body && error.body.detail) || error.message || "");
  const picture = (plain) => ({ plain, technical, field: "picture" });
  switch (code) {
    case "FetchTooLarge":
    case "ImageTooLarge":
      return picture(tooLarge(error, "That picture"));
    case "RequestTooLarge":
      return picture(tooLarge(error, "That picture"));
    case "UnsupportedImage":
      if (/og:image|no picture|page has no/i.test(detail)) return picture("We couldn't find a picture on that page. Try the link of the picture itself.");
      if (/not an image or a web page/i.test(detail)) return picture("That link is neither a picture nor a page with a picture.");
      return picture("That isn't a picture we can read. JPEG, PNG, WebP and GIF work.");
    case "CorruptImage":
      return picture("That picture seems damaged or cut short. Try another copy of it.");
    case "BlockedURL":
      return picture("We can't fetch pictures from that address. Use a public link starting with http:// or https://.");
    case "FetchTimeout":
      return picture("The picture's website took too long to answer. Try again, or save the picture and upload it.");
    case "BadContentEncoding":
    case "FetchError": {
      const status = error.body && error.body.status;
      if (status === 404 || status === 410) return picture("That website says the picture isn't there any more.");
      if (status === 401 || status === 403) return picture("That website doesn't let us fetch the picture. Save it and upload it instead.");
      return picture("We couldn't get the picture from that website. Try again, or save the picture and upload it.");
    }
    case "InvalidRegion":
      return { plain: "That region can't be used: draw a box inside the picture.", technical, field: "region" };
    case "UnknownCategory": {
      const name = error.body && error.body.category;
      return { plain: `We don't have the product type “${name || "that"}”. Choose one from the list.`, technical, field: "category" };
    }
    case "DecodersBusy":
      return { plain: "We're busy reading other pictures. Try again in a moment.", technical, field: "form" };
    default:
      break;
  }
  if (error.status === 413) return picture(tooLarge(error, "That picture"));
  if (error.status === 415) return picture("That isn't a picture we can read. JPEG, PNG, WebP and GIF work.");
  if (error.status === 502) return picture("We couldn't get the picture from that website. Try again, or save the picture and upload it.");
  if (error.status === 504) return picture("The picture's website took too long to answer. Try again, or save the picture and upload it.");
  if (error.status === 404) return { plain: "We couldn't find that. It may have been removed from the catalog.", technical, field: "form" };
  if (error.status === 422) return { plain: "The search couldn't run with these settings. Check the picture and the refinements.", technical, field: "form" };
  if (error.status === 429) return { plain: "Too many searches at once. Wait a moment and try again.", technical, field: "form" };
  if (error.status === 503) return { plain: "The search service is starting or busy. Try again in a moment.", technical, field: "form" };
  return { plain: "Something went wrong on our side. Try again in a moment.", technical, field: "form" };
}

/** A failed rating, for its card. */
export function explainRatingError(error) {
  const technical = error instanceof ApiError ? technicalLine(error) : String(error && error.message);
  if (error instanceof ApiError && error.status === 0) return { plain: "Not saved: no connection.", technical };
  if (error instanceof ApiError && error.status === 404) return { plain: "Not saved: this search has expired.", technical };
  return { plain: "Your rating wasn't saved.", technical };
}

/** "HTTP 413 · FetchTooLarge · the upstream body is ... bytes": what a developer needs. */
export function technicalLine(error) {
  const parts = [];
  if (error.status) parts.push(`HTTP ${error.status}`);
  if (error.code) parts.push(error.code);
  const detail = error.body && typeof error.body.detail === "string" ? error.body.detail : error.message;
  if (detail) parts.push(detail);
  return parts.join(" · ");
}

/**
 * Fill an error box: the plain sentence, then (folded) the technical detail; `actions` are extra
 * nodes (a Retry button) placed after the sentence. An empty message hides the box.
 */
export function setErrorBox(box, explained, ...actions) {
  if (!explained || !explained.plain) {
    box.replaceChildren();
    box.hidden = true;
    return;
  }
  const children = [h("p", { class: "error-text" }, explained.plain, ...actions.map((action) => [" ", action]))];
  if (explained.technical && explained.technical !== explained.plain) {
    children.push(h("details", { class: "error-details" },
      h("summary", {}, "Technical details"), h("p", {}, h("code", {}, explained.technical))));
  }
  box.replaceChildren(...children);
  box.hidden = false;
}

/** Bring an error into sight and give it focus (so it is read out and the keyboard starts there). */
export function revealError(box, focusTarget = box) {
  box.scrollIntoView({ block: "center", behavior: "instant" });
  if (focusTarget === box && !box.hasAttribute("tabindex")) box.tabIndex = -1;
  focusTarget.focus({ preventScroll: true });
}
