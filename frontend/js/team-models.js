// Models named for people: "source @ short fingerprint" (e.g. "openai/clip-vit-base-patch32 @ 1a2b3c"),
// never a hash alone. Names come from the index versions' cards and the served model (/version);
// a fingerprint no card names is shown as "model @ 1a2b3c".

import { request } from "./api.js";

const SHORT = 6;
let names = null;

/** A model's name from its source and fingerprint (index_versions.model_label's rule). */
export function modelLabel(source, fingerprint) {
  const short = (fingerprint || "").slice(0, SHORT);
  return source ? `${source} @ ${short}` : `model @ ${short}`;
}

/** fingerprint -> name, loaded once per page (adminRequest: the team page's authenticated call). */
export async function modelNames(adminRequest) {
  if (!names) {
    names = (async () => {
      const map = new Map();
      const [indexes, version] = await Promise.all([
        adminRequest("admin/indexes").catch(() => ({ items: [] })),
        request("version").catch(() => null),
      ]);
      for (const item of indexes.items || []) {
        if (item.model_source) map.set(item.model_fingerprint, item.model);
      }
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
