// Shared by the C++ kernel tests: a reproducible random source and the relative RMS error.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace dssm_test {

struct Rng {  // xorshift64*: reproducible everywhere, no <random> distribution differences
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 2654435761u + 1) {}
  double uniform() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return static_cast<double>((s * 2685821657736338717ull) >> 11) * 0x1.0p-53;
  }
  double normal() {
    const double u = uniform() + 1e-300, v = uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
};

// Relative RMS error of flattened arrays; a NaN anywhere fails (returns infinity).
inline double rel_rms(const std::vector<double>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  if (!(num == num)) return INFINITY;
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

}  // namespace dssm_test
