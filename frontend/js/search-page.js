// The search page: picture (URL, upload, drop or paste), product type, refinements, results,
// "More like this", "Load more", ratings, and the search state kept in the page URL.

import { ApiError, request } from "./api.js";
import { announce, h, setDemoBanner, showDemoBannerIfTiny, showError } from "./dom.js";
import { renderCard } from "./results.js";
import { shrinkForUpload } from "./upload.js";
import {
  SLIDER_DEFAULT, pushState, readState, sliderLabel, sliderWeights,
} from "./state.js";

const $ = (id) => document.getElementById(id);

const form = $("search-form");
const imageUrlInput = $("image-url");
const fileInput = $("image-file");
const dropzone = $("dropzone");
const preview = $("preview");
const previewImage = $("preview-image");
const previewCaption = $("preview-caption");
const categorySelect = $("category");
const textInput = $("text");
const negativeInput = $("negative");
const vibeInput = $("vibe");
const vibeOutput = $("vibe-output");
const submitButton = $("submit");
const formError = $("form-error");
const statusLine = $("status");
const resultsHeading = $("results-heading");
const resultsList = $("results");
const emptyState = $("empty");
const loadMoreButton = $("load-more");
const copyLinkButton = $("copy-link");
const backButton = $("back-to-search");
const shareNote = $("share-note");
const banner = $("demo-banner");

/** The picked file (upload/drop/paste); null when the picture comes from the URL field. */
let selectedFile = null;
let previewObjectUrl = null;
/** The search being shown: its parameters and the paging position for "Load more". */
let current = null;
let controller = null;
/** Result nodes of the search, kept while "More like this" results are shown. */
let savedResults = null;

// ---------- picture input ----------

function showPreview(src, caption) {
  previewImage.src = src;
  previewCaption.textContent = caption;
  preview.hidden = false;
}

function hidePreview() {
  preview.hidden = true;
  previewImage.removeAttribute("src");
  previewCaption.textContent = "";
  if (previewObjectUrl) {
    URL.revokeObjectURL(previewObjectUrl);
    previewObjectUrl = null;
  }
}

function selectFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showError(formError, `“${file.name}” is not a picture. Choose a JPEG, PNG, WebP or GIF file.`);
    return;
  }
  showError(formError, "");
  selectedFile = file;
  imageUrlInput.value = "";
  hidePreview();
  previewObjectUrl = URL.createObjectURL(file);
  showPreview(previewObjectUrl, `Uploaded: ${file.name || "pasted picture"}`);
}

function clearPicture() {
  selectedFile = null;
  fileInput.value = "";
  imageUrlInput.value = "";
  hidePreview();
  imageUrlInput.focus();
}

fileInput.addEventListener("change", () => selectFile(fileInput.files[0]));
$("clear-image").addEventListener("click", clearPicture);

imageUrlInput.addEventListener("input", () => {
  if (selectedFile && !imageUrlInput.value.trim()) return;
  selectedFile = null;
  fileInput.value = "";
  hidePreview();
});
// A linked picture is previewed from the search response (resolved_image_url, which for a Pinterest
// pin is the pin's image): previewing while typing would shift the layout under the pointer.
previewImage.addEventListener("error", () => {
  if (!selectedFile) preview.hidden = true;
});

for (const type of ["dragenter", "dragover"]) {
  dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    dropzone.classList.add("dragging");
  });
}
for (const type of ["dragleave", "drop"]) {
  dropzone.addEventListener(type, () => dropzone.classList.remove("dragging"));
}
dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  const file = event.dataTransfer && event.dataTransfer.files[0];
  if (file) selectFile(file);
});
document.addEventListener("paste", (event) => {
  const items = event.clipboardData ? Array.from(event.clipboardData.files) : [];
  const image = items.find((file) => file.type.startsWith("image/"));
  if (image) {
    event.preventDefault();
    selectFile(image);
  }
});

function isHttpUrl(value) {
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}

// ---------- slider ----------

function updateSliderText() {
  const label = sliderLabel(vibeInput.value);
  vibeInput.setAttribute("aria-valuetext", label);
  vibeOutput.textContent = label;
}
vibeInput.addEventListener("input", updateSliderText);

// ---------- categories ----------

async function loadCategories() {
  try {
    const body = await request("categories");
    const categories = (body && body.categories) || [];
    categorySelect.replaceChildren(
      h("option", { value: "" }, "Choose a product type…"),
      ...categories.map((category) =>
        h("option", { value: category.name }, category.count !== undefined ? `${category.name} (${category.count})` : category.name)),
    );
    return categories;
  } catch (error) {
    categorySelect.replaceChildren(h("option", { value: "" }, "Product types unavailable"));
    showError(formError, `Product types could not be loaded: ${error.message}`);
    return [];
  }
}

// ---------- form state ----------

function formState() {
  const state = {
    category: categorySelect.value,
    text: textInput.value.trim(),
    negative: negativeInput.value.trim(),
    vibe: Number(vibeInput.value),
  };
  if (selectedFile) state.src = "upload";
  else if (imageUrlInput.value.trim()) state.image_url = imageUrlInput.value.trim();
  const { k } = readState();
  if (k) state.k = k;
  return state;
}

function fillForm(state) {
  imageUrlInput.value = state.image_url || "";
  if (state.category) {
    if (![...categorySelect.options].some((option) => option.value === state.category)) {
      categorySelect.append(h("option", { value: state.category }, state.category));
    }
    categorySelect.value = state.category;
  } else {
    categorySelect.value = "";
  }
  textInput.value = state.text || "";
  negativeInput.value = state.negative || "";
  vibeInput.value = String(state.vibe ?? SLIDER_DEFAULT);
  updateSliderText();
  if (state.text || state.negative || (state.vibe ?? SLIDER_DEFAULT) !== SLIDER_DEFAULT) $("refine").open = true;
}

function setInvalid(element, invalid) {
  if (invalid) element.setAttribute("aria-invalid", "true");
  else element.removeAttribute("aria-invalid");
}

/** Check the form; returns an error sentence (and focuses the field) or "" when it is fine. */
function validate(state) {
  setInvalid(categorySelect, false);
  setInvalid(imageUrlInput, false);
  if (state.image_url && !isHttpUrl(state.image_url)) {
    setInvalid(imageUrlInput, true);
    imageUrlInput.focus();
    return "The picture link must start with http:// or https://.";
  }
  if (!state.image_url && !selectedFile && !state.text) {
    setInvalid(imageUrlInput, true);
    imageUrlInput.focus();
    return "Add a picture (a link or an upload), or describe what you want under “Refine”.";
  }
  if (!state.category) {
    setInvalid(categorySelect, true);
    categorySelect.focus();
    return "Choose a product type: we look for the vibe inside one type of product.";
  }
  return "";
}

// ---------- searching ----------

function searchFields(state) {
  const fields = { category: state.category };
  if (state.text) fields.text = state.text;
  if (state.negative) fields.negative = state.negative;
  if (state.k) fields.k = state.k;
  if (state.vibe !== undefined && Number(state.vibe) !== SLIDER_DEFAULT) Object.assign(fields, sliderWeights(state.vibe));
  return fields;
}

async function postSearch(state, file, offset, signal) {
  const fields = { ...searchFields(state), offset };
  if (file) {
    const body = new FormData();
    const upload = await shrinkForUpload(file);
    body.append("image", upload, upload.name || "upload");
    for (const [key, value] of Object.entries(fields)) body.append(key, String(value));
    return request("search", { method: "POST", form: body, signal });
  }
  if (state.image_url) fields.image_url = state.image_url;
  return request("search", { method: "POST", json: fields, signal });
}

function setBusy(busy, message) {
  resultsList.setAttribute("aria-busy", String(busy));
  submitButton.disabled = busy;
  loadMoreButton.disabled = busy;
  document.body.classList.toggle("is-loading", busy);
  if (message) announce(statusLine, message);
}

async function renderResults(results, searchId) {
  const cards = await Promise.all(results.map((result) =>
    renderCard(result, { searchId, onSimilar: showSimilar, onStatus: (message) => announce(statusLine, message) })));
  resultsList.append(...cards);
}

function resultsSummary(count, response) {
  const category = response.query && response.query.category;
  const what = category ? ` in “${category}”` : "";
  return `${count} product${count === 1 ? "" : "s"}${what}.`;
}

/** Run a new search from a state (offset 0) and show its first page. */
async function runSearch(state) {
  if (controller) controller.abort();
  controller = new AbortController();
  const file = state.src === "upload" ? selectedFile : null;
  showError(formError, "");
  emptyState.hidden = true;
  loadMoreButton.hidden = true;
  backButton.hidden = true;
  savedResults = null;
  resultsList.replaceChildren();
  resultsHeading.textContent = "Results";
  setBusy(true, "Searching…");
  try {
    const response = await postSearch(state, file, 0, controller.signal);
    current = { state, file, response, shown: response.results.length };
    setDemoBanner(banner, response.tiny_model);
    if (!file) {
      const resolved = response.query && response.query.resolved_image_url;
      if (resolved) showPreview(resolved, "Your picture");
      else hidePreview();
    }
    await renderResults(response.results, response.search_id);
    emptyState.hidden = response.results.length > 0;
    loadMoreButton.hidden = !response.has_more;
    copyLinkButton.hidden = false;
    shareNote.hidden = !file;
    setBusy(false, response.results.length ? resultsSummary(response.results.length, response) : "No products matched.");
  } catch (error) {
    if (error.name === "AbortError") return;
    current = null;
    setBusy(false, "The search did not run.");
    showError(formError, searchErrorMessage(error));
  }
}

/** A readable sentence for a failed search; the user's input stays in the form. */
function searchErrorMessage(error) {
  if (!(error instanceof ApiError)) return `Something went wrong: ${error.message}`;
  const prefix = {
    400: "That picture link cannot be used",
    413: "That picture is too large",
    415: "That is not a picture we can read",
    422: "The search could not run",
    502: "The picture could not be fetched",
    504: "The picture's website took too long",
  }[error.status];
  if (error.status === 0) return error.message;
  return prefix ? `${prefix}: ${error.message}` : error.message;
}

async function loadMore() {
  if (!current) return;
  controller = new AbortController();
  const offset = (current.response.offset || 0) + current.shown;
  const state = { ...current.state, k: current.response.k || current.state.k };
  setBusy(true, "Loading more…");
  try {
    const response = await postSearch(state, current.file, offset, controller.signal);
    const firstNew = resultsList.children.length;
    await renderResults(response.results, response.search_id);
    current = { ...current, response, shown: response.results.length };
    loadMoreButton.hidden = !response.has_more;
    setBusy(false, `${response.results.length} more products; ${resultsList.children.length} shown.`);
    const next = resultsList.children[firstNew];
    const focusTarget = next && next.querySelector("h3 a, h3 span");
    if (focusTarget) {
      if (focusTarget.tagName !== "A") focusTarget.tabIndex = -1;
      focusTarget.focus();
    }
  } catch (error) {
    if (error.name === "AbortError") return;
    setBusy(false, "Could not load more results.");
    showError(formError, searchErrorMessage(error));
  }
}

async function showSimilar(product) {
  if (controller) controller.abort();
  controller = new AbortController();
  setBusy(true, `Finding more like ${product.title || product.id}…`);
  try {
    const params = new URLSearchParams();
    if (current && current.response.k) params.set("k", String(current.response.k));
    const body = await request(`products/${encodeURIComponent(product.id)}/similar?${params}`, { signal: controller.signal });
    if (!savedResults) {
      savedResults = { nodes: [...resultsList.children], loadMore: !loadMoreButton.hidden, empty: !emptyState.hidden };
    }
    resultsList.replaceChildren();
    emptyState.hidden = true;
    loadMoreButton.hidden = true;
    resultsHeading.textContent = `More like “${product.title || product.id}”`;
    const results = (body && body.results) || [];
    await renderResults(results, body && body.search_id);
    emptyState.hidden = results.length > 0;
    backButton.hidden = false;
    setBusy(false, `${results.length} products like ${product.title || product.id}.`);
    resultsHeading.focus();
  } catch (error) {
    if (error.name === "AbortError") return;
    setBusy(false, "Could not find similar products.");
    showError(formError, `“More like this” failed: ${error.message}`);
  }
}

function backToSearch() {
  if (!savedResults) return;
  resultsList.replaceChildren(...savedResults.nodes);
  loadMoreButton.hidden = !savedResults.loadMore;
  emptyState.hidden = !savedResults.empty;
  savedResults = null;
  backButton.hidden = true;
  resultsHeading.textContent = "Results";
  announce(statusLine, `Back to your search: ${resultsList.children.length} products.`);
  resultsHeading.focus();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const state = formState();
  const problem = validate(state);
  showError(formError, problem);
  if (problem) return;
  pushState(state);
  runSearch(state);
});
loadMoreButton.addEventListener("click", loadMore);
backButton.addEventListener("click", backToSearch);
copyLinkButton.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(window.location.href);
    announce(statusLine, "Link copied.");
  } catch {
    announce(statusLine, `Copy this link: ${window.location.href}`);
  }
});

/** Fill the form from the URL and re-run the search it describes (shared links, reload, Back). */
function restoreFromUrl() {
  const state = readState();
  if (state.src !== "upload") {
    selectedFile = null;
    fileInput.value = "";
    if (!state.image_url) hidePreview();
  }
  fillForm(state);
  if (state.src === "upload" && !selectedFile) {
    shareNote.hidden = false;
    announce(statusLine, "This link came from a search with an uploaded picture, which links cannot carry. Add the picture again to re-run it.");
    return;
  }
  if (state.category && (state.image_url || state.text || state.src === "upload")) runSearch(state);
}

window.addEventListener("popstate", restoreFromUrl);

async function init() {
  updateSliderText();
  showDemoBannerIfTiny(banner);
  await loadCategories();
  restoreFromUrl();
}

init();
