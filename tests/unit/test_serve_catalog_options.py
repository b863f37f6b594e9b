"""`moodboard serve` hides the clothing dataset's non-product labels unless told otherwise."""

from __future__ import annotations

import argparse
from pathlib import Path

from moodboard.settings import Settings
from moodboard_local.commands.serve import CLOTHING_DATASET_HIDDEN, serves_clothing_dataset


def _args(**values: object) -> argparse.Namespace:
    return argparse.Namespace(**{"index": None, "catalog": None, **values})


def test_serve_hides_the_clothing_datasets_labels_only_when_it_serves_that_dataset(tmp_path: Path) -> None:
    dataset = tmp_path / "clothing-dataset"
    dataset.mkdir()
    (dataset / "images.csv").write_text("image,sender_id,label,kids\n")
    csv = tmp_path / "catalog.csv"
    csv.write_text("id,title,category,image\n")
    with_dataset = Settings(demo_dataset=dataset, cache_dir=tmp_path / "cache")
    without = Settings(demo_dataset=tmp_path / "nothing-here", cache_dir=tmp_path / "cache")

    assert serves_clothing_dataset(_args(catalog=dataset), without, "moto")
    assert serves_clothing_dataset(_args(), with_dataset, "moto")  # the demo's default catalog
    assert not serves_clothing_dataset(_args(catalog=csv), with_dataset, "moto")
    assert not serves_clothing_dataset(_args(index=tmp_path / "index"), with_dataset, "moto")
    assert not serves_clothing_dataset(_args(), with_dataset, "aws")  # follows the bucket's catalog
    assert set(CLOTHING_DATASET_HIDDEN) == {"Not sure", "Skip", "Other"}
