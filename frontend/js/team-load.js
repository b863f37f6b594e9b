// The catalog-load page (#load): name a catalog already in the artifacts bucket (a CSV, JSONL or an
// archive with its pictures; team-upload.js puts an uploaded one there), see the dry run's
// diff against the current index (POST /admin/load/dry-run), confirm a load that removes more than the
// stated share of products or a whole product type, then start it (POST /admin/load) and follow its
// progress and rejects live (GET /admin/load/{job}).

import { announce, h, showError } from "./dom.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;
const DONE = new Set(["succeeded", "failed", "cancelled"]);

let ctx = null;
let diff = null;
let polling = null;

export function setupLoad(context) {
  ctx = context;
  $("dry-run-form").addEventListener("submit", dryRun);
  $("confirm-load").addEventListener("change", () => { $("start-load").disabled = !canStart(); });
  $("start-load").addEventListener("click", startLoad);
  $("catalog-key").addEventListener("input", () => {
    diff = null;
    $("dry-run").hidden = true;
  });
}

export async function loadLoadView() {
  // A team member sees why there is nothing to do here (team-page.js hides the forms).
  announce(ctx.status, ctx.role === "admin" ? "Name a catalog in the bucket and run a dry run first."
    : "Catalog loads need the admin role.");
}

function canStart() {
  return Boolean(diff) && (!diff.needs_confirmation || $("confirm-load").checked);
}

function stat(value, label) {
  return h("div", { class: "stat" }, h("div", { class: "value" }, String(value)), h("div", { class: "label" }, label));
}

function list(title, items) {
  return items.length ? [h("h4", {}, title), h("p", {}, items.join(", "))] : [];
}

async function dryRun(event) {
  event.preventDefault();
  const key = $("catalog-key");
  key.removeAttribute("aria-invalid");
  if (!key.value.trim()) {
    key.setAttribute("aria-invalid", "true");
    showError(ctx.teamError, "Enter the catalog's key in the bucket, e.g. catalogs/spring.csv.");
    key.focus();
    return;
  }
  showError(ctx.teamError, "");
  announce(ctx.status, "Running the dry run…");
  try {
    diff = await ctx.adminRequest("admin/load/dry-run", { method: "POST", json: { catalog_key: key.value.trim() } });
  } catch (error) {
    diff = null;
    $("dry-run").hidden = true;
    showError(ctx.teamError, `Dry run failed: ${error.message}`);
    return;
  }
  renderDiff();
  $("dry-run").hidden = false;
  $("dry-run-heading").focus();
  announce(ctx.status, `Dry run: ${diff.before} → ${diff.after} products. Nothing was published.`);
}

function renderDiff() {
  $("diff-stats").replaceChildren(
    stat(`${diff.before} → ${diff.after}`, "products now → after"),
    stat(diff.added, "added"),
    stat(diff.removed, "removed"),
    stat(diff.changed, "changed"),
    stat(diff.unchanged, "unchanged"),
    stat(diff.rejects_total, "rows rejected"),
  );
  const details = [
    ...list("Product types gained", diff.categories_gained),
    ...list("Product types lost", diff.categories_lost),
    ...list(`Removed (first ${diff.removed_ids.length})`, diff.removed_ids),
    ...list(`Added (first ${diff.added_ids.length})`, diff.added_ids),
  ];
  if (diff.rejects.length) details.push(rejectsTable("diff-rejects", `Rows the dry run rejected (${diff.rejects_total})`, diff.rejects));
  $("diff-details").replaceChildren(...details);
  $("confirm-box").hidden = !diff.needs_confirmation;
  $("confirm-load").checked = false;
  $("confirm-reasons").replaceChildren(...diff.reasons.map((reason) => h("li", {}, `This load ${reason}.`)));
  $("start-load").disabled = !canStart();
}

function rejectsTable(id, caption, rejects) {
  return h("div", { class: "table-wrap", role: "region", "aria-labelledby": `${id}-caption`, tabindex: 0 },
    h("table", { id },
      h("caption", { id: `${id}-caption` }, caption),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Line or product"), h("th", { scope: "col" }, "Reason"))),
      // A bad row has its line; a product whose image the load could not read (or an archive lacks) its id.
      h("tbody", {}, rejects.map((r) => h("tr", {}, h("td", {}, String(r.line ?? r.product_id ?? "")),
        h("td", {}, String(r.reason ?? "")))))));
}

async function startLoad() {
  if (!canStart()) {
    showError(ctx.teamError, diff ? "Tick the confirmation first: this load removes products." : "Run a dry run first.");
    return;
  }
  showError(ctx.teamError, "");
  try {
    // The loader itself refuses a destructive load unless the job carries confirm=true (what was ticked).
    const confirm = Boolean(diff.needs_confirmation && $("confirm-load").checked);
    const started = await ctx.adminRequest("admin/load",
      { method: "POST", json: { catalog_key: $("catalog-key").value.trim(), confirm } });
    $("start-load").disabled = true;
    $("load-job").hidden = false;
    follow(started.job_id);
  } catch (error) {
    showError(ctx.teamError, `Could not start the load: ${error.message}`);
  }
}

function follow(jobId) {
  clearTimeout(polling);
  const tick = async () => {
    let job;
    try {
      job = await ctx.adminRequest(`admin/load/${encodeURIComponent(jobId)}`);
    } catch (error) {
      showError(ctx.teamError, `Lost track of the load: ${error.message}`);
      return;
    }
    const progress = job.progress || {};
    const total = job.shards_total || progress.total || 0;
    const done = job.shards_total ? job.shards_done : (progress.done ?? progress.embedded ?? 0);
    const bar = $("job-progress");
    if (total) {
      bar.max = total;
      bar.value = Math.min(done, total);
    } else if (job.status === "succeeded") {
      bar.max = 1;
      bar.value = 1;
    } else {
      bar.removeAttribute("value");
    }
    let text = `Load ${job.job_id.slice(0, 8)}: ${job.status}`;
    if (progress.stage && !DONE.has(job.status)) text += `, ${progress.stage}`;
    if (total) text += ` (${done} of ${total})`;
    if (job.status === "succeeded" && job.result) text += `: index ${job.result.version} published with ${job.result.loaded} products`;
    if (job.error) text += `: ${job.error}`;
    $("job-status").textContent = text;
    $("job-rejects").replaceChildren(...(job.rejects && job.rejects.length
      ? [rejectsTable("job-rejects-table", `Rows the load rejected (${job.rejects_total || job.rejects.length})`, job.rejects)] : []));
    if (!DONE.has(job.status)) polling = setTimeout(tick, POLL_MS);
  };
  tick();
}
