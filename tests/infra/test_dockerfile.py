"""The container image recipe and the runtime requirement sets: what ships to Lambda, and nothing else."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infra_cdk import requirements as reqs
from infra_cdk.bundling import PipLayerBundling

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "functions" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
EXPORT_ONLY = {"torch", "transformers", "optimum", "optimum-onnx", "onnx", "torchvision", "open-clip-torch"}
LAMBDA_PYTHON = "public.ecr.aws/lambda/python"
# One dated release of AWS's image (3.12.YYYY.MM.DD.HH), digest-free but never a moving tag.
PINNED_TAG = re.compile(r"^3\.12\.20\d\d\.\d\d\.\d\d\.\d\d$")
# The first 3.12 patch release with the tarfile fixes (CVE-2025-4517, -4330, -4138, 2024-12718).
PATCHED_PYTHON = (3, 12, 11)
# What the Lambda Python runtime itself provides to a zip function.
LAMBDA_RUNTIME_PROVIDES = {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
# Imported when installed, with a fallback otherwise: botocore uses certifi's CA bundle if present and
# its own otherwise; setuptools appears through its distutils hack (a .pth file), not through the app.
OPTIONAL_IMPORTS = {"certifi", "setuptools"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def of(kind: str) -> list[str]:
    return [args for word, args in instructions() if word == kind]


def base_image() -> tuple[str, str]:
    (image,) = [args.partition("=")[2] for args in of("ARG") if args.startswith("BASE_IMAGE=")]
    repository, _, tag = image.partition(":")
    return repository, tag


def test_dockerfile_builds_on_the_lambda_python_base_image() -> None:
    from infra_cdk.functions import RUNTIME

    repository, tag = base_image()
    assert repository == LAMBDA_PYTHON
    assert tag.startswith(RUNTIME.name.removeprefix("python") + ".")
    stages = []
    for args in of("FROM"):
        image, _, stage = args.partition(" AS ")
        assert image in ("${BASE_IMAGE}", *stages), args
        stages.append(stage.strip())
    assert stages[-1] == "with-model"


def test_base_image_is_pinned_to_one_release_not_a_moving_tag() -> None:
    repository, tag = base_image()
    assert "@" not in tag, "pinned by tag, not by digest"
    assert PINNED_TAG.match(tag), f"{repository}:{tag} floats: pin a dated release (3.12.YYYY.MM.DD.HH)"


def test_runtime_stage_refuses_a_python_without_the_tarfile_fixes() -> None:
    steps = instructions()
    runtime = steps.index(("FROM", "${BASE_IMAGE} AS runtime"))
    guard = steps[runtime + 1]
    assert guard[0] == "RUN" and guard[1].startswith('python -c "') and guard[1].endswith('"')
    check = guard[1][len('python -c "'):-1]
    assert f"sys.version_info >= {PATCHED_PYTHON}" in check
    code = compile(check.replace("import sys; ", ""), "<guard>", "exec")
    for version, passes in (((3, 12, 10, "final", 0), False), ((3, 12, 11, "final", 0), True),
                            ((3, 13, 4, "final", 0), True)):
        fake_sys = type("FakeSys", (), {"version_info": version, "version": ".".join(map(str, version[:3])),
                                        "exit": staticmethod(sys.exit)})
        if passes:
            exec(code, {"sys": fake_sys})
        else:
            with pytest.raises(SystemExit, match="lacks the tarfile fixes"):
                exec(code, {"sys": fake_sys})


def test_dockerfile_installs_only_the_runtime_requirement_set() -> None:
    installs = [args for args in of("RUN") if re.search(r"\bpip (install|wheel)\b", args)]
    assert len(installs) == 2
    for args in installs:
        assert "-r /tmp/requirements-runtime.txt" in args
        command = args[args.index("pip "):]
        named = [w for w in command.split()[2:] if not w.startswith("-") and "/" not in w]
        assert named == [], f"packages named outside the requirement set: {named}"
    assert "functions/requirements-runtime.txt /tmp/requirements-runtime.txt" in of("COPY")
    recipe = " ".join(f"{word} {args}" for word, args in instructions()).lower()
    for banned in ("torch", "transformers", "optimum"):
        assert banned not in recipe


def test_dockerfile_builds_hnswlib_portably() -> None:
    assert "HNSWLIB_NO_NATIVE=1" in of("ENV")


def test_dockerfile_default_command_is_the_search_handler() -> None:
    from infra_cdk.functions import LOADER_HANDLER, SEARCH_HANDLER

    assert of("CMD") == [json.dumps([SEARCH_HANDLER])]
    copied = {args.split()[0] for args in of("COPY") if args.startswith("functions/")}
    for handler in (SEARCH_HANDLER, LOADER_HANDLER):
        package, module, _ = handler.split(".")
        assert f"functions/{package}" in copied
        assert (ROOT / "functions" / package / f"{module}.py").is_file()
    assert "functions/moodboard" in copied


def test_dockerfile_stages_are_the_targets_the_stack_builds() -> None:
    from infra_cdk.functions import MODEL_DIR_IN_IMAGE, TARGET_WITH_MODEL, TARGET_WITHOUT_MODEL

    stages = {args.partition(" AS ")[2].strip() for args in of("FROM")}
    assert {TARGET_WITH_MODEL, TARGET_WITHOUT_MODEL} <= stages
    assert f"${{MODEL_BUNDLE}}/ {MODEL_DIR_IN_IMAGE}/" in of("COPY")
    assert "MODEL_BUNDLE=artifacts/model" in of("ARG")


def test_baked_model_is_verified_and_sealed_at_image_build() -> None:
    """Cold starts trust the seal instead of hashing the graphs (moodboard.integrity): the image build
    must write it, after the model is in place, with the module the image ships."""
    from infra_cdk.functions import MODEL_DIR_IN_IMAGE

    steps = instructions()
    copy_model = steps.index(("COPY", f"${{MODEL_BUNDLE}}/ {MODEL_DIR_IN_IMAGE}/"))
    seal = ("RUN", f"python -m moodboard.integrity {MODEL_DIR_IN_IMAGE}")
    assert seal in steps[copy_model:]
    assert (ROOT / "functions" / "moodboard" / "integrity.py").is_file()


def test_dockerignore_keeps_only_code_and_model_in_the_build_context() -> None:
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    from aws_cdk import IgnoreStrategy

    patterns = [line for line in DOCKERIGNORE.read_text().splitlines() if line and not line.startswith("#")]
    strategy = IgnoreStrategy.docker(str(ROOT), patterns)

    def ignored(path: str) -> bool:
        return strategy.ignores(str(ROOT / path))

    for path in (".venv/lib/python3.11/site-packages/torch/__init__.py", "tests/infra/test_stack.py",
                 "frontend/index.html", "infra_cdk/node_modules/aws-cdk/package.json", "infra_cdk/cdk.out/x.json",
                 ".git/HEAD", "artifacts/index/index.bin", "benchmarks/results/run.json", "model_export/export.py",
                 "functions/moodboard/__pycache__/settings.cpython-311.pyc"):
        assert ignored(path), path
    for path in ("functions/Dockerfile", "functions/requirements-runtime.txt", "functions/moodboard/settings.py",
                 "functions/search/app.py", "functions/loader/handler.py", "artifacts/model/manifest.json",
                 "artifacts/model/vision.onnx"):
        assert not ignored(path), path


def test_runtime_requirements_pin_exactly_the_pyproject_runtime_set() -> None:
    declared = {canonicalize_name(r.name): r for r in reqs.runtime_dependencies()}
    pinned = {canonicalize_name(r.name): r for r in reqs.read_pins(reqs.RUNTIME_REQUIREMENTS)}
    assert set(pinned) == set(declared)
    for name, pin in pinned.items():
        (spec,) = pin.specifier
        assert spec.operator == "==", pin
        assert declared[name].specifier.contains(spec.version, prereleases=True), (pin, declared[name])
        assert pin.extras == declared[name].extras, name


def test_runtime_requirements_contain_no_export_only_package() -> None:
    names = {canonicalize_name(r.name) for r in reqs.read_pins(reqs.RUNTIME_REQUIREMENTS)}
    assert names.isdisjoint(EXPORT_ONLY)
    assert {"onnxruntime", "hnswlib", "tokenizers"} <= names


def test_layer_requirements_are_pins_from_the_runtime_set() -> None:
    runtime = {canonicalize_name(r.name): str(r) for r in reqs.read_pins(reqs.RUNTIME_REQUIREMENTS)}
    layer = reqs.read_pins(reqs.LAYER_REQUIREMENTS)
    assert layer
    for pin in layer:
        assert runtime[canonicalize_name(pin.name)] == str(pin)
    names = {canonicalize_name(r.name) for r in layer}
    assert names.isdisjoint({"numpy", "onnxruntime", "hnswlib", "pillow", "tokenizers"} | EXPORT_ONLY)


def dependency_closure(requirements: list[Requirement]) -> set[str]:
    """Distributions those requirements install, as resolved in this virtualenv."""
    seen: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in requirements]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen and not extras:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            child = Requirement(line)
            env = [{"extra": e} for e in extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(e) for e in env):
                todo.append((child, frozenset(child.extras)))
    return seen


# Run in a fresh interpreter whose imports are limited to `allowed` top-level names (and the
# standard library): any other top-level module, installed or on the path, is refused as if absent.
RESTRICTED_IMPORT = """
import importlib, importlib.abc, json, sys

allowed = set(json.loads(sys.argv[1]))


class OnlyWhatShips(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        stdlib = top in sys.stdlib_module_names or top in sys.builtin_module_names or top.startswith("_sysconfigdata")
        if top in allowed or stdlib:
            return None
        raise ModuleNotFoundError(f"No module named {top!r} in what ships", name=top)


sys.meta_path.insert(0, OnlyWhatShips())
module, _, attribute = sys.argv[2].rpartition(".")
handler = getattr(importlib.import_module(module), attribute)
assert callable(handler), sys.argv[2]
print(json.dumps(sorted(name for name in sys.modules if name.partition(".")[0] in json.loads(sys.argv[3]))))
"""


def image_packages() -> set[str]:
    """The packages the image copies from functions/ into the Lambda task root (its COPY lines)."""
    packages = set()
    for args in of("COPY"):
        source, _, dest = args.partition(" ")
        if source.startswith("functions/") and dest.startswith("${LAMBDA_TASK_ROOT}/"):
            packages.add(dest.removeprefix("${LAMBDA_TASK_ROOT}/").strip("/"))
    return packages


def zip_packages() -> set[str]:
    """The packages of functions/ the evaluations zip holds (the asset minus its excludes)."""
    from infra_cdk.functions import EVALUATIONS_EXCLUDE

    return {path.name for path in (ROOT / "functions").iterdir()
            if (path / "__init__.py").is_file() and path.name not in EVALUATIONS_EXCLUDE}


def importable(requirements: list[Requirement], packages: set[str]) -> set[str]:
    """Top-level modules present where these requirements (and what they depend on) are installed
    beside these packages."""
    closure = dependency_closure(requirements)
    installed = {top for top, dists in metadata.packages_distributions().items()
                 if any(canonicalize_name(dist) in closure for dist in dists)}
    return installed | packages


def image_importable() -> set[str]:
    return importable(reqs.read_pins(reqs.RUNTIME_REQUIREMENTS), image_packages())


def zip_importable() -> set[str]:
    provided = reqs.read_pins(reqs.LAYER_REQUIREMENTS) + [Requirement(name) for name in LAMBDA_RUNTIME_PROVIDES]
    return importable(provided, zip_packages())


def import_restricted(handler: str, allowed: set[str], packages: set[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOODBOARD_")}
    env["PYTHONPATH"] = str(ROOT / "functions")
    return subprocess.run([sys.executable, "-c", RESTRICTED_IMPORT, json.dumps(sorted(allowed)), handler,
                           json.dumps(sorted(packages))], env=env, cwd=ROOT / "functions", capture_output=True,
                          text=True, timeout=180, check=False)


def handlers() -> dict[str, str]:
    """Every Lambda handler the stack deploys (infra_cdk.functions' *_HANDLER names): "zip" for the
    evaluations function, "image" for the others."""
    from infra_cdk import functions

    names = {value for name, value in vars(functions).items() if name.endswith("_HANDLER")}
    return {name: "zip" if name == functions.EVALUATIONS_HANDLER else "image" for name in names}


@pytest.mark.parametrize("handler", sorted(handlers()))
def test_each_handler_imports_with_only_what_its_function_ships(handler: str) -> None:
    """A handler imports in an interpreter that can reach only its function's packages (the image's
    COPY lines, or the evaluations zip) and requirements (the image's pins, or the layer's plus
    what the Lambda runtime provides), with their dependencies: nothing else is needed."""
    if handlers()[handler] == "image":
        allowed, packages = image_importable(), image_packages()
    else:
        allowed, packages = zip_importable(), zip_packages()
    assert {"search.app.handler", "loader.handler.handler", "evaluations.app.handler"} <= set(handlers())
    result = import_restricted(handler, allowed, packages)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert handler.rpartition(".")[0] in loaded


def test_the_restricted_import_refuses_what_does_not_ship() -> None:
    """The same harness fails for a module that needs what the image lacks (rich, say), so the
    handler test above can fail."""
    allowed = image_importable()
    assert "rich" not in allowed and "uvicorn" not in allowed
    result = import_restricted("rich.console.Console", allowed, image_packages())
    assert result.returncode != 0 and "No module named 'rich' in what ships" in result.stderr


def imports_of(path: Path) -> set[str]:
    """Top-level names of the absolute imports in a Python file (lazy ones in functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.partition(".")[0])
    return names


def test_the_image_carries_nothing_that_imports_what_it_lacks() -> None:
    """Every import in every module the image carries, lazy ones included, is of the standard
    library, a package the image carries or one its requirements install: the CLI, `serve`, the
    local moto stack and the console helpers live outside it (moodboard_local). (The evaluations zip
    carries the whole library for its handler; the handler test above covers it.)"""
    allowed, packages = image_importable(), image_packages()
    stdlib = set(sys.stdlib_module_names) | set(sys.builtin_module_names)
    found = {}
    for package in sorted(packages):
        for path in sorted((ROOT / "functions" / package).rglob("*.py")):
            missing = imports_of(path) - allowed - stdlib
            if missing:
                found[str(path.relative_to(ROOT))] = sorted(missing)
    assert found == {}


def test_layer_is_built_with_wheels_for_the_lambda_platform(tmp_path: Path) -> None:
    from aws_cdk import aws_lambda

    bundling = PipLayerBundling(reqs.LAYER_REQUIREMENTS, aws_lambda.Runtime.PYTHON_3_12,
                                aws_lambda.Architecture.X86_64)
    command = bundling.command(tmp_path)
    joined = " ".join(command)
    assert command[:3] == [sys.executable, "-m", "pip"]
    assert "--only-binary=:all:" in command
    assert "--python-version 3.12" in joined and "--platform manylinux2014_x86_64" in joined
    assert f"--target {tmp_path / 'python'}" in joined
    assert f"--requirement {reqs.LAYER_REQUIREMENTS}" in joined


def test_layer_bundling_reports_failure_so_cdk_can_fall_back_to_docker(tmp_path: Path) -> None:
    from aws_cdk import aws_lambda

    missing = tmp_path / "no-such-requirements.txt"
    bundling = PipLayerBundling(missing, aws_lambda.Runtime.PYTHON_3_12, aws_lambda.Architecture.X86_64)
    assert bundling.try_bundle(str(tmp_path / "out")) is False
    assert not (tmp_path / "out" / "python").exists()


def test_requirements_generator_refuses_an_installed_version_outside_pyproject() -> None:
    installed = metadata.version("hnswlib")
    with pytest.raises(SystemExit, match="hnswlib"):
        reqs.pin(Requirement(f"hnswlib!={installed}"))
    assert reqs.pin(Requirement(f"hnswlib=={installed}")) == f"hnswlib=={installed}"
