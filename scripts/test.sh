#!/usr/bin/env bash
# The whole test suite: unit, integration (real ONNX, moto, real HTTP on loopback), CDK template and
# cdk-nag checks, and browser tests in headless Chromium. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pytest "$@"
