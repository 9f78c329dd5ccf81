#!/usr/bin/env bash
# Set up (fast when done), time full against reduced S4D models on the CPU (conv, scan, step), save
# the JSON under bench/results/ named by machine, and print the speedup table.
# One thread by default (OMP_NUM_THREADS overrides): on the shared 2-core CI VM two threads stall in
# ~8 ms scheduler waits (layer step: median 0.035 ms but p90 8.0 ms with 2 threads, 0.023 ms with 1),
# which buries the differences being measured; a one-thread figure is also the small-device case.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
threads="${OMP_NUM_THREADS:-1}"
name="${DSSM_BENCH_NAME:-reduction-cpu-$(uname -m)-${threads}thread}"
out="bench/results/$name.json"
OMP_NUM_THREADS="$threads" .venv/bin/python -m pytest bench/test_bench_reduction.py -q \
  --benchmark-json="$out" --benchmark-columns=median,iqr,rounds "$@"
.venv/bin/python bench/test_bench_reduction.py "$out"
