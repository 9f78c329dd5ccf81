// Standalone test of csrc/cpu/kernels/decode.h (the streaming decoder's pieces), float and double,
// against naive double-precision loops written here; relative RMS error (or the maximum, for the
// elementwise functions). Returns nonzero on failure.
#include <cmath>
#include <complex>
#include <cstdio>
#include <limits>
#include <vector>

#include "kernels/decode.h"
#include "test_util.h"

namespace {

namespace K = dssm::kernels::decode;
using cd = std::complex<double>;
int g_failures = 0;

void expect(bool ok, const char* what, double got, double bound) {
  std::printf("%s %s: %.3e (bound %.1e)\n", ok ? "ok  " : "FAIL", what, got, bound);
  if (!ok) ++g_failures;
}

// exp_f within 2 float ulps (relative 2.4e-7) on [-87, 88]; erf_f within A&S 7.1.26's 1.5e-7 plus
// float rounding; NaN stays NaN; far out exp_f is inf or tiny, erf_f +-1.
void test_exp_erf() {
  double worst_exp = 0, worst_erf = 0;
  for (int i = 0; i <= 200000; ++i) {
    const double x = -87.0 + 175.7 * i / 200000;
    const float e = K::detail::exp_f(static_cast<float>(x));
    worst_exp = std::max(worst_exp, std::fabs(e / std::exp(double(float(x))) - 1));
    const double z = -6.0 + 12.0 * i / 200000;
    worst_erf = std::max(worst_erf, std::fabs(K::detail::erf_f(float(z)) - std::erf(double(float(z)))));
  }
  expect(worst_exp <= 2.4e-7, "exp_f max relative error", worst_exp, 2.4e-7);
  expect(worst_erf <= 2.5e-7, "erf_f max absolute error", worst_erf, 2.5e-7);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const bool nan_ok = std::isnan(K::detail::exp_f(nan)) && std::isnan(K::detail::erf_f(nan));
  const bool far_ok = K::detail::exp_f(-1e30f) >= 0 && std::isinf(K::detail::exp_f(1e30f)) &&
                      std::isfinite(K::detail::exp_f(88.7f)) &&
                      K::detail::erf_f(1e30f) == 1.0f && K::detail::erf_f(-1e30f) == -1.0f;
  expect(nan_ok && far_ok, "exp_f / erf_f at NaN and far out", nan_ok && far_ok ? 0 : 1, 0);
}

template <class T>
double tol() { return sizeof(T) == 4 ? 2e-6 : 1e-13; }

// diag_scan over B streams of T tokens from a random state, against the recurrence x = dA x + dB u,
// y = 2 Re(C x) + D u run in double on the same (rounded) numbers, with the decoder's scaled state.
template <class T>
void test_diag_scan(int64_t B, int64_t T_, int64_t H, int64_t N) {
  dssm_test::Rng rng(7 + B + T_ + H + N);
  std::vector<T> u(B * T_ * H), y(B * T_ * H), ar(N * H), ai(N * H), cr(N * H), ci(N * H), D(H), st(B * 2 * N * H);
  for (auto& v : u) v = T(rng.normal());
  for (int64_t i = 0; i < N * H; ++i) {
    const double mag = 0.5 + 0.499 * rng.uniform(), ph = 6.283 * rng.uniform();
    ar[i] = T(mag * std::cos(ph));
    ai[i] = T(mag * std::sin(ph));
    cr[i] = T(rng.normal());
    ci[i] = T(rng.normal());
  }
  for (auto& v : D) v = T(rng.normal());
  for (auto& v : st) v = T(rng.normal());
  std::vector<double> want_y(y.size()), want_s(st.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t n = 0; n < N; ++n) {
        const int64_t i = n * H + h, o = b * 2 * N * H;
        cd s(st[o + i], st[o + N * H + i]);
        for (int64_t t = 0; t < T_; ++t) {
          const double ut = u[(b * T_ + t) * H + h];
          s = cd(ar[i], ai[i]) * s + ut;
          want_y[(b * T_ + t) * H + h] += (cd(cr[i], ci[i]) * s).real() + (n == 0 ? D[h] * ut : 0.0);
        }
        want_s[o + i] = s.real();
        want_s[o + N * H + i] = s.imag();
      }
  K::diag_scan<T>(u.data(), y.data(), ar.data(), ai.data(), cr.data(), ci.data(), D.data(), st.data(), B, T_, H, N, 2);
  const double ey = dssm_test::rel_rms(dssm_test::widen(y), want_y);
  const double es = dssm_test::rel_rms(dssm_test::widen(st), want_s);
  char what[128];
  std::snprintf(what, sizeof what, "diag_scan %s B=%lld T=%lld H=%lld N=%lld", sizeof(T) == 4 ? "float" : "double",
                (long long)B, (long long)T_, (long long)H, (long long)N);
  expect(std::max(ey, es) <= tol<T>() * std::sqrt(double(T_)), what, std::max(ey, es), tol<T>() * std::sqrt(double(T_)));
}

// mimo_scan: x = dA x + v per mode, the states written over v.
template <class T>
void test_mimo_scan(int64_t B, int64_t T_, int64_t N) {
  dssm_test::Rng rng(11 + N);
  std::vector<T> v(B * T_ * 2 * N), a(2 * N), st(B * 2 * N);
  for (auto& x : v) x = T(rng.normal());
  for (int64_t n = 0; n < N; ++n) {
    const double mag = 0.9 * rng.uniform(), ph = 6.283 * rng.uniform();
    a[n] = T(mag * std::cos(ph));
    a[N + n] = T(mag * std::sin(ph));
  }
  std::vector<double> want(v.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n) {
      cd s(0, 0);
      for (int64_t t = 0; t < T_; ++t) {
        T* r = v.data() + (b * T_ + t) * 2 * N;
        s = cd(a[n], a[N + n]) * s + cd(r[n], r[N + n]);
        want[(b * T_ + t) * 2 * N + n] = s.real();
        want[(b * T_ + t) * 2 * N + N + n] = s.imag();
      }
    }
  std::fill(st.begin(), st.end(), T(0));
  K::mimo_scan<T>(v.data(), a.data(), st.data(), B, T_, N, 2);
  const double e = dssm_test::rel_rms(dssm_test::widen(v), want);
  expect(e <= tol<T>() * 4, sizeof(T) == 4 ? "mimo_scan float" : "mimo_scan double", e, tol<T>() * 4);
}

// layer_norm and gelu against their formulas in double.
template <class T>
void test_norm_gelu(int64_t M, int64_t H) {
  dssm_test::Rng rng(5);
  std::vector<T> x(M * H), y(M * H), g(H), be(H);
  for (auto& v : x) v = T(3 * rng.normal() + 1);
  for (auto& v : g) v = T(rng.normal());
  for (auto& v : be) v = T(rng.normal());
  std::vector<double> want(M * H), want_gelu(M * H);
  for (int64_t m = 0; m < M; ++m) {
    double mean = 0, var = 0;
    for (int64_t h = 0; h < H; ++h) mean += x[m * H + h];
    mean /= H;
    for (int64_t h = 0; h < H; ++h) var += (x[m * H + h] - mean) * (x[m * H + h] - mean);
    var /= H;
    for (int64_t h = 0; h < H; ++h) {
      want[m * H + h] = (x[m * H + h] - mean) / std::sqrt(var + 1e-5) * g[h] + be[h];
      const double v = x[m * H + h];
      want_gelu[m * H + h] = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
    }
  }
  K::layer_norm<T>(x.data(), y.data(), g.data(), be.data(), T(1e-5), M, H, 2);
  const double en = dssm_test::rel_rms(dssm_test::widen(y), want);
  expect(en <= tol<T>(), sizeof(T) == 4 ? "layer_norm float" : "layer_norm double", en, tol<T>());
  K::gelu<T>(x.data(), M * H, 2);
  const double eg = dssm_test::rel_rms(dssm_test::widen(x), want_gelu);
  const double bound = sizeof(T) == 4 ? 3e-7 : 1e-15;   // A&S 7.1.26 for float
  expect(eg <= bound, sizeof(T) == 4 ? "gelu float" : "gelu double", eg, bound);
}

}  // namespace

int main() {
  test_exp_erf();
  for (int64_t N : {1, 2, 4, 32}) {
    test_diag_scan<float>(2, 1, 37, N);
    test_diag_scan<float>(3, 200, 130, N);
    test_diag_scan<double>(3, 200, 130, N);
  }
  test_mimo_scan<float>(3, 100, 5);
  test_mimo_scan<double>(3, 100, 33);
  test_norm_gelu<float>(5, 300);
  test_norm_gelu<double>(5, 300);
  std::printf("%s: %d failure(s)\n", g_failures ? "FAILED" : "passed", g_failures);
  return g_failures ? 1 : 0;
}
