#!/usr/bin/env bash
# CUDA checks, tests and GPU benchmarks in one go, on a machine with an NVIDIA GPU.
#
#   OUT=/some/dir bash benchmarks/gpu.sh        # results under $OUT
#
# Runs from the repository root without installing the package (PYTHONPATH=src).
# The first step, benchmarks/gpu_check.py (at most 4 minutes), answers the main
# questions on its own (picks equal to the float64 reference, 1M x 64 x 1,000,
# select_pixels with 1 and 16 images, launches and host syncs per pick, exact
# k-NN at 1M x 64): on a short loan, stop after it.
# Writes: env.txt, gpu_check.md + .json, pytest_cuda.txt, gpu.md + gpu.json,
# select_pixels_cuda.md + .json, knn_cuda.md + .json.
# Each step has its own time limit; the script goes on when one fails and
# exits non-zero if any did. About 10 minutes in all.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
status=0

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  "$PY" -c "import torch, numba, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda'); print('numba', numba.__version__, 'numpy', numpy.__version__)"
  nproc
} > "$OUT/env.txt" 2>&1

echo "== GPU check (at most 4 minutes)"
timeout 250 "$PY" benchmarks/gpu_check.py --budget-s 220 --json "$OUT/gpu_check.json" 2>&1 \
  | tee "$OUT/gpu_check.md" || status=1

echo "== CUDA tests"
timeout 180 "$PY" -m pytest -q -rs -p no:cacheprovider -k cuda tests 2>&1 | tee "$OUT/pytest_cuda.txt" | tail -5 \
  || status=1

echo "== GPU benchmark"
timeout 200 "$PY" benchmarks/gpu.py --json "$OUT/gpu.json" 2>&1 | tee "$OUT/gpu.md" || status=1

echo "== select_pixels at Cityscapes scale on CUDA"
timeout 150 "$PY" benchmarks/select_pixels.py --devices cuda --json "$OUT/select_pixels_cuda.json" \
  2>&1 | tee "$OUT/select_pixels_cuda.md" || status=1

echo "== exact k-NN density on CUDA"
timeout 120 "$PY" benchmarks/knn.py --device cuda --n 200000 1000000 \
  --json "$OUT/knn_cuda.json" 2>&1 | tee "$OUT/knn_cuda.md" || status=1

exit $status
