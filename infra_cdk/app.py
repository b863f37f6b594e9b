"""CDK entry point: `cdk synth` / `cdk deploy` from infra_cdk/ (see the README Deploy section)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The repository (infra_cdk) and functions/ (the apps whose routes the API deploys, see infra_cdk.routes).
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra_cdk.config import StackConfig
from infra_cdk.stack import MoodboardStack

app = cdk.App()
config = StackConfig.from_context(app.node)
MoodboardStack(app, f"Moodboard-{config.stage}", config=config)
cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
app.synth()
