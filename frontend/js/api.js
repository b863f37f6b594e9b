// The one place the pages talk to the moodboard API: runtime config, requests, readable errors,
// and the team's bearer token. The API base URL comes from config.json at run time so the same
// files work behind `moodboard serve` (same origin, apiBase "") and on CloudFront (API Gateway URL).

const TOKEN_KEY = "moodboard.token";

let configPromise = null;

/** Read config.json once: {apiBase, tinyModel?}. A missing file means same-origin defaults. */
export function loadConfig() {
  if (!configPromise) {
    configPromise = fetch("config.json", { cache: "no-store" })
      .then((response) => (response.ok ? response.json() : {}))
      .catch(() => ({}))
      .then((config) => ({ apiBase: "", tinyModel: false, ...config }));
  }
  return configPromise;
}

/** An absolute URL for an API path (or a URL the API returned, which may be relative to it). */
export async function apiUrl(path) {
  const { apiBase } = await loadConfig();
  const base = new URL(apiBase ? apiBase.replace(/\/?$/, "/") : "/", window.location.href);
  if (/^[a-z][a-z0-9+.-]*:/i.test(path)) return path;
  return new URL(path.replace(/^\//, ""), base).toString();
}

/** A failed API call: `message` is a sentence for people; `status` 0 means no response at all. */
export class ApiError extends Error {
  constructor(message, { status = 0, code = null, body = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

const STATUS_HINTS = {
  400: "The request was refused.",
  401: "Please sign in again.",
  404: "Not found.",
  409: "That did not match what the server has.",
  413: "That is too large.",
  415: "That is not an image we can read (JPEG, PNG, WebP or GIF work).",
  422: "Something in the request is missing or not valid.",
  429: "Too many requests; wait a moment and try again.",
  502: "The picture could not be fetched from that address.",
  503: "The service is busy or starting; try again in a moment.",
  504: "The picture's website took too long to answer.",
};

/** Turn an API error body ({"detail": ...}, FastAPI validation lists included) into one line. */
export function detailMessage(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string" && detail.trim()) return detail.trim();
  if (Array.isArray(detail) && detail.length) {
    return detail
      .map((item) => {
        const where = Array.isArray(item.loc) ? item.loc.filter((part) => part !== "body").join(".") : "";
        return where ? `${where}: ${item.msg}` : item.msg;
      })
      .join("; ");
  }
  return STATUS_HINTS[status] || `The server answered with an error (HTTP ${status}).`;
}

/**
 * Call the API and return the parsed JSON body.
 * options: method, json (object sent as JSON), form (FormData), auth (send the stored token), signal,
 * blob (return a successful answer's body as a Blob, e.g. a picture; an error is read as JSON all the same).
 */
export async function request(path, { method = "GET", json, form, auth = false, signal, blob = false } = {}) {
  const headers = { Accept: "application/json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  if (auth) {
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
  }
  let response;
  try {
    response = await fetch(await apiUrl(path), { method, headers, body, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(
      "Could not reach the moodboard service. Check your connection and try again.",
      { status: 0, code: "NetworkError" },
    );
  }
  if (blob && response.ok) return response.blob();
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    throw new ApiError(detailMessage(parsed, response.status), {
      status: response.status,
      code: parsed && parsed.error,
      body: parsed,
    });
  }
  return parsed;
}

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}
