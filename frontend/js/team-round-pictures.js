// Uploaded pictures of evaluation rounds on the team page: the "new round" form's picture rows (a file
// and the product type to search for it, each), their upload (POST /rounds/pictures: the search's own
// size, pixel and format checks; stored once by content), and an item's stored picture fetched as the
// signed-in member (GET /rounds/{id}/items/{item}/picture, which needs the bearer token, so it becomes
// a blob URL): shown in the grading queue and sent to /search as an upload when the round runs.

import { request } from "./api.js";
import { h } from "./dom.js";
import { shrinkForUpload } from "./upload.js";

const $ = (id) => document.getElementById(id);

let rowCounter = 0;
let categories = null;
const blobs = new Map();  // picture name -> Promise<Blob> (a stored picture never changes)
const objectUrls = new Map();  // picture name -> Promise<blob: URL>

export function setupPictureRows() {
  $("round-add-picture").addEventListener("click", () => addRow().catch(() => {}));
}

async function categoryNames() {
  if (!categories) {
    categories = request("categories")
      .then((body) => (body.categories || []).map((c) => c.name))
      .catch((error) => { categories = null; throw error; });
  }
  return categories;
}

async function addRow() {
  const n = ++rowCounter;
  const file = h("input", { id: `round-picture-${n}`, type: "file", accept: "image/*", class: "picture-file" });
  const type = h("select", { id: `round-picture-type-${n}`, class: "picture-type" }, h("option", { value: "" }, "Choose…"));
  const row = h("li", { class: "picture-row", dataset: { n: String(n) } },
    h("div", {}, h("label", { for: file.id }, `Picture ${n}`), file),
    h("div", {}, h("label", { for: type.id }, `Product type for picture ${n}`), type),
    h("button", {
      type: "button", class: "button-small", onClick: () => {
        row.remove();
        $("round-add-picture").focus();
      },
    }, "Remove", h("span", { class: "visually-hidden" }, ` picture ${n}`)));
  $("round-picture-list").append(row);
  file.focus();
  const names = await categoryNames();
  type.append(...names.map((name) => h("option", { value: name }, name)));
}

/** The form's picture rows: {n, file, category, fileInput, typeSelect}. */
export function pictureRows() {
  return [...document.querySelectorAll("#round-picture-list .picture-row")].map((row) => {
    const fileInput = row.querySelector(".picture-file");
    const typeSelect = row.querySelector(".picture-type");
    return { n: row.dataset.n, file: fileInput.files && fileInput.files[0], category: typeSelect.value, fileInput, typeSelect };
  });
}

export function clearPictureRows() {
  $("round-picture-list").replaceChildren();
}

/** Store one picture for a round (shrunk like the search page's uploads); its {picture, sha256, ...}. */
export async function uploadPicture(file, adminRequest) {
  const form = new FormData();
  const upload = await shrinkForUpload(file);
  form.append("image", upload, upload.name || file.name || "picture");
  return adminRequest("rounds/pictures", { method: "POST", form });
}

/** An item's stored picture as a Blob, fetched with the team token (cached by the picture's name). */
export function pictureBlob(roundId, item) {
  if (!blobs.has(item.picture)) {
    const path = `rounds/${encodeURIComponent(roundId)}/items/${encodeURIComponent(item.item_id)}/picture`;
    const loading = request(path, { auth: true, blob: true });
    loading.catch(() => blobs.delete(item.picture));
    blobs.set(item.picture, loading);
  }
  return blobs.get(item.picture);
}

/** An <img> of an item's stored picture (one blob URL per picture, made once fetched). */
export function pictureImage(roundId, item, alt) {
  const img = h("img", { class: "round-picture", alt, width: 96, height: 96 });
  if (!objectUrls.has(item.picture)) {
    const made = pictureBlob(roundId, item).then((blob) => URL.createObjectURL(blob));
    made.catch(() => objectUrls.delete(item.picture));
    objectUrls.set(item.picture, made);
  }
  objectUrls.get(item.picture).then((url) => { img.src = url; }).catch(() => { img.alt = `${alt} (could not be loaded)`; });
  return img;
}
