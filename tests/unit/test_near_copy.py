"""The near-copy threshold `moodboard train` measures for a bundle (model_export.train.near_copy),
with the deterministic fake embedder (mean colour and coarse layout) on generated pictures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from model_export.train.near_copy import (
    COPY_QUANTILE,
    DISTINCT_QUANTILE,
    light_edit,
    measure_near_copy_threshold,
    sample_ids,
)
from tests.fakes import FakeEmbedder


def _pictures(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    pictures = []
    for _ in range(n):
        image = Image.new("RGB", (96, 96), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y = (int(v) for v in rng.integers(0, 64, 2))
            draw.rectangle((x, y, x + 32, y + 32), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        pictures.append(image)
    return pictures


def test_the_threshold_catches_the_copies_and_spares_distinct_pictures() -> None:
    embed = FakeEmbedder().embed_images
    pictures = _pictures(40)

    measure = measure_near_copy_threshold(pictures, embed)

    vectors = embed(pictures)
    copies = np.sum(vectors * embed([light_edit(p) for p in pictures]), axis=1)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    copy_q, distinct_q = np.quantile(copies, COPY_QUANTILE), np.quantile(similarity.max(axis=1), DISTINCT_QUANTILE)
    assert copy_q > distinct_q  # separable here: the copy bound sets it
    assert measure.threshold == np.floor(copy_q * 1000) / 1000
    assert measure.copies_caught >= 1 - COPY_QUANTILE
    assert measure.distinct_dropped <= 1 - DISTINCT_QUANTILE
    assert measure.threshold < 1.0 and measure.pictures == 40


def test_a_duplicated_picture_raises_it_to_spare_distinct_products() -> None:
    embed = FakeEmbedder().embed_images
    pictures = _pictures(10)
    duplicated = [*pictures, pictures[0].copy()]  # two products, one photo: their cosine is 1

    measure = measure_near_copy_threshold(duplicated, embed)

    assert measure.distinct_quantile > measure.copy_quantile
    assert measure.threshold == np.ceil(measure.distinct_quantile * 1000) / 1000 or measure.threshold == 1.0


def test_the_measure_is_deterministic_and_needs_two_pictures() -> None:
    embed = FakeEmbedder().embed_images
    pictures = _pictures(12, seed=3)
    assert measure_near_copy_threshold(pictures, embed) == measure_near_copy_threshold(pictures, embed)
    with pytest.raises(ValueError, match="at least 2 pictures"):
        measure_near_copy_threshold(pictures[:1], embed)


def test_the_light_edit_keeps_the_size_and_changes_the_pixels() -> None:
    picture = _pictures(1)[0]
    edited = light_edit(picture)
    assert edited.size == picture.size and edited.mode == "RGB"
    assert np.abs(np.asarray(edited, float) - np.asarray(picture, float)).mean() > 0


def test_the_sample_is_seeded_and_ignores_order() -> None:
    ids = [f"p{i:03d}" for i in range(500)]
    sample = sample_ids(ids, seed=0, size=50)
    assert sample == sample_ids(list(reversed(ids)), seed=0, size=50)
    assert len(sample) == 50 and sample != sample_ids(ids, seed=1, size=50)
    assert sample_ids(ids[:5], seed=0, size=50) == ids[:5]
