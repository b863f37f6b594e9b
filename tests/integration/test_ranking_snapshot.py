"""Snapshot of what users see: top-k ids for a fixed query set on the fixed tiny model and catalog.

A re-export or a query change that reorders results shows up here. When the change is intended,
regenerate with `MOODBOARD_UPDATE_SNAPSHOTS=1 python -m pytest tests/integration/test_ranking_snapshot.py`
and review the diff of tests/snapshots/rankings.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from moodboard.embedder import Embedder
from moodboard.index import ProductIndex
from moodboard.ingest import load_catalog
from moodboard.query import QueryParams, gist_search
from moodboard.settings import Settings
from moodboard_local.demo_catalog import draw_mood_image

SNAPSHOT = Path(__file__).parent.parent / "snapshots" / "rankings.json"
QUERIES = [
    {"palette": "neon", "category": "dress", "text": None},
    {"palette": "earthy", "category": "sofa", "text": None},
    {"palette": "ocean", "category": "hat", "text": "summer"},
    {"palette": None, "category": "lamp", "text": "a pastel lamp"},
]


@pytest.fixture(scope="module")
def index_and_embedder(tiny_bundle: Path, demo_catalog: Path, tmp_path_factory: pytest.TempPathFactory):
    embedder = Embedder.load(tiny_bundle)
    out = tmp_path_factory.mktemp("snapshot") / "index"
    load_catalog(demo_catalog, embedder, out, settings=Settings())
    return ProductIndex.open(out, expected_fingerprint=embedder.fingerprint), embedder


def _rankings(index: ProductIndex, embedder: Embedder) -> dict[str, list[str]]:
    out = {}
    for q in QUERIES:
        image = draw_mood_image(q["palette"], seed=7) if q["palette"] else None
        result = gist_search(index, embedder, image=image, category=q["category"], text=q["text"],
                             negative=None, params=QueryParams(k=5))
        out[f"{q['palette']}|{q['category']}|{q['text']}"] = [h.product.id for h in result.hits]
    return out


def test_top5_rankings_match_the_snapshot(index_and_embedder, tiny_bundle: Path) -> None:
    index, embedder = index_and_embedder
    got = {"model_fingerprint": embedder.fingerprint, "rankings": _rankings(index, embedder)}
    if os.environ.get("MOODBOARD_UPDATE_SNAPSHOTS") == "1" or not SNAPSHOT.exists():
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(json.dumps(got, indent=2) + "\n")
        pytest.fail(f"snapshot written to {SNAPSHOT}: review and commit it, then re-run")
    want = json.loads(SNAPSHOT.read_text())
    assert got["model_fingerprint"] == want["model_fingerprint"], "the tiny export changed: re-export drift"
    assert got["rankings"] == want["rankings"]
