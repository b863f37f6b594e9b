"""Builds the evaluations Lambda's dependency layer with pip on the synth machine (no Docker).

pip downloads manylinux wheels for the Lambda runtime's Python and CPU, so the layer matches the
Lambda platform whatever the synth machine runs. Docker bundling with the runtime's SAM image stays
the fallback when pip is not usable here.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

logger = logging.getLogger(__name__)

PIP_TIMEOUT_S = 600


def pip_layer_command(requirements: Path, target: Path, *, python_version: str, platform: str) -> list[str]:
    """The pip command that installs `requirements` as binary wheels for the Lambda platform into
    `target`/python (the folder a Python layer is unpacked under /opt)."""
    return [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--requirement", str(requirements),
        "--target", str(target / "python"),
        "--only-binary=:all:", "--implementation", "cp",
        "--python-version", python_version,
        "--platform", platform,
    ]


@jsii.implements(ILocalBundling)
class PipLayerBundling:
    """ILocalBundling: `pip install --target` of a requirements file, for one Lambda runtime."""

    def __init__(self, requirements: Path, runtime: lambda_.Runtime, architecture: lambda_.Architecture) -> None:
        self.requirements = requirements
        self.python_version = runtime.name.removeprefix("python")
        machine = "aarch64" if architecture.name == lambda_.Architecture.ARM_64.name else "x86_64"
        self.platform = f"manylinux2014_{machine}"

    def command(self, output_dir: Path) -> list[str]:
        return pip_layer_command(self.requirements, output_dir, python_version=self.python_version,
                                 platform=self.platform)

    def try_bundle(self, output_dir: str, *_options: Any, **_kw: Any) -> bool:
        """Run pip; False (so CDK falls back to Docker) when pip fails here. jsii passes the
        BundlingOptions positionally; pip needs none of them."""
        try:
            subprocess.run(self.command(Path(output_dir)), check=True, timeout=PIP_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as exc:
            logger.warning("local pip bundling failed (%s); falling back to Docker bundling", exc)
            shutil.rmtree(Path(output_dir) / "python", ignore_errors=True)
            return False
        return True


def layer_bundling(requirements: Path, runtime: lambda_.Runtime,
                   architecture: lambda_.Architecture) -> BundlingOptions:
    """BundlingOptions for a Python dependency layer from a requirements file in the asset folder."""
    image: DockerImage = runtime.bundling_image
    return BundlingOptions(
        image=image,
        local=PipLayerBundling(requirements, runtime, architecture),
        command=["bash", "-c",
                 f"pip install --no-compile -r {requirements.name} -t /asset-output/python"],
    )
