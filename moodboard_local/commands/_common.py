"""Helpers shared by CLI commands: default artifact locations, the model for an index, argparse types."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from moodboard.errors import BundleError, ConfigError
from moodboard.integrity import MANIFEST_FILE

DEFAULT_MODEL_DIR = Path("artifacts/model")
DEFAULT_INDEX_DIR = Path("artifacts/index")
MODEL_REF_FILE = "model_ref.json"


def write_model_ref(index_dir: Path, model_dir: Path, precision: str) -> None:
    """Remember which model bundle built an index, so `search` needs only --index."""
    (Path(index_dir) / MODEL_REF_FILE).write_text(
        json.dumps({"model_dir": str(Path(model_dir).resolve()), "precision": precision}) + "\n"
    )


def resolve_model(index_dir: Path, model_dir: Path | None, precision: str | None) -> tuple[Path, str]:
    """The model bundle and precision to query an index with: explicit flags win, then model_ref.json."""
    ref_file = Path(index_dir) / MODEL_REF_FILE
    ref = json.loads(ref_file.read_text()) if ref_file.exists() else {}
    chosen = model_dir or (Path(ref["model_dir"]) if "model_dir" in ref else None)
    if chosen is None:
        raise ConfigError(f"no model bundle known for the index at {index_dir}: pass --model DIR")
    if not (Path(chosen) / MANIFEST_FILE).exists():
        raise BundleError(f"no model bundle at {chosen} (run `moodboard export-model` first)")
    return Path(chosen), precision or ref.get("precision", "fp32")


def positive_int(value: str) -> int:
    """argparse type: an integer of at least 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number
