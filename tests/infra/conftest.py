"""Synthesizes the moodboard stack in-process, once per configuration for the whole session.

Synthesis starts node (jsii) and takes tens of seconds here, so the two configurations the tests
need are built once and shared: `default_synth` (what a first `cdk deploy` builds: no custom domain,
model baked into the image, stage dev) and `domain_synth` (custom domain with an ACM certificate,
model read from S3, stage prod, load settings other than the defaults). Both run cdk-nag's
AwsSolutions checks. Asset bundling (pip for the evaluations layer) is skipped: it needs PyPI and is
covered by tests of its command.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT, REGION = "123456789012", "eu-west-1"
DOMAIN = "moodboard.example.com"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
MODEL_PREFIX = "models/0123456789abcdef/"


@dataclass
class Synth:
    """One synthesized stack: its template, annotations, construct and cloud assembly folder."""

    stack: Any
    template: Any  # aws_cdk.assertions.Template
    annotations: Any  # aws_cdk.assertions.Annotations
    outdir: Path

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template.to_json()["Resources"]

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r["Type"] == kind}

    def logical_id(self, construct: Any) -> str:
        return self.stack.resolve(construct.node.default_child.logical_id)

    def assets(self) -> dict[str, Any]:
        return json.loads((self.outdir / f"{self.stack.artifact_id}.assets.json").read_text())


def cdk_json_context() -> dict[str, Any]:
    """The context defaults from infra_cdk/cdk.json, so tests synthesize what `cdk synth` does."""
    return json.loads((ROOT / "infra_cdk" / "cdk.json").read_text())["context"]


def synthesize(outdir: Path, **context: Any) -> Synth:
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    import aws_cdk as cdk
    from aws_cdk.assertions import Annotations, Template
    from cdk_nag import AwsSolutionsChecks

    from infra_cdk.config import StackConfig
    from infra_cdk.stack import MoodboardStack

    app = cdk.App(outdir=str(outdir), context={**cdk_json_context(), "aws:cdk:bundling-stacks": [], **context})
    stack = MoodboardStack(app, "Moodboard-test", config=StackConfig.from_context(app.node),
                           env=cdk.Environment(account=ACCOUNT, region=REGION))
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    template = Template.from_stack(stack)
    app.synth()
    return Synth(stack=stack, template=template, annotations=Annotations.from_stack(stack), outdir=outdir)


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-default"))


@pytest.fixture(scope="session")
def domain_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk-domain"), stage="prod", domain_name=DOMAIN,
                      certificate_arn=CERTIFICATE, model_s3_prefix=MODEL_PREFIX, precision="int8",
                      load_max_concurrency=40, load_shards_per_worker=2, load_tolerated_failure_percent=0)


@pytest.fixture(scope="session", params=["default", "domain"])
def any_synth(request: pytest.FixtureRequest) -> Synth:
    """Each configuration in turn, for properties both must have."""
    return request.getfixturevalue(f"{request.param}_synth")
