// A small horizontal bar chart in inline SVG (no chart library): one row per group, each bar made of
// one or more segments. Drawn at the container's pixel width so text stays readable on a phone
// (narrow charts put each label above its bar). The table next to it holds the same numbers.

import { svg } from "./dom.js";

const PAD = 8;
const VALUE_WIDTH = 116;
const WIDE_LABEL_WIDTH = 180;
const NARROW_BELOW = 520;
const MAX_WIDTH = 760;

function truncate(text, max) {
  const value = String(text);
  return value.length > max ? `${value.slice(0, max - 1)}…` : value;
}

/**
 * Build an SVG bar chart.
 * rows: [{label, segments: [{value, className}], text}]; max: the value a full bar stands for;
 * width: pixels available; title/description: the chart's accessible name and summary.
 */
export function barChart({ rows, max, width, title, description }) {
  const total = Math.max(280, Math.min(MAX_WIDTH, Math.floor(width || MAX_WIDTH)));
  const narrow = total < NARROW_BELOW;
  const labelWidth = narrow ? 0 : WIDE_LABEL_WIDTH;
  const rowHeight = narrow ? 44 : 30;
  const barTop = narrow ? 22 : 7;
  const barHeight = narrow ? 16 : 16;
  const barLeft = PAD + labelWidth;
  const barWidth = total - barLeft - VALUE_WIDTH - PAD;
  const height = Math.max(1, rows.length) * rowHeight + PAD * 2;
  const id = `chart-${Math.random().toString(36).slice(2, 8)}`;
  const root = svg("svg", {
    width: total, height, viewBox: `0 0 ${total} ${height}`, role: "img",
    "aria-labelledby": `${id}-title ${id}-desc`,
  },
  svg("title", { id: `${id}-title` }, title),
  svg("desc", { id: `${id}-desc` }, description));

  rows.forEach((row, index) => {
    const y = PAD + index * rowHeight;
    const group = svg("g", { class: "chart-row" });
    const labelY = narrow ? y + 14 : y + barTop + barHeight - 3;
    const label = svg("text", { x: PAD, y: labelY }, truncate(row.label, narrow ? 44 : 24));
    label.append(svg("title", {}, String(row.label)));
    group.append(label);
    group.append(svg("rect", { class: "bar-track", x: barLeft, y: y + barTop, width: barWidth, height: barHeight, rx: 3 }));
    let x = barLeft;
    for (const segment of row.segments) {
      const value = Number(segment.value) || 0;
      const w = max > 0 ? Math.max(0, Math.min(barLeft + barWidth - x, (value / max) * barWidth)) : 0;
      if (w > 0) {
        group.append(svg("rect", { class: segment.className || "bar", x, y: y + barTop, width: w, height: barHeight, rx: 3 }));
      }
      x += w;
    }
    group.append(svg("text", { x: barLeft + barWidth + PAD, y: y + barTop + barHeight - 3 }, row.text));
    root.append(group);
  });
  return root;
}
