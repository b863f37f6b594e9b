// Search state <-> the page URL's query string, so a search can be shared and reloaded.
//
//   ?image_url=A&image_url=B   the moodboard's linked pictures, in order (repeated)
//   &weights=1,0.5             their weights (left out when every weight is 1)
//   &boxes=|0.1,0.2,0.5,0.5    a region of each picture as x,y,width,height fractions ("" = whole)
//   &src=upload                the search also had uploaded pictures, which a link cannot carry
//   &category=&text=&negative=&vibe=&k=
//   &less=ID&less=ID           "less like this" examples (product ids, repeated)
//   &product=ID                the detail view of one product (alone: a shared product link)

/** Slider positions: 0 = all product type, SLIDER_MAX = all vibe. The weights sum to WEIGHT_TOTAL. */
export const SLIDER_MAX = 16;
export const SLIDER_DEFAULT = 10;
const WEIGHT_TOTAL = 1.6;
/** How many pictures a moodboard holds, and the range of a picture's weight. */
export const MAX_PICTURES = 6;
export const WEIGHT_MIN = 0.25;
export const WEIGHT_MAX = 2;
export const WEIGHT_DEFAULT = 1;
const MAX_LESS = 10;

/** The API's w_image / w_type for a slider position (the default position gives 1.0 / 0.6). */
export function sliderWeights(position) {
  const clamped = Math.min(SLIDER_MAX, Math.max(0, Number(position)));
  const w_image = Math.round(clamped * (WEIGHT_TOTAL / SLIDER_MAX) * 100) / 100;
  const w_type = Math.round((WEIGHT_TOTAL - w_image) * 100) / 100;
  return { w_image, w_type };
}

/** A sentence for the slider's aria-valuetext and visible output. */
export function sliderLabel(position) {
  const vibe = Math.round((Number(position) / SLIDER_MAX) * 100);
  if (Number(position) === SLIDER_DEFAULT) return `Balanced (${vibe}% vibe, ${100 - vibe}% product type)`;
  return `${vibe}% vibe, ${100 - vibe}% product type`;
}

/** A picture weight from text, clamped to the allowed range (the default when unreadable). */
export function clampWeight(value) {
  const weight = Number.parseFloat(value);
  if (!Number.isFinite(weight)) return WEIGHT_DEFAULT;
  return Math.round(Math.min(WEIGHT_MAX, Math.max(WEIGHT_MIN, weight)) * 100) / 100;
}

/** A region "x,y,width,height" (fractions of the picture) -> {x, y, width, height}, or null. */
export function parseBox(text) {
  if (!text) return null;
  const parts = String(text).split(",").map(Number);
  if (parts.length !== 4 || parts.some((part) => !Number.isFinite(part))) return null;
  const [x, y, width, height] = parts;
  if (x < 0 || y < 0 || width <= 0 || height <= 0 || x + width > 1.0001 || y + height > 1.0001) return null;
  return { x, y, width, height };
}

/** A region as it goes in a link: four fractions with three decimals. */
export function formatBox(box) {
  if (!box) return "";
  return [box.x, box.y, box.width, box.height].map((value) => String(Math.round(value * 1000) / 1000)).join(",");
}

const SCALARS = ["category", "text", "negative", "vibe", "k", "src", "product"];

/** Read the search state from a URL's query string. */
export function readState(search = window.location.search) {
  const params = new URLSearchParams(search);
  const state = {};
  for (const key of SCALARS) {
    const value = params.get(key);
    if (value !== null && value !== "") state[key] = value;
  }
  const urls = params.getAll("image_url").map((url) => url.trim()).filter(Boolean).slice(0, MAX_PICTURES);
  const weights = (params.get("weights") || "").split(",");
  const boxes = (params.get("boxes") ?? params.get("box") ?? "").split("|");
  state.pictures = urls.map((url, i) => ({
    url,
    weight: weights[i] ? clampWeight(weights[i]) : WEIGHT_DEFAULT,
    box: parseBox(boxes[i]),
  }));
  if (state.pictures.length) state.image_url = state.pictures[0].url;
  state.less = [...new Set(params.getAll("less").filter(Boolean))].slice(0, MAX_LESS);
  if (state.vibe !== undefined) {
    const vibe = Number.parseInt(state.vibe, 10);
    state.vibe = Number.isFinite(vibe) ? Math.min(SLIDER_MAX, Math.max(0, vibe)) : SLIDER_DEFAULT;
  }
  if (state.k !== undefined) {
    const k = Number.parseInt(state.k, 10);
    if (Number.isFinite(k) && k > 0) state.k = Math.min(k, 100);
    else delete state.k;
  }
  return state;
}

/** The linked pictures of a state: state.pictures, or the single state.image_url of older callers. */
function linkedPictures(state) {
  if (Array.isArray(state.pictures)) return state.pictures.filter((picture) => picture.url);
  return state.image_url ? [{ url: state.image_url, weight: WEIGHT_DEFAULT, box: null }] : [];
}

/** The query string for a state; defaults are left out so links stay short. */
export function stateQuery(state) {
  const params = new URLSearchParams();
  const pictures = linkedPictures(state);
  for (const picture of pictures) params.append("image_url", picture.url);
  if (pictures.some((picture) => Number(picture.weight ?? WEIGHT_DEFAULT) !== WEIGHT_DEFAULT)) {
    params.set("weights", pictures.map((picture) => String(picture.weight ?? WEIGHT_DEFAULT)).join(","));
  }
  if (pictures.some((picture) => picture.box)) params.set("boxes", pictures.map((picture) => formatBox(picture.box)).join("|"));
  if (state.src === "upload") params.set("src", "upload");
  for (const key of ["category", "text", "negative"]) {
    if (state[key]) params.set(key, state[key]);
  }
  if (state.vibe !== undefined && Number(state.vibe) !== SLIDER_DEFAULT) params.set("vibe", String(state.vibe));
  if (state.k) params.set("k", String(state.k));
  for (const id of state.less || []) params.append("less", id);
  if (state.product) params.set("product", state.product);
  const query = params.toString();
  return query ? `?${query}` : "";
}

/** Record a search in the address bar (a new history entry, so Back returns to the previous one). */
export function pushState(state) {
  const query = stateQuery(state);
  if (query === window.location.search) return;
  window.history.pushState(null, "", `${window.location.pathname}${query}`);
}

/** The link to one product's detail view, on its own (what "Copy link" gives in that view). */
export function productLink(productId) {
  return `${window.location.origin}${window.location.pathname}${stateQuery({ product: productId })}`;
}
