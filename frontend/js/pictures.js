// Where a picture comes from: a typed link, an upload, a paste, or a drag from another web page.
// A picture dragged out of a page arrives as text/uri-list and text/html (an <img>), not as a file.

/** The URL if it is an absolute http(s) URL, else "". */
export function httpUrl(value) {
  try {
    const url = new URL(String(value || "").trim());
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : "";
  } catch {
    return "";
  }
}

/** The first http(s) URL of a text/uri-list (comment lines start with #). */
export function urlFromUriList(text) {
  for (const line of String(text || "").split(/\r?\n/)) {
    const value = line.trim();
    if (!value || value.startsWith("#")) continue;
    const url = httpUrl(value);
    if (url) return url;
  }
  return "";
}

/** The first <img>'s absolute http(s) src (or the last srcset entry) in dragged HTML, else its first
 *  link. The markup is parsed into an inert document (scripts never run, nothing loads) and never
 *  inserted into the page. */
export function urlFromHtml(html, { links = true } = {}) {
  if (!html) return "";
  const doc = new DOMParser().parseFromString(String(html), "text/html");
  for (const img of doc.querySelectorAll("img")) {
    const src = httpUrl(img.getAttribute("src"));
    if (src) return src;
    const candidates = (img.getAttribute("srcset") || "").split(",").map((part) => part.trim().split(/\s+/)[0]);
    const fromSet = candidates.map(httpUrl).filter(Boolean).pop();
    if (fromSet) return fromSet;
  }
  const link = links ? doc.querySelector("a[href]") : null;
  return link ? httpUrl(link.getAttribute("href")) : "";
}

/**
 * What a drop (or paste) carries: {files: [File]} for picture files, {url} for a picture dragged
 * from a web page, {rejected: [File]} for files that are not pictures, or {} for nothing usable.
 */
export function picturesFromTransfer(transfer) {
  if (!transfer) return {};
  const files = Array.from(transfer.files || []);
  if (files.length) {
    const pictures = files.filter((file) => !file.type || file.type.startsWith("image/"));
    return pictures.length ? { files: pictures } : { rejected: files };
  }
  // A picture inside a link drags the link as its uri-list: the <img> of the HTML is the picture.
  const html = transfer.getData("text/html");
  const url = urlFromHtml(html, { links: false })
    || urlFromUriList(transfer.getData("text/uri-list"))
    || urlFromHtml(html)
    || httpUrl(transfer.getData("text/plain"));
  return url ? { url } : {};
}
