// Index versions on the team page (#indexes): every published version with its card, and Promote
// (a rollback when the version is older) through POST /admin/indexes/{v}/promote with the version the
// page showed as CURRENT, so a promotion that lost a race, or one for another model, is a plain 409.
// Only an admin sees Promote; a team member's promotion (a role taken away meanwhile) is the API's 403.

import { ApiError } from "./api.js";
import { announce, formatTime, h, showError } from "./dom.js";

const $ = (id) => document.getElementById(id);

let ctx = null;
let listing = null;

export function setupIndexes(context) {
  ctx = context;
}

function categoriesText(categories) {
  if (!categories) return "unknown";
  const names = Object.keys(categories);
  return `${names.length}: ${names.slice(0, 6).join(", ")}${names.length > 6 ? ", …" : ""}`;
}

export async function loadIndexes() {
  announce(ctx.status, "Loading index versions…");
  listing = await ctx.adminRequest("admin/indexes");
  const retention = listing.retention || {};
  $("retention").textContent = `Kept: the newest ${retention.keep_versions ?? "?"} versions and any younger than `
    + `${retention.keep_days ?? "?"} days; never the current one nor the one it replaced.`;
  $("indexes-table").tBodies[0].replaceChildren(...(listing.items.length
    ? listing.items.map((v) => h("tr", { dataset: { version: v.version } },
        h("th", { scope: "row" }, h("code", {}, v.version)),
        // data-label: on a phone each row stacks into a card whose cells name their column (styles.css)
        h("td", { dataset: { label: "Created" } }, formatTime(v.created)),
        h("td", { dataset: { label: "Catalog" } }, v.catalog_key || "—"),
        h("td", { class: "num", dataset: { label: "Products" } }, String(v.count)),
        h("td", { dataset: { label: "Product types" } }, categoriesText(v.categories)),
        h("td", { dataset: { label: "Model" } }, h("span", { title: v.model_fingerprint }, v.model)),
        h("td", { dataset: { label: "Status" } }, v.current ? "current" : v.previous ? "previous" : ""),
        h("td", {}, v.current ? h("span", { class: "hint" }, "in use")
          : ctx.role !== "admin" ? h("span", { class: "hint" }, "admins promote")
          : h("button", { type: "button", class: "button-small promote", onClick: () => promote(v) }, "Promote",
            h("span", { class: "visually-hidden" }, ` ${v.version}`)))))
    : [h("tr", {}, h("td", { colspan: 8 }, "No published index versions."))]));
  announce(ctx.status, `${listing.items.length} index version${listing.items.length === 1 ? "" : "s"}; current: ${listing.current || "none"}.`);
}

async function promote(version) {
  showError(ctx.teamError, "");
  try {
    const moved = await ctx.adminRequest(`admin/indexes/${encodeURIComponent(version.version)}/promote`,
      { method: "POST", json: { expected_version: listing.current } });
    await loadIndexes();
    announce(ctx.status, `Index ${moved.version} is now current (it replaced ${moved.previous || "none"}).`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) {
      showError(ctx.teamError, `Not promoted: ${error.message}`);
      await loadIndexes().catch(() => {});
    } else if (!(error instanceof ApiError && error.status === 401)) {
      showError(ctx.teamError, `Could not promote ${version.version}: ${error.message}`);
    }
  }
}
