"""`moodboard eval --against` (benchmarks.quality.compare) and the single-model eval count near-copies
at each bundle's own threshold (ModelManifest.near_copy_threshold), as its search drops them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.quality import compare, heldout
from moodboard.settings import Settings
from moodboard_local.commands.eval import near_copy_threshold

DIM = 8
COSINE = 0.96  # every pair of products of one type: a near-copy at 0.95, not at 0.97


def _held_out() -> tuple[heldout.HeldOut, np.ndarray]:
    """Three dresses and three hats; within a type every pair has cosine COSINE."""
    rows, categories = [], []
    for t, category in enumerate(("dress", "hat")):
        for i in range(3):
            vector = np.zeros(DIM)
            vector[t] = np.sqrt(COSINE)
            vector[2 + 3 * t + i] = np.sqrt(1 - COSINE)
            rows.append(vector)
            categories.append(category)
    ids = [f"p{i}" for i in range(len(rows))]
    data = heldout.HeldOut(ids=ids, categories=categories, captions=[frozenset({c}) for c in categories],
                           primary=categories)
    return data, np.asarray(rows, dtype=np.float32)


def _embed(texts):
    return np.ones((len(texts), DIM), dtype=np.float32)


def test_compare_counts_each_models_near_copies_at_its_own_threshold() -> None:
    data, images = _held_out()

    report = compare.compare(data, images, _embed, images, _embed, near_copy_threshold=(0.95, 0.97), resamples=50)

    assert report["a"]["gist"]["near_copy_threshold"] == 0.95
    assert report["b"]["gist"]["near_copy_threshold"] == 0.97
    row = report["differences"]["near-copy rate (gist top 10)"]
    assert (row["a"], row["b"]) == (pytest.approx(1.0), pytest.approx(0.0))
    assert report["near_copy_threshold"] == {"a": 0.95, "b": 0.97}


def test_compare_with_one_threshold_uses_it_for_both() -> None:
    data, images = _held_out()

    report = compare.compare(data, images, _embed, images, _embed, near_copy_threshold=0.97, resamples=50)

    assert report["near_copy_threshold"] == {"a": 0.97, "b": 0.97}
    row = report["differences"]["near-copy rate (gist top 10)"]
    assert (row["a"], row["b"]) == (pytest.approx(0.0), pytest.approx(0.0))


def test_comparison_page_names_each_sides_threshold_and_where_it_came_from() -> None:
    data, images = _held_out()
    report = compare.compare(data, images, _embed, images, _embed, near_copy_threshold=(0.95, 0.9712), resamples=50)
    report["meta"] = {"a": {"name": "base @ 1a2b3c4d", "near_copy_threshold_from": "default"},
                      "b": {"name": "trained @ 5e6f7a8b", "near_copy_threshold_from": "bundle"}}

    page = compare.render_html(report)

    assert "near-copy threshold 0.95 (default)" in page
    assert "near-copy threshold 0.9712 (bundle)" in page


@pytest.mark.parametrize(("setting", "bundle", "expected"), [
    (None, None, (0.95, "default")),
    (None, 0.9712, (0.9712, "bundle")),
    (0.9, 0.9712, (0.9, "setting")),
])
def test_eval_threshold_follows_the_search_precedence(setting: float | None, bundle: float | None,
                                                      expected: tuple[float, str]) -> None:
    settings = Settings(query={} if setting is None else {"near_copy_threshold": setting})
    manifest = SimpleNamespace(near_copy_threshold=bundle)

    assert near_copy_threshold(settings, manifest) == expected
