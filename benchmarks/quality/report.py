"""The evaluation report: report.json for machines, report.html with PNG charts beside it for people.

Charts (matplotlib, Agg backend, so no display is needed): per-category bars of the zero-shot and
image-to-image figures, the weight sweep, a contact sheet of example queries with their top
results (green frame: same category as the query, red: not), and rating precision with its
confidence intervals when ratings were given.
"""

from __future__ import annotations

import html
import json
import logging
import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

logger = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
PER_CATEGORY_PNG = "per_category.png"
SWEEP_PNG = "sweep.png"
CONTACT_SHEET_JPG = "contact_sheet.jpg"  # photos: JPEG is a fifth of the PNG
RATINGS_PNG = "ratings.png"
THUMB = 96
Thumbnail = Callable[[str], Image.Image | None]


def write_report(report: dict[str, Any], out_dir: Path, *, thumbnail: Thumbnail | None = None,
                 categories: dict[str, str] | None = None) -> dict[str, Path]:
    """Write report.json, the charts and report.html into out_dir; returns what was written by name.

    `thumbnail(product_id)` gives a product's picture for the contact sheet (None when it has none
    on disk); `categories` maps product ids to categories so the sheet can mark right and wrong.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    figures: dict[str, str] = {}
    if report.get("zero_shot") or report.get("image_to_image"):
        figures["per_category"] = _save(per_category_chart(report), out_dir / PER_CATEGORY_PNG)
    if report.get("sweep"):
        figures["sweep"] = _save(sweep_chart(report["sweep"]), out_dir / SWEEP_PNG)
    if report.get("examples"):
        figures["contact_sheet"] = _save(contact_sheet(report["examples"], thumbnail, categories or {}),
                                         out_dir / CONTACT_SHEET_JPG, pil_kwargs={"quality": 85})
    if report.get("ratings"):
        figures["ratings"] = _save(ratings_chart(report["ratings"]), out_dir / RATINGS_PNG)
    report = {**report, "figures": figures}
    written["json"] = out_dir / REPORT_JSON
    written["json"].write_text(json.dumps(report, indent=2, default=str) + "\n")
    written["html"] = out_dir / REPORT_HTML
    written["html"].write_text(render_html(report))
    for name, file in figures.items():
        written[name] = out_dir / file
    logger.info("report written to %s", out_dir)
    return written


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path, **options: Any) -> str:
    figure.savefig(path, dpi=110, bbox_inches="tight", **options)
    _pyplot().close(figure)
    return path.name


def per_category_chart(report: dict[str, Any]) -> Any:
    """Grouped bars per category: zero-shot precision@k and AP, image-to-image precision@k."""
    plt = _pyplot()
    zs = report.get("zero_shot") or {}
    i2i = report.get("image_to_image") or {}
    kp = zs.get("k_precision", 10)
    ki = i2i.get("k", 10)
    categories = list((zs.get("by_category") or {}).keys()) or list((i2i.get("by_category") or {}).keys())
    text_rows, image_rows = zs.get("by_category", {}), i2i.get("by_category", {})
    series = [
        (f"text→image precision@{kp}", [text_rows.get(c, {}).get(f"precision_at_{kp}") for c in categories]),
        ("text→image AP", [text_rows.get(c, {}).get("average_precision") for c in categories]),
        (f"image→image precision@{ki}", [image_rows.get(c, {}).get(f"precision_at_{ki}") for c in categories]),
    ]
    figure, axis = plt.subplots(figsize=(max(6.0, 0.55 * len(categories) + 2), 4))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(categories))]
        axis.bar(xs, [v if v is not None else 0.0 for v in values], width=width, label=label)
    axis.set_xticks(range(len(categories)))
    axis.set_xticklabels(categories, rotation=45, ha="right")
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("score")
    axis.set_title("Per-category retrieval (relevant = same category)")
    axis.legend(fontsize="small")
    return figure


SWEEP_SERIES = (
    ("in_category_share", "in-category share (filtered)"),
    ("near_copy_rate", "near-copy rate"),
    ("diversity_mean_pairwise_cosine", "mean pairwise cosine (top k)"),
    ("mean_similarity_to_query_image", "mean similarity to query image"),
)


def sweep_chart(sweep: list[dict[str, Any]]) -> Any:
    """Lines over w_type (w_image fixed) for each gist diagnostic."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    xs = [row["w_type"] for row in sweep]
    k = sweep[0].get("k", 10)
    series = (*SWEEP_SERIES, (f"unfiltered_same_category_precision_at_{k}", f"same category without filter (@{k})"))
    for key, label in series:
        ys = [row.get(key) for row in sweep]
        if any(y is not None for y in ys):
            axis.plot(xs, [y if y is not None else math.nan for y in ys], marker="o", label=label)
    axis.set_xlabel(f"w_type (w_image = {sweep[0].get('w_image')})")
    axis.set_ylabel("value")
    axis.set_title("Weight sweep: image vs product type")
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)
    return figure


def contact_sheet(examples: dict[str, list[dict[str, Any]]], thumbnail: Thumbnail | None,
                  categories: dict[str, str]) -> Any:
    """One row per example query: the query (image or prompt) then its top results."""
    plt = _pyplot()
    rows = [*examples.get("text", []), *examples.get("image", [])]
    columns = 1 + max((len(r["results"]) for r in rows), default=1)
    figure, axes = plt.subplots(max(len(rows), 1), columns, figsize=(1.6 * columns, 1.8 * max(len(rows), 1)),
                                squeeze=False, layout="constrained")
    for axis in axes.flat:
        axis.axis("off")
    for i, row in enumerate(rows):
        head = axes[i][0]
        picture = thumbnail(row["query"]) if (thumbnail and row["kind"] == "image") else None
        if picture is not None:
            head.imshow(_square(picture))
            head.set_title(f"query ({row['category']})", fontsize=7)
        else:
            head.text(0.5, 0.5, _wrap(row["query"] if row["kind"] == "text" else f"image {row['query']}"),
                      ha="center", va="center", fontsize=7, wrap=True)
        for j, (product_id, score) in enumerate(zip(row["results"], row.get("scores", [None] * len(row["results"])))):
            axis = axes[i][j + 1]
            right = categories.get(product_id) == row["category"]
            picture = thumbnail(product_id) if thumbnail else None
            if picture is not None:
                axis.imshow(_square(picture))
            else:
                axis.text(0.5, 0.5, _wrap(product_id), ha="center", va="center", fontsize=6)
            axis.axis("on")
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_edgecolor("#2a2" if right else "#c22")
                spine.set_linewidth(3)
            label = categories.get(product_id, "?")
            axis.set_title(f"{label}" + (f" {score:.2f}" if score is not None else ""), fontsize=6)
    figure.suptitle("Example queries and their top results (green: same category)", fontsize=9)
    return figure


def _square(image: Image.Image) -> Image.Image:
    copy = image.convert("RGB")
    copy.thumbnail((THUMB, THUMB))
    canvas = Image.new("RGB", (THUMB, THUMB), (255, 255, 255))
    canvas.paste(copy, ((THUMB - copy.width) // 2, (THUMB - copy.height) // 2))
    return canvas


def _wrap(text: str, width: int = 16) -> str:
    return textwrap.fill(text, width, break_long_words=True)


def ratings_chart(ratings: dict[str, Any]) -> Any:
    """precision@k with its Wilson interval per model fingerprint and per index version."""
    plt = _pyplot()
    summary = ratings["summary"]
    k = str(max(summary["ks"]))
    groups = [(f"model {row['key']}", row) for row in summary["by_model_fingerprint"]]
    groups += [(f"index {row['key']}", row) for row in summary["by_index_version"]]
    figure, axis = plt.subplots(figsize=(7, 0.4 * len(groups) + 1.5))
    for i, (_, row) in enumerate(groups):
        estimate = row["precision_at"][k]
        if estimate["value"] is None:
            continue
        low, high = estimate["ci_low"], estimate["ci_high"]
        axis.errorbar(estimate["value"], i, xerr=[[estimate["value"] - low], [high - estimate["value"]]],
                      fmt="o", capsize=3)
    axis.set_yticks(range(len(groups)))
    axis.set_yticklabels([_short(label) for label, _ in groups], fontsize=7)
    axis.set_xlim(0, 1)
    axis.set_xlabel(f"rated precision@{k} (95% Wilson interval)")
    axis.set_title("Human ratings")
    return figure


def _short(label: str, width: int = 40) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


# --- HTML ---------------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _interval(estimate: dict[str, Any]) -> str:
    if estimate.get("value") is None:
        return "–"
    if estimate.get("ci_low") is None:
        return f"{estimate['value']:.3f}"
    return f"{estimate['value']:.3f} [{estimate['ci_low']:.3f}, {estimate['ci_high']:.3f}]"


def render_html(report: dict[str, Any]) -> str:
    """The report page: headline numbers, tables, the charts written beside it."""
    meta = report.get("meta", {})
    figures = report.get("figures", {})
    parts = ["<h1>moodboard match quality</h1>"]
    if meta.get("tiny_model"):
        parts.append('<p class="warn">Model bundle is a tiny <b>random</b> model: these numbers only prove the '
                     "harness runs; they say nothing about match quality.</p>")
    if meta:
        parts.append(_table(["", ""], [[k, v if not isinstance(v, dict) else json.dumps(v)] for k, v in meta.items()]))
    zs = report.get("zero_shot")
    if zs:
        kp, kr = zs["k_precision"], zs["k_recall"]
        parts.append("<h2>Zero-shot text → image (whole catalog)</h2>")
        o = zs["overall"]
        parts.append(f"<p>mean precision@{kp} {fmt(o[f'precision_at_{kp}'])}, mean recall@{kr} "
                     f"{fmt(o[f'recall_at_{kr}'])}, mAP {fmt(o['map'])} over {o['categories']} categories "
                     f"(chance precision {fmt(o.get('chance_precision'))}).</p>")
        parts.append(_table(["category", "products", "prompt", f"P@{kp}", f"R@{kr}", "AP"],
                            [[c, r["count"], r["prompt"], r[f"precision_at_{kp}"], r[f"recall_at_{kr}"],
                              r["average_precision"]] for c, r in zs["by_category"].items()]))
    i2i = report.get("image_to_image")
    if i2i:
        k = i2i["k"]
        o = i2i["overall"]
        parts.append("<h2>Image → image (held-out queries)</h2>")
        parts.append(f"<p>{o['queries']} held-out queries over {i2i['candidates']} candidates: same-category "
                     f"precision@{k} {fmt(o[f'precision_at_{k}'])}, mAP {fmt(o['map'])}.</p>")
        parts.append(_table(["category", "queries", f"P@{k}", "AP"],
                            [[c, r["queries"], r[f"precision_at_{k}"], r["average_precision"]]
                             for c, r in i2i["by_category"].items()]))
    if "per_category" in figures:
        parts.append(f'<img src="{figures["per_category"]}" alt="per-category bars">')
    gist = report.get("gist")
    if gist:
        parts.append("<h2>Gist diagnostics (category filter on)</h2>")
        parts.append(_table(["metric", "value"], [[k, v] for k, v in gist.items() if not isinstance(v, (dict, list))]))
    served = report.get("served")
    if served:
        parts.append("<h3>Through moodboard.query.gist_search (the API's path)</h3>")
        parts.append(_table(["metric", "value"],
                            [[k, v] for k, v in served.items() if not isinstance(v, (dict, list))]))
    sweep = report.get("sweep")
    if sweep:
        keys = [k for k in sweep[0] if k not in ("w_image", "k", "near_copy_threshold")]
        parts.append("<h2>Weight sweep</h2>")
        parts.append(_table(keys, [[row.get(k) for k in keys] for row in sweep]))
        if "sweep" in figures:
            parts.append(f'<img src="{figures["sweep"]}" alt="weight sweep">')
    if "contact_sheet" in figures:
        parts.append("<h2>Examples</h2>")
        parts.append(f'<img src="{figures["contact_sheet"]}" alt="contact sheet">')
    ratings = report.get("ratings")
    if ratings:
        parts.append(_ratings_html(ratings))
        if "ratings" in figures:
            parts.append(f'<img src="{figures["ratings"]}" alt="rating precision">')
    compare = report.get("compare")
    if compare:
        parts.append(_compare_html(compare))
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:72em}table{border-collapse:collapse;"
             "margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:13px}"
             ".warn{background:#fee;border:1px solid #c22;padding:.5em}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>moodboard match quality</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def _ratings_html(ratings: dict[str, Any]) -> str:
    summary = ratings["summary"]
    ks = [str(k) for k in summary["ks"]]
    parts = [f"<h2>Human ratings ({html.escape(str(ratings.get('source', '')))})</h2>"]
    headers = ["group", "key", "ratings", "searches", *[f"P@{k} [95% CI]" for k in ks],
               *[f"nDCG@{k} [95% CI]" for k in ks]]
    rows = []
    for name in ("overall", "by_model_fingerprint", "by_index_version", "by_category", "by_weights"):
        entries = [summary["overall"]] if name == "overall" else summary[name]
        for entry in entries:
            rows.append([name, entry.get("key", ""), entry["ratings"], entry["searches"],
                         *[_interval(entry["precision_at"][k]) for k in ks],
                         *[_interval(entry["ndcg_at"][k]) for k in ks]])
    parts.append(_table(headers, rows))
    return "".join(parts)


def _compare_html(compare: dict[str, Any]) -> str:
    verdict = "significant" if compare.get("significant") else "not significant"
    ci = compare.get("difference_ci")
    ci_text = f" (95% CI {ci[0]:+.3f} to {ci[1]:+.3f})" if ci else ""
    diff = compare.get("difference")
    return (f"<h2>A/B: {html.escape(compare['a'])} vs {html.escape(compare['b'])} ({compare['field']})</h2>"
            f"<p>Difference in mean per-search precision@{compare['k']}: "
            f"{'–' if diff is None else f'{diff:+.3f}'}{ci_text}; p = {fmt(compare.get('p_value'))}: "
            f"<b>{verdict}</b> at α = {compare['alpha']}. Test: {html.escape(compare['test'])}.</p>")
