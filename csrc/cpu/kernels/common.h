// Shared by the kernel headers: thread-team sizing and the vector width. No torch include.
#pragma once

#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

// Every kernel header wraps its code in DSSM_WIDE_VECTORS_BEGIN / _END: where the target has AVX-512,
// GCC's auto-vectorised loops use 512-bit vectors whatever the build flags say. GCC otherwise prefers
// 256-bit vectors on Intel targets (-march=cooperlake, icelake-server, ...: half the lanes per FMA)
// unless built with -mprefer-vector-width=512, as setup.py and CMakeLists.txt do; a build by other
// means (another build system, a flag dropped) would fall back to half width silently. The vector-
// extension types of simd.h are 512-bit under AVX-512 regardless. AVX2-only targets are untouched.
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#define DSSM_WIDE_VECTORS_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"prefer-vector-width=512\")")
#define DSSM_WIDE_VECTORS_END _Pragma("GCC pop_options")
#else
#define DSSM_WIDE_VECTORS_BEGIN
#define DSSM_WIDE_VECTORS_END
#endif

// Kernel headers whose recurrences want fused multiply-adds wrap their code (outside the wide-vector
// pair) in DSSM_FP_CONTRACT_BEGIN / _END: -std=c++17 (ISO mode) turns GCC's fp contraction off.
#if defined(__GNUC__) && !defined(__clang__)
#define DSSM_FP_CONTRACT_BEGIN _Pragma("GCC push_options") _Pragma("GCC optimize(\"fp-contract=fast\")")
#define DSSM_FP_CONTRACT_END _Pragma("GCC pop_options")
#else
#define DSSM_FP_CONTRACT_BEGIN
#define DSSM_FP_CONTRACT_END
#endif

namespace dssm {
namespace kernels {
namespace common {

// Lanes of one 512-bit register of T.
template <typename T>
constexpr int lanes() {
  return 64 / static_cast<int>(sizeof(T));
}

// Threads for a parallel region over `items` independent work items: `requested` (<= 0: the OpenMP
// default), at most one per item.
inline int team_size(int requested, int64_t items) {
#ifdef _OPENMP
  int n = requested > 0 ? requested : omp_get_max_threads();
#else
  int n = 1;
  (void)requested;
#endif
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n, items)));
}

}  // namespace common
}  // namespace kernels
}  // namespace dssm
