#!/usr/bin/env bash
# CPU smoke run of the whole pipeline on miniature data:
#   generate GTAV/SYNTHIA/Cityscapes-format data sets, train the tiny
#   configuration (2 selection rounds), evaluate, write OUT/metrics.json.
# Usage: examples/deeplab_ada/smoke.sh OUT   (PYTHON=... to pick the interpreter,
#        CONFIG=... for another config file, default configs/smoke_tiny.yaml)
#
# Safe to run again on the same OUT: the data are generated once (into
# OUT/data.partial, renamed to OUT/data when complete), and train.py runs with
# --resume auto, so an interrupted run continues where it stopped and a
# finished one is evaluated again from its checkpoint (same masks, same
# metrics). To start from scratch, delete OUT (or write to a new one).
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 OUT" >&2
    exit 2
fi
OUT=$1
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python}
CONFIG=${CONFIG:-$HERE/configs/smoke_tiny.yaml}
# One thread: on a small, busy machine several threads spend more time waiting than working.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
if [ ! -d "$OUT/data" ]; then
    rm -rf "$OUT/data.partial"
    "$PYTHON" "$HERE/make_synthetic_data.py" "$OUT/data.partial" --train 24 --val 8 --seed 0
    mv "$OUT/data.partial" "$OUT/data"
fi
"$PYTHON" "$HERE/train.py" --config "$CONFIG" \
    --source-root "$OUT/data/gtav" --target-root "$OUT/data/cityscapes" \
    --output-dir "$OUT" --resume auto --workers 0 --no-progress --vis-images 2
"$PYTHON" - "$OUT/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
rounds = ", ".join(f"round {r['round']}: {r['queried']} px" for r in m["queried_pixels_per_round"])
print(f"smoke: mIoU {m['mIoU']:.2f}  queried {rounds}  -> {sys.argv[1]}")
PY
