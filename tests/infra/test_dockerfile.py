"""The container image recipe and the runtime requirement sets: what ships to Lambda, and nothing else."""

from __future__ import annotations

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


def test_layer_holds_everything_the_evaluations_app_imports() -> None:
    probe = (
        "import sys, json, importlib.metadata as md\n"
        "import evaluations.app\n"
        "dists = md.packages_distributions()\n"
        "tops = {m.split('.')[0] for m in list(sys.modules)}\n"
        "print(json.dumps(sorted({d for t in tops for d in dists.get(t, [])})))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "functions")}
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    imported = {canonicalize_name(d) for d in json.loads(out.strip().splitlines()[-1])}
    provided = dependency_closure(reqs.read_pins(reqs.LAYER_REQUIREMENTS)) | LAMBDA_RUNTIME_PROVIDES
    missing = imported - provided - OPTIONAL_IMPORTS - {"moodboard"}
    assert missing == set()
    assert imported.isdisjoint({"numpy", "onnxruntime", "hnswlib", "pillow"})


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
