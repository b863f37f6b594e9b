// A small horizontal bar chart in inline SVG (no chart library): one row per group, each bar made of
// one or more segments. The same numbers are in the table next to it, for screen readers and copying.

import { svg } from "./dom.js";

const ROW_HEIGHT = 28;
const LABEL_WIDTH = 170;
const VALUE_WIDTH = 120;
const BAR_WIDTH = 360;
const PAD = 8;

function truncate(text, max = 24) {
  const value = String(text);
  return value.length > max ? `${value.slice(0, max - 1)}…` : value;
}

/**
 * Build an SVG bar chart.
 * rows: [{label, segments: [{value, className}], text}], max: the value a full bar stands for,
 * title/description: accessible name and summary of the chart.
 */
export function barChart({ rows, max, title, description }) {
  const width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH + PAD * 2;
  const height = Math.max(1, rows.length) * ROW_HEIGHT + PAD * 2;
  const id = `chart-${Math.random().toString(36).slice(2, 8)}`;
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": `${id}-title ${id}-desc`,
    preserveAspectRatio: "xMinYMin meet",
  },
  svg("title", { id: `${id}-title` }, title),
  svg("desc", { id: `${id}-desc` }, description));

  rows.forEach((row, index) => {
    const y = PAD + index * ROW_HEIGHT;
    const group = svg("g", { class: "chart-row" });
    const label = svg("text", { x: PAD, y: y + ROW_HEIGHT / 2 + 4 }, truncate(row.label));
    label.append(svg("title", {}, String(row.label)));
    group.append(label);
    group.append(svg("rect", { class: "bar-track", x: LABEL_WIDTH, y: y + 5, width: BAR_WIDTH, height: ROW_HEIGHT - 10, rx: 3 }));
    let x = LABEL_WIDTH;
    for (const segment of row.segments) {
      const value = Number(segment.value) || 0;
      const w = max > 0 ? Math.max(0, Math.min(BAR_WIDTH, (value / max) * BAR_WIDTH)) : 0;
      if (w > 0) {
        group.append(svg("rect", { class: segment.className || "bar", x, y: y + 5, width: w, height: ROW_HEIGHT - 10, rx: 3 }));
      }
      x += w;
    }
    group.append(svg("text", { x: LABEL_WIDTH + BAR_WIDTH + PAD, y: y + ROW_HEIGHT / 2 + 4 }, row.text));
    root.append(group);
  });
  root.append(svg("line", { class: "axis", x1: LABEL_WIDTH, x2: LABEL_WIDTH, y1: PAD, y2: height - PAD }));
  return root;
}
