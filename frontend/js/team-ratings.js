// The individual ratings table on the team page (#ratings): every team judgement, filtered by rater,
// round, model and product type, and the filtered rows exported as CSV or JSONL in the browser.
// Models are named "source @ short fingerprint" (from the rounds' runs and the index versions).

import { announce, formatTime, h } from "./dom.js";
import { modelLabel, modelNames } from "./team-models.js";

const $ = (id) => document.getElementById(id);
const FILTERS = ["rater", "round", "model", "category"];
const COLUMNS = ["rater", "round", "model", "category", "product_id", "rank", "rating", "grade", "comment",
  "search_id", "model_fingerprint", "index_version", "updated_at"];

let ctx = null;
let rows = [];

export function setupRatings(context) {
  ctx = context;
  for (const name of FILTERS) $(`filter-${name}`).addEventListener("change", render);
  $("export-csv").addEventListener("click", () => download("csv"));
  $("export-jsonl").addEventListener("click", () => download("jsonl"));
}

async function allTeamRatings() {
  const out = [];
  let cursor = null;
  do {
    const params = new URLSearchParams({ source: "team", limit: "500" });
    if (cursor) params.set("cursor", cursor);
    const body = await ctx.adminRequest(`evaluations?${params}`);
    out.push(...(body.items || []));
    cursor = body.next_cursor || null;
  } while (cursor);
  return out;
}

export async function loadRatings() {
  announce(ctx.status, "Loading ratings…");
  const [ratings, rounds, names] = await Promise.all([
    allTeamRatings(),
    ctx.adminRequest("rounds"),
    modelNames(ctx.adminRequest),
  ]);
  const roundOf = new Map();
  const models = new Map(names);
  for (const round of rounds.items || []) {
    for (const run of round.runs) {
      if (!models.has(run.model_fingerprint) || !run.model.startsWith("model @")) models.set(run.model_fingerprint, run.model);
      for (const searchId of Object.values(run.searches)) roundOf.set(searchId, round.name);
    }
  }
  rows = ratings.map((r) => ({
    ...r,
    round: roundOf.get(r.search_id) || "",
    model: models.get(r.model_fingerprint) || modelLabel(null, r.model_fingerprint),
  }));
  for (const name of FILTERS) {
    const select = $(`filter-${name}`);
    const before = select.value;
    const values = [...new Set(rows.map((r) => r[name] || ""))].filter(Boolean).sort();
    select.replaceChildren(h("option", { value: "" }, "All"), ...values.map((value) => h("option", { value }, value)));
    if (values.includes(before)) select.value = before;
  }
  render();
}

function filtered() {
  const wanted = Object.fromEntries(FILTERS.map((name) => [name, $(`filter-${name}`).value]));
  return rows.filter((r) => FILTERS.every((name) => !wanted[name] || r[name] === wanted[name]));
}

function render() {
  const shown = filtered();
  $("ratings-table").tBodies[0].replaceChildren(...(shown.length
    ? shown.map((r) => h("tr", { dataset: { searchId: r.search_id, productId: r.product_id } },
        h("td", {}, r.rater),
        h("td", {}, r.round || "—"),
        h("td", {}, h("span", { title: r.model_fingerprint }, r.model)),
        h("td", {}, r.category || ""),
        h("td", {}, h("code", {}, r.product_id)),
        h("td", { class: "num" }, String(r.rank + 1)),
        h("td", {}, r.rating > 0 ? "up" : "down"),
        h("td", { class: "num" }, r.grade === null || r.grade === undefined ? "" : String(r.grade)),
        h("td", {}, r.comment || ""),
        h("td", {}, formatTime(r.updated_at))))
    : [h("tr", {}, h("td", { colspan: 10 }, "No ratings match."))]));
  $("ratings-caption").textContent = `Ratings: ${shown.length} of ${rows.length}`;
  announce(ctx.status, `${shown.length} rating${shown.length === 1 ? "" : "s"} shown.`);
}

function csvCell(value) {
  let text = value === null || value === undefined ? "" : String(value);
  // A text cell a spreadsheet would read as a formula is prefixed with ' (numbers stay numbers).
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function download(format) {
  const shown = filtered().map((r) => Object.fromEntries(COLUMNS.map((c) => [c, r[c] ?? null])));
  const text = format === "csv"
    ? [COLUMNS.join(","), ...shown.map((r) => COLUMNS.map((c) => csvCell(r[c])).join(","))].join("\r\n") + "\r\n"
    : shown.map((r) => JSON.stringify(r)).join("\n") + (shown.length ? "\n" : "");
  const blob = new Blob([text], { type: format === "csv" ? "text/csv" : "application/x-ndjson" });
  const link = h("a", { href: URL.createObjectURL(blob), download: `moodboard-ratings.${format}` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  announce(ctx.status, `Exported ${shown.length} rating${shown.length === 1 ? "" : "s"} as ${format.toUpperCase()}.`);
}
