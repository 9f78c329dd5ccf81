// Shared by the kernel headers: thread-team sizing and the vector width. No torch include.
#pragma once

#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
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
