#!/usr/bin/env bash
# CPU smoke run of the whole pipeline on miniature data:
#   generate GTAV/SYNTHIA/Cityscapes-format data sets, train the tiny
#   configuration (2 selection rounds), evaluate, write OUT/metrics.json.
# Usage: examples/deeplab_ada/smoke.sh OUT   (PYTHON=... to pick the interpreter)
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 OUT" >&2
    exit 2
fi
OUT=$1
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python}
# One thread: on a small, busy machine several threads spend more time waiting than working.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
"$PYTHON" "$HERE/make_synthetic_data.py" "$OUT/data" --train 24 --val 8 --seed 0
"$PYTHON" "$HERE/train.py" --config "$HERE/configs/smoke_tiny.yaml" \
    --source-root "$OUT/data/gtav" --target-root "$OUT/data/cityscapes" \
    --output-dir "$OUT" --workers 0 --no-progress --vis-images 2
"$PYTHON" - "$OUT/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
rounds = ", ".join(f"round {r['round']}: {r['queried']} px" for r in m["queried_pixels_per_round"])
print(f"smoke: mIoU {m['mIoU']:.2f}  queried {rounds}  -> {sys.argv[1]}")
PY
