"""Runtime.preload: the search Lambda's init loads the real tiny model and an index side by side."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moodboard.embedder import Embedder
from moodboard.errors import FingerprintMismatch
from moodboard.ingest import load_catalog
from moodboard.runtime import Runtime
from moodboard.settings import Settings
from tests.fakes import FakeEmbedder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_index(tiny_bundle: Path, demo_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("preload") / "index"
    load_catalog(demo_catalog, Embedder.load(tiny_bundle), out, settings=Settings())
    return out


@pytest.fixture(scope="module")
def foreign_index(demo_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index built with another model (the fake embedder's fingerprint)."""
    out = tmp_path_factory.mktemp("preload-foreign") / "index"
    load_catalog(demo_catalog, FakeEmbedder(), out, settings=Settings())
    return out


def test_preload_loads_the_model_and_the_index_once(tiny_bundle: Path, tiny_index: Path, tmp_path: Path) -> None:
    runtime = Runtime(Settings(model_dir=str(tiny_bundle), index_dir=str(tiny_index), cache_dir=tmp_path))
    runtime.preload()
    embedder, loaded = runtime.embedder(), runtime.index()
    assert embedder.fingerprint == loaded.manifest.model_fingerprint
    assert loaded.manifest.count == len(loaded) > 0
    runtime.preload()
    assert runtime.embedder() is embedder and runtime.index() is loaded


def test_preload_refuses_an_index_of_another_model(tiny_bundle: Path, foreign_index: Path, tmp_path: Path) -> None:
    runtime = Runtime(Settings(model_dir=str(tiny_bundle), index_dir=str(foreign_index), cache_dir=tmp_path))
    with pytest.raises(FingerprintMismatch, match="rebuild the index with this model"):
        runtime.preload()


def _import_search_app(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = ("import search.app\n"
            "from moodboard.runtime import get_runtime\n"
            "from moodboard.settings import get_settings\n"
            "r = get_runtime(get_settings())\n"
            "print('model', r._embedder is not None, 'index', r._index is not None and r._index.loaded is not None)\n")
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)]), **env}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_search_app_preloads_at_import_when_configured(tiny_bundle: Path, tiny_index: Path, tmp_path: Path) -> None:
    common = {"MOODBOARD_MODEL_DIR": str(tiny_bundle), "MOODBOARD_INDEX_DIR": str(tiny_index),
              "MOODBOARD_CACHE_DIR": str(tmp_path)}
    preloaded = _import_search_app({**common, "MOODBOARD_PRELOAD": "true"})
    assert preloaded.returncode == 0, preloaded.stderr
    assert preloaded.stdout.strip() == "model True index True"
    lazy = _import_search_app({**common, "MOODBOARD_PRELOAD": "false"})
    assert lazy.returncode == 0, lazy.stderr
    assert lazy.stdout.strip() == "model False index False"


def test_a_failed_preload_leaves_the_app_importable(tiny_bundle: Path, tmp_path: Path) -> None:
    result = _import_search_app({"MOODBOARD_MODEL_DIR": str(tiny_bundle), "MOODBOARD_INDEX_DIR": str(tmp_path / "none"),
                                 "MOODBOARD_CACHE_DIR": str(tmp_path), "MOODBOARD_PRELOAD": "true"})
    assert result.returncode == 0, result.stderr
    assert "preload failed, loading on first request instead" in result.stderr
    assert "no index bundle at" in result.stderr
    assert result.stdout.strip().startswith("model True")
