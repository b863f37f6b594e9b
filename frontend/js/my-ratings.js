// "My ratings", remembered in this browser (localStorage), so they come back after a reload.
//
// A reload runs the search again and gets a new search id, so ratings are filed under the page's
// search (its query string) and the product, each with the search id it was sent with: that is the
// one a "clear" deletes on the server. Only the latest MAX_SEARCHES searches are kept.

const KEY = "moodboard.my-ratings";
const MAX_SEARCHES = 50;

function readAll() {
  try {
    const parsed = JSON.parse(localStorage.getItem(KEY) || "{}");
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? parsed : {};
  } catch {
    return {};
  }
}

function writeAll(all) {
  const entries = Object.entries(all).sort((a, b) => (b[1].at || 0) - (a[1].at || 0)).slice(0, MAX_SEARCHES);
  try {
    localStorage.setItem(KEY, JSON.stringify(Object.fromEntries(entries)));
  } catch {
    // Storage full or disabled (private mode): ratings still reach the server, they just won't come back.
  }
}

/** {rating, searchId} given to `productId` on the page `page` (a query string), or null. */
export function myRating(page, productId) {
  const entry = readAll()[page];
  const rating = entry && entry.products && entry.products[productId];
  return rating && (rating.rating === 1 || rating.rating === -1) ? rating : null;
}

/** Remember a rating (rating 1 or -1) or forget it (rating 0). */
export function rememberRating(page, productId, rating, searchId) {
  const all = readAll();
  const entry = all[page] || { products: {} };
  if (rating === 0) delete entry.products[productId];
  else entry.products[productId] = { rating, searchId };
  entry.at = Date.now();
  if (Object.keys(entry.products).length) all[page] = entry;
  else delete all[page];
  writeAll(all);
}

/** Every rating remembered for a page: [{productId, rating, searchId}]. */
export function myRatings(page) {
  const entry = readAll()[page];
  return Object.entries((entry && entry.products) || {}).map(([productId, value]) => ({ productId, ...value }));
}
