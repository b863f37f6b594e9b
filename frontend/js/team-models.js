// Models named for people: "source @ short fingerprint" (e.g. "openai/clip-vit-base-patch32 @ 1a2b3c"),
// never a hash alone. Names come from the index versions' cards and the served models (/models: the
// default one and those served next to it for comparison; /version where /models does not answer);
// a fingerprint nothing names is shown as "model @ 1a2b3c".

import { request } from "./api.js";

const SHORT = 6;
let names = null;
let modelList = null;

/** A model's name from its source and fingerprint (index_versions.model_label's rule). */
export function modelLabel(source, fingerprint) {
  const short = (fingerprint || "").slice(0, SHORT);
  return source ? `${source} @ ${short}` : `model @ ${short}`;
}

/** The models the API serves, the default first ([] when it cannot say), loaded once per page. */
export async function servedModels() {
  if (!modelList) modelList = request("models").then((body) => body.models || []).catch(() => []);
  return modelList;
}

/** fingerprint -> name, loaded once per page (adminRequest: the team page's authenticated call). */
export async function modelNames(adminRequest) {
  if (!names) {
    names = (async () => {
      const map = new Map();
      const [indexes, models] = await Promise.all([
        adminRequest("admin/indexes").catch(() => ({ items: [] })),
        servedModels(),
      ]);
      for (const item of indexes.items || []) {
        if (item.model_source) map.set(item.model_fingerprint, item.model);
      }
      for (const model of models) {
        if (!map.has(model.fingerprint)) map.set(model.fingerprint, model.name);
      }
      const version = models.length ? null : await request("version").catch(() => null);
      const served = version && version.model;
      if (served && served.fingerprint && !map.has(served.fingerprint)) {
        map.set(served.fingerprint, modelLabel(served.source, served.fingerprint));
      }
      return map;
    })();
  }
  return names;
}

/** The name of one fingerprint with a loaded map. */
export function nameOf(map, fingerprint) {
  return (map && map.get(fingerprint)) || modelLabel(null, fingerprint);
}
