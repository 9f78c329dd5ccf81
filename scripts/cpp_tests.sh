#!/usr/bin/env bash
# Build and run the C++ kernel tests under ctest: plain (-O3) and with ASan + UBSan.
#   bash scripts/cpp_tests.sh            # both
#   bash scripts/cpp_tests.sh sanitize   # only the sanitized build
# Needs cmake, g++ and OpenMP only (the kernel tests do not link libtorch).
set -euo pipefail
cd "$(dirname "$0")/.."
modes=("${@:-plain sanitize}")
for mode in ${modes[@]}; do
  dir=build/cpp-tests-$mode
  flag=OFF; [ "$mode" = sanitize ] && flag=ON
  cmake -S . -B "$dir" -DDSSM_WITH_TORCH=OFF -DDSSM_SANITIZE=$flag -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$dir" -j2 >/dev/null
  echo "== C++ kernel tests ($mode) =="
  # leak checks stay on; halt on the first sanitizer report
  ASAN_OPTIONS=abort_on_error=0:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --test-dir "$dir" --output-on-failure
done
