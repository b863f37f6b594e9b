"""The runtime stays light: no torch, transformers or optimum in its dependencies or its imports.

Imports are checked in a fresh interpreter, because this test process has usually imported torch
for other tests already.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
RUNTIME_PACKAGES = ("moodboard", "search", "loader", "evaluations")
HEAVY = ("torch", "transformers", "optimum")

IMPORT_ALL = """
import importlib, json, pkgutil, sys
from pathlib import Path

root = Path(sys.argv[1])
imported = []
for package in sys.argv[2:]:
    folder = root / package
    if not folder.is_dir():
        continue
    if (folder / "__init__.py").is_file():
        importlib.import_module(package)
        imported.append(package)
    for info in pkgutil.walk_packages([str(folder)], prefix=package + "."):
        importlib.import_module(info.name)
        imported.append(info.name)
print(json.dumps({"imported": imported, "loaded": sorted(sys.modules)}))
"""


def _run_python(code: str, *args: str, cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FUNCTIONS), str(ROOT)])}
    env = {k: v for k, v in env.items() if not k.startswith("MOODBOARD_")}
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _top_level(modules: list[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_runtime_dependencies_exclude_torch_transformers_optimum() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.match(r"[A-Za-z0-9._-]+", dep).group(0).lower().replace("_", "-") for dep in project["dependencies"]}
    assert names, "no runtime dependencies parsed"
    assert {"onnxruntime", "tokenizers", "numpy"} <= names
    assert not names & {"torch", "transformers", "optimum", "optimum-onnx", "open-clip-torch"}


def test_importing_every_runtime_module_loads_no_torch_transformers_optimum(tmp_path: Path) -> None:
    result = _run_python(IMPORT_ALL, str(FUNCTIONS), *RUNTIME_PACKAGES, cwd=tmp_path)
    imported = result["imported"]
    assert {"moodboard.model_bundle", "moodboard.errors", "search.app", "loader.handler"} <= set(imported)
    assert not _top_level(result["loaded"]) & set(HEAVY), sorted(_top_level(result["loaded"]) & set(HEAVY))
    assert "model_export" not in _top_level(result["loaded"])


def test_the_cli_starts_without_torch_transformers_optimum(tmp_path: Path) -> None:
    """Export and training commands import model_export only when they run."""
    result = _run_python(IMPORT_ALL, str(ROOT), "moodboard_local", cwd=tmp_path)
    assert {"moodboard_local.cli", "moodboard_local.commands.export_model", "moodboard_local.commands.train"} <= set(
        result["imported"])
    assert not _top_level(result["loaded"]) & {*HEAVY, "model_export"}


def test_evaluations_app_imports_neither_onnxruntime_nor_numpy(tmp_path: Path) -> None:
    if not (FUNCTIONS / "evaluations" / "app.py").is_file():
        pytest.skip("functions/evaluations/app.py does not exist yet")
    code = "import json, sys, evaluations.app; print(json.dumps({'loaded': sorted(sys.modules)}))"
    loaded = _top_level(_run_python(code, cwd=tmp_path)["loaded"])
    assert "evaluations" in loaded
    assert not loaded & {"onnxruntime", "numpy", *HEAVY}, sorted(loaded & {"onnxruntime", "numpy", *HEAVY})


def test_the_library_never_imports_a_lambda_entry_module() -> None:
    """Entry modules only wire (STYLE rule 19): routes live in the library, so nothing in moodboard/
    or moodboard_local/ (`moodboard serve`) imports search.app, loader.handler or evaluations.app."""
    entries = {"search", "loader", "evaluations"}
    found = []
    for path in sorted([*(FUNCTIONS / "moodboard").rglob("*.py"), *(ROOT / "moodboard_local").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{path.relative_to(ROOT)}: {name}" for name in names if name.split(".")[0] in entries]
    assert found == []
