// The team pages: sign-in (a bearer token in sessionStorage), curated search URLs, search history and
// the evaluation dashboard; evaluation rounds, individual ratings and index versions live in their own
// modules (team-rounds.js, team-ratings.js, team-indexes.js, team-load.js). Views are hash routes (#urls,
// #history, #dashboard, #rounds, #rounds/<id>, #ratings, #indexes, #load) on one page.

import { ApiError, clearToken, getToken, request, setToken } from "./api.js";
import { barChart } from "./chart.js";
import { announce, formatTime, h, showDemoBannerIfTiny, showError } from "./dom.js";
import { stateQuery } from "./state.js";
import { loadIndexes, setupIndexes } from "./team-indexes.js";
import { loadLoadView, setupLoad } from "./team-load.js";
import { setupUpload } from "./team-upload.js";
import { modelNames, nameOf } from "./team-models.js";
import { loadRatings, setupRatings } from "./team-ratings.js";
import { loadRounds, setupRounds } from "./team-rounds.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["urls", "history", "dashboard", "rounds", "ratings", "indexes", "load"];
const GROUP_LABELS = {
  by_model_fingerprint: "Model version",
  by_index_version: "Index version",
  by_category: "Product type",
  by_weights: "Query weights",
};

const loginSection = $("login");
const loginForm = $("login-form");
const tokenInput = $("token");
const loginError = $("login-error");
const teamSection = $("team");
const status = $("team-status");
const teamError = $("team-error");

let categoriesLoaded = false;
let historyCursor = null;
let summary = null;
let models = null;

/** Pull the list out of a listing response ({items: [...]}, or a bare list). */
function listOf(body, ...keys) {
  if (Array.isArray(body)) return body;
  for (const key of ["items", ...keys]) {
    if (body && Array.isArray(body[key])) return body[key];
  }
  return [];
}

/** An admin API call; a 401 signs the user out and shows the sign-in form again. */
async function adminRequest(path, options = {}) {
  try {
    return await request(path, { ...options, auth: true });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      clearToken();
      showLogin("Your token was not accepted or has expired. Sign in again.");
    }
    throw error;
  }
}

// ---------- sign-in ----------

function showLogin(message = "") {
  teamSection.hidden = true;
  loginSection.hidden = false;
  showError(loginError, message);
  tokenInput.focus();
}

const ROLE_NAMES = { admin: "admin", member: "team member" };

/** Show or hide what only an admin may do (the API refuses it anyway with a 403). */
function applyRole() {
  const admin = context.role === "admin";
  document.querySelector('.team-nav a[data-view="load"]').parentElement.hidden = !admin;
  $("indexes-admin-note").hidden = admin;
  $("load-admin-note").hidden = admin;
  $("upload-form").hidden = !admin;
  $("dry-run-form").hidden = !admin;
}

/** Who is signed in and their role (GET /team/me), then the view; a member sees no admin actions. */
async function showTeam() {
  loginSection.hidden = true;
  teamSection.hidden = false;
  try {
    const me = await adminRequest("team/me");
    context.role = me.role === "admin" ? "admin" : "member";
    $("signed-in-as").textContent = `Signed in as ${me.name} (${ROLE_NAMES[context.role]})`;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;  // the sign-in form is back
    context.role = "member";  // unknown: offer no admin action
    $("signed-in-as").textContent = "";
  }
  applyRole();
  route();
}

loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = tokenInput.value.trim();
  if (!token) {
    tokenInput.setAttribute("aria-invalid", "true");
    showError(loginError, "Enter your access token.");
    tokenInput.focus();
    return;
  }
  tokenInput.removeAttribute("aria-invalid");
  setToken(token);
  try {
    await request("history?limit=1", { auth: true });
  } catch (error) {
    clearToken();
    const message = error instanceof ApiError && error.status === 401
      ? "That token was not accepted. Check it and try again."
      : `Could not sign in: ${error.message}`;
    tokenInput.setAttribute("aria-invalid", "true");
    showError(loginError, message);
    tokenInput.focus();
    return;
  }
  tokenInput.value = "";
  showError(loginError, "");
  await showTeam();
  document.querySelector(`#view-${currentView()} h2`)?.focus();
});

$("sign-out").addEventListener("click", () => {
  clearToken();
  showLogin("");
  announce(status, "Signed out.");
});

// ---------- routing ----------

function currentView() {
  const view = window.location.hash.replace(/^#/, "").split("/")[0];
  return VIEWS.includes(view) ? view : "urls";
}

/** What follows the view in the hash (#rounds/<id> -> id), decoded, or "". */
function viewArgument() {
  const rest = window.location.hash.replace(/^#/, "").split("/").slice(1).join("/");
  try {
    return decodeURIComponent(rest);
  } catch {
    return "";
  }
}

function route() {
  if (!getToken()) {
    showLogin();
    return;
  }
  const view = currentView();
  for (const name of VIEWS) {
    $(`view-${name}`).hidden = name !== view;
    const link = document.querySelector(`.team-nav a[data-view="${name}"]`);
    if (name === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  showError(teamError, "");
  const loaders = {
    urls: loadUrls,
    history: () => loadHistory(false),
    dashboard: loadSummary,
    rounds: () => loadRounds(viewArgument()),
    ratings: loadRatings,
    indexes: loadIndexes,
    load: loadLoadView,
  };
  loaders[view]().catch((error) => {
    if (!(error instanceof ApiError && error.status === 401)) showError(teamError, error.message);
    announce(status, "");
  });
}

window.addEventListener("hashchange", () => {
  route();
  const heading = document.querySelector(viewArgument() && currentView() === "rounds" ? "#round-title" : `#view-${currentView()} h2`);
  if (heading && !teamSection.hidden) heading.focus();
});

// ---------- search URLs ----------

function searchLink(url, category) {
  return `./${stateQuery({ image_url: url, category })}`;
}

async function loadCategories() {
  if (categoriesLoaded) return;
  const body = await request("categories");
  $("url-category").replaceChildren(
    h("option", { value: "" }, "Choose…"),
    ...listOf(body, "categories").map((category) => h("option", { value: category.name }, category.name)),
  );
  categoriesLoaded = true;
}

async function loadUrls() {
  announce(status, "Loading search URLs…");
  const [body] = await Promise.all([adminRequest("search-urls"), loadCategories()]);
  const entries = listOf(body, "search_urls", "urls");
  const rows = entries.map((entry) => h("tr", { dataset: { id: entry.id } },
    h("td", {}, h("span", { class: "url" }, entry.url)),
    h("td", {}, entry.category),
    h("td", {}, entry.note || ""),
    h("td", {}, formatTime(entry.created_at)),
    h("td", {}, h("div", { class: "row-actions" },
      h("a", { class: "button-small run", href: searchLink(entry.url, entry.category) }, "Run",
        h("span", { class: "visually-hidden" }, ` search for ${entry.url}`)),
      h("button", { type: "button", class: "button-small button-danger delete", onClick: () => deleteUrl(entry) }, "Delete",
        h("span", { class: "visually-hidden" }, ` ${entry.url}`))))));
  $("urls-table").tBodies[0].replaceChildren(
    ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 5 }, "No search URLs yet. Add one above."))]));
  announce(status, `${entries.length} search URL${entries.length === 1 ? "" : "s"}.`);
}

async function deleteUrl(entry) {
  try {
    await adminRequest(`search-urls/${encodeURIComponent(entry.id)}`, { method: "DELETE" });
    await loadUrls();
    announce(status, `Deleted ${entry.url}.`);
    $("url-url").focus();
  } catch (error) {
    showError(teamError, `Could not delete: ${error.message}`);
  }
}

$("url-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const url = $("url-url");
  const category = $("url-category");
  const note = $("url-note");
  let problem = "";
  for (const field of [url, category]) field.removeAttribute("aria-invalid");
  if (!/^https?:\/\/\S+$/i.test(url.value.trim())) {
    problem = "Enter a picture URL starting with http:// or https://.";
    url.setAttribute("aria-invalid", "true");
    url.focus();
  } else if (!category.value) {
    problem = "Choose the product type this picture is for.";
    category.setAttribute("aria-invalid", "true");
    category.focus();
  }
  showError(teamError, problem);
  if (problem) return;
  try {
    const body = { url: url.value.trim(), category: category.value };
    if (note.value.trim()) body.note = note.value.trim();
    await adminRequest("search-urls", { method: "POST", json: body });
    url.value = "";
    note.value = "";
    await loadUrls();
    announce(status, `Added ${body.url}.`);
    url.focus();
  } catch (error) {
    showError(teamError, `Could not add the URL: ${error.message}`);
  }
});

// ---------- history ----------

/** The linked picture of a history record (the resolved URL, e.g. a pin's image), if it had one. */
function historyImageUrl(record) {
  const params = record.params || {};
  return record.image_url || params.image_url || "";
}

function historyQuery(record) {
  const params = record.params || {};
  const parts = [];
  const imageUrl = historyImageUrl(record);
  if (imageUrl) parts.push(h("span", { class: "url" }, imageUrl));
  else if (params.image_source === "upload" || params.image_source === "base64") parts.push("uploaded picture");
  if (params.text) parts.push(` “${params.text}”`);
  if (params.negative) parts.push(` less of “${params.negative}”`);
  return parts.length ? parts : [record.kind || ""];
}

function historyRow(record) {
  const params = record.params || {};
  const imageUrl = historyImageUrl(record);
  const uploaded = params.image_source === "upload" || params.image_source === "base64";
  const runnable = !uploaded && Boolean(imageUrl || params.text) && record.category;
  const link = runnable
    ? h("a", { class: "button-small", href: `./${stateQuery({ image_url: imageUrl, category: record.category, text: params.text, negative: params.negative })}` },
        "Run again")
    : h("span", { class: "hint" }, "—");
  return h("tr", { dataset: { searchId: record.search_id } },
    h("td", {}, formatTime(record.created_at)),
    h("td", {}, h("span", { class: "kind" }, record.kind ? `${record.kind}: ` : ""), ...historyQuery(record)),
    h("td", {}, record.category || ""),
    h("td", { class: "num" }, String((record.result_ids || []).length)),
    h("td", {}, h("span", { title: record.model_fingerprint || "" }, nameOf(models, record.model_fingerprint))),
    h("td", {}, record.index_version || ""),
    h("td", {}, link));
}

async function loadHistory(more) {
  announce(status, "Loading search history…");
  const params = new URLSearchParams({ limit: "50" });
  if (more && historyCursor) params.set("cursor", historyCursor);
  const [body, names] = await Promise.all([adminRequest(`history?${params}`), modelNames(adminRequest)]);
  models = names;
  const records = listOf(body, "history", "searches");
  const tbody = $("history-table").tBodies[0];
  const rows = records.map(historyRow);
  if (more) tbody.append(...rows);
  else tbody.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 7 }, "No searches yet."))]));
  historyCursor = (body && body.next_cursor) || null;
  $("history-more").hidden = !historyCursor;
  announce(status, `${tbody.rows.length} search${tbody.rows.length === 1 ? "" : "es"} shown.`);
}

$("history-more").addEventListener("click", () => loadHistory(true).catch((error) => showError(teamError, error.message)));

// ---------- dashboard ----------

function formatPrecision(value) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(2);
}

function precisionAt(group, k) {
  const table = group.precision_at || {};
  return table[k] ?? table[String(k)] ?? null;
}

function groupLabel(group) {
  if (group.key === null || group.key === undefined || group.key === "") return "(none)";
  if ($("group-by").value === "by_model_fingerprint") return nameOf(models, String(group.key));
  return String(group.key);
}

function stat(value, label) {
  return h("div", { class: "stat" }, h("div", { class: "value" }, value), h("div", { class: "label" }, label));
}

async function loadSummary() {
  announce(status, "Loading the evaluation summary…");
  [summary, models] = await Promise.all([adminRequest("evaluations/summary"), modelNames(adminRequest)]);
  renderSummary();
  announce(status, `Summary of ${summary.total ?? 0} ratings.`);
}

function renderSummary() {
  if (!summary) return;
  const ks = summary.ks && summary.ks.length ? summary.ks : [5, 10];
  const overall = summary.overall || {};
  $("overall").replaceChildren(
    stat(String(summary.total ?? overall.count ?? 0), "ratings"),
    stat(String(overall.positive ?? 0), "thumbs up"),
    stat(String(overall.negative ?? 0), "thumbs down"),
    ...ks.map((k) => stat(formatPrecision(precisionAt(overall, k)), `precision@${k}`)),
  );

  const groupBy = $("group-by").value;
  const label = GROUP_LABELS[groupBy];
  const groups = summary[groupBy] || [];
  const k = ks[ks.length - 1];
  const charts = $("charts");
  const width = charts.clientWidth;
  if (!groups.length) {
    charts.replaceChildren(h("p", { class: "empty" }, "No ratings yet. Rate results on the search page to see them here."));
  } else {
    const maxCount = Math.max(...groups.map((group) => group.count || 0), 1);
    charts.replaceChildren(
      h("figure", { class: "chart", id: "precision-chart" },
        barChart({
          title: `precision@${k} by ${label.toLowerCase()}`,
          description: groups.map((group) => `${groupLabel(group)}: ${formatPrecision(precisionAt(group, k))}`).join("; "),
          max: 1,
          width,
          rows: groups.map((group) => ({
            label: groupLabel(group),
            segments: [{ value: precisionAt(group, k) ?? 0, className: "bar" }],
            text: `${formatPrecision(precisionAt(group, k))} (${(group.rated_at || {})[k] ?? 0} rated)`,
          })),
        }),
        h("figcaption", {}, `precision@${k} by ${label.toLowerCase()} (share of thumbs up in the top ${k}).`)),
      h("figure", { class: "chart", id: "counts-chart" },
        barChart({
          title: `Ratings by ${label.toLowerCase()}`,
          description: groups.map((group) => `${groupLabel(group)}: ${group.positive} up, ${group.negative} down`).join("; "),
          max: maxCount,
          width,
          rows: groups.map((group) => ({
            label: groupLabel(group),
            segments: [{ value: group.positive, className: "bar-good" }, { value: group.negative, className: "bar-bad" }],
            text: `${group.positive} up / ${group.negative} down`,
          })),
        }),
        h("figcaption", {}, `Thumbs up (green) and down (red) by ${label.toLowerCase()}.`)),
    );
  }

  const table = $("summary-table");
  $("summary-caption").textContent = `Ratings by ${label.toLowerCase()}`;
  table.tHead.replaceChildren(h("tr", {},
    h("th", { scope: "col" }, label),
    h("th", { scope: "col", class: "num" }, "Ratings"),
    h("th", { scope: "col", class: "num" }, "Up"),
    h("th", { scope: "col", class: "num" }, "Down"),
    ...ks.map((kk) => h("th", { scope: "col", class: "num" }, `P@${kk}`))));
  table.tBodies[0].replaceChildren(...(groups.length
    ? groups.map((group) => h("tr", {},
        h("th", { scope: "row" }, h("code", {}, groupLabel(group))),
        h("td", { class: "num" }, String(group.count ?? 0)),
        h("td", { class: "num" }, String(group.positive ?? 0)),
        h("td", { class: "num" }, String(group.negative ?? 0)),
        ...ks.map((kk) => h("td", { class: "num" }, formatPrecision(precisionAt(group, kk))))))
    : [h("tr", {}, h("td", { colspan: 4 + ks.length }, "No ratings yet."))]));
}

$("group-by").addEventListener("change", renderSummary);

let lastChartWidth = 0;
new ResizeObserver(() => {
  const width = $("charts").clientWidth;
  if (summary && width && Math.abs(width - lastChartWidth) > 40) {
    lastChartWidth = width;
    renderSummary();
  }
}).observe($("charts"));

// ---------- start ----------

const context = { adminRequest, status, teamError, role: null };
setupRounds(context);
setupRatings(context);
setupIndexes(context);
setupLoad(context);
setupUpload(context);
showDemoBannerIfTiny($("demo-banner"));
if (getToken()) showTeam();
else showLogin();
