#!/usr/bin/env bash
# Throughput of `moodboard train --method finetune` on a ViT-B/32-shaped CLIP (random weights: no hub
# here) on a CUDA GPU: images per second and peak GPU memory, from the training record.
#
#   bash benchmarks/train/gpu_finetune.sh [CLOTHING_DATASET] [PRODUCTS]
#
# Builds a slice of the clothing dataset (PRODUCTS images, default 1500: about 45 MB), trains two
# epochs at batch 128 with bfloat16 autocast, prints the throughput and writes $OUT (or /tmp)/gpu-train.json.
# Written for a GPU session; not yet run on one (none was available when it was written).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATASET=${1:-../shared/data/clothing-dataset}
PRODUCTS=${2:-1500}
OUT=${OUT:-/tmp}
SLICE=$(mktemp -d)
python - "$DATASET" "$SLICE" "$PRODUCTS" <<'PY'
import csv, shutil, sys
from pathlib import Path
src, dst, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
rows = list(csv.DictReader((src / "images.csv").open()))[:n]
(dst / "images").mkdir(parents=True)
with (dst / "images.csv").open("w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
for row in rows:
    shutil.copy(src / "images" / f"{row['image']}.jpg", dst / "images")
PY
python -c "import torch; print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
moodboard train "$SLICE" --base random-vit-b-32 --method finetune --out "$SLICE/model" --epochs 2 --patience 2 \
  --batch-size 128 --ignore-category "Not sure" --ignore-category Skip --ignore-category Other --json > "$OUT/gpu-train.json"
python -c "import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps(d['throughput']), d['seconds_training'], 's')" "$OUT/gpu-train.json"
