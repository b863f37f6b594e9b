"""The manifest's training record and the one-line description the CLI and the page show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moodboard.errors import BundleError
from moodboard.integrity import MANIFEST_FILE
from moodboard.model_bundle import ModelSource, TrainingRecord, load_manifest, write_manifest
from tests.unit.test_model_bundle import make_bundle

RECORD = TrainingRecord(
    method="lit",
    description="LiT: pretrained EfficientNet-Lite0 image tower (ImageNet weights, locked) + text tower trained "
                "from scratch on 384 captions of 96 products of demo-catalog (24 held out)",
    base={"id": "efficientnet-lite0", "revision": "0.1.0", "fingerprint": None, "weights_sha256": "ab" * 32},
    catalog={"checksum": "cd" * 32, "held_out": 24, "held_out_fraction": 0.2, "split_seed": 0},
    hyperparameters={"lr": 1e-3, "epochs": 10},
    captions={"templates": {"type": "{type_prompt}"}},
    held_out={"before": {}, "after": {}},
    seconds_training=12.5,
)
LIT_SOURCE = ModelSource(id="efficientnet-lite0+lit", revision="catalog-0123456789ab", tiny=False)


def test_exported_bundle_has_no_training_field_and_describes_its_source(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    assert "training" not in json.loads((tmp_path / MANIFEST_FILE).read_text())
    manifest = load_manifest(tmp_path)
    assert manifest.training is None
    assert manifest.description == "tiny-random-clip: a random test model, results are not meaningful"


def test_training_record_round_trips_and_is_the_description(tmp_path: Path) -> None:
    written = make_bundle(tmp_path).model_copy(update={"training": RECORD, "source": LIT_SOURCE})
    write_manifest(written, tmp_path)
    loaded = load_manifest(tmp_path)
    assert loaded.training == RECORD
    assert loaded.training.seconds_training == 12.5  # extra fields are kept
    assert loaded.description == RECORD.description
    assert (loaded.tiny, loaded.random_base) == (False, False)
    assert loaded.fingerprint == written.fingerprint  # the record is not part of the embedding space


def test_a_model_trained_from_the_random_test_model_is_not_tiny_and_says_its_base(tmp_path: Path) -> None:
    finetuned = RECORD.model_copy(update={"method": "finetune",
                                          "description": "tiny-random-clip fine-tuned (all weights) on 384 "
                                                         "captions of 96 products of demo-catalog (24 held out)"})
    write_manifest(make_bundle(tmp_path).model_copy(update={"training": finetuned}), tmp_path)
    loaded = load_manifest(tmp_path)
    assert loaded.source.tiny is True  # the manifest keeps where the weights started
    assert (loaded.tiny, loaded.random_base) == (False, True)
    assert loaded.description == finetuned.description + "; the base is a random test model"


def test_a_description_that_already_says_its_random_base_says_it_once(tmp_path: Path) -> None:
    said = RECORD.model_copy(update={"description": "tiny-random-clip fine-tuned; the base is a random test model"})
    write_manifest(make_bundle(tmp_path).model_copy(update={"training": said}), tmp_path)
    assert load_manifest(tmp_path).description == "tiny-random-clip fine-tuned; the base is a random test model"


def test_the_untrained_random_test_model_is_tiny(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    loaded = load_manifest(tmp_path)
    assert (loaded.tiny, loaded.random_base) == (True, False)


def test_training_record_with_an_unknown_method_is_refused(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    raw = json.loads((tmp_path / MANIFEST_FILE).read_text())
    raw["training"] = {**RECORD.model_dump(), "method": "distill"}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="training.method"):
        load_manifest(tmp_path)


def test_a_bundles_near_copy_threshold_round_trips_and_is_absent_by_default(tmp_path: Path) -> None:
    plain, measured = tmp_path / "plain", tmp_path / "measured"
    make_bundle(plain)
    assert "near_copy_threshold" not in json.loads((plain / MANIFEST_FILE).read_text())
    assert load_manifest(plain).near_copy_threshold is None
    written = make_bundle(measured).model_copy(update={"training": RECORD, "source": LIT_SOURCE,
                                                       "near_copy_threshold": 0.867})
    write_manifest(written, measured)
    assert load_manifest(measured).near_copy_threshold == 0.867


def test_a_near_copy_threshold_above_one_is_refused(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    raw = json.loads((tmp_path / MANIFEST_FILE).read_text())
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({**raw, "near_copy_threshold": 1.5}))
    with pytest.raises(BundleError, match="near_copy_threshold"):
        load_manifest(tmp_path)
