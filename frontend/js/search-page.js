// The search page: the moodboard's pictures (links, uploads, drops from files or other pages,
// pastes), the product type, refinements, results, ratings, "More like this", "Load more", and the
// search state kept in the page URL.

import { request } from "./api.js";
import { announce, h, setDemoBanner, showDemoBannerIfTiny } from "./dom.js";
import { explainSearchError, revealError, setErrorBox } from "./errors.js";
import { httpUrl, picturesFromTransfer } from "./pictures.js";
import { renderCard } from "./results.js";
import { shrinkForUpload } from "./upload.js";
import {
  SLIDER_DEFAULT, WEIGHT_DEFAULT, pushState, readState, sliderLabel, sliderWeights, stateQuery,
} from "./state.js";

const $ = (id) => document.getElementById(id);

const form = $("search-form");
const imageUrlInput = $("image-url");
const fileInput = $("image-file");
const dropzone = $("dropzone");
const board = $("board");
const boardStatus = $("board-status");
const pictureError = $("picture-error");
const categorySelect = $("category");
const categoryError = $("category-error");
const textInput = $("text");
const negativeInput = $("negative");
const vibeInput = $("vibe");
const vibeOutput = $("vibe-output");
const submitButton = $("submit");
const cancelButton = $("cancel");
const formError = $("form-error");
const summaryBar = $("summary-bar");
const summaryThumbs = $("summary-thumbs");
const summaryText = $("summary-text");
const editButton = $("edit-search");
const statusLine = $("status");
const resultsHeading = $("results-heading");
const resultsList = $("results");
const emptyState = $("empty");
const loadMoreButton = $("load-more");
const copyLinkButton = $("copy-link");
const backButton = $("back-to-search");
const shareNote = $("share-note");
const banner = $("demo-banner");

/** How many pictures one search may carry. */
const BOARD_LIMIT = 1;
/** A fetch that has not answered after this long gets a Cancel button. */
const SLOW_MS = 800;
/** Below this width the form collapses to a summary bar once results are in (results first). */
const narrow = window.matchMedia("(max-width: 1023.98px)");

/**
 * The moodboard: [{key, kind: "url"|"file", url, file, objectUrl, resolvedUrl, weight, box}].
 * Linked pictures travel in shared links; uploaded ones stay in this page.
 */
let pictures = [];
let pictureKey = 0;
/** The search being shown: its parameters, page key and paging position for "Load more". */
let current = null;
let controller = null;
let slowTimer = null;
/** Result nodes of the search, kept while "More like this" results are shown. */
let savedResults = null;

// ---------- the moodboard's pictures ----------

function pictureSource(picture) {
  return picture.objectUrl || picture.resolvedUrl || picture.url;
}

function pictureCaption(picture) {
  if (picture.kind === "file") return `Uploaded: ${picture.file.name || "pasted picture"}`;
  try {
    return `From ${new URL(picture.resolvedUrl || picture.url).host}`;
  } catch {
    return "Linked picture";
  }
}

function renderBoard() {
  board.replaceChildren(...pictures.map((picture, index) => {
    const label = pictures.length > 1 ? `Your picture ${index + 1}` : "Your picture";
    const img = h("img", { src: pictureSource(picture), alt: `${label}: ${pictureCaption(picture)}`, class: "pic-image",
      onError: (event) => event.target.closest(".pic").classList.add("no-preview") });
    return h("li", { class: "pic", dataset: { key: String(picture.key) } },
      h("figure", { class: "pic-frame" }, img,
        h("span", { class: "pic-placeholder", "aria-hidden": "true" }, "Preview after the search")),
      h("div", { class: "pic-info" },
        h("p", { class: "pic-caption" }, pictureCaption(picture)),
        h("div", { class: "pic-actions" },
          h("button", { type: "button", class: "button-small", onClick: () => removePicture(picture.key) },
            "Remove", h("span", { class: "visually-hidden" }, ` ${label.toLowerCase()}`)))));
  }));
  board.hidden = pictures.length === 0;
}

function forgetPicture(picture) {
  if (picture.objectUrl) URL.revokeObjectURL(picture.objectUrl);
}

/** Add a picture; with a full board the oldest one makes room. */
function addPicture(picture) {
  while (pictures.length >= BOARD_LIMIT) forgetPicture(pictures.shift());
  pictureKey += 1;
  pictures.push({ weight: WEIGHT_DEFAULT, box: null, resolvedUrl: null, ...picture, key: pictureKey });
  clearFieldError(pictureError, imageUrlInput);
  renderBoard();
  announce(boardStatus, `Added ${pictureCaption(pictures[pictures.length - 1]).toLowerCase()}.`);
}

function addUrl(value) {
  const url = httpUrl(value);
  if (!url) {
    showFieldError(pictureError, imageUrlInput, { plain: "The picture link must start with http:// or https://." });
    return false;
  }
  if (!pictures.some((picture) => picture.kind === "url" && picture.url === url)) addPicture({ kind: "url", url });
  imageUrlInput.value = "";
  return true;
}

function addFiles(files) {
  for (const file of files) {
    if (file.type && !file.type.startsWith("image/")) {
      showFieldError(pictureError, null, { plain: `“${file.name}” is not a picture. Choose a JPEG, PNG, WebP or GIF file.` });
      continue;
    }
    addPicture({ kind: "file", file, objectUrl: URL.createObjectURL(file) });
  }
}

function removePicture(key) {
  const index = pictures.findIndex((picture) => picture.key === key);
  if (index < 0) return;
  forgetPicture(pictures[index]);
  pictures.splice(index, 1);
  renderBoard();
  announce(boardStatus, "Picture removed.");
  imageUrlInput.focus();
}

function takeTransfer(transfer) {
  const found = picturesFromTransfer(transfer);
  if (found.files) addFiles(found.files);
  else if (found.url) addUrl(found.url);
  else if (found.rejected) addFiles(found.rejected);
  else {
    showFieldError(pictureError, null, {
      plain: "That drop held no picture we can use. Drop a picture file, or a picture from a web page.",
    });
    return false;
  }
  return true;
}

$("add-url").addEventListener("click", () => {
  if (addUrl(imageUrlInput.value)) imageUrlInput.focus();
});
imageUrlInput.addEventListener("input", () => clearFieldError(pictureError, imageUrlInput));
fileInput.addEventListener("change", () => {
  addFiles(Array.from(fileInput.files));
  fileInput.value = "";
});

for (const type of ["dragenter", "dragover"]) {
  dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
    dropzone.classList.add("dragging");
  });
}
for (const type of ["dragleave", "drop"]) {
  dropzone.addEventListener(type, () => dropzone.classList.remove("dragging"));
}
dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  takeTransfer(event.dataTransfer);
});
document.addEventListener("paste", (event) => {
  if (event.target instanceof HTMLInputElement && event.target.type !== "file") return; // a typed link
  const found = picturesFromTransfer(event.clipboardData);
  if (found.files) {
    event.preventDefault();
    addFiles(found.files);
  }
});

// ---------- field errors ----------

function showFieldError(box, field, explained) {
  setErrorBox(box, explained);
  if (field) {
    field.setAttribute("aria-invalid", "true");
    const described = (field.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && id !== box.id);
    field.setAttribute("aria-describedby", [...described, box.id].join(" "));
  }
}

function clearFieldError(box, field) {
  setErrorBox(box, null);
  if (field) {
    field.removeAttribute("aria-invalid");
    const described = (field.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && id !== box.id);
    if (described.length) field.setAttribute("aria-describedby", described.join(" "));
    else field.removeAttribute("aria-describedby");
  }
}

function clearErrors() {
  clearFieldError(pictureError, imageUrlInput);
  clearFieldError(categoryError, categorySelect);
  setErrorBox(formError, null);
}

/** Show a failed search beside the control that caused it, in view, focused. */
function showSearchError(error) {
  const explained = explainSearchError(error);
  expandForm();
  if (explained.field === "picture" || explained.field === "region") {
    const linked = pictures.some((picture) => picture.kind === "url");
    showFieldError(pictureError, linked ? imageUrlInput : null, explained);
    revealError(pictureError);
  } else if (explained.field === "category") {
    showFieldError(categoryError, categorySelect, explained);
    revealError(categoryError);
  } else {
    setErrorBox(formError, explained);
    revealError(formError);
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
    const explained = explainSearchError(error);
    showFieldError(categoryError, categorySelect, {
      plain: `We couldn't load the product types. ${explained.plain}`, technical: explained.technical });
    return [];
  }
}

categorySelect.addEventListener("change", () => clearFieldError(categoryError, categorySelect));

// ---------- form state ----------

function formState() {
  const state = {
    pictures: pictures.filter((picture) => picture.kind === "url")
      .map((picture) => ({ url: picture.url, weight: picture.weight, box: picture.box })),
    category: categorySelect.value,
    text: textInput.value.trim(),
    negative: negativeInput.value.trim(),
    vibe: Number(vibeInput.value),
  };
  if (pictures.some((picture) => picture.kind === "file")) state.src = "upload";
  const { k } = readState();
  if (k) state.k = k;
  return state;
}

function fillForm(state) {
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

/** Check the form; shows the problem beside its field, focuses the field, and returns false. */
function validate() {
  clearErrors();
  if (imageUrlInput.value.trim() && !addUrl(imageUrlInput.value)) {
    imageUrlInput.focus();
    pictureError.scrollIntoView({ block: "nearest" });
    return false;
  }
  if (!pictures.length && !textInput.value.trim()) {
    showFieldError(pictureError, imageUrlInput,
      { plain: "Add a picture (a link or an upload), or describe what you want under “Refine”." });
    imageUrlInput.focus();
    pictureError.scrollIntoView({ block: "nearest" });
    return false;
  }
  if (!categorySelect.value) {
    showFieldError(categoryError, categorySelect,
      { plain: "Choose a product type: we look for the vibe inside one type of product." });
    categorySelect.focus();
    categoryError.scrollIntoView({ block: "nearest" });
    return false;
  }
  return true;
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

async function postSearch(state, board, offset, signal) {
  const fields = { ...searchFields(state), offset };
  const picture = board[0];
  if (picture && picture.kind === "file") {
    const body = new FormData();
    const upload = await shrinkForUpload(picture.file);
    body.append("image", upload, upload.name || "upload");
    for (const [key, value] of Object.entries(fields)) body.append(key, String(value));
    return request("search", { method: "POST", form: body, signal });
  }
  if (picture) fields.image_url = picture.url;
  return request("search", { method: "POST", json: fields, signal });
}

function setBusy(busy, message) {
  resultsList.setAttribute("aria-busy", String(busy));
  submitButton.disabled = busy;
  loadMoreButton.disabled = busy;
  document.body.classList.toggle("is-loading", busy);
  clearTimeout(slowTimer);
  if (busy) {
    slowTimer = setTimeout(() => {
      cancelButton.hidden = false;
      announce(statusLine, `${statusLine.textContent} This is taking a while: you can cancel.`);
    }, SLOW_MS);
  } else {
    cancelButton.hidden = true;
  }
  if (message) announce(statusLine, message);
}

function cancelSearch() {
  if (!controller) return;
  controller.abort();
  controller = null;
  setBusy(false, "Search cancelled. Your pictures and choices are still in the form.");
  submitButton.focus();
}
cancelButton.addEventListener("click", cancelSearch);

/** The key under which this page's ratings are remembered: the search, without the product view. */
function pageKey(state) {
  return stateQuery({ ...state, product: undefined }) || "?";
}

async function renderResults(results, searchId) {
  const page = current ? current.page : "";
  const cards = await Promise.all(results.map((result) =>
    renderCard(result, { searchId, page, onSimilar: showSimilar, onStatus: (message) => announce(statusLine, message) })));
  resultsList.append(...cards);
}

function resultsSummary(count, response) {
  const category = response.query && response.query.category;
  const what = category ? ` in “${category}”` : "";
  return `${count} product${count === 1 ? "" : "s"}${what}.`;
}

/** The form's summary: the pictures (thumbnails on a phone, large beside the results on a desktop),
 *  the product type and the text. */
function updateSummary(state) {
  summaryThumbs.replaceChildren(...pictures.map((picture, index) =>
    h("figure", { class: "summary-pic" },
      h("img", { src: pictureSource(picture), alt: pictures.length > 1 ? `Your picture ${index + 1}` : "Your picture" }))));
  const count = pictures.length;
  const parts = [state.category || "Any product type"];
  if (count) parts.push(`${count} picture${count === 1 ? "" : "s"}`);
  if (state.text) parts.push(`“${state.text}”`);
  summaryText.textContent = parts.join(" · ");
}

/** Results first: the form folds into the summary (a bar on a phone, the sticky column with the
 *  pictures large on a desktop) and the results come into view with the focus on their heading. */
function collapseForm(state) {
  updateSummary(state);
  summaryBar.hidden = false;
  form.hidden = true;
  editButton.setAttribute("aria-expanded", "false");
  if (narrow.matches) summaryBar.scrollIntoView({ block: "start", behavior: "instant" });
  resultsHeading.focus({ preventScroll: true });
}

function expandForm() {
  if (!form.hidden) return;
  form.hidden = false;
  summaryBar.hidden = true;
  editButton.setAttribute("aria-expanded", "true");
}

editButton.addEventListener("click", () => {
  expandForm();
  form.scrollIntoView({ block: "start", behavior: "instant" });
  imageUrlInput.focus({ preventScroll: true });
});

/** Run a new search from a state (offset 0) and show its first page. */
async function runSearch(state) {
  if (controller) controller.abort();
  controller = new AbortController();
  const signal = controller.signal;
  const board = pictures.filter((picture) => picture.kind === "url" || state.src === "upload");
  clearErrors();
  emptyState.hidden = true;
  loadMoreButton.hidden = true;
  backButton.hidden = true;
  savedResults = null;
  resultsList.replaceChildren();
  resultsHeading.textContent = "Results";
  setBusy(true, "Searching…");
  try {
    const response = await postSearch(state, board, 0, signal);
    current = { state, board, response, shown: response.results.length, page: pageKey(state) };
    setDemoBanner(banner, response.tiny_model);
    const resolved = response.query && response.query.resolved_image_url;
    if (board[0] && board[0].kind === "url" && resolved) board[0].resolvedUrl = resolved;
    renderBoard();
    await renderResults(response.results, response.search_id);
    emptyState.hidden = response.results.length > 0;
    loadMoreButton.hidden = !response.has_more;
    copyLinkButton.hidden = false;
    shareNote.hidden = state.src !== "upload";
    setBusy(false, response.results.length ? resultsSummary(response.results.length, response) : "No products matched.");
    collapseForm(state);
  } catch (error) {
    if (error.name === "AbortError") return;
    current = null;
    setBusy(false, "The search did not run.");
    showSearchError(error);
  } finally {
    if (controller && controller.signal === signal) controller = null;
  }
}

async function loadMore() {
  if (!current) return;
  controller = new AbortController();
  const offset = (current.response.offset || 0) + current.shown;
  const state = { ...current.state, k: current.response.k || current.state.k };
  setBusy(true, "Loading more…");
  try {
    const response = await postSearch(state, current.board, offset, controller.signal);
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
    showSearchError(error);
  } finally {
    controller = null;
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
    showSearchError(error);
  } finally {
    controller = null;
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
  if (!validate()) return;
  const state = formState();
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
  const uploads = state.src === "upload" ? pictures.filter((picture) => picture.kind === "file") : [];
  for (const picture of pictures) {
    if (!uploads.includes(picture)) forgetPicture(picture);
  }
  pictures = [...state.pictures.map((picture) => {
    pictureKey += 1;
    return { kind: "url", resolvedUrl: null, ...picture, key: pictureKey };
  }), ...uploads].slice(-BOARD_LIMIT);
  renderBoard();
  fillForm(state);
  if (state.src === "upload" && !uploads.length) {
    shareNote.hidden = false;
    announce(statusLine, "This link came from a search with an uploaded picture, which links cannot carry. Add the picture again to re-run it.");
    return;
  }
  if (state.category && (pictures.length || state.text)) runSearch(state);
}

window.addEventListener("popstate", restoreFromUrl);

async function init() {
  updateSliderText();
  renderBoard();
  showDemoBannerIfTiny(banner);
  await loadCategories();
  restoreFromUrl();
}

init();
