// Shared by the C++ kernel tests: a reproducible random source, the relative RMS error and the tally of
// checks run and failed.
#pragma once

#include <cmath>
#include <complex>
#include <cstdint>
#include <cstdio>
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

// A T array as doubles (exact: for comparing a kernel's output with a double reference).
template <typename T>
std::vector<double> widen(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Complex values rounded to T (t, interleaved (re, im), for the kernel) and the same values as doubles
// (d, for the naive loops). finish() reads d back from the stored t once it is complete: GCC 12's SLP
// vectorizer at -O2/-O3 was seen to drop the rounding when a value converted to float is also used
// directly as a double.
template <typename T>
struct Rounded {
  std::vector<T> t;
  std::vector<std::complex<double>> d;
  void push(double re, double im) {
    t.push_back(static_cast<T>(re));
    t.push_back(static_cast<T>(im));
  }
  void finish() {
    d.clear();
    for (size_t i = 0; i < t.size(); i += 2) d.emplace_back(t[i], t[i + 1]);
  }
};

// The checks a test file has run and how many of them failed.
struct Tally {
  int checks = 0;
  int failures = 0;
  bool count(bool ok) {  // records one check; returns ok
    ++checks;
    if (!ok) ++failures;
    return ok;
  }
  int exit_code() const { return failures ? 1 : 0; }
};

// Records a check that an op's relative RMS error at sizes (N, L) is within tol (NaN fails) and prints
// its line: always when verbose, otherwise only when it fails.
inline void report_rms(Tally& tally, const char* what, const char* type, int64_t N, int64_t L, double err, double tol,
                       bool verbose = true) {
  const bool ok = tally.count(err <= tol);
  if (verbose || !ok)
    std::printf("%-4s %-22s %-6s N=%-3lld L=%-5lld rel_rms=%.2e tol=%.0e\n", ok ? "ok" : "FAIL", what, type,
                static_cast<long long>(N), static_cast<long long>(L), err, tol);
}

}  // namespace dssm_test
