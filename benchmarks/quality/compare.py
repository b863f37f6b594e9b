"""Two model bundles on the same held-out products: every figure of benchmarks.quality.heldout for
each, the difference B - A with a paired bootstrap interval, and how much of A's within-type
neighbourhood survives in B. `moodboard eval CATALOG --model A --against B` runs it; the figures
are written to comparison.json and comparison.html.

The held-out products are the ones `moodboard train` held out when B (or A) is a trained bundle:
its manifest records the split (fraction, seed, ignored categories) and a digest of the held-out
ids, which is checked here. Otherwise the split is made with the given fraction and seed.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quality import heldout
from benchmarks.quality.report import fmt

# (label, section, key in that section's per_query, higher is better)
COMPARED = (
    ("caption -> product R@1", "caption_to_product", "r_at_1", True),
    ("caption -> product R@10", "caption_to_product", "r_at_10", True),
    ("caption -> product MRR", "caption_to_product", "mrr", True),
    ("type -> product P@10", "type_to_product", "p_at_10", True),
    ("image -> image 10-NN label agreement", "image_to_image", "label_agreement", True),
    ("near-copy rate (gist top 10)", "gist", "near_copy_rate", False),
    ("diversity: mean pairwise cosine (gist top 10)", "gist", "diversity_mean_pairwise_cosine", False),
)


def compare(data: heldout.HeldOut, images_a: np.ndarray, embed_a: Callable[[Sequence[str]], np.ndarray],
            images_b: np.ndarray, embed_b: Callable[[Sequence[str]], np.ndarray], *, ignore: Sequence[str] = (),
            top_types: int | None = None, near_copy_threshold: float | tuple[float, float] = 0.95,
            w_image: float = 1.0, w_type: float = 0.6, seed: int = 7, resamples: int = 2000) -> dict[str, Any]:
    """Figures of A and B, their differences with bootstrap intervals, and the neighbourhood overlap.
    `near_copy_threshold` is one cosine for both or (A's, B's): each model's near-copy rate is
    counted at the threshold its search uses (a bundle may carry its own,
    ModelManifest.near_copy_threshold), since cosines of two embedding spaces are not on one scale."""
    threshold_a, threshold_b = (near_copy_threshold if isinstance(near_copy_threshold, tuple)
                                else (near_copy_threshold, near_copy_threshold))
    options = {"ignore": ignore, "top_types": top_types, "w_image": w_image, "w_type": w_type}
    a = heldout.summary(data, images_a, embed_a, near_copy_threshold=threshold_a, **options)
    b = heldout.summary(data, images_b, embed_b, near_copy_threshold=threshold_b, **options)
    differences = {}
    for label, section, key, higher_better in COMPARED:
        row = heldout.paired_bootstrap(a[section]["per_query"][key], b[section]["per_query"][key],
                                       resamples=resamples, seed=seed)
        row["higher_is_better"] = higher_better
        row["unit"] = "type" if section == "type_to_product" else "product"
        interval = row["interval"]
        row["significant"] = bool(interval and (interval[0] > 0 or interval[1] < 0))
        differences[label] = row
    overlap = heldout.within_type_overlap(data, images_a, images_b, ignore=ignore)
    return {
        "products": len(data),
        "chance": {"caption_r_at_1": a["caption_to_product"]["chance"]["r_at_1"],
                   "caption_r_at_10": a["caption_to_product"]["chance"]["r_at_10"],
                   "caption_mrr": a["caption_to_product"]["chance"]["mrr"],
                   "type_p_at_10": a["type_to_product"]["chance"],
                   "image_label_agreement": a["image_to_image"]["chance"]},
        "a": heldout.strip_per_query(a),
        "b": heldout.strip_per_query(b),
        "differences": differences,
        "near_copy_threshold": {"a": threshold_a, "b": threshold_b},
        "within_type_overlap": {**heldout.strip_per_query(overlap),
                                "meaning": "share of each product's 10 nearest same-type held-out products "
                                           "under A that are also its 10 nearest under B (1.0: unchanged)"},
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": 0.95, "paired": True},
    }


def write_comparison(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """comparison.json and comparison.html in out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "comparison.json", "html": out_dir / "comparison.html"}
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    paths["html"].write_text(render_html(report), encoding="utf-8")
    return paths


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: the two models, the differences table, types, overlap."""
    meta = report.get("meta", {})
    a_name, b_name = html.escape(meta.get("a", {}).get("name", "A")), html.escape(meta.get("b", {}).get("name", "B"))
    rows = []
    for label, row in report["differences"].items():
        interval = row["interval"]
        better = row["difference"] is not None and ((row["difference"] > 0) == row["higher_is_better"])
        mark = ("better" if better else "worse") if row["significant"] else "no clear difference"
        difference = "" if row["difference"] is None else f"{row['difference']:+.3f}"
        span = "" if not interval else f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"
        rows.append(f"<tr><td>{html.escape(label)}</td><td>{fmt(row['a'])}</td><td>{fmt(row['b'])}</td>"
                    f"<td>{difference}</td><td>{span}</td>"
                    f"<td>{row['n']} {row['unit']}s</td><td>{mark}</td></tr>")
    types_a = report["a"]["type_to_product"]["by_type"]
    types_b = report["b"]["type_to_product"]["by_type"]
    type_rows = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{html.escape(types_a[t]['prompt'])}</td><td>{types_a[t]['count']}</td>"
        f"<td>{types_a[t]['hits']}/{types_a[t]['cut']}</td><td>{types_b[t]['hits']}/{types_b[t]['cut']}</td></tr>"
        for t in types_a if t in types_b)
    overlap = report["within_type_overlap"]
    chance = report["chance"]
    thresholds = report.get("near_copy_threshold", {})
    describe = "".join(f"<li><b>{html.escape(side.upper())}</b>: {html.escape(str(info.get('name')))} "
                       f"<code>{html.escape(str(info.get('fingerprint', ''))[:12])}</code> — "
                       f"{html.escape(str(info.get('description', '')))}"
                       + (f"; near-copy threshold {thresholds[side]:.4g}"
                          + (f" ({html.escape(str(info['near_copy_threshold_from']))})"
                             if info.get("near_copy_threshold_from") else "") if side in thresholds else "")
                       + "</li>"
                       for side, info in (("a", meta.get("a", {})), ("b", meta.get("b", {}))))
    split = html.escape(json.dumps(meta.get("split", {})))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>moodboard: {a_name} vs {b_name}</title>
<style>body{{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
th{{background:#f3f3f3}}code{{background:#f6f6f6;padding:1px 3px}}</style></head><body>
<h1>Held-out comparison</h1>
<ul>{describe}</ul>
<p>{report['products']} held-out products; split {split}. Differences are B − A with a paired
percentile bootstrap interval ({report['bootstrap']['resamples']} resamples, 95%). Chance: caption R@1
{fmt(chance['caption_r_at_1'])}, R@10 {fmt(chance['caption_r_at_10'])}, MRR {fmt(chance['caption_mrr'])};
type P@10 {fmt(chance['type_p_at_10'])}; image label agreement {fmt(chance['image_label_agreement'])}.</p>
<table><tr><th>metric</th><th>A</th><th>B</th><th>B − A</th><th>95% interval</th><th>n</th><th>verdict</th></tr>
{''.join(rows)}</table>
<h2>Within-type neighbourhood overlap</h2>
<p>{fmt(overlap['overlap'])} over {overlap['queries']} products: {html.escape(overlap['meaning'])}.</p>
<h2>Type → product (top 10 of the held-out products)</h2>
<table><tr><th>type</th><th>prompt</th><th>held out</th><th>A hits</th><th>B hits</th></tr>{type_rows}</table>
</body></html>
"""
