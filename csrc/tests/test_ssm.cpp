// Standalone test of csrc/cpu/kernels/ssm.h: every kernel (scan_fwd, scan_bwd, step_fwd, step_bwd),
// float and double, at odd sizes, against naive double-precision loops written here. The inputs are
// drawn in double and rounded to the tested precision; the naive loops run in double on the rounded
// values, so the measured error is the kernel's own rounding. Error measure: relative RMS.
// Returns nonzero on failure.
#include <cmath>
#include <complex>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "kernels/ssm.h"

namespace {

using cd = std::complex<double>;
namespace K = dssm::kernels::ssm;

int g_failures = 0;
int g_checks = 0;

// Measured worst errors: float 1.3e-6 (states over 1000 steps with |dA| up to 0.999), double 1e-14.
template <class T>
double tolerance() { return sizeof(T) == 4 ? 5e-6 : 1e-13; }

// relative RMS of got against want (both flattened real arrays)
double rel_rms(const std::vector<double>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  if (den == 0) return std::sqrt(num / std::max<size_t>(want.size(), 1));
  return std::sqrt(num / den);
}

template <class T>
std::vector<double> widen(const std::vector<T>& v) { return std::vector<double>(v.begin(), v.end()); }

double g_worst[2] = {0, 0};
std::map<std::string, double> g_worst_by_output[2];  // keyed by "kernel output"

template <class T>
void check(const std::string& what, const std::vector<T>& got, const std::vector<double>& want,
           const std::string& output) {
  ++g_checks;
  if (got.size() != want.size()) {
    std::printf("FAIL %s: size %zu != %zu\n", what.c_str(), got.size(), want.size());
    ++g_failures;
    return;
  }
  const double err = rel_rms(widen(got), want);
  double& worst = g_worst[sizeof(T) == 4 ? 0 : 1];
  worst = std::max(worst, err);
  double& w = g_worst_by_output[sizeof(T) == 4 ? 0 : 1][output];
  w = std::max(w, err);
  if (!(err <= tolerance<T>())) {
    std::printf("FAIL %s: rel RMS %.3e > %.1e\n", what.c_str(), err, tolerance<T>());
    ++g_failures;
  }
}

// Complex arrays are interleaved (re, im) doubles.
cd at(const std::vector<double>& v, size_t i) { return cd(v[2 * i], v[2 * i + 1]); }
void put(std::vector<double>& v, size_t i, cd z) { v[2 * i] = z.real(); v[2 * i + 1] = z.imag(); }

struct Inputs {
  int64_t B, H, N, L;
  std::vector<double> u, dA, dB, C, D, state, gy, g_last;  // state/g_last: (R, N) complex; empty = absent
  bool has_D, has_state, has_glast;
};

// Draws the inputs in double and rounds them to T (so that the naive loops see the same values).
template <class T>
Inputs make_inputs(int64_t B, int64_t H, int64_t N, int64_t L, bool has_D, bool has_state, bool has_glast,
                   unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  std::uniform_real_distribution<double> ud(0.0, 1.0);
  // Round to T through a volatile: GCC 12 at -O2 was seen to drop double(float(x)) applied to
  // mag * std::cos(ang) (after folding cos and sin into sincos), leaving dA unrounded.
  auto rnd = [](double x) {
    volatile T r = T(x);
    return double(r);
  };
  Inputs in{B, H, N, L, {}, {}, {}, {}, {}, {}, {}, {}, has_D, has_state, has_glast};
  const int64_t R = B * H;
  in.u.resize(R * L);
  in.gy.resize(R * L);
  for (auto& x : in.u) x = rnd(nd(rng));
  for (auto& x : in.gy) x = rnd(nd(rng));
  in.dA.resize(H * N * 2);
  in.dB.resize(H * N * 2);
  in.C.resize(H * N * 2);
  for (int64_t i = 0; i < H * N; ++i) {
    const double mag = std::exp(-0.1 * ud(rng) - 1e-3), ang = 2.0 * ud(rng);  // |dA| in (0.90, 0.999)
    put(in.dA, i, cd(rnd(mag * std::cos(ang)), rnd(mag * std::sin(ang))));
    // one draw per statement: the order in which function arguments are evaluated is unspecified
    const double br = rnd(nd(rng));
    const double bi = rnd(nd(rng));
    const double cr = rnd(nd(rng));
    const double ci = rnd(nd(rng));
    put(in.dB, i, cd(br, bi));
    put(in.C, i, cd(cr, ci));
  }
  if (has_D) {
    in.D.resize(H);
    for (auto& x : in.D) x = rnd(nd(rng));
  }
  if (has_state) {
    in.state.resize(R * N * 2);
    for (auto& x : in.state) x = rnd(nd(rng));
  }
  if (has_glast) {
    in.g_last.resize(R * N * 2);
    for (auto& x : in.g_last) x = rnd(nd(rng));
  }
  return in;
}

template <class T>
std::vector<T> narrow(const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); }
template <class T>
const T* ptr_or_null(const std::vector<T>& v) { return v.empty() ? nullptr : v.data(); }
template <class T>
T* ptr_or_null(std::vector<T>& v) { return v.empty() ? nullptr : v.data(); }

// Naive scan over all rows: y, last, every state x_t (R, L, N), checkpoints.
struct ScanRef {
  std::vector<double> y, last, ckpt, gu, gstate, gdA, gdB, gC, gD;
};

ScanRef naive_scan(const Inputs& in, int64_t chunk) {
  const int64_t R = in.B * in.H, N = in.N, L = in.L, nch = (L + chunk - 1) / chunk;
  ScanRef o;
  o.y.assign(R * L, 0);
  o.last.assign(R * N * 2, 0);
  o.ckpt.assign(R * nch * N * 2, 0);
  o.gu.assign(R * L, 0);
  o.gstate.assign(R * N * 2, 0);
  o.gdA.assign(R * N * 2, 0);
  o.gdB.assign(R * N * 2, 0);
  o.gC.assign(R * N * 2, 0);
  o.gD.assign(R, 0);
  std::vector<cd> xs((L + 1) * N);  // xs[(t + 1) * N + n] = x_t, xs[n] = x_{-1}
  for (int64_t r = 0; r < R; ++r) {
    const int64_t h = r % in.H;
    for (int64_t n = 0; n < N; ++n) xs[n] = in.has_state ? at(in.state, r * N + n) : cd(0);
    for (int64_t t = 0; t < L; ++t) {
      const double uu = in.u[r * L + t];
      double acc = 0;
      for (int64_t n = 0; n < N; ++n) {
        if (t % chunk == 0) put(o.ckpt, (r * nch + t / chunk) * N + n, xs[t * N + n]);
        const cd x = at(in.dA, h * N + n) * xs[t * N + n] + at(in.dB, h * N + n) * uu;
        xs[(t + 1) * N + n] = x;
        acc += (at(in.C, h * N + n) * x).real();
      }
      o.y[r * L + t] = 2 * acc + (in.has_D ? in.D[h] * uu : 0.0);
    }
    for (int64_t n = 0; n < N; ++n) put(o.last, r * N + n, xs[L * N + n]);
    // backward
    for (int64_t n = 0; n < N; ++n) {
      const cd a = at(in.dA, h * N + n), b = at(in.dB, h * N + n), c = at(in.C, h * N + n);
      cd carry = in.has_glast ? at(in.g_last, r * N + n) : cd(0);
      cd sA = 0, sB = 0, sC = 0;
      for (int64_t t = L - 1; t >= 0; --t) {
        const double gy = in.gy[r * L + t];
        const cd lam = 2.0 * gy * std::conj(c) + carry;
        sA += lam * std::conj(xs[t * N + n]);
        sB += lam * in.u[r * L + t];
        sC += 2.0 * gy * std::conj(xs[(t + 1) * N + n]);
        o.gu[r * L + t] += (std::conj(b) * lam).real();
        carry = std::conj(a) * lam;
      }
      put(o.gstate, r * N + n, carry);
      put(o.gdA, r * N + n, sA);
      put(o.gdB, r * N + n, sB);
      put(o.gC, r * N + n, sC);
    }
    if (in.has_D)
      for (int64_t t = 0; t < L; ++t) o.gu[r * L + t] += in.D[h] * in.gy[r * L + t];
    for (int64_t t = 0; t < L; ++t) o.gD[r] += in.gy[r * L + t] * in.u[r * L + t];
  }
  return o;
}

template <class T>
void test_scan(int64_t B, int64_t H, int64_t N, int64_t L, int64_t chunk, bool has_D, bool has_state,
               bool has_glast, unsigned seed) {
  const Inputs in = make_inputs<T>(B, H, N, L, has_D, has_state, has_glast, seed);
  const ScanRef ref = naive_scan(in, chunk);
  const int64_t R = B * H, nch = (L + chunk - 1) / chunk;
  const auto u = narrow<T>(in.u), dA = narrow<T>(in.dA), dB = narrow<T>(in.dB), C = narrow<T>(in.C),
             D = narrow<T>(in.D), state = narrow<T>(in.state), gy = narrow<T>(in.gy),
             gl = narrow<T>(in.g_last);
  std::vector<T> y(R * L, T(-7)), last(R * N * 2, T(-7)), ckpt(R * nch * N * 2, T(-7));
  K::scan_fwd<T>(u.data(), dA.data(), dB.data(), C.data(), ptr_or_null(D), ptr_or_null(state), y.data(),
                 last.data(), ckpt.data(), B, H, N, L, chunk);
  char tag[160];
  std::snprintf(tag, sizeof tag, "%s B=%lld H=%lld N=%lld L=%lld chunk=%lld D=%d state=%d g_last=%d",
                sizeof(T) == 4 ? "float" : "double", (long long)B, (long long)H, (long long)N, (long long)L,
                (long long)chunk, int(has_D), int(has_state), int(has_glast));
  const std::string s(tag);
  check(s + " scan_fwd y", y, ref.y, "scan_fwd y");
  check(s + " scan_fwd last", last, ref.last, "scan_fwd last");
  check(s + " scan_fwd ckpt", ckpt, ref.ckpt, "scan_fwd ckpt");
  // without checkpoints: the same y and last state
  std::vector<T> y2(R * L, T(-7)), last2(R * N * 2, T(-7));
  K::scan_fwd<T>(u.data(), dA.data(), dB.data(), C.data(), ptr_or_null(D), ptr_or_null(state), y2.data(),
                 last2.data(), nullptr, B, H, N, L, chunk);
  check(s + " scan_fwd(no ckpt) y", y2, ref.y, "scan_fwd(no ckpt) y");
  check(s + " scan_fwd(no ckpt) last", last2, ref.last, "scan_fwd(no ckpt) last");

  std::vector<T> gu(R * L, T(-7)), gst(R * N * 2, T(-7)), gdA(R * N * 2, T(-7)), gdB(R * N * 2, T(-7)),
      gC(R * N * 2, T(-7)), gD(R, T(-7));
  K::scan_bwd<T>(u.data(), dA.data(), dB.data(), C.data(), ptr_or_null(D), ckpt.data(), gy.data(),
                 ptr_or_null(gl), gu.data(), gst.data(), gdA.data(), gdB.data(), gC.data(), gD.data(), B, H, N,
                 L, chunk);
  check(s + " scan_bwd grad_u", gu, ref.gu, "scan_bwd grad_u");
  check(s + " scan_bwd grad_state", gst, ref.gstate, "scan_bwd grad_state");
  check(s + " scan_bwd grad_dA", gdA, ref.gdA, "scan_bwd grad_dA");
  check(s + " scan_bwd grad_dB", gdB, ref.gdB, "scan_bwd grad_dB");
  check(s + " scan_bwd grad_C", gC, ref.gC, "scan_bwd grad_C");
  check(s + " scan_bwd grad_D per row", gD, ref.gD, "scan_bwd grad_D per row");
}

template <class T>
void test_step(int64_t B, int64_t H, int64_t N, bool has_D, bool has_state, bool has_gnew, unsigned seed) {
  // One step is a scan of length 1: reuse the inputs (u, gy: (R, 1); g_last plays g_new).
  const Inputs in = make_inputs<T>(B, H, N, 1, has_D, has_state, has_gnew, seed);
  const ScanRef ref = naive_scan(in, 1);
  const int64_t R = B * H;
  const auto u = narrow<T>(in.u), dA = narrow<T>(in.dA), dB = narrow<T>(in.dB), C = narrow<T>(in.C),
             D = narrow<T>(in.D), state = narrow<T>(in.state), gy = narrow<T>(in.gy),
             gn = narrow<T>(in.g_last);
  char tag[160];
  std::snprintf(tag, sizeof tag, "%s B=%lld H=%lld N=%lld D=%d state=%d g_new=%d",
                sizeof(T) == 4 ? "float" : "double", (long long)B, (long long)H, (long long)N, int(has_D),
                int(has_state), int(has_gnew));
  const std::string s(tag);
  std::vector<T> y(R, T(-7)), xnew(R * N * 2, T(-7));
  K::step_fwd<T>(u.data(), ptr_or_null(state), dA.data(), dB.data(), C.data(), ptr_or_null(D), y.data(),
                 xnew.data(), B, H, N);
  check(s + " step_fwd y", y, ref.y, "step_fwd y");
  check(s + " step_fwd new_state", xnew, ref.last, "step_fwd new_state");
  std::vector<T> gu(R, T(-7)), gdB(R * N * 2, T(-7)), gC(R * N * 2, T(-7));
  std::vector<T> gst(has_state ? R * N * 2 : 0, T(-7)), gdA(has_state ? R * N * 2 : 0, T(-7));
  K::step_bwd<T>(u.data(), ptr_or_null(state), dA.data(), dB.data(), C.data(), ptr_or_null(D), gy.data(),
                 ptr_or_null(gn), gu.data(), ptr_or_null(gst), ptr_or_null(gdA), gdB.data(), gC.data(), B, H,
                 N);
  check(s + " step_bwd grad_u", gu, ref.gu, "step_bwd grad_u");
  check(s + " step_bwd grad_dB", gdB, ref.gdB, "step_bwd grad_dB");
  check(s + " step_bwd grad_C", gC, ref.gC, "step_bwd grad_C");
  if (has_state) {
    check(s + " step_bwd grad_state", gst, ref.gstate, "step_bwd grad_state");
    check(s + " step_bwd grad_dA", gdA, ref.gdA, "step_bwd grad_dA");
  }
}

template <class T>
void run_all() {
  const int64_t Ns[] = {1, 3, 33};
  const int64_t Ls[] = {1, 7, 129, 1000};
  const int64_t BHs[][2] = {{1, 1}, {2, 3}, {3, 7}};  // 1, 6 and 21 rows: partial and several row groups
  const int64_t chunks[] = {1, 5, 64, 2048};
  unsigned seed = 1;
  int i = 0;
  for (int64_t N : Ns)
    for (int64_t L : Ls)
      for (const auto& bh : BHs) {
        const int64_t chunk = chunks[i % 4];
        test_scan<T>(bh[0], bh[1], N, L, chunk, i % 2 == 0, (i / 2) % 2 == 0, (i / 3) % 2 == 0, seed++);
        ++i;
      }
  // 65 rows: several full row groups per thread and a partial one; chunk > the forward's time block.
  test_scan<T>(5, 13, 33, 1000, 300, true, true, true, seed++);
  test_scan<T>(5, 13, 8, 129, 16, false, true, false, seed++);
  for (int64_t N : Ns)
    for (const auto& bh : BHs)
      for (int v = 0; v < 8; ++v) test_step<T>(bh[0], bh[1], N, v & 1, (v >> 1) & 1, (v >> 2) & 1, seed++);
  // enough rows x modes for the step kernels' parallel path
  for (int v = 0; v < 8; ++v) test_step<T>(4, 64, 33, v & 1, (v >> 1) & 1, (v >> 2) & 1, seed++);
}

}  // namespace

int main() {
  run_all<float>();
  run_all<double>();
  std::printf("test_ssm: %d checks of scan_fwd/scan_bwd/step_fwd/step_bwd (float, double; N in {1,3,33}, "
              "L in {1,7,129,1000}, rows in {1,6,21,65,256}, chunk in {1,5,16,64,300,2048}) against naive double loops\n",
              g_checks);
  std::printf("  worst relative RMS error: float %.3e (tolerance %.0e), double %.3e (tolerance %.0e)\n",
              g_worst[0], tolerance<float>(), g_worst[1], tolerance<double>());
  for (int k = 0; k < 2; ++k)
    for (const auto& kv : g_worst_by_output[k])
      std::printf("    %-6s %-28s worst %.3e\n", k == 0 ? "float" : "double", kv.first.c_str(), kv.second);
  if (g_failures != 0) {
    std::printf("test_ssm: %d FAILED\n", g_failures);
    return 1;
  }
  std::printf("test_ssm: all passed\n");
  return 0;
}
