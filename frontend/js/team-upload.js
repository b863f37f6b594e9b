// Upload a catalog from the catalog-load page (#load): ask the API for a presigned S3 POST
// (POST /admin/catalog-uploads), send the file straight to the bucket with fetch(FormData), then fill
// the catalog key and run the dry run. Uploads go under uploads/catalogs/, which the bucket's load
// trigger does not watch: nothing loads until the team has seen the dry run and pressed "Load".

import { announce, showError } from "./dom.js";

const $ = (id) => document.getElementById(id);
const SUFFIXES = [".csv", ".jsonl", ".ndjson", ".zip", ".tar", ".tar.gz", ".tgz"];

let ctx = null;

export function setupUpload(context) {
  ctx = context;
  $("upload-form").addEventListener("submit", upload);
}

async function upload(event) {
  event.preventDefault();
  const input = $("catalog-file");
  const file = input.files && input.files[0];
  input.removeAttribute("aria-invalid");
  if (!file || !SUFFIXES.some((suffix) => file.name.toLowerCase().endsWith(suffix))) {
    input.setAttribute("aria-invalid", "true");
    showError(ctx.teamError, `Choose a catalog file (${SUFFIXES.join(", ")}).`);
    input.focus();
    return;
  }
  showError(ctx.teamError, "");
  const button = $("upload-catalog");
  button.disabled = true;
  announce(ctx.status, `Uploading ${file.name}…`);
  try {
    const target = await ctx.adminRequest("admin/catalog-uploads", {
      method: "POST", json: { filename: file.name, size: file.size },
    });
    const form = new FormData();
    for (const [name, value] of Object.entries(target.fields)) form.append(name, value);
    form.append("file", file);  // S3 wants the file last
    const sent = await fetch(target.url, { method: "POST", body: form });
    if (!sent.ok) throw new Error(`the bucket answered ${sent.status}`);
    const key = $("catalog-key");
    key.value = target.catalog_key;
    key.dispatchEvent(new Event("input"));
    announce(ctx.status, `Uploaded ${file.name} as ${target.catalog_key}; running the dry run…`);
    $("dry-run-form").requestSubmit();
  } catch (error) {
    showError(ctx.teamError, `Upload failed: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}
