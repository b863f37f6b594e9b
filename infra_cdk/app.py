"""CDK entry point: `cdk synth` / `cdk deploy` from infra_cdk/ (see the README Deploy section)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra_cdk.config import StackConfig
from infra_cdk.stack import MoodboardStack

app = cdk.App()
config = StackConfig.from_context(app.node)
MoodboardStack(app, f"Moodboard-{config.stage}", config=config)
cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
app.synth()
