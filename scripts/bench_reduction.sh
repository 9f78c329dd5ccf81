#!/usr/bin/env bash
# Set up (fast when done), time full against reduced S4D models on the CPU (conv, scan, step), save
# the JSON under bench/results/ named by machine, and print the speedup table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
name="${DSSM_BENCH_NAME:-reduction-cpu-$(uname -m)-$(nproc)cores}"
out="bench/results/$name.json"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}" .venv/bin/python -m pytest bench/test_bench_reduction.py -q \
  --benchmark-json="$out" --benchmark-columns=median,iqr,rounds "$@"
.venv/bin/python bench/test_bench_reduction.py "$out"
