"""Held-out retrieval figures of one embedding space: what `moodboard train` optimises and reports,
and what `moodboard eval --against` compares between two model bundles.

Everything works on held-out products only (candidates and queries): image vectors (n, d), each
product's category, its set of captions and its primary (most specific) caption, and text vectors
from any `texts -> vectors` callable. Numpy only, so the trainer (torch) and the eval command
(onnxruntime) compute the same numbers with the same code.

- caption -> product: each product's primary caption ranks the held-out products; a product is
  relevant when that caption is one of its own (products sharing a caption are equally right).
  R@k is the hit rate (a relevant product in the top k, as FashionCLIP's HITS@k and Marqo's
  text -> image recall), MRR the mean reciprocal rank of the first relevant product. The chance
  level of each is computed exactly for a random ranking.
- type -> product: `moodboard.query.type_prompt(type)` ranks the held-out products; P@10 per type.
- image -> image: each product's 10 nearest other held-out products; share with its label.
- gist: the search API's blended query normalize(w_image * image + w_type * type prompt) within
  the product's own type: near-copy rate (cosine to the query image above the threshold) and
  diversity (mean pairwise cosine) of the top 10.
- within-type neighbourhood overlap (two spaces): each product's 10 nearest held-out products of
  its own type in space A and in space B; the share they have in common.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import lgamma
from typing import Any

import numpy as np

K = 10
TextEmbed = Callable[[Sequence[str]], np.ndarray]


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _log_comb(n: int, k: int) -> float:
    if k < 0 or k > n:
        return float("-inf")
    return lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)


def chance_hit_at_k(n: int, relevant: int, k: int) -> float:
    """P(at least one of `relevant` items among n is in a random top k)."""
    if relevant <= 0:
        return 0.0
    return 1.0 - float(np.exp(_log_comb(n - relevant, k) - _log_comb(n, k))) if n - relevant >= k else 1.0


def chance_reciprocal_rank(n: int, relevant: int) -> float:
    """E[1 / rank of the first relevant item] for a random ranking of n items, `relevant` of them relevant."""
    if relevant <= 0:
        return 0.0
    total = 0.0
    for rank in range(1, n - relevant + 2):
        total += np.exp(_log_comb(n - rank, relevant - 1) - _log_comb(n, relevant)) / rank
    return float(total)


@dataclass
class HeldOut:
    """The held-out products an evaluation runs on (row i = product i)."""

    ids: list[str]
    categories: list[str]
    captions: list[frozenset[str]]
    primary: list[str]

    def __post_init__(self) -> None:
        if not (len(self.ids) == len(self.categories) == len(self.captions) == len(self.primary)):
            raise ValueError("ids, categories, captions and primary captions differ in length")

    def __len__(self) -> int:
        return len(self.ids)

    def types(self, ignore: Sequence[str] = ()) -> list[str]:
        """Categories, largest first (ties by name), minus the ignored ones."""
        counts: dict[str, int] = {}
        for category in self.categories:
            counts[category] = counts.get(category, 0) + 1
        return [c for c in sorted(counts, key=lambda c: (-counts[c], c)) if c not in set(ignore)]


def caption_to_product(data: HeldOut, images: np.ndarray, embed_text: TextEmbed, *, k: int = K) -> dict[str, Any]:
    """Per-query hit@1, hit@k and reciprocal rank of each product's primary caption, their means
    and the chance level of each."""
    images = _unit(images)
    queries = sorted(set(data.primary))
    vectors = dict(zip(queries, _unit(embed_text(queries)))) if queries else {}
    n = len(data)
    hit1, hitk, rr, c1, ck, crr = [], [], [], [], [], []
    for caption in data.primary:
        relevant = np.fromiter((caption in own for own in data.captions), dtype=bool, count=n)
        order = np.argsort(-(images @ vectors[caption]), kind="stable")
        first = int(np.flatnonzero(relevant[order])[0])
        r = int(relevant.sum())
        hit1.append(float(first < 1))
        hitk.append(float(first < k))
        rr.append(1.0 / (first + 1))
        c1.append(chance_hit_at_k(n, r, 1))
        ck.append(chance_hit_at_k(n, r, k))
        crr.append(chance_reciprocal_rank(n, r))
    return {
        "queries": n, "distinct_captions": len(queries), "k": k,
        "r_at_1": _mean(hit1), f"r_at_{k}": _mean(hitk), "mrr": _mean(rr),
        "chance": {"r_at_1": _mean(c1), f"r_at_{k}": _mean(ck), "mrr": _mean(crr)},
        "per_query": {"r_at_1": hit1, f"r_at_{k}": hitk, "mrr": rr},
    }


def type_to_product(data: HeldOut, images: np.ndarray, embed_text: TextEmbed, *, k: int = K,
                    ignore: Sequence[str] = (), top: int | None = None) -> dict[str, Any]:
    """Precision of each type's prompt over the held-out products at k (at n for a type with
    n < k held-out products, so a perfect ranking scores 1), for the `top` largest types when
    given; the mean over types and its chance level (the mean type share)."""
    from moodboard.query import type_prompt

    images = _unit(images)
    labels = np.asarray(data.categories, dtype=object)
    types = [t for t in data.types(ignore) if int((labels == t).sum()) >= 2]
    if top is not None:
        types = types[:top]
    texts = _unit(embed_text([type_prompt(t) for t in types])) if types else np.zeros((0, images.shape[1]))
    by_type: dict[str, dict[str, Any]] = {}
    for category, vector in zip(types, texts):
        count = int((labels == category).sum())
        cut = min(k, count)
        top_rows = np.argsort(-(images @ vector), kind="stable")[:cut]
        hits = int(np.sum(labels[top_rows] == category))
        by_type[category] = {"prompt": type_prompt(category), "count": count, "cut": cut,
                             f"p_at_{k}": hits / cut, "hits": hits}
    return {
        "types": len(by_type), "k": k,
        f"p_at_{k}": _mean(r[f"p_at_{k}"] for r in by_type.values()),
        "chance": _mean(r["count"] / len(data) for r in by_type.values()),
        "by_type": by_type,
        "per_query": {f"p_at_{k}": [r[f"p_at_{k}"] for r in by_type.values()]},
    }


def _neighbours(images: np.ndarray, rows: np.ndarray, candidates: np.ndarray, k: int) -> list[np.ndarray]:
    """For each row, up to k nearest candidate rows other than itself, best first."""
    sims = images[rows] @ images[candidates].T
    out = []
    for i, row in enumerate(rows):
        order = candidates[np.argsort(-sims[i], kind="stable")]
        out.append(order[order != row][:k])
    return out


def image_to_image(data: HeldOut, images: np.ndarray, *, k: int = K, ignore: Sequence[str] = (),
                   top: int | None = None) -> dict[str, Any]:
    """10-NN label agreement among the held-out products of the kept types (the `top` largest)."""
    images = _unit(images)
    labels = np.asarray(data.categories, dtype=object)
    kept = np.flatnonzero(np.isin(labels, data.types(ignore)[:top] if top else data.types(ignore)))
    agreement = [float(np.mean(labels[nn] == labels[row])) if nn.size else 0.0
                 for row, nn in zip(kept, _neighbours(images, kept, kept, k))]
    counts = {t: int((labels[kept] == t).sum()) for t in set(labels[kept])}
    chance = _mean((counts[labels[r]] - 1) / max(len(kept) - 1, 1) for r in kept)
    return {"queries": int(kept.size), "k": k, "label_agreement": _mean(agreement), "chance": chance,
            "per_query": {"label_agreement": agreement}}


def gist(data: HeldOut, images: np.ndarray, embed_text: TextEmbed, *, w_image: float = 1.0, w_type: float = 0.6,
         near_copy_threshold: float = 0.95, k: int = K, ignore: Sequence[str] = ()) -> dict[str, Any]:
    """Near-copy rate and diversity of the top k of the blended query within the product's type."""
    from moodboard.query import type_prompt

    images = _unit(images)
    labels = np.asarray(data.categories, dtype=object)
    types = data.types(ignore)
    prompts = dict(zip(types, _unit(embed_text([type_prompt(t) for t in types])))) if types else {}
    near, diversity = [], []
    for row in np.flatnonzero(np.isin(labels, types)):
        same = np.flatnonzero(labels == labels[row])
        same = same[same != row]
        if same.size < 2:
            continue
        query = _unit((w_image * images[row] + w_type * prompts[labels[row]])[None])[0]
        top = same[np.argsort(-(images[same] @ query), kind="stable")[:k]]
        near.append(float(np.mean(images[top] @ images[row] > near_copy_threshold)))
        sims = images[top] @ images[top].T
        diversity.append(float((sims.sum() - np.trace(sims)) / (top.size * (top.size - 1))))
    return {"queries": len(near), "k": k, "w_image": w_image, "w_type": w_type,
            "near_copy_threshold": near_copy_threshold, "near_copy_rate": _mean(near),
            "diversity_mean_pairwise_cosine": _mean(diversity),
            "per_query": {"near_copy_rate": near, "diversity_mean_pairwise_cosine": diversity}}


def within_type_overlap(data: HeldOut, images_a: np.ndarray, images_b: np.ndarray, *, k: int = K,
                        ignore: Sequence[str] = ()) -> dict[str, Any]:
    """Share of each product's k nearest same-type neighbours in A that are also its k nearest in B."""
    a, b = _unit(images_a), _unit(images_b)
    labels = np.asarray(data.categories, dtype=object)
    overlap = []
    for category in data.types(ignore):
        rows = np.flatnonzero(labels == category)
        if rows.size < 2:
            continue
        for nn_a, nn_b in zip(_neighbours(a, rows, rows, k), _neighbours(b, rows, rows, k)):
            overlap.append(len(set(nn_a.tolist()) & set(nn_b.tolist())) / nn_a.size)
    return {"queries": len(overlap), "k": k, "overlap": _mean(overlap), "per_query": {"overlap": overlap}}


def summary(data: HeldOut, images: np.ndarray, embed_text: TextEmbed, *, k: int = K, ignore: Sequence[str] = (),
            top_types: int | None = None, w_image: float = 1.0, w_type: float = 0.6,
            near_copy_threshold: float = 0.95) -> dict[str, Any]:
    """Every figure of one space on the held-out products (per-query values included)."""
    return {
        "products": len(data),
        "caption_to_product": caption_to_product(data, images, embed_text, k=k),
        "type_to_product": type_to_product(data, images, embed_text, k=k, ignore=ignore, top=top_types),
        "image_to_image": image_to_image(data, images, k=k, ignore=ignore, top=top_types),
        "gist": gist(data, images, embed_text, w_image=w_image, w_type=w_type,
                     near_copy_threshold=near_copy_threshold, k=k, ignore=ignore),
    }


def headline(result: dict[str, Any], k: int = K) -> dict[str, float | None]:
    """The flat figures of a summary (no per-query lists), as the manifest records them."""
    c2p, t2p, i2i, g = (result["caption_to_product"], result["type_to_product"], result["image_to_image"],
                        result["gist"])
    return {
        "caption_r_at_1": c2p["r_at_1"], f"caption_r_at_{k}": c2p[f"r_at_{k}"], "caption_mrr": c2p["mrr"],
        "caption_chance_r_at_1": c2p["chance"]["r_at_1"], f"caption_chance_r_at_{k}": c2p["chance"][f"r_at_{k}"],
        f"type_p_at_{k}": t2p[f"p_at_{k}"], "type_chance": t2p["chance"],
        "image_label_agreement": i2i["label_agreement"], "image_chance": i2i["chance"],
        "near_copy_rate": g["near_copy_rate"], "diversity_mean_pairwise_cosine": g["diversity_mean_pairwise_cosine"],
    }


def strip_per_query(value: Any) -> Any:
    """A copy of a result without its per-query lists (for reports and manifests)."""
    if isinstance(value, dict):
        return {key: strip_per_query(v) for key, v in value.items() if key != "per_query"}
    return value


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int = 2000, seed: int = 7,
                     confidence: float = 0.95) -> dict[str, Any]:
    """Mean of b - a over paired queries and a percentile bootstrap interval of it."""
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"unpaired values: {a_arr.shape} vs {b_arr.shape}")
    if a_arr.size == 0:
        return {"a": None, "b": None, "difference": None, "interval": None, "n": 0}
    diff = b_arr - a_arr
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"a": float(a_arr.mean()), "b": float(b_arr.mean()), "difference": float(diff.mean()),
            "interval": [float(low), float(high)], "confidence": confidence, "n": int(diff.size)}


def _mean(values: Any) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def split_products(ids: Sequence[str], categories: Sequence[str], *, fraction: float = 0.2,
                   seed: int = 0) -> tuple[list[int], list[int]]:
    """(train rows, held-out rows): a seeded split by product, stratified by category (each type
    with at least two products keeps at least one on each side). Row order does not matter: the
    same ids, categories, fraction and seed always give the same split."""
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be between 0 and 1, got {fraction}")
    by_category: dict[str, list[int]] = {}
    for row, category in enumerate(categories):
        by_category.setdefault(category, []).append(row)
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for category in sorted(by_category):
        rows = sorted(by_category[category], key=lambda r: ids[r])
        rows = [rows[i] for i in rng.permutation(len(rows))]
        n = int(round(len(rows) * fraction))
        if len(rows) >= 2:
            n = min(max(n, 1), len(rows) - 1)
        else:
            n = 0
        held += rows[:n]
    held_set = set(held)
    return [r for r in range(len(ids)) if r not in held_set], sorted(held)


def split_digest(ids: Sequence[str]) -> str:
    """A short sha256 of a set of product ids (the manifest records the held-out set's)."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]
