#!/usr/bin/env bash
# Set up (fast when done), run the CPU benchmarks of the C++ backend, save the JSON under
# bench/results/ named by machine, and print the table and the N-sweep plot's path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
name="${DSSM_BENCH_NAME:-cpu-$(uname -m)-$(nproc)cores}"
out="bench/results/$name.json"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}" .venv/bin/python -m pytest bench/test_bench_cpu.py -q \
  --benchmark-json="$out" --benchmark-columns=median,iqr,rounds "$@"
.venv/bin/python bench/summarize_cpu.py "$out"
