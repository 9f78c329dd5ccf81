// What the benchmarks divide by: the machine's float32 FMA peak, measured rather than read off a data
// sheet (a VM's reported clock and the FMA units behind a vector width are not to be trusted).
//
//   fma_peak_flops(ms)   float32 FLOP/s of one thread: 12 independent vector FMA chains of the
//                        extension's vector width (more than latency x units of any x86 core), 2 FLOP
//                        per lane per FMA, timed for about `ms` milliseconds
//   clock_hz(ms)         cycles per second of one thread: a chain of dependent integer adds, one
//                        cycle each on every x86-64 core (x86-64 only; 0 elsewhere)
//   simd_lanes()         float lanes of the extension's vector type (16 with AVX-512, 8 with AVX2)
// FMA units per core = fma_peak_flops / (2 lanes clock); the machine's peak = cores x that x 2 lanes clock.
#include "aten.h"
#include "kernels/simd.h"

#include <chrono>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
#endif

namespace {

using dssm::kernels::simd::Vec;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double fma_peak_flops(double ms) {
  using V = Vec<float>::type;
  constexpr int W = Vec<float>::W;
  constexpr int kChains = 12;  // named registers: an array of them was kept on the stack
  V a, b, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11;
  for (int l = 0; l < W; ++l) {
    a[l] = 0.999999f;
    b[l] = 1e-7f;
  }
  c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = c8 = c9 = c10 = c11 = b;
  constexpr int64_t kInner = 4096;
  double best = 0;
  const auto start = std::chrono::steady_clock::now();
  while (seconds_since(start) * 1e3 < ms) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < kInner; ++i) {
      c0 = c0 * a + b; c1 = c1 * a + b; c2 = c2 * a + b; c3 = c3 * a + b;
      c4 = c4 * a + b; c5 = c5 * a + b; c6 = c6 * a + b; c7 = c7 * a + b;
      c8 = c8 * a + b; c9 = c9 * a + b; c10 = c10 * a + b; c11 = c11 * a + b;
      // registers stay registers, and the loop stays a loop
      asm volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5));
      asm volatile("" : "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
    }
    best = std::max(best, 2.0 * W * kChains * kInner / seconds_since(t0));
  }
  volatile float keep = (c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11)[0];
  (void)keep;
  return best;
}

double clock_hz(double ms) {
#if defined(__x86_64__)
  constexpr int64_t kInner = 1 << 20;
  double best = 0;
  const auto start = std::chrono::steady_clock::now();
  while (seconds_since(start) * 1e3 < ms) {
    uint64_t x = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < kInner; i += 8) {
      asm volatile(
          "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
          "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
          : "+r"(x));
    }
    best = std::max(best, double(kInner) / seconds_since(t0));
  }
  return best;
#else
  (void)ms;
  return 0;
#endif
}

int simd_lanes() { return Vec<float>::W; }

}  // namespace

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

DSSM_BIND(m) {
  using pybind11::arg;
  m.def("fma_peak_flops", &fma_peak_flops, arg("ms") = 200.0,
        "float32 FLOP/s of one thread's vector FMAs (best of repeated timings over about ms milliseconds)");
  m.def("clock_hz", &clock_hz, arg("ms") = 100.0, "cycles/s of one thread: dependent integer adds (x86-64; else 0)");
  m.def("simd_lanes", &simd_lanes, "float lanes of the extension's vector type");
}
