// Search state <-> the page URL's query string, so a search can be shared and reloaded.
// Uploaded pictures stay in the browser and cannot travel in a link: such searches carry src=upload.

/** Slider positions: 0 = all product type, SLIDER_MAX = all vibe. The weights sum to WEIGHT_TOTAL. */
export const SLIDER_MAX = 16;
export const SLIDER_DEFAULT = 10;
const WEIGHT_TOTAL = 1.6;

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

const KEYS = ["image_url", "category", "text", "negative", "vibe", "k", "src"];

/** Read the search state from a URL's query string. */
export function readState(search = window.location.search) {
  const params = new URLSearchParams(search);
  const state = {};
  for (const key of KEYS) {
    const value = params.get(key);
    if (value !== null && value !== "") state[key] = value;
  }
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

/** The query string for a state; defaults are left out so links stay short. */
export function stateQuery(state) {
  const params = new URLSearchParams();
  if (state.src === "upload") params.set("src", "upload");
  else if (state.image_url) params.set("image_url", state.image_url);
  for (const key of ["category", "text", "negative"]) {
    if (state[key]) params.set(key, state[key]);
  }
  if (state.vibe !== undefined && Number(state.vibe) !== SLIDER_DEFAULT) params.set("vibe", String(state.vibe));
  if (state.k) params.set("k", String(state.k));
  const query = params.toString();
  return query ? `?${query}` : "";
}

/** Record a search in the address bar (a new history entry, so Back returns to the previous one). */
export function pushState(state) {
  const query = stateQuery(state);
  if (query === window.location.search) return;
  window.history.pushState(state, "", `${window.location.pathname}${query}`);
}
