// The search page: the moodboard's pictures (links, uploads, drops from files or other pages,
// pastes; each with a weight and an optional region), the product type, refinements, results,
// ratings, "Less like this", "Load more", the product detail view with its own "More like this",
// and the whole state kept in the page URL.

import { request } from "./api.js";
import { announce, formatPrice, h, setDemoBanner, showDemoBannerIfTiny } from "./dom.js";
import { explainSearchError, revealError, setErrorBox } from "./errors.js";
import { httpUrl, picturesFromTransfer } from "./pictures.js";
import { describeBox, enableRegionDrawing, placeOutline } from "./region-picker.js";
import { productImage, renderCard, shopLink } from "./results.js";
import { shrinkForUpload } from "./upload.js";
import {
  MAX_PICTURES, SLIDER_DEFAULT, WEIGHT_DEFAULT, WEIGHT_MAX, WEIGHT_MIN, clampWeight, productLink, pushState,
  readState, sliderLabel, sliderWeights, stateQuery,
} from "./state.js";

const $ = (id) => document.getElementById(id);

const layout = $("search-layout");
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
const lessLike = $("less-like");
const lessList = $("less-list");
const submitButton = $("submit");
const cancelButton = $("cancel");
const formError = $("form-error");
const summaryBar = $("summary-bar");
const summaryThumbs = $("summary-thumbs");
const summaryText = $("summary-text");
const editButton = $("edit-search");
const resultsSection = $("results-section");
const statusLine = $("status");
const resultsHeading = $("results-heading");
const resultsList = $("results");
const emptyState = $("empty");
const loadMoreButton = $("load-more");
const copyLinkButton = $("copy-link");
const shareNote = $("share-note");
const detailSection = $("detail");
const detailError = $("detail-error");
const detailProduct = $("detail-product");
const similarHeading = $("similar-heading");
const similarStatus = $("similar-status");
const similarList = $("similar");
const banner = $("demo-banner");

/** A fetch that has not answered after this long gets a Cancel button. */
const SLOW_MS = 800;
const SIMILAR_K = 12;
/** Below this width the detail view takes the whole page (the search column steps aside). */
const narrow = window.matchMedia("(max-width: 1023.98px)");

/**
 * The moodboard: [{key, kind: "url"|"file", url, file, objectUrl, resolvedUrl, weight, box}].
 * Linked pictures travel in shared links; uploaded ones stay in this page.
 */
let pictures = [];
let pictureKey = 0;
/** The picture whose region is being drawn (its key), or null. */
let drawingKey = null;
/** The "less like this" product ids of the form, in order, and their titles for the chips. */
let currentLess = [];
const lessTitles = new Map();
/** The search being shown: its state, pictures, response, page key and paging position. */
let current = null;
let controller = null;
let slowTimer = null;
/** The product the detail view shows, and whether it was opened from the results. */
let detail = null;

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

function pictureLabel(index) {
  return pictures.length > 1 ? `Your picture ${index + 1}` : "Your picture";
}

function weightControl(picture, index) {
  const id = `weight-${picture.key}`;
  const output = h("output", { for: id, class: "weight-value" }, `×${picture.weight}`);
  const input = h("input", {
    id, type: "range", min: WEIGHT_MIN, max: WEIGHT_MAX, step: 0.25, value: picture.weight,
    "aria-valuetext": `weight ${picture.weight}`,
    onInput: (event) => {
      picture.weight = clampWeight(event.target.value);
      output.textContent = `×${picture.weight}`;
      event.target.setAttribute("aria-valuetext", `weight ${picture.weight}`);
    },
  });
  return h("div", { class: "weight-row" },
    h("label", { for: id }, `Weight of ${pictureLabel(index).toLowerCase()}`), h("div", { class: "slider-row" }, input, output));
}

function renderBoard() {
  board.replaceChildren(...pictures.map((picture, index) => {
    const label = pictureLabel(index);
    const drawing = drawingKey === picture.key;
    const img = h("img", { src: pictureSource(picture), alt: `${label}: ${pictureCaption(picture)}`, class: "pic-image",
      draggable: "false", onError: (event) => event.target.closest(".pic").classList.add("no-preview") });
    const outline = h("span", { class: "region-outline", "aria-hidden": "true" });
    placeOutline(outline, picture.box);
    const surface = h("span", { class: `pic-surface${drawing ? " drawing" : ""}` }, img, outline);
    if (drawing) {
      surface.tabIndex = 0;
      surface.setAttribute("role", "application");
      surface.setAttribute("aria-label", `Draw a region on ${label.toLowerCase()}: drag with the pointer, or move the box with the arrow keys and resize it with Shift and the arrow keys`);
      surface.setAttribute("aria-describedby", `region-text-${picture.key}`);
      enableRegionDrawing(surface, {
        getBox: () => picture.box,
        onChange: (box, { final }) => {
          picture.box = box;
          placeOutline(outline, box);
          if (final) $(`region-text-${picture.key}`).textContent = describeBox(box);
        },
      });
    }
    const regionButton = h("button", { type: "button", class: "button-small region-toggle", "aria-pressed": String(drawing),
      onClick: () => toggleDrawing(picture.key) }, drawing ? "Done" : picture.box ? "Change region" : "Select a region",
      h("span", { class: "visually-hidden" }, ` of ${label.toLowerCase()}`));
    return h("li", { class: "pic", dataset: { key: String(picture.key) } },
      h("figure", { class: "pic-frame" }, surface,
        h("span", { class: "pic-placeholder", "aria-hidden": "true" }, "Preview after the search")),
      h("div", { class: "pic-info" },
        h("p", { class: "pic-caption" }, pictureCaption(picture)),
        h("p", { id: `region-text-${picture.key}`, class: "hint region-text", "aria-live": "polite" },
          picture.box ? describeBox(picture.box) : ""),
        pictures.length > 1 ? weightControl(picture, index) : null,
        h("div", { class: "pic-actions" },
          regionButton,
          picture.box ? h("button", { type: "button", class: "button-small", onClick: () => clearRegion(picture.key) },
            "Whole picture", h("span", { class: "visually-hidden" }, ` (${label.toLowerCase()})`)) : null,
          h("button", { type: "button", class: "button-small", onClick: () => removePicture(picture.key) },
            "Remove", h("span", { class: "visually-hidden" }, ` ${label.toLowerCase()}`)))));
  }));
  board.hidden = pictures.length === 0;
  if (drawingKey !== null) {
    const surface = board.querySelector(".pic-surface.drawing");
    if (surface) surface.focus({ preventScroll: true });
  }
}

function toggleDrawing(key) {
  const picture = pictures.find((item) => item.key === key);
  if (!picture) return;
  if (drawingKey === key) {
    drawingKey = null;
    renderBoard();
    announce(boardStatus, picture.box ? `Region set. ${describeBox(picture.box)}` : "No region: the whole picture is searched.");
    const button = board.querySelector(`.pic[data-key="${key}"] .region-toggle`);
    if (button) button.focus();
    return;
  }
  drawingKey = key;
  renderBoard();
  announce(boardStatus, "Drag on the picture to draw the region to search, then press Done.");
}

function clearRegion(key) {
  const picture = pictures.find((item) => item.key === key);
  if (!picture) return;
  picture.box = null;
  if (drawingKey === key) drawingKey = null;
  renderBoard();
  announce(boardStatus, "Region removed: the whole picture is searched.");
  const button = board.querySelector(`.pic[data-key="${key}"] .region-toggle`);
  if (button) button.focus();
}

function forgetPicture(picture) {
  if (picture.objectUrl) URL.revokeObjectURL(picture.objectUrl);
}

/** Add a picture; a full board says so and keeps what it has. */
function addPicture(picture) {
  if (pictures.length >= MAX_PICTURES) {
    showFieldError(pictureError, null, {
      plain: `A moodboard holds ${MAX_PICTURES} pictures. Remove one to add another.` });
    return false;
  }
  pictureKey += 1;
  pictures.push({ weight: WEIGHT_DEFAULT, box: null, resolvedUrl: null, ...picture, key: pictureKey });
  clearFieldError(pictureError, imageUrlInput);
  renderBoard();
  announce(boardStatus, `Added ${pictureCaption(pictures[pictures.length - 1]).toLowerCase()}; ${pictures.length} of ${MAX_PICTURES} pictures.`);
  return true;
}

function addUrl(value) {
  const url = httpUrl(value);
  if (!url) {
    showFieldError(pictureError, imageUrlInput, { plain: "The picture link must start with http:// or https://." });
    return false;
  }
  if (!pictures.some((picture) => picture.kind === "url" && picture.url === url) && !addPicture({ kind: "url", url })) {
    return false;
  }
  imageUrlInput.value = "";
  return true;
}

function addFiles(files) {
  for (const file of files) {
    if (file.type && !file.type.startsWith("image/")) {
      showFieldError(pictureError, null, { plain: `“${file.name}” is not a picture. Choose a JPEG, PNG, WebP or GIF file.` });
      continue;
    }
    if (!addPicture({ kind: "file", file, objectUrl: URL.createObjectURL(file) })) break;
  }
}

function removePicture(key) {
  const index = pictures.findIndex((picture) => picture.key === key);
  if (index < 0) return;
  forgetPicture(pictures[index]);
  pictures.splice(index, 1);
  if (drawingKey === key) drawingKey = null;
  renderBoard();
  announce(boardStatus, `Picture removed; ${pictures.length} left.`);
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
  }
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

// ---------- "less like this" ----------

function renderLessLike(ids) {
  lessList.replaceChildren(...ids.map((id) => {
    const title = lessTitles.get(id) || id;
    return h("li", { class: "chip" }, h("span", {}, title),
      h("button", { type: "button", class: "chip-remove", "aria-label": `Stop avoiding ${title}`,
        onClick: () => dropLessLike(id) }, "×"));
  }));
  lessLike.hidden = ids.length === 0;
  for (const id of ids) {
    if (!lessTitles.has(id)) {
      lessTitles.set(id, id);
      request(`products/${encodeURIComponent(id)}`).then((product) => {
        lessTitles.set(id, product.title || id);
        renderLessLike(currentLess);
      }).catch(() => {});
    }
  }
}

function setLessLike(ids) {
  currentLess = [...ids];
  renderLessLike(currentLess);
}

function dropLessLike(id) {
  setLessLike(currentLess.filter((other) => other !== id));
  announce(boardStatus, `No longer avoiding ${lessTitles.get(id) || id}.`);
  if (current) submitSearch();
}

function lessLikeThis(product) {
  if (currentLess.includes(product.id)) return;
  lessTitles.set(product.id, product.title || product.id);
  setLessLike([...currentLess, product.id]);
  $("refine").open = true;
  submitSearch(`Finding less like ${product.title || product.id}…`);
}

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
    less: [...currentLess],
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
  setLessLike(state.less || []);
  if (state.text || state.negative || (state.vibe ?? SLIDER_DEFAULT) !== SLIDER_DEFAULT || currentLess.length) {
    $("refine").open = true;
  }
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
  if (state.less && state.less.length) fields.less_like = state.less;
  if (state.vibe !== undefined && Number(state.vibe) !== SLIDER_DEFAULT) Object.assign(fields, sliderWeights(state.vibe));
  return fields;
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** The request's pictures: links as URLs, uploads shrunk in the browser and sent as base64. */
async function imagesField(board) {
  return Promise.all(board.map(async (picture) => {
    const image = picture.kind === "file"
      ? { base64: await readAsDataUrl(await shrinkForUpload(picture.file)) }
      : { url: picture.url };
    if (picture.weight !== WEIGHT_DEFAULT) image.weight = picture.weight;
    if (picture.box) image.box = picture.box;
    return image;
  }));
}

async function postSearch(state, board, offset, signal) {
  const fields = { ...searchFields(state), offset };
  if (board.length) fields.images = await imagesField(board);
  return request("search", { method: "POST", json: fields, signal });
}

function setBusy(busy, message, line = statusLine, list = resultsList) {
  list.setAttribute("aria-busy", String(busy));
  submitButton.disabled = busy;
  loadMoreButton.disabled = busy;
  document.body.classList.toggle("is-loading", busy);
  clearTimeout(slowTimer);
  if (busy) {
    slowTimer = setTimeout(() => {
      cancelButton.hidden = false;
      announce(line, `${line.textContent} This is taking a while: you can cancel.`);
    }, SLOW_MS);
  } else {
    cancelButton.hidden = true;
  }
  if (message) announce(line, message);
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

function cardOptions(searchId, page, { less = false } = {}) {
  return {
    searchId,
    page,
    detailHref: (result) => `${window.location.pathname}${stateQuery({ ...(current ? current.state : {}), product: result.id })}`,
    onDetail: (result, event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button === 1) return;
      event.preventDefault();
      openDetail(result.id, { fromResults: true });
    },
    onSimilar: (result) => openDetail(result.id, { fromResults: true, focusSimilar: true }),
    onLess: less ? lessLikeThis : null,
    onStatus: (message) => announce(detail ? similarStatus : statusLine, message),
  };
}

async function renderCards(list, results, searchId, page, options = {}) {
  const base = cardOptions(searchId, page, options);
  const cards = await Promise.all(results.map((result) =>
    renderCard(result, { ...base, detailHref: base.detailHref(result) })));
  list.append(...cards);
}

function resultsSummary(count, response) {
  const category = response.query && response.query.category;
  const what = category ? ` in “${category}”` : "";
  const less = response.query && response.query.less_like && response.query.less_like.length
    ? `, less like ${response.query.less_like.length} product${response.query.less_like.length === 1 ? "" : "s"}` : "";
  return `${count} product${count === 1 ? "" : "s"}${what}${less}.`;
}

/** The form's summary: the pictures (thumbnails on a phone, large beside the results on a desktop)
 *  with their regions outlined, the product type and the text. */
function updateSummary(state) {
  summaryThumbs.replaceChildren(...pictures.map((picture, index) => {
    const outline = h("span", { class: "region-outline", "aria-hidden": "true" });
    placeOutline(outline, picture.box);
    return h("figure", { class: "summary-pic" },
      h("span", { class: "pic-surface" },
        h("img", { src: pictureSource(picture), alt: pictureLabel(index) + (picture.box ? " (a region of it)" : "") }),
        outline));
  }));
  const count = pictures.length;
  const parts = [state.category || "Any product type"];
  if (count) parts.push(`${count} picture${count === 1 ? "" : "s"}`);
  if (state.text) parts.push(`“${state.text}”`);
  if (state.less && state.less.length) parts.push(`less like ${state.less.length}`);
  summaryText.textContent = parts.join(" · ");
}

/** Results first: the form folds into the summary (a bar on a phone, the sticky column with the
 *  pictures large on a desktop) and the results come into view with the focus on their heading. */
function collapseForm(state) {
  drawingKey = null;
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
  renderBoard();
  form.scrollIntoView({ block: "start", behavior: "instant" });
  imageUrlInput.focus({ preventScroll: true });
});

function showResultsView() {
  detail = null;
  detailSection.hidden = true;
  resultsSection.hidden = false;
  layout.classList.remove("in-detail");
}

/** Run a new search from a state (offset 0) and show its first page. */
async function runSearch(state, message = "Searching…") {
  if (controller) controller.abort();
  controller = new AbortController();
  const signal = controller.signal;
  const searchBoard = pictures.filter((picture) => picture.kind === "url" || state.src === "upload");
  showResultsView();
  clearErrors();
  emptyState.hidden = true;
  loadMoreButton.hidden = true;
  resultsList.replaceChildren();
  resultsHeading.textContent = "Results";
  setBusy(true, message);
  try {
    const response = await postSearch(state, searchBoard, 0, signal);
    current = { state, board: searchBoard, response, shown: response.results.length, page: pageKey(state) };
    setDemoBanner(banner, response.tiny_model);
    const resolved = (response.query && response.query.images) || [];
    searchBoard.forEach((picture, i) => {
      if (picture.kind === "url" && resolved[i] && resolved[i].resolved_image_url) picture.resolvedUrl = resolved[i].resolved_image_url;
    });
    renderBoard();
    await renderCards(resultsList, response.results, response.search_id, current.page, { less: true });
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
    await renderCards(resultsList, response.results, response.search_id, current.page, { less: true });
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

/** Run the search the form describes, recording it in the address bar. */
function submitSearch(message) {
  if (!validate()) return;
  const state = formState();
  pushState(state);
  runSearch(state, message);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  submitSearch();
});
loadMoreButton.addEventListener("click", loadMore);

async function copyLink(url, line) {
  try {
    await navigator.clipboard.writeText(url);
    announce(line, "Link copied.");
  } catch {
    announce(line, `Copy this link: ${url}`);
  }
}
copyLinkButton.addEventListener("click", () => copyLink(window.location.href, statusLine));

// ---------- the product detail view and its "More like this" ----------

function attributeList(attributes) {
  const entries = Object.entries(attributes || {}).filter(([, value]) => value !== null && value !== "" && typeof value !== "object");
  if (!entries.length) return null;
  return h("dl", { class: "attributes" }, ...entries.flatMap(([name, value]) => [h("dt", {}, name.replace(/_/g, " ")), h("dd", {}, String(value))]));
}

async function renderDetail(product) {
  const image = await productImage(product, { width: 480, height: 480, loading: "eager" });
  const shop = shopLink(product, "See it in the shop", { class: "button" });
  detailProduct.replaceChildren(
    h("div", { class: "detail-media" }, image),
    h("div", { class: "detail-info" },
      h("h2", { id: "detail-title", tabindex: "-1" }, product.title || product.id),
      h("p", { class: "detail-price" }, formatPrice(product.price, product.currency)),
      h("p", { class: "detail-category" }, `Product type: ${product.category}`),
      attributeList(product.attributes),
      shop));
}

/** Open one product's view: larger picture, details, shop link, and its own "More like this"
 *  (a recorded search: its results carry a search id and can be rated). */
async function openDetail(productId, { fromResults = false, focusSimilar = false, push = true } = {}) {
  if (controller) controller.abort();
  controller = new AbortController();
  const signal = controller.signal;
  if (push) {
    const base = fromResults && current ? current.state : {};
    window.history.pushState({ fromResults }, "", `${window.location.pathname}${stateQuery({ ...base, product: productId })}`);
  }
  detail = { productId, fromResults };
  layout.classList.add("in-detail");
  resultsSection.hidden = true;
  detailSection.hidden = false;
  setErrorBox(detailError, null);
  detailProduct.replaceChildren(h("p", { class: "status" }, "Loading the product…"));
  similarList.replaceChildren();
  similarHeading.textContent = "More like this";
  setBusy(true, "Finding similar products…", similarStatus, similarList);
  if (narrow.matches) detailSection.scrollIntoView({ block: "start", behavior: "instant" });
  try {
    const body = await request(`products/${encodeURIComponent(productId)}/similar?k=${SIMILAR_K}`, { signal });
    await renderDetail(body.product);
    document.title = `${body.product.title} · moodboard`;
    similarHeading.textContent = `More like “${body.product.title || productId}”`;
    await renderCards(similarList, body.results || [], body.search_id, stateQuery({ product: productId }));
    setBusy(false, `${(body.results || []).length} products like ${body.product.title || productId}.`, similarStatus, similarList);
    const target = focusSimilar ? similarHeading : $("detail-title");
    target.focus({ preventScroll: !narrow.matches && !focusSimilar });
  } catch (error) {
    if (error.name === "AbortError") return;
    setBusy(false, "", similarStatus, similarList);
    detailProduct.replaceChildren();
    const explained = error.status === 404
      ? { plain: "We couldn't find that product. It may have been removed from the catalog.", technical: explainSearchError(error).technical }
      : explainSearchError(error);
    setErrorBox(detailError, explained);
    revealError(detailError);
  } finally {
    if (controller && controller.signal === signal) controller = null;
  }
}

$("detail-back").addEventListener("click", () => {
  if (detail && detail.fromResults && window.history.state && window.history.state.fromResults) {
    window.history.back();
    return;
  }
  const state = { ...readState(), product: undefined };
  window.history.pushState(null, "", `${window.location.pathname}${stateQuery(state)}`);
  restoreFromUrl();
});
$("detail-copy").addEventListener("click", () => {
  if (detail) copyLink(productLink(detail.productId), similarStatus);
});

// ---------- the page URL ----------

/** Fill the form from the URL and show what it describes: a product's view, or a search run again
 *  (shared links, reload, Back and Forward). */
function restoreFromUrl() {
  const state = readState();
  document.title = "moodboard: shop the vibe of a picture";
  if (state.product) {
    if (!current && (state.category || state.pictures.length)) restoreForm(state);
    openDetail(state.product, { push: false, fromResults: Boolean(current) });
    return;
  }
  const returning = detail && current && current.page === pageKey(state);
  const returningFrom = detail && detail.productId;
  if (returning) {
    showResultsView();
    const card = returningFrom && resultsList.querySelector(`.card[data-product-id="${CSS.escape(returningFrom)}"] h3 a`);
    (card || resultsHeading).focus();
    return;
  }
  showResultsView();
  if (!restoreForm(state)) return;
  if (state.category && (pictures.length || state.text)) runSearch(state);
}

/** Put a state's pictures and choices in the form; false when it needs uploads a link cannot carry. */
function restoreForm(state) {
  const uploads = state.src === "upload" ? pictures.filter((picture) => picture.kind === "file") : [];
  for (const picture of pictures) {
    if (!uploads.includes(picture)) forgetPicture(picture);
  }
  drawingKey = null;
  pictures = [...state.pictures.map((picture) => {
    pictureKey += 1;
    return { kind: "url", resolvedUrl: null, ...picture, key: pictureKey };
  }), ...uploads].slice(0, MAX_PICTURES);
  renderBoard();
  fillForm(state);
  if (state.src === "upload" && !uploads.length) {
    expandForm();
    shareNote.hidden = false;
    announce(statusLine, "This link came from a search with an uploaded picture, which links cannot carry. Add the picture again to re-run it.");
    return false;
  }
  return true;
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
