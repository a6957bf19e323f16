#!/usr/bin/env bash
# The GPU check in one command, on a machine with an NVIDIA GPU (a short loan: at most
# about 4 minutes, one result file):
#
#   OUT=/some/dir bash benchmarks/gpu.sh        # writes $OUT/gpu_check.json
#
# Runs from the repository root without installing the package (PYTHONPATH=src), with
# the software the GPU machines have (torch >= 2.11, triton >= 3.6, numba, numpy;
# no faiss, nothing installed). benchmarks/gpu_check.py runs every step under its own
# time budget (220 s in all) and prints its figures as it goes; the outer timeout
# only guards against a hung device.
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec timeout 240 "$PY" benchmarks/gpu_check.py --budget-s 220 --json "$OUT/gpu_check.json"
