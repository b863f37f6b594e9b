// Drawing a region on a picture: drag a rectangle with the pointer (mouse, pen or finger), or with
// the keyboard move it with the arrow keys and resize it with Shift + arrows. The region is kept in
// fractions of the picture (x, y, width, height), as the API and shared links take it.

const MIN_FRACTION = 0.04;
const STEP = 0.02;

const clamp = (value, low, high) => Math.min(high, Math.max(low, value));

/** A region with its numbers tidied: inside the picture, at least MIN_FRACTION a side, 3 decimals. */
export function tidyBox(box) {
  const width = clamp(box.width, MIN_FRACTION, 1);
  const height = clamp(box.height, MIN_FRACTION, 1);
  const x = clamp(box.x, 0, 1 - width);
  const y = clamp(box.y, 0, 1 - height);
  const round = (value) => Math.round(value * 1000) / 1000;
  return { x: round(x), y: round(y), width: round(width), height: round(height) };
}

/** Place `outline` over `img` where `box` lies (percentages of the picture's own box). */
export function placeOutline(outline, box) {
  outline.hidden = !box;
  if (!box) return;
  outline.style.left = `${box.x * 100}%`;
  outline.style.top = `${box.y * 100}%`;
  outline.style.width = `${box.width * 100}%`;
  outline.style.height = `${box.height * 100}%`;
}

/** A sentence for screen readers: where the region is, in percent of the picture. */
export function describeBox(box) {
  if (!box) return "The whole picture is searched.";
  const pct = (value) => `${Math.round(value * 100)}%`;
  return `Region: from ${pct(box.x)} across and ${pct(box.y)} down, ${pct(box.width)} wide and ${pct(box.height)} high.`;
}

/**
 * Let the user draw on `surface` (the element that wraps the picture exactly). onChange(box) gets
 * every new box; the keyboard works while `surface` has the focus.
 */
export function enableRegionDrawing(surface, { getBox, onChange }) {
  let start = null;

  function point(event) {
    const rect = surface.getBoundingClientRect();
    return {
      x: clamp((event.clientX - rect.left) / rect.width, 0, 1),
      y: clamp((event.clientY - rect.top) / rect.height, 0, 1),
    };
  }

  function boxFrom(a, b) {
    return { x: Math.min(a.x, b.x), y: Math.min(a.y, b.y), width: Math.abs(a.x - b.x), height: Math.abs(a.y - b.y) };
  }

  surface.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    start = point(event);
    surface.setPointerCapture(event.pointerId);
  });
  surface.addEventListener("pointermove", (event) => {
    if (!start) return;
    const box = boxFrom(start, point(event));
    if (box.width > 0.01 && box.height > 0.01) onChange(tidyBox(box), { final: false });
  });
  const finish = (event) => {
    if (!start) return;
    const box = boxFrom(start, point(event));
    start = null;
    if (box.width > 0.01 && box.height > 0.01) onChange(tidyBox(box), { final: true });
  };
  surface.addEventListener("pointerup", finish);
  surface.addEventListener("pointercancel", () => { start = null; });

  surface.addEventListener("keydown", (event) => {
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const [dx, dy] = moves[event.key];
    const box = getBox() || { x: 0.25, y: 0.25, width: 0.5, height: 0.5 };
    const next = event.shiftKey
      ? { ...box, width: box.width + dx * STEP, height: box.height + dy * STEP }
      : { ...box, x: box.x + dx * STEP, y: box.y + dy * STEP };
    onChange(tidyBox(next), { final: true });
  });
}
