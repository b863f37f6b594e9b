// Evaluation rounds on the team page (#rounds, #rounds/<id>): the list, creating a round from the saved
// search URLs and/or uploaded pictures (team-round-pictures.js), running a round on the served index, the signed-in member's grading queue (thumbs, an
// optional 0-3 grade and a comment) and the round report (progress per rater, P@k and nDCG@k with
// intervals, the paired comparison of runs with its effect size, Cohen's and Fleiss' kappa).

import { apiUrl, request } from "./api.js";
import { announce, h, showError } from "./dom.js";
import { servedModels } from "./team-models.js";
import { clearPictureRows, pictureBlob, pictureImage, pictureRows, setupPictureRows, uploadPicture } from "./team-round-pictures.js";

const $ = (id) => document.getElementById(id);
const GRADES = [["", "No grade"], ["0", "0: unrelated"], ["1", "1: loosely"], ["2", "2: close"], ["3", "3: exactly the gist"]];

let ctx = null;
let round = null;
let queue = null;
let products = new Map();
let fieldCounter = 0;
let renderGeneration = 0;

/** A run's name: its model and index, and its query weights. */
export function runLabel(run) {
  const weights = Object.entries(run.weights || {}).filter(([, v]) => v !== null && v !== undefined)
    .map(([name, v]) => `${name} ${Number(v).toFixed(2)}`).join(", ");
  return weights ? `${run.label} · ${weights}` : run.label;
}

export function fmt(value, digits = 2) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
}

function interval(estimate) {
  if (!estimate || estimate.ci_low === null || estimate.ci_low === undefined) return "—";
  return `${fmt(estimate.ci_low)} – ${fmt(estimate.ci_high)}`;
}

/** Wire the view once: ctx = {adminRequest, status, teamError}. */
export function setupRounds(context) {
  ctx = context;
  $("round-form").addEventListener("submit", createRound);
  setupPictureRows();
  $("round-run").addEventListener("click", () => runRound().catch((error) => showError(ctx.teamError, `Could not run the round: ${error.message}`)));
  $("queue-run").addEventListener("change", renderQueue);
}

export async function loadRounds(roundId) {
  announce(ctx.status, "Loading rounds…");
  const body = await ctx.adminRequest("rounds");
  const rounds = body.items || [];
  $("rounds-table").tBodies[0].replaceChildren(...(rounds.length
    ? rounds.map((r) => h("tr", { dataset: { roundId: r.round_id } },
        h("td", {}, r.name),
        h("td", { class: "num" }, String(r.items.length)),
        h("td", { class: "num" }, String(r.runs.length)),
        h("td", {}, r.created_by),
        h("td", {}, h("a", { class: "button-small", href: `#rounds/${encodeURIComponent(r.round_id)}` }, "Open",
          h("span", { class: "visually-hidden" }, ` ${r.name}`)))))
    : [h("tr", {}, h("td", { colspan: 5 }, "No rounds yet. Save search URLs or add pictures, then create one above."))]));
  if (!roundId) {
    $("round-detail").hidden = true;
    announce(ctx.status, `${rounds.length} round${rounds.length === 1 ? "" : "s"}.`);
    return;
  }
  $("round-detail").hidden = true;
  await openRound(roundId);
}

async function createRound(event) {
  event.preventDefault();
  const name = $("round-name");
  name.removeAttribute("aria-invalid");
  if (!name.value.trim()) {
    name.setAttribute("aria-invalid", "true");
    showError(ctx.teamError, "Give the round a name.");
    name.focus();
    return;
  }
  const rows = pictureRows();
  for (const row of rows) {
    for (const field of [row.fileInput, row.typeSelect]) field.removeAttribute("aria-invalid");
    const missing = !row.file ? row.fileInput : !row.category ? row.typeSelect : null;
    if (missing) {
      missing.setAttribute("aria-invalid", "true");
      showError(ctx.teamError, !row.file ? `Choose a file for picture ${row.n}, or remove it.` : `Choose the product type for picture ${row.n}.`);
      missing.focus();
      return;
    }
  }
  let failed = null;
  try {
    const useUrls = $("round-use-urls").checked;
    const urls = useUrls ? (await ctx.adminRequest("search-urls")).items || [] : [];
    if (!urls.length && !rows.length) {
      throw new Error(useUrls ? "there are no saved search URLs yet; add some under Search URLs, or add pictures" : "add a picture, or include the saved search URLs");
    }
    const items = [];
    for (const row of rows) {
      announce(ctx.status, `Uploading picture ${row.n} (${row.file.name})…`);
      try {
        items.push({ picture: (await uploadPicture(row.file, ctx.adminRequest)).picture, category: row.category });
      } catch (error) {
        failed = row.fileInput;
        throw new Error(`picture ${row.n} (${row.file.name}): ${error.message}`);
      }
    }
    const made = await ctx.adminRequest("rounds", { method: "POST", json: { name: name.value.trim(), k: Math.min(50, Math.max(1, Number($("round-k").value) || 10)), items, search_url_ids: urls.map((u) => u.id) } });
    name.value = "";
    clearPictureRows();
    showError(ctx.teamError, "");
    window.location.hash = `#rounds/${encodeURIComponent(made.round_id)}`;
  } catch (error) {
    showError(ctx.teamError, `Could not create the round: ${error.message}`);
    if (failed) {
      failed.setAttribute("aria-invalid", "true");
      failed.focus();
    }
  }
}

async function openRound(roundId) {
  announce(ctx.status, "Loading the round…");
  round = await ctx.adminRequest(`rounds/${encodeURIComponent(roundId)}`);
  queue = await ctx.adminRequest(`rounds/${encodeURIComponent(roundId)}/queue`);
  $("round-detail").hidden = false;
  await showModelChoice();
  $("round-title").textContent = `Round “${round.name}”: ${round.items.length} picture${round.items.length === 1 ? "" : "s"}, top ${round.k} results each`;
  const choice = $("queue-run");
  const previous = choice.value;
  const runs = new Map(round.runs.map((run) => [run.run_id, run]));
  choice.replaceChildren(...queue.runs.map((run, i) => h("option", { value: run.run_id }, `Run ${i + 1}: ${runLabel(runs.get(run.run_id) || run)}`)));
  if (queue.runs.some((run) => run.run_id === previous)) choice.value = previous;
  $("queue-run-choice").hidden = queue.runs.length === 0;
  await renderQueue();
  await loadReport();
  announce(ctx.status, `Round ${round.name} loaded.`);
}

/** The "Run this round on" choice, shown when more than one model is served (GET /models). */
async function showModelChoice() {
  const models = await servedModels();
  const select = $("run-model");
  const previous = select.value;
  select.replaceChildren(...models.map((m) => h("option", { value: m.fingerprint }, m.default ? `${m.name} (default)` : m.name)));
  if (models.some((m) => m.fingerprint === previous)) select.value = previous;
  $("run-model-choice").hidden = models.length < 2;
}

async function runRound() {
  const models = await servedModels();
  const chosen = models.length > 1 ? models.find((m) => m.fingerprint === $("run-model").value) : null;
  announce(ctx.status, `Running ${round.items.length} searches${chosen ? ` on ${chosen.name}` : ""}…`);
  const searches = {};
  const weights = {};
  for (const name of ["w_image", "w_type"]) {
    const field = $(`run-${name.replace("_", "-")}`);
    if (field.value.trim() !== "") weights[name] = Number(field.value);
  }
  for (const item of round.items) {
    const params = { category: item.category, k: round.k, ...weights, ...(chosen ? { model: chosen.fingerprint } : {}) };
    searches[item.item_id] = (await searchItem(item, params)).search_id;
  }
  const version = chosen ? null : await request("version");
  const source = chosen ? chosen.source : version && version.model ? version.model.source : null;
  await ctx.adminRequest(`rounds/${encodeURIComponent(round.round_id)}/runs`, { method: "POST", json: { searches, model_source: source || undefined } });
  await openRound(round.round_id);
  $("queue-run").value = queue.runs[queue.runs.length - 1].run_id;
  await renderQueue();
  announce(ctx.status, "The round ran; its results are ready to grade.");
}

/** One item's search: its image URL, or its stored picture sent as an upload (history keeps its sha256,
 *  which the run is checked against). */
async function searchItem(item, params) {
  if (!item.picture) return request("search", { method: "POST", json: { image_url: item.image_url, ...params } });
  const form = new FormData();
  form.append("image", await pictureBlob(round.round_id, item), item.picture);
  for (const [name, value] of Object.entries(params)) form.append(name, String(value));
  return request("search", { method: "POST", form });
}

/** The `model` a run's product routes need: its fingerprint when a compared model answered it (a
 *  product only that model's index holds is unknown to the default one); null for the default model,
 *  or a model no longer served (the default index is then the best guess). */
async function runModel(run) {
  const served = (await servedModels()).find((m) => m.fingerprint === run.model_fingerprint);
  return served && !served.default ? served.fingerprint : null;
}

function productPath(id, model, suffix = "") {
  const path = `products/${encodeURIComponent(id)}${suffix}`;
  return model ? `${path}?model=${encodeURIComponent(model)}` : path;
}

async function product(id, model) {
  const key = `${model || ""}/${id}`;
  if (!products.has(key)) {
    products.set(key, request(productPath(id, model)).catch(() => ({ id, title: id })));
  }
  return products.get(key);
}

function itemProgress(item) {
  return ` · you graded ${Object.keys(item.mine).length} of ${item.result_ids.length}`;
}

async function renderQueue() {
  const container = $("round-queue");
  if (!queue || !queue.runs.length) {
    container.replaceChildren(h("p", { class: "empty" }, "This round has not run yet. Run it to start grading."));
    return;
  }
  const generation = ++renderGeneration;  // a later render (another run chosen meanwhile) wins
  const run = queue.runs.find((r) => r.run_id === $("queue-run").value) || queue.runs[0];
  const total = run.items.reduce((sum, item) => sum + item.result_ids.length, 0);
  const done = run.items.reduce((sum, item) => sum + Object.keys(item.mine).length, 0);
  const model = await runModel(run);
  const sections = [];
  for (const [index, item] of run.items.entries()) {
    const progress = h("span", { class: "item-progress" }, itemProgress(item));
    const rows = [];
    for (const [rank, id] of item.result_ids.entries()) {
      rows.push(gradeRow(item, id, rank, await product(id, model), model, progress));
    }
    sections.push(h("section", { class: "queue-item", dataset: { searchId: item.search_id }, "aria-labelledby": `queue-item-${index}` },
      h("h4", { id: `queue-item-${index}` }, `Picture ${index + 1} of ${run.items.length}: ${item.category}`),
      item.picture
        ? h("p", { class: "hint queue-picture" }, pictureImage(round.round_id, item, `Uploaded picture ${index + 1}`),
          h("span", {}, "Uploaded picture", item.note ? ` (${item.note})` : "", progress))
        : h("p", { class: "hint" }, h("a", { href: item.image_url, class: "url" }, item.image_url), item.note ? ` (${item.note})` : "",
          progress),
      h("ol", { class: "grade-list" }, rows)));
  }
  if (generation !== renderGeneration) return;
  container.replaceChildren(
    h("p", { id: "my-progress", class: "status" }, `You (${queue.rater}) have graded ${done} of ${total} results in this run.`),
    ...sections);
}

function gradeRow(item, id, rank, info, model, progress) {
  const mine = item.mine[id] || null;
  const n = ++fieldCounter;
  const grade = h("select", { id: `grade-${n}` }, GRADES.map(([value, label]) => h("option", { value }, label)));
  grade.value = mine && mine.grade !== null && mine.grade !== undefined ? String(mine.grade) : "";
  const comment = h("input", { id: `comment-${n}`, type: "text", maxlength: 1000, autocomplete: "off", value: (mine && mine.comment) || "" });
  const error = h("div", { class: "error card-error", role: "alert", hidden: true });
  const title = info.title || id;
  const buttons = {};
  const save = async (rating) => {
    if (!rating) {
      showError(error, "Choose Good match or Poor match first.");
      return;
    }
    const json = { search_id: item.search_id, product_id: id, rating };
    if (grade.value !== "") json.grade = Number(grade.value);
    if (comment.value.trim()) json.comment = comment.value.trim();
    try {
      const saved = await ctx.adminRequest("team/evaluations", { method: "POST", json });
      item.mine[id] = { rating: saved.evaluation.rating, grade: saved.evaluation.grade, comment: saved.evaluation.comment };
      buttons.up.setAttribute("aria-pressed", String(rating === 1));
      buttons.down.setAttribute("aria-pressed", String(rating === -1));
      showError(error, "");
      progress.textContent = itemProgress(item);
      const done = document.querySelectorAll('#round-queue .grade-row button[aria-pressed="true"]').length;
      const total = document.querySelectorAll("#round-queue .grade-row").length;
      $("my-progress").textContent = `You (${queue.rater}) have graded ${done} of ${total} results in this run.`;
      announce(ctx.status, `Saved your rating of ${title}.`);
      loadReport().catch((failure) => showError(ctx.teamError, failure.message));
    } catch (error_) {
      showError(error, `Not saved: ${error_.message}`);
    }
  };
  const current = () => (item.mine[id] ? item.mine[id].rating : 0);
  buttons.up = h("button", { type: "button", class: "button-small thumb-up", "aria-pressed": String(current() === 1), onClick: () => save(1) },
    "Good match", h("span", { class: "visually-hidden" }, `: ${title}`));
  buttons.down = h("button", { type: "button", class: "button-small thumb-down", "aria-pressed": String(current() === -1), onClick: () => save(-1) },
    "Poor match", h("span", { class: "visually-hidden" }, `: ${title}`));
  const img = h("img", { alt: title, width: 96, height: 96, loading: "lazy" });
  apiUrl(productPath(id, model, "/image")).then((url) => { img.src = url; });
  return h("li", { class: "grade-row", dataset: { productId: id } },
    img,
    h("div", { class: "grade-body" },
      h("p", { class: "grade-title" }, `${rank + 1}. ${title}`),
      h("div", { class: "row-actions" }, buttons.up, buttons.down),
      h("details", {},
        h("summary", {}, "Grade and comment", h("span", { class: "visually-hidden" }, ` for ${title}`)),
        h("div", { class: "grade-fields" },
          h("div", {}, h("label", { for: `grade-${n}` }, "Grade (0-3, optional)"), grade),
          h("div", {}, h("label", { for: `comment-${n}` }, "Comment (optional)"), comment),
          h("button", { type: "button", class: "button-small save-grade", onClick: () => save(current()) }, "Save grade and comment",
            h("span", { class: "visually-hidden" }, ` for ${title}`)))),
      error));
}

async function loadReport() {
  const report = await ctx.adminRequest(`rounds/${encodeURIComponent(round.round_id)}/report`);
  const out = [];
  if (!report.runs.length) {
    $("round-progress").replaceChildren();
    $("round-report").replaceChildren(h("p", { class: "empty" }, "No runs yet."));
    return;
  }
  $("round-progress").replaceChildren(table("progress-table", "Each rater's progress",
    ["Run", "Rater", "Graded", "Of"],
    report.runs.flatMap((run, i) => run.progress.map((p) => [`Run ${i + 1}`, p.rater, String(p.rated), String(p.total)]))));
  const rows = [];
  for (const [i, run] of report.runs.entries()) {
    const m = run.metrics;
    for (const k of report.ks) {
      rows.push([`Run ${i + 1}: ${runLabel(run)}`, `P@${k}`, fmt(m.precision_at[k].value), interval(m.precision_at[k]), String(m.precision_at[k].n)]);
      rows.push([`Run ${i + 1}: ${runLabel(run)}`, `nDCG@${k}`, fmt(m.ndcg_at[k].value), interval(m.ndcg_at[k]), String(m.ndcg_at[k].n)]);
    }
  }
  out.push(table("measures-table", "Measures per run (95% intervals: Wilson for P@k, bootstrap over searches for nDCG@k)",
    ["Run", "Measure", "Value", "95% interval", "n"], rows));
  if (report.comparisons.length) {
    out.push(table("comparison-table", "Paired comparison with run 1 (permutation test over pictures)",
      ["Runs", "Measure", "Mean A", "Mean B", "Difference (95% interval)", "p", "Effect size d_z", "Pictures"],
      report.comparisons.flatMap((c) => ["precision", "ndcg"].map((metric) => {
        const p = c[metric];
        return [`${c.a_label} vs ${c.b_label}`, `${metric === "ndcg" ? "nDCG" : "P"}@${c.k}`, fmt(p.mean_a), fmt(p.mean_b),
          `${fmt(p.difference.value)} (${interval(p.difference)})`, fmt(p.p_value, 3), fmt(p.effect_size), String(p.searches) + (p.note ? ` (${p.note})` : "")];
      }))));
  } else {
    out.push(h("p", { class: "hint" }, "Run the round again on another model or index to compare the two."));
  }
  const kappas = [];
  for (const [label, agreement] of [["thumbs", report.agreement], ["0-3 grade", report.agreement_grades]]) {
    for (const c of agreement.cohen) kappas.push([label, `Cohen's kappa, ${c.raters.join(" and ")}`, fmt(c.kappa), fmt(c.observed), String(c.items)]);
    if (agreement.fleiss) kappas.push([label, `Fleiss' kappa, ${agreement.fleiss.raters.join(", ")}`, fmt(agreement.fleiss.kappa), fmt(agreement.fleiss.observed), String(agreement.fleiss.items)]);
  }
  out.push(kappas.length
    ? table("agreement-table", "Agreement between raters (results graded by two or more)", ["Label", "Statistic", "Kappa", "Observed agreement", "Results"], kappas)
    : h("p", { class: "hint", id: "agreement-empty" }, "Agreement shows once two people have graded the same results."));
  $("round-report").replaceChildren(...out);
}

function table(id, caption, headers, rows) {
  return h("div", { class: "table-wrap", role: "region", "aria-labelledby": `${id}-caption`, tabindex: 0 },
    h("table", { id },
      h("caption", { id: `${id}-caption` }, caption),
      h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((text) => h("td", {}, text)))))));
}
