// Standalone test of kernels/diag_scan.h: fwd and bwd, float and double, at odd sizes (N across the
// mode block, L = 0 included), dA (N,) and (B, N), each optional input and output present and absent,
// against naive double-precision loops (relative RMS error). Inputs are drawn in double and stored
// as T; the naive loops read them back from the T arrays, so the error measured is the kernel's own.
//   g++ -std=c++17 -O3 -march=native -fopenmp -Icsrc/cpu csrc/tests/test_diag_scan.cpp -o /tmp/t && /tmp/t
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "test_util.h"
#include "kernels/diag_scan.h"

namespace {

using cd = std::complex<double>;
namespace K = dssm::kernels::diag_scan;

using namespace dssm_test;  // Rng, rel_rms, Tally

Tally tally;
double worst[2] = {0, 0};

// Measured worst: float 5e-7 (states over 1000 steps with |dA| up to 0.999), double 1e-15.
template <class T>
double tolerance() { return sizeof(T) == 4 ? 5e-6 : 1e-13; }

template <class T>
void check(const char* what, const std::vector<T>& got, const std::vector<double>& want, const char* tag) {
  const double err = got.size() == want.size() ? rel_rms(widen(got), want) : INFINITY;
  double& w = worst[sizeof(T) == 4 ? 0 : 1];
  w = std::max(w, err);
  if (!tally.count(err <= tolerance<T>())) {
    std::printf("FAIL %s %s: rel_rms=%.3e tol=%.0e\n", what, tag, err, tolerance<T>());
  }
}

cd at(const std::vector<double>& v, int64_t i) { return cd(v[2 * i], v[2 * i + 1]); }
void put(std::vector<double>& v, int64_t i, cd z) { v[2 * i] = z.real(); v[2 * i + 1] = z.imag(); }

// n complex values drawn as T (interleaved); empty when !present.
template <class T>
std::vector<T> draw(Rng& rng, int64_t n, bool present, bool stable = false) {
  std::vector<T> out;
  if (!present) return out;
  for (int64_t i = 0; i < n; ++i) {
    if (stable) {  // |dA| in (0.90, 0.999), any phase
      const double mag = std::exp(-0.1 * rng.uniform() - 1e-3), ang = 6.283185307179586 * rng.uniform();
      out.push_back(T(mag * std::cos(ang)));
      out.push_back(T(mag * std::sin(ang)));
    } else {
      const double re = rng.normal();
      out.push_back(T(re));
      out.push_back(T(rng.normal()));
    }
  }
  return out;
}

template <class T>
const T* ptr(const std::vector<T>& v) { return v.empty() ? nullptr : v.data(); }

struct Ref {
  std::vector<double> xs, last, gv, gdA, gstate;  // gdA per row (B, N)
};

// The recurrence and its adjoint, written out per (b, n) in double.
Ref naive(const std::vector<double>& v, const std::vector<double>& dA, int64_t dA_stride,
          const std::vector<double>& state, const std::vector<double>& gxs, const std::vector<double>& glast,
          int64_t B, int64_t L, int64_t N) {
  Ref o;
  o.xs.assign(B * L * N * 2, 0);
  o.gv.assign(B * L * N * 2, 0);
  o.last.assign(B * N * 2, 0);
  o.gdA.assign(B * N * 2, 0);
  o.gstate.assign(B * N * 2, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n) {
      const cd a = at(dA, b * dA_stride + n);
      const cd x0 = state.empty() ? cd(0) : at(state, b * N + n);
      cd x = x0;
      for (int64_t t = 0; t < L; ++t) {
        x = a * x + at(v, (b * L + t) * N + n);
        put(o.xs, (b * L + t) * N + n, x);
      }
      put(o.last, b * N + n, x);
      cd mu = glast.empty() ? cd(0) : at(glast, b * N + n), s = 0;
      for (int64_t t = L - 1; t >= 0; --t) {
        const cd lam = (gxs.empty() ? cd(0) : at(gxs, (b * L + t) * N + n)) + mu;
        put(o.gv, (b * L + t) * N + n, lam);
        s += lam * std::conj(t > 0 ? at(o.xs, (b * L + t - 1) * N + n) : x0);
        mu = std::conj(a) * lam;
      }
      put(o.gdA, b * N + n, s);
      put(o.gstate, b * N + n, mu);
    }
  return o;
}

template <class T>
void test_case(int64_t B, int64_t L, int64_t N, bool batched_dA, bool has_state, bool has_gxs, bool has_glast,
               int threads, uint64_t seed) {
  Rng rng(seed);
  const int64_t dA_stride = batched_dA ? N : 0;
  const auto v = draw<T>(rng, B * L * N, true), dA = draw<T>(rng, (batched_dA ? B : 1) * N, true, true),
             state = draw<T>(rng, B * N, has_state), gxs = draw<T>(rng, B * L * N, has_gxs),
             glast = draw<T>(rng, B * N, has_glast);
  const Ref ref = naive(widen(v), widen(dA), dA_stride, widen(state), widen(gxs), widen(glast), B, L, N);
  char tag[160];
  std::snprintf(tag, sizeof tag, "[%s B=%lld L=%lld N=%lld dA=%s state=%d g_xs=%d g_last=%d threads=%d]",
                sizeof(T) == 4 ? "float" : "double", (long long)B, (long long)L, (long long)N,
                batched_dA ? "(B,N)" : "(N,)", int(has_state), int(has_gxs), int(has_glast), threads);
  const T nan = T(NAN);  // an element a kernel fails to write fails the check
  std::vector<T> xs(B * L * N * 2, nan), last(B * N * 2, nan);
  K::fwd<T>(v.data(), dA.data(), dA_stride, ptr(state), xs.data(), last.data(), B, L, N, threads);
  check("fwd xs", xs, ref.xs, tag);
  check("fwd last", last, ref.last, tag);
  // every output, then each optional output alone (absent ones must not be needed)
  for (int want = 0; want < 3; ++want) {
    const bool need_gv = want != 2, need_gdA = want != 1;
    std::vector<T> gv(need_gv ? B * L * N * 2 : 0, nan), gdA(need_gdA ? B * N * 2 : 0, nan), gst(B * N * 2, nan);
    K::bwd<T>(dA.data(), dA_stride, ptr(state), xs.data(), ptr(gxs), ptr(glast), need_gv ? gv.data() : nullptr,
              need_gdA ? gdA.data() : nullptr, gst.data(), B, L, N, threads);
    if (need_gv) check("bwd grad_v", gv, ref.gv, tag);
    if (need_gdA) check("bwd grad_dA rows", gdA, ref.gdA, tag);
    check("bwd grad_state", gst, ref.gstate, tag);
  }
}

template <class T>
void run_all() {
  const int64_t Ns[] = {1, 3, 33, 64, 65, 130};  // within, at and across the 64-mode block
  const int64_t Ls[] = {0, 1, 7, 129, 1000};
  const int64_t Bs[] = {1, 3};
  uint64_t seed = 1;
  int i = 0;
  for (int64_t N : Ns)
    for (int64_t L : Ls)
      for (int64_t B : Bs) {
        test_case<T>(B, L, N, i % 2 == 0, (i / 2) % 2 == 0, (i / 4) % 2 == 0, (i / 3) % 2 == 0, 1 + i % 2, seed++);
        ++i;
      }
  // all flags on and all off, more rows than threads
  test_case<T>(5, 300, 70, true, true, true, true, 0, seed++);
  test_case<T>(5, 300, 70, false, false, false, false, 0, seed++);
}

}  // namespace

int main() {
  run_all<float>();
  run_all<double>();
  std::printf("test_diag_scan: %d checks of fwd/bwd (float, double; N in {1,3,33,64,65,70,130}, "
              "L in {0,1,7,129,300,1000}, B in {1,3,5}) against naive double loops\n", tally.checks);
  std::printf("  worst relative RMS error: float %.3e (tolerance %.0e), double %.3e (tolerance %.0e)\n", worst[0],
              tolerance<float>(), worst[1], tolerance<double>());
  if (tally.failures != 0) {
    std::printf("test_diag_scan: %d FAILED\n", tally.failures);
    return 1;
  }
  std::printf("test_diag_scan: all passed\n");
  return 0;
}
