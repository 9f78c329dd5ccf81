// Standalone test of kernels/cauchy.h: cauchy_rows (P = 1, 2) and cauchy_modes (each output alone
// and both), float and double, at odd sizes, against naive double-precision loops (relative RMS
// error); plus S4's evaluation points (z_0 = 0, |z| up to ~5e6) where the answer is finite.
//   g++ -std=c++17 -O3 -march=native -fopenmp -Icsrc/cpu csrc/tests/test_cauchy.cpp -o /tmp/t && /tmp/t
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <vector>

#include "test_util.h"
#include "kernels/cauchy.h"

namespace {

using cd = std::complex<double>;
namespace K = dssm::kernels::cauchy;

using namespace dssm_test;  // Rng, rel_rms, report_rms, Tally

Tally tally;

std::vector<double> flat(const std::vector<cd>& v) {
  std::vector<double> out;
  for (const cd& c : v) out.insert(out.end(), {c.real(), c.imag()});
  return out;
}

std::vector<cd> naive_rows(const std::vector<cd>& v, const std::vector<cd>& z, const std::vector<cd>& w, int64_t R,
                           int64_t N, int64_t L, int P) {
  std::vector<cd> out(R * L);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < L; ++j) {
      cd acc = 0;
      for (int64_t n = 0; n < N; ++n) {
        const cd vn = v[r * N + n], wn = w[r * N + n];
        // (1/a)^P rather than 1/a^P: a^2 would overflow for a far pole where (1/a)^2 does not
        acc += vn * std::pow(cd(1) / (z[j] - wn), P) + std::conj(vn) * std::pow(cd(1) / (z[j] - std::conj(wn)), P);
      }
      out[r * L + j] = acc;
    }
  return out;
}

void naive_modes(const std::vector<cd>& g, const std::vector<cd>& v, const std::vector<cd>& z,
                 const std::vector<cd>& w, int64_t R, int64_t N, int64_t L, std::vector<cd>& gv,
                 std::vector<cd>& gw) {
  gv.assign(R * N, 0);
  gw.assign(R * N, 0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t n = 0; n < N; ++n) {
      const cd wn = w[r * N + n];
      cd sv = 0, sw = 0;
      for (int64_t j = 0; j < L; ++j) {
        const cd gj = g[r * L + j], zc = std::conj(z[j]);
        sv += gj / (zc - std::conj(wn)) + std::conj(gj / (zc - wn));
        const cd ia = cd(1) / (zc - std::conj(wn)), ib = cd(1) / (z[j] - std::conj(wn));
        sw += gj * ia * ia + std::conj(gj) * ib * ib;
      }
      gv[r * N + n] = sv;
      gw[r * N + n] = std::conj(v[r * N + n]) * sw;
    }
}

template <typename T>
void check_case(const char* type, const char* label, const Rounded<T>& v, const Rounded<T>& z, const Rounded<T>& w,
                const Rounded<T>& g, int64_t R, int64_t N, int64_t L, double tol, bool verbose) {
  for (int P : {1, 2}) {
    std::vector<T> out(2 * R * L, static_cast<T>(NAN));
    K::cauchy_rows<T>(v.t.data(), z.t.data(), w.t.data(), out.data(), R, N, L, P == 2);
    char what[64];
    std::snprintf(what, sizeof what, "%srows P=%d", label, P);
    report_rms(tally, what, type, N, L, rel_rms(widen(out), flat(naive_rows(v.d, z.d, w.d, R, N, L, P))), tol, verbose);
  }
  std::vector<cd> gv_ref, gw_ref;
  naive_modes(g.d, v.d, z.d, w.d, R, N, L, gv_ref, gw_ref);
  for (int mode = 0; mode < 3; ++mode) {  // both, gv alone, gw alone
    std::vector<T> gv(2 * R * N, static_cast<T>(NAN)), gw(2 * R * N, static_cast<T>(NAN));
    K::cauchy_modes<T>(g.t.data(), v.t.data(), z.t.data(), w.t.data(), mode == 2 ? nullptr : gv.data(),
                       mode == 1 ? nullptr : gw.data(), R, N, L);
    char what[64];
    if (mode != 2) {
      std::snprintf(what, sizeof what, "%smodes gv%s", label, mode ? " alone" : "");
      report_rms(tally, what, type, N, L, rel_rms(widen(gv), flat(gv_ref)), tol, verbose);
    }
    if (mode != 1) {
      std::snprintf(what, sizeof what, "%smodes gw%s", label, mode ? " alone" : "");
      report_rms(tally, what, type, N, L, rel_rms(widen(gw), flat(gw_ref)), tol, verbose);
    }
  }
}

// The Python tests' distribution: z near the imaginary axis (Re z in [0, 0.05), Im z in [-20, 20]),
// modes with Re w in -[0.1, 1], Im w ~ N(0, 100): no pole closer than 0.1 to a point.
template <typename T>
void check_sizes(const char* type, double tol) {
  const int64_t R = 3;
  for (int64_t N : {1, 3, 33})
    for (int64_t L : {1, 7, 129, 1000}) {
      Rng rng(static_cast<uint64_t>(N * 7919 + L));
      Rounded<T> v, z, w, g;
      for (int64_t i = 0; i < R * N; ++i) {
        v.push(rng.normal(), rng.normal());
        w.push(-(0.1 + 0.9 * rng.uniform()), 10 * rng.normal());
      }
      for (int64_t j = 0; j < L; ++j) z.push(0.05 * rng.uniform(), 40 * rng.uniform() - 20);
      for (int64_t i = 0; i < R * L; ++i) g.push(rng.normal(), rng.normal());
      for (Rounded<T>* a : {&v, &z, &w, &g}) a->finish();
      check_case(type, "", v, z, w, g, R, N, L, tol, true);
    }
}

// S4's points: the bilinear transform of the first L_fft/2 + 1 roots of unity (z_0 = 0), scaled by
// 1/dt; S4D-Lin modes w = -1/2 + i pi n. At dt = 1e-3, |z| reaches ~5e6 against |w| <= 100.
template <typename T>
void check_s4(const char* type, double tol) {
  const int64_t R = 2, N = 32, Lfft = 4097, L = Lfft / 2 + 1;
  for (double dt : {1.0, 1e-3}) {
    Rng rng(77);
    Rounded<T> v, z, w, g;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t n = 0; n < N; ++n) {
        v.push(rng.normal(), rng.normal());
        w.push(-0.5, 3.141592653589793 * n);
      }
    for (int64_t j = 0; j < L; ++j) {
      const cd omega = std::exp(cd(0, -2 * 3.141592653589793 * j / Lfft));
      const cd zj = 2.0 * (1.0 - omega) / (1.0 + omega) / dt;
      z.push(zj.real(), zj.imag());
    }
    for (int64_t i = 0; i < R * L; ++i) g.push(rng.normal(), rng.normal());
    for (Rounded<T>* a : {&v, &z, &w, &g}) a->finish();
    check_case(type, dt == 1.0 ? "s4 " : "s4/dt ", v, z, w, g, R, N, L, tol, true);
  }
}

// Poles far away (|w| = 2e19 in float, 2e154 in double: |z - w|^2 overflows) and points next to a
// pole (|z - w| ~ 1e-20 / 1e-160: |z - w|^2 underflows), where the plain conj(a) / |a|^2 gives 0 or
// NaN: each row holds one such mode, so the result is that mode's term alone. Checked against the
// naive loops (std::complex division scales its operands), relative RMS error per row, with the
// gradients where they are representable (1/a^2 overflows next to a pole, so gw only for far poles,
// where 1/a^2 ~ 2.5e-39 / 2.5e-309 is subnormal: its tolerance adds 4 subnormal spacings).
template <typename T>
void check_extreme(const char* type, double far, double near, double tol) {
  Rounded<T> v, z, w;
  for (double zr : {0.0, -1.0, 2.0}) z.push(zr, 0.25 * zr);
  const int64_t L = 3;
  v.push(1.0, 0.5);
  w.push(-far, 0.0);  // far pole
  v.push(-0.75, 2.0);
  w.push(near, -near);  // next to z_0 = 0
  v.finish();
  w.finish();
  z.finish();
  for (int64_t r = 0; r < 2; ++r) {
    Rounded<T> vr, wr;
    vr.push(v.d[r].real(), v.d[r].imag());
    wr.push(w.d[r].real(), w.d[r].imag());
    vr.finish();
    wr.finish();
    const char* label = r == 0 ? "far pole" : "next to a pole";
    std::vector<T> out(2 * L, T(NAN));
    K::cauchy_rows<T>(vr.t.data(), z.t.data(), wr.t.data(), out.data(), 1, 1, L, false);
    report_rms(tally, label, type, 1, L, rel_rms(widen(out), flat(naive_rows(vr.d, z.d, wr.d, 1, 1, L, 1))), tol);
    Rounded<T> g;
    for (int64_t j = 0; j < L; ++j) g.push(std::cos(1.0 + j), std::sin(2.0 * j));
    g.finish();
    std::vector<cd> gv_ref, gw_ref;
    naive_modes(g.d, vr.d, z.d, wr.d, 1, 1, L, gv_ref, gw_ref);
    std::vector<T> gv(2, T(NAN)), gw(2, T(NAN));
    K::cauchy_modes<T>(g.t.data(), vr.t.data(), z.t.data(), wr.t.data(), gv.data(), gw.data(), 1, 1, L);
    report_rms(tally, r == 0 ? "far pole gv" : "next to a pole gv", type, 1, L, rel_rms(widen(gv), flat(gv_ref)), tol);
    if (r == 0) {  // compared at scale 2^-e (exact), e the reference's exponent: its squares would underflow
      double ref_max = 0;
      for (const cd& e : gw_ref) ref_max = std::max(ref_max, std::abs(e));
      const int e = std::ilogb(ref_max);
      const auto rescaled = [e](std::vector<double> a) {
        for (double& x : a) x = std::ldexp(x, -e);
        return a;
      };
      const double sub_tol = tol + 4 * std::numeric_limits<T>::denorm_min() / ref_max;
      report_rms(tally, "far pole gw", type, 1, L, rel_rms(rescaled(widen(gw)), rescaled(flat(gw_ref))), sub_tol);
    }
  }
}

}  // namespace

int main() {
  check_sizes<float>("float", 2e-6);
  check_sizes<double>("double", 1e-12);
  check_s4<float>("float", 2e-6);
  check_s4<double>("double", 1e-12);
  check_extreme<float>("float", 2e19, 1e-20, 1e-6);
  check_extreme<double>("double", 2e154, 1e-160, 1e-14);
  if (tally.failures) std::printf("%d of %d checks FAILED\n", tally.failures, tally.checks);
  else std::printf("all %d cauchy kernel checks passed\n", tally.checks);
  return tally.exit_code();
}
