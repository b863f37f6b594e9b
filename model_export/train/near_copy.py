"""The near-copy threshold of a model's image embeddings, measured on a catalog's own pictures.

The search drops products whose cosine to a query picture is above a threshold, so a shopper
who starts from a product photo is not shown that product back (QueryDefaults.near_copy_threshold,
0.95, is tuned for CLIP image embeddings). EfficientNet-Lite0's pooled features are spread otherwise
and a copy never reaches 0.95, so `moodboard train` measures the threshold of the bundle it writes
(ModelManifest.near_copy_threshold) through the runtime's own embedder, on a seeded sample of the
catalog's pictures:

- copies: each picture against a light edit of itself (NEAR_COPY_EDIT: a centre crop keeping 90% of
  each side, resized back, re-encoded as JPEG at quality 70), what a re-uploaded, re-cropped
  screenshot of a product photo looks like;
- distinct: each picture against its most similar other picture of the sample.

threshold = max(COPY_QUANTILE quantile of the copies rounded down to 0.001, DISTINCT_QUANTILE
quantile of the distinct rounded up to 0.001): the search drops 95% of the copies, and where copies
and distinct products overlap the distinct bound wins, since dropping a real result is worse than
showing a copy. Nearest-other cosines come in pairs (two products each other's nearest), so the
distinct share above the threshold can be 2/n rather than 1%. Deterministic: the sample, the edit
and the embedder are. `python -m model_export.train.near_copy BUNDLE CATALOG` measures a trained
bundle again (with its training's seed and categories) and writes nothing.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

NEAR_COPY_SAMPLE = 256
COPY_QUANTILE = 0.05
DISTINCT_QUANTILE = 0.99
CROP_KEEP = 0.9
JPEG_QUALITY = 70
NEAR_COPY_EDIT = (f"centre crop keeping {CROP_KEEP:.0%} of each side, resized back (bicubic), "
                  f"JPEG quality {JPEG_QUALITY}")


@dataclass(frozen=True)
class NearCopyMeasure:
    """The measured threshold and what it rests on (recorded in the training record)."""

    threshold: float
    pictures: int
    copy_quantile: float  # COPY_QUANTILE quantile of picture-vs-edited-copy cosines
    distinct_quantile: float  # DISTINCT_QUANTILE quantile of picture-vs-most-similar-other cosines
    copies_caught: float  # share of the copies above the threshold (what the search drops)
    distinct_dropped: float  # share of the pictures whose most similar other is above it
    method: str

    def record(self) -> dict[str, Any]:
        return asdict(self)


def light_edit(image: Image.Image) -> Image.Image:
    """A near-copy of a picture (NEAR_COPY_EDIT)."""
    image = image.convert("RGB")
    width, height = image.size
    keep_w, keep_h = max(1, round(width * CROP_KEEP)), max(1, round(height * CROP_KEEP))
    left, top = (width - keep_w) // 2, (height - keep_h) // 2
    cropped = image.crop((left, top, left + keep_w, top + keep_h)).resize((width, height), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    cropped.save(buffer, "JPEG", quality=JPEG_QUALITY)
    buffer.seek(0)
    with Image.open(buffer) as reopened:
        return reopened.convert("RGB")


def sample_ids(ids: Sequence[str], *, seed: int, size: int = NEAR_COPY_SAMPLE) -> list[str]:
    """A seeded sample of at most `size` ids, whatever their order."""
    ordered = sorted(set(ids))
    return sorted(random.Random(seed).sample(ordered, min(size, len(ordered))))


def measure_near_copy_threshold(pictures: Sequence[Image.Image],
                                embed_images: Callable[[Sequence[Image.Image]], np.ndarray]) -> NearCopyMeasure:
    """The near-copy threshold of the embeddings `embed_images` gives (L2-normalised rows), from at
    least two pictures (module docstring). ValueError for fewer."""
    if len(pictures) < 2:
        raise ValueError(f"measuring the near-copy threshold needs at least 2 pictures, got {len(pictures)}")
    originals = np.asarray(embed_images(list(pictures)), dtype=np.float64)
    copies = np.asarray(embed_images([light_edit(picture) for picture in pictures]), dtype=np.float64)
    copy_cos = np.sum(originals * copies, axis=1)
    similarity = originals @ originals.T
    np.fill_diagonal(similarity, -np.inf)
    distinct_cos = similarity.max(axis=1)
    copy_q = float(np.quantile(copy_cos, COPY_QUANTILE))
    distinct_q = float(np.quantile(distinct_cos, DISTINCT_QUANTILE))
    # To 0.001, still catching the copies' share (down) or still sparing the distinct share (up).
    threshold = min(1.0, max(math.floor(copy_q * 1000) / 1000, math.ceil(distinct_q * 1000) / 1000))
    return NearCopyMeasure(
        threshold=threshold, pictures=len(pictures), copy_quantile=round(copy_q, 4),
        distinct_quantile=round(distinct_q, 4), copies_caught=round(float(np.mean(copy_cos > threshold)), 4),
        distinct_dropped=round(float(np.mean(distinct_cos > threshold)), 4),
        method=(f"max(q{COPY_QUANTILE:g} of picture vs a light edit of itself ({NEAR_COPY_EDIT}), "
                f"q{DISTINCT_QUANTILE:g} of picture vs its most similar other picture), to 0.001 (down, up)"),
    )


def measure_bundle(bundle_dir: Path, images: dict[str, Path], *, seed: int) -> NearCopyMeasure:
    """Measure a bundle's threshold with the runtime's embedder on a seeded sample of `images`
    (product id -> local picture), decoded as the runtime decodes them."""
    from moodboard.embedder import Embedder
    from moodboard.images import load_image_file
    from moodboard.settings import get_settings

    settings = get_settings()
    pictures = []
    for product_id in sample_ids(list(images), seed=seed):
        with load_image_file(images[product_id], max_bytes=settings.max_image_bytes,
                             max_pixels=settings.max_image_pixels) as image:
            pictures.append(image.convert("RGB"))
    return measure_near_copy_threshold(pictures, Embedder.load(bundle_dir, text_cache_size=0).embed_images)


if __name__ == "__main__":  # python -m model_export.train.near_copy BUNDLE CATALOG: measure again, write nothing
    import json
    import sys

    from moodboard.model_bundle import load_manifest

    from model_export.train.data import load_catalog

    bundle = Path(sys.argv[1])
    trained = load_manifest(bundle, verify=False).training  # the training's categories and seed, if any
    ignore = trained.catalog.get("ignored_categories", []) if trained else []
    seed = trained.hyperparameters.get("seed", 0) if trained else 0
    catalog = load_catalog(Path(sys.argv[2]), ignore=ignore)
    measured = measure_bundle(bundle, {p.id: Path(p.image) for p in catalog.products}, seed=seed)
    sys.stdout.write(json.dumps(measured.record(), indent=2) + "\n")
