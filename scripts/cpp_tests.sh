#!/usr/bin/env bash
# Build and run the C++ kernel tests under ctest: plain (-O3) and with ASan + UBSan.
#   bash scripts/cpp_tests.sh            # both
#   bash scripts/cpp_tests.sh sanitize   # only the sanitized build
#   bash scripts/cpp_tests.sh arch       # portable builds: -march=x86-64-v3 (AVX2 only) and
#                                        # -march=cooperlake (Intel AVX-512), each run where this CPU can,
#                                        # and the cooperlake kernels checked for 512-bit FMAs
# Needs cmake, g++ and OpenMP only (the kernel tests do not link libtorch).
set -euo pipefail
cd "$(dirname "$0")/.."
modes=("${@:-plain sanitize}")
has_flags() {  # has_flags FLAG...: this CPU has every flag of /proc/cpuinfo named
  for f in "$@"; do grep -qw "$f" /proc/cpuinfo || return 1; done
}
for mode in ${modes[@]}; do
  if [ "$mode" = arch ]; then
    for arch in x86-64-v3 cooperlake; do
      dir=build/cpp-tests-$arch
      # no -mprefer-vector-width here: the kernels must pick 512 bits themselves (kernels/common.h)
      cmake -S . -B "$dir" -DDSSM_WITH_TORCH=OFF -DDSSM_CPU_ARCH=$arch -DDSSM_PREFER_WIDTH=OFF \
        -DCMAKE_BUILD_TYPE=Release >/dev/null
      cmake --build "$dir" -j2 >/dev/null
      needs="avx2 fma"; [ "$arch" = cooperlake ] && needs="avx512f avx512bw avx512vl avx512dq avx512_bf16"
      if has_flags $needs; then
        echo "== C++ kernel tests (-march=$arch) =="
        ctest --test-dir "$dir" --output-on-failure
      else
        echo "== C++ kernel tests (-march=$arch): built; this CPU lacks one of $needs, so not run =="
      fi
      if [ "$arch" = cooperlake ]; then
        for t in test_ssm test_vandermonde test_decode; do
          n=$(objdump -d "$dir/$t" | grep -cE 'vfn?m(add|sub)[0-9a-z]*ps.*zmm' || true)
          echo "$t (-march=cooperlake): $n float FMAs on 512-bit registers"
          [ "$n" -gt 0 ] || { echo "FAIL: no 512-bit float FMAs in $t"; exit 1; }
        done
      fi
    done
    continue
  fi
  dir=build/cpp-tests-$mode
  flag=OFF; [ "$mode" = sanitize ] && flag=ON
  cmake -S . -B "$dir" -DDSSM_WITH_TORCH=OFF -DDSSM_SANITIZE=$flag -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$dir" -j2 >/dev/null
  echo "== C++ kernel tests ($mode) =="
  # leak checks stay on; halt on the first sanitizer report
  ASAN_OPTIONS=abort_on_error=0:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --test-dir "$dir" --output-on-failure
done
