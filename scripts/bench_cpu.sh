#!/usr/bin/env bash
# Set up (fast when done), run the CPU benchmarks, save the JSON under bench/results/ named by machine,
# and print the tables and the plot's path.
#   bash scripts/bench_cpu.sh            the C++ kernels (bench/test_bench_cpu.py), OpenMP on every core
#   bash scripts/bench_cpu.sh decode     decoding paths, full against reduced (bench/test_bench_decode.py),
#                                        one thread (DSSM_DECODE_* narrow the grid: see that file)
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
suite=cpu
if [ "${1:-}" = decode ]; then suite=decode; shift; fi
if [ "$suite" = decode ]; then
  name="${DSSM_BENCH_NAME:-decode-$(uname -m)-$(nproc)cores}"
  threads=1
else
  name="${DSSM_BENCH_NAME:-cpu-$(uname -m)-$(nproc)cores}"
  threads="$(nproc)"
fi
out="bench/results/$name.json"
OMP_NUM_THREADS="${OMP_NUM_THREADS:-$threads}" .venv/bin/python -m pytest "bench/test_bench_$suite.py" -q \
  --benchmark-json="$out" --benchmark-columns=median,iqr,rounds "$@"
.venv/bin/python bench/summarize_cpu.py "$out"
