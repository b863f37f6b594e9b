#!/usr/bin/env bash
# The main job, from a fresh clone: set up, build a model bundle, load a catalog, print a search,
# then start the local web stack (pass --no-serve to stop after the search).
#
#   model:   the real openai/clip-vit-base-patch32 checkpoint when the Hugging Face hub is reachable;
#            offline, a tiny random CLIP built locally (results are then not meaningful: it says so).
#   catalog: $MOODBOARD_DEMO_DATASET, else ../shared/data/clothing-dataset when present,
#            else a generated demo catalog.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

MODEL=artifacts/model
INDEX=artifacts/index
if [ ! -f "$MODEL/manifest.json" ]; then
  if ! moodboard export-model --out "$MODEL"; then
    echo "demo: the real checkpoint could not be exported (no hub access?); building the tiny offline model instead."
    echo "demo: results from an untrained model are NOT meaningful; run on a machine with internet for real ones."
    moodboard export-model --tiny --out "$MODEL"
  fi
fi

DATASET=${MOODBOARD_DEMO_DATASET:-../shared/data/clothing-dataset}
if [ -f "$DATASET/images.csv" ]; then
  CATALOG=$DATASET
  CATEGORY=Dress
else
  echo "demo: no clothing dataset at $DATASET (github.com/alexeygrigorev/clothing-dataset); generating a demo catalog"
  CATALOG=$(python -m moodboard.demo_catalog artifacts/demo-catalog)
  CATEGORY=dress
fi

moodboard load "$CATALOG" --model "$MODEL" --out "$INDEX"
echo
echo "demo: moodboard search --text 'a flowing summer dress' --category $CATEGORY -k 5"
moodboard search --index "$INDEX" --text "a flowing summer dress" --category "$CATEGORY" -k 5

if [ "${1:-}" != "--no-serve" ]; then
  exec moodboard serve --model "$MODEL" --index "$INDEX" "$@"
fi
