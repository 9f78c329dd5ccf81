#!/usr/bin/env bash
# The GPU check (issue 17): parity of the compiled Triton kernels at test and production sizes, op and
# model benchmarks, one JSON with the device named, and a summary table. Needs an NVIDIA GPU with torch
# and Triton installed, nothing else of ours: the package runs from this checkout through PYTHONPATH
# (no install, no C++ build, no network). Finishes within 8 minutes (budgets in bench/gpu/check.py).
#
#   bash scripts/gpu_check.sh [--out DIR]      # on the GPU machine; DIR defaults to $OUT, else ./gpu-check-out
#   bash scripts/gpu_check.sh --dry [--out DIR]   # CPU, Triton interpreted, tiny sizes (what CI runs)
#
# Also DSSM_GPU_CHECK_DRY=1 for --dry, PYTHON=... for the interpreter (default: python3).
# See bench/gpu/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1   # keep the copied working tree clean
if [[ " $* " == *" --dry "* || "${DSSM_GPU_CHECK_DRY:-0}" == "1" ]]; then
  export TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES=""
fi
# The orchestrator keeps to 450 s itself; this is the backstop should it hang: SIGTERM (it still writes
# the JSON and the table), SIGKILL 15 s later.
exec timeout --kill-after=15 470 "$PY" -m bench.gpu.check "$@"
