// Kernel-generation primitives of vandermonde and vandermonde_transpose (CPU, float and double).
//
//   vandermonde_rows: out[r, l] = scale * Re( sum_n c[r, n] * exp(x[r, n] * p(l)) )        real (R, L)
//   power_sums:       s[r, n]   = sum_l w[r, l] * exp(x[r, n] * p(l))                      complex (R, N)
//                     ds[r, n]  = sum_l w[r, l] * p(l) * exp(x[r, n] * p(l))
// with p(l) = l, or L-1-l when `reverse`. Complex arrays are interleaved (re, im) pairs, row-major.
//
// Powers are never formed one by one with exp. Positions are cut into blocks of V = one 512-bit
// register of lanes (16 floats, 8 doubles): exp(x (V b + j)) = a_b P_j, with the in-block powers
// P_j = exp(x j) and the block anchor a_b = exp(x V b). Blocks are grouped into spans of K
// (`anchor_blocks`); a span starts from an exact anchor a_b0 = exp(x V b0), a fresh exp whose phase
// Im(x) V b0 is formed in double and reduced modulo 2 pi there (a phase of 1e5 rad keeps float
// accuracy; x * l formed in float would not), and reaches its other blocks through the block steps
// S^k = exp(x V k), k < K: a_{b0 + k} = a_b0 S^k.
//
// The step powers S^k come from the blocked recurrence S^{k+1} = S^k S, run once per row in double
// (from one exact exp(x) per mode, stepped V times to S, then K times) and rounded to T. An anchor
// stepped block by block in T instead drifts by a rounding of S per step: measured with that
// design (float, S4D-Lin modes, N = 32, L = 4096), vandermonde_rows' relative RMS error was 1.3e-7
// at K = 1, 3.3e-7 at K = 32, 5.9e-7 at K = 64, 1.3e-6 at K = 256. a_b0 S^k carries ~3 roundings
// at any k, so the error grows neither with L (re-anchoring) nor with K (the steps are double):
// 1.1-1.3e-7 at every K from 1 to 256, and 7e-8 at L = 1024 vs 1e-7 at L = 65536 on undamped
// modes (csrc/tests/test_vandermonde.cpp prints both). Every anchor is one complex product off an
// exact one, with no chain from block to block, so the loops stay throughput-bound.
//
// K = 64 (kAnchorBlocks), chosen by cost since the error is flat: an exact anchor costs ~10 ns
// (float sin/cos after the double reduction), about the work of 10 blocks of one mode (2 vector
// FMAs each). On this project's 2-core AVX-512 machine (N = 32, L = 4096, one thread) K = 64 ran
// 7-15% faster than K = 32 in both kernels and K = 128 no faster, while the per-row table of N K
// step powers doubles with K (16 KB for N = 32 in float).
//
// vandermonde_rows vectorises over positions: per (mode, block) one complex product gives the
// block's coefficient c a_b (vectorised over modes) and two vector FMAs add Re(c a_b P_j) into the
// block's accumulators. power_sums accumulates Acc_j += w[V b + j] a_b (and the position-weighted
// twin for ds) per mode and contracts with P_j once at the end.
#pragma once

#include "common.h"
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

DSSM_WIDE_VECTORS_BEGIN

namespace dssm {
namespace kernels {
namespace vandermonde {

using common::lanes;

// Blocks per span between exact anchors (see the header comment for why 64).
constexpr int kAnchorBlocks = 64;

// Below this many mode-steps a call runs on one thread: waking the pool costs more than the work.
constexpr int64_t kMinParallelWork = int64_t(1) << 15;

namespace detail {

using common::team_size;

// t reduced to about [-pi, pi]: Cody-Waite with a two-part 2 pi; the fma makes t - k * hi exact.
inline double reduce_phase(double t) {
  constexpr double kTwoPiHi = 6.283185307179586232;    // fl(2 pi)
  constexpr double kTwoPiLo = 2.4492935982947064e-16;  // 2 pi - kTwoPiHi
  constexpr double kInvTwoPi = 0.15915494309189533577;
  const double k = std::nearbyint(t * kInvTwoPi);
  return std::fma(-k, kTwoPiHi, t) - k * kTwoPiLo;
}

// exp((xr + i xi) * pos) in double.
inline void cexp_double(double xr, double xi, double pos, double& re, double& im) {
  const double mag = std::exp(xr * pos);
  const double ph = reduce_phase(xi * pos);
  re = mag * std::cos(ph);
  im = mag * std::sin(ph);
}

// exp((xr + i xi) * pos) to T precision: the phase is formed and reduced in double, then sin/cos
// run in T (float's are 3x cheaper than double's and as accurate as a float result can be).
template <typename T>
inline void cexp_anchor(double xr, double xi, double pos, T& re, T& im) {
  const T mag = static_cast<T>(std::exp(xr * pos));
  const T ph = static_cast<T>(reduce_phase(xi * pos));
  re = mag * std::cos(ph);
  im = mag * std::sin(ph);
}

// Tables of one row's N modes, stepped in double from one exact exp(x_n) per mode (V + K products:
// ~1e-14 relative, far below T's rounding); the loops run over modes innermost so that the N step
// chains overlap.
//   in-block powers P[n, j] = exp(x_n j), j < V: (pr, pi) at n * V + j;
//   block-step powers S[n, k] = exp(x_n V k), k < K: (sr, si) at n * sn + k * sk (the caller picks
//   the layout its inner loop reads contiguously).
// `q` is scratch for 4 N doubles.
template <typename T, int V>
inline void row_tables(const T* x, int64_t N, int64_t K, T* pr, T* pi, T* sr, T* si, int64_t sn, int64_t sk,
                       double* q) {
  double* qr = q;
  double* qi = q + N;
  double* er = q + 2 * N;
  double* ei = q + 3 * N;
  for (int64_t n = 0; n < N; ++n) {
    cexp_double(x[2 * n], x[2 * n + 1], 1.0, er[n], ei[n]);
    qr[n] = 1.0;
    qi[n] = 0.0;
  }
  for (int j = 0; j < V; ++j) {
#pragma omp simd
    for (int64_t n = 0; n < N; ++n) {
      pr[n * V + j] = static_cast<T>(qr[n]);
      pi[n * V + j] = static_cast<T>(qi[n]);
      const double t = qr[n] * er[n] - qi[n] * ei[n];
      qi[n] = qr[n] * ei[n] + qi[n] * er[n];
      qr[n] = t;
    }
  }
  for (int64_t n = 0; n < N; ++n) {  // q = exp(x V): from here on the step is S
    er[n] = qr[n];
    ei[n] = qi[n];
    qr[n] = 1.0;
    qi[n] = 0.0;
  }
  for (int64_t k = 0; k < K; ++k) {
#pragma omp simd
    for (int64_t n = 0; n < N; ++n) {
      sr[n * sn + k * sk] = static_cast<T>(qr[n]);
      si[n * sn + k * sk] = static_cast<T>(qi[n]);
      const double t = qr[n] * er[n] - qi[n] * ei[n];
      qi[n] = qr[n] * ei[n] + qi[n] * er[n];
      qr[n] = t;
    }
  }
}

// G consecutive blocks of vandermonde_rows: res[g, j] = Re( sum_n coef[g, n] * P[n, j] ), with coef
// (G, N) as (cr, ci) and P (N, V) as (pr, pi). The G blocks keep 2 G accumulator chains in flight,
// which a single block (two chains, one FMA each per mode) leaves latency-bound.
template <typename T, int V, int G>
inline void rows_blocks(const T* pr, const T* pi, const T* cr, const T* ci, int64_t N, T* res) {
  alignas(64) T acc_a[G][V] = {};
  alignas(64) T acc_b[G][V] = {};
  for (int64_t n = 0; n < N; ++n) {
    const T* p = pr + n * V;
    const T* q = pi + n * V;
    for (int g = 0; g < G; ++g) {
      const T a = cr[g * N + n], b = ci[g * N + n];
#pragma omp simd
      for (int j = 0; j < V; ++j) {
        acc_a[g][j] += a * p[j];
        acc_b[g][j] += b * q[j];
      }
    }
  }
  for (int g = 0; g < G; ++g)
#pragma omp simd
    for (int j = 0; j < V; ++j) res[g * V + j] = acc_a[g][j] - acc_b[g][j];
}

// (dst_r, dst_i) = (a_r, a_i) * (s_r, s_i) elementwise, n complex numbers in separate arrays.
template <typename T>
inline void cmul_into(T* dst_r, T* dst_i, const T* a_r, const T* a_i, const T* s_r, const T* s_i, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    dst_r[i] = a_r[i] * s_r[i] - a_i[i] * s_i[i];
    dst_i[i] = a_r[i] * s_i[i] + a_i[i] * s_r[i];
  }
}

// One span of power_sums for one mode: nblk blocks from block b0 of the padded weights wb (and
// wpb = wb * position), whose anchors a_{b0 + k} = a_b0 S^k (S^k: the mode's (skr, ski)) go to the
// scratch (anr, ani) first: the FMAs then read them as broadcasts from memory. The span's sums join
// the totals `tot` (4 arrays of V: s re, s im, ds re, ds im) once, so the summation error grows with
// K + L / (K V) rather than with L / V.
template <typename T, int V, bool WithDeriv>
inline void power_span(const T* wb, const T* wpb, int64_t b0, int64_t nblk, double xr, double xi,
                       const T* skr, const T* ski, T* anr, T* ani, T (*tot)[V]) {
  T a0r, a0i;
  cexp_anchor<T>(xr, xi, static_cast<double>(b0 * V), a0r, a0i);
#pragma omp simd
  for (int64_t k = 0; k < nblk; ++k) {
    anr[k] = a0r * skr[k] - a0i * ski[k];
    ani[k] = a0r * ski[k] + a0i * skr[k];
  }
  // Blocks go round-robin to G accumulator sets: G chains per accumulator in flight.
  constexpr int G = WithDeriv ? 2 : 4;
  constexpr int M = WithDeriv ? 4 : 2;  // accumulators per set: s re, s im (, ds re, ds im)
  alignas(64) T acc[G][M][V] = {};
  const auto add = [&](int g, int64_t k) {
    const T ar = anr[k], ai = ani[k];
    const T* w = wb + (b0 + k) * V;
#pragma omp simd
    for (int j = 0; j < V; ++j) {
      acc[g][0][j] += w[j] * ar;
      acc[g][1][j] += w[j] * ai;
    }
    if (WithDeriv) {
      const T* wp = wpb + (b0 + k) * V;
#pragma omp simd
      for (int j = 0; j < V; ++j) {
        acc[g][M - 2][j] += wp[j] * ar;
        acc[g][M - 1][j] += wp[j] * ai;
      }
    }
  };
  int64_t k = 0;
  for (; k + G <= nblk; k += G)
    for (int g = 0; g < G; ++g) add(g, k + g);
  for (int g = 0; k + g < nblk; ++g) add(g, k + g);
  for (int g = 0; g < G; ++g)
    for (int m = 0; m < M; ++m)
#pragma omp simd
      for (int j = 0; j < V; ++j) tot[m][j] += acc[g][m][j];
}

// One mode of power_sums: (s, ds) over the L positions, nb blocks, in spans of K; (pr, pi) are the
// mode's in-block powers, (skr, ski) its block-step powers.
template <typename T, int V, bool WithDeriv>
inline void power_sums_mode(const T* wb, const T* wpb, int64_t L, int64_t nb, int64_t K, double xr, double xi,
                            const T* pr, const T* pi, const T* skr, const T* ski, T* anr, T* ani, T* s,
                            T* ds) {
  alignas(64) T tot[4][V] = {};
  for (int64_t b0 = 0; b0 < nb; b0 += K)
    power_span<T, V, WithDeriv>(wb, wpb, b0, std::min(K, nb - b0), xr, xi, skr, ski, anr, ani, tot);
  // sum_j P_j * tot_j, over the lanes that hold positions: with L < V, P_j of a growing mode may
  // overflow at an unused j while the sum is finite (and inf * 0 would make it NaN)
  const int jn = static_cast<int>(std::min<int64_t>(V, L));
  T s_r = 0, s_i = 0, d_r = 0, d_i = 0;
  for (int j = 0; j < jn; ++j) {
    s_r += pr[j] * tot[0][j] - pi[j] * tot[1][j];
    s_i += pr[j] * tot[1][j] + pi[j] * tot[0][j];
    if (WithDeriv) {
      d_r += pr[j] * tot[2][j] - pi[j] * tot[3][j];
      d_i += pr[j] * tot[3][j] + pi[j] * tot[2][j];
    }
  }
  s[0] = s_r;
  s[1] = s_i;
  if (WithDeriv) {
    ds[0] = d_r;
    ds[1] = d_i;
  }
}

// Modes with Re x = -inf and a finite Im x vanish: exp(x p) = 0 for every p >= 1, and at p = 0
// IEEE arithmetic gives exp(-inf * 0) = NaN (as the reference does, with torch.exp). The tables and
// anchors cannot hold them (an anchor exp(-inf * 0) would make the whole span NaN), so a row with
// such modes is computed from a copy with their c and x set to 0, and its p = 0 output is set to
// NaN afterwards. Copies the row's c (N complex) then x (N complex) into `cleaned` and returns
// true if the row has a vanishing mode; returns false (and copies nothing) otherwise.
template <typename T>
inline bool drop_vanishing_modes(const T* c, const T* x, int64_t N, T* cleaned) {
  bool any = false;
  for (int64_t n = 0; n < N; ++n) any = any || (std::isinf(x[2 * n]) && x[2 * n] < 0 && std::isfinite(x[2 * n + 1]));
  if (!any) return false;
  for (int64_t n = 0; n < N; ++n) {
    const bool vanish = std::isinf(x[2 * n]) && x[2 * n] < 0 && std::isfinite(x[2 * n + 1]);
    for (int k = 0; k < 2; ++k) {
      cleaned[2 * n + k] = vanish ? T(0) : c[2 * n + k];
      cleaned[2 * N + 2 * n + k] = vanish ? T(0) : x[2 * n + k];
    }
  }
  return true;
}

// Stores the results of the block at position lb of a row of length L (fewer than V at its end),
// at l = p(position).
template <typename T, int V>
inline void store_block(T* orow, int64_t L, int64_t lb, const T* res, bool reverse) {
  const int64_t nv = std::min<int64_t>(V, L - lb);
  if (!reverse) {
    T* o = orow + lb;
    if (nv == V) {
#pragma omp simd
      for (int j = 0; j < V; ++j) o[j] = res[j];
    } else {
      for (int64_t j = 0; j < nv; ++j) o[j] = res[j];
    }
  } else {
    T* o = orow + (L - 1 - lb);  // position lb + j lands at l = L - 1 - lb - j
    if (nv == V) {
#pragma omp simd
      for (int j = 0; j < V; ++j) o[-j] = res[j];
    } else {
      for (int64_t j = 0; j < nv; ++j) o[-j] = res[j];
    }
  }
}

}  // namespace detail

// out[r, l] = scale * Re( sum_n c[r, n] exp(x[r, n] p(l)) ); c, x: (R, N) interleaved complex;
// out: (R, L) real. Work items are (row, span of K blocks), so a few long rows still fill the
// threads; a thread keeps the tables of the row it is on.
template <typename T>
void vandermonde_rows(const T* c, const T* x, T* out, int64_t R, int64_t N, int64_t L, T scale, bool reverse,
                      int num_threads = 0, int anchor_blocks = kAnchorBlocks) {
  constexpr int V = lanes<T>();
  if (R <= 0 || N <= 0 || L <= 0) return;
  const int64_t nb_all = (L + V - 1) / V;
  const int64_t K = std::max<int64_t>(1, std::min<int64_t>(anchor_blocks, nb_all));
  const int64_t span = K * V;
  const int64_t nspans = (L + span - 1) / span;
  const int64_t items = R * nspans;
#pragma omp parallel num_threads(detail::team_size(num_threads, items)) if (R * N * L >= kMinParallelWork)
  {
    constexpr int kGroup = 4;  // blocks per pass over the modes
    std::vector<T> tab(static_cast<size_t>(2 * N * V + 2 * K * N + (2 + 2 * kGroup) * N + kGroup * V));
    std::vector<double> scratch(static_cast<size_t>(4 * N));
    T* pr = tab.data();      // (N, V) in-block powers
    T* pi = pr + N * V;
    T* sr = pi + N * V;      // (K, N) block-step powers, k-major: one block's steps are contiguous
    T* si = sr + K * N;
    T* ar = si + K * N;      // (N,) scale * c * the span's exact anchor
    T* ai = ar + N;
    T* cr = ai + N;          // (kGroup, N) coefficients c a_b of consecutive blocks
    T* ci = cr + kGroup * N;
    T* res = ci + kGroup * N;  // (kGroup, V) results of those blocks
    std::vector<T> cleaned(static_cast<size_t>(4 * N));  // (c, x) of a row with its vanishing modes dropped
    int64_t cached_row = -1;
    bool vanishing_row = false;
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t r = item / nspans;
      const int64_t l0 = (item % nspans) * span;
      const T* cx = c + 2 * r * N;
      const T* xx = x + 2 * r * N;
      if (r != cached_row) {
        vanishing_row = detail::drop_vanishing_modes(cx, xx, N, cleaned.data());
      }
      if (vanishing_row) {
        cx = cleaned.data();
        xx = cleaned.data() + 2 * N;
      }
      if (r != cached_row) {
        detail::row_tables<T, V>(xx, N, K, pr, pi, sr, si, 1, N, scratch.data());
        cached_row = r;
      }
      for (int64_t n = 0; n < N; ++n) {
        T er, ei;
        detail::cexp_anchor<T>(xx[2 * n], xx[2 * n + 1], static_cast<double>(l0), er, ei);
        const T vr = scale * cx[2 * n], vi = scale * cx[2 * n + 1];
        ar[n] = vr * er - vi * ei;
        ai[n] = vr * ei + vi * er;
      }
      const int64_t nb = std::min<int64_t>(K, (L - l0 + V - 1) / V);
      T* orow = out + r * L;
      for (int64_t b = 0; b < nb; b += kGroup) {
        const int g = static_cast<int>(std::min<int64_t>(kGroup, nb - b));
        for (int gg = 0; gg < g; ++gg)
          detail::cmul_into(cr + gg * N, ci + gg * N, ar, ai, sr + (b + gg) * N, si + (b + gg) * N, N);
        if (g == kGroup)
          detail::rows_blocks<T, V, kGroup>(pr, pi, cr, ci, N, res);
        else
          for (int gg = 0; gg < g; ++gg) detail::rows_blocks<T, V, 1>(pr, pi, cr + gg * N, ci + gg * N, N, res + gg * V);
        for (int gg = 0; gg < g; ++gg) detail::store_block<T, V>(orow, L, l0 + (b + gg) * V, res + gg * V, reverse);
      }
      if (vanishing_row && l0 == 0) orow[reverse ? L - 1 : 0] = std::numeric_limits<T>::quiet_NaN();
    }
  }
}

// s[r, n] = sum_l w[r, l] exp(x[r, n] p(l)) and, if ds != nullptr, ds[r, n] = sum_l w[r, l] p(l)
// exp(x[r, n] p(l)). w: (R, L) real; x, s, ds: (R, N) interleaved complex. Work items are (row,
// mode): each mode's accumulators stay in registers over the whole row. A thread keeps the row's
// tables and weights, reversed when `reverse` (so p is always the position in the buffer) and
// zero-padded to whole blocks, and their position-weighted twin.
template <typename T>
void power_sums(const T* w, const T* x, T* s, T* ds, int64_t R, int64_t N, int64_t L, bool reverse,
                int num_threads = 0, int anchor_blocks = kAnchorBlocks) {
  constexpr int V = lanes<T>();
  if (R <= 0 || N <= 0) return;
  if (L <= 0) {
    std::fill(s, s + 2 * R * N, T(0));
    if (ds) std::fill(ds, ds + 2 * R * N, T(0));
    return;
  }
  const int64_t nb = (L + V - 1) / V;
  const int64_t K = std::max<int64_t>(1, std::min<int64_t>(anchor_blocks, nb));
  const int64_t items = R * N;
  const bool deriv = ds != nullptr;
#pragma omp parallel num_threads(detail::team_size(num_threads, items)) if (R * N * L >= kMinParallelWork)
  {
    std::vector<T> buf(static_cast<size_t>((deriv ? 2 : 1) * nb * V + 2 * N * V + 2 * N * K + 2 * K));
    std::vector<double> scratch(static_cast<size_t>(4 * N));
    T* pr = buf.data();   // (N, V) in-block powers of the row's modes
    T* pi = pr + N * V;
    T* sr = pi + N * V;   // (N, K) block-step powers, mode-major: one mode's steps are contiguous
    T* si = sr + N * K;
    T* anr = si + N * K;  // (K,) anchors of the current span
    T* ani = anr + K;
    T* wb = ani + K;      // (nb V,) weights in position order, zero-padded
    T* wpb = deriv ? wb + nb * V : nullptr;  // weights * position
    int64_t cached_row = -1;
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t r = item / N;
      const int64_t n = item % N;
      if (r != cached_row) {
        const T* wr = w + r * L;
        for (int64_t m = 0; m < L; ++m) wb[m] = wr[reverse ? L - 1 - m : m];
        std::fill(wb + L, wb + nb * V, T(0));
        if (deriv)
          for (int64_t m = 0; m < nb * V; ++m) wpb[m] = wb[m] * static_cast<T>(m);
        detail::row_tables<T, V>(x + 2 * r * N, N, K, pr, pi, sr, si, K, 1, scratch.data());
        cached_row = r;
      }
      const int64_t o = 2 * (r * N + n);
      const T* pn = pr + n * V;
      const T* qn = pi + n * V;
      const T* skr = sr + n * K;
      const T* ski = si + n * K;
      if (deriv)
        detail::power_sums_mode<T, V, true>(wb, wpb, L, nb, K, x[o], x[o + 1], pn, qn, skr, ski, anr, ani, s + o,
                                            ds + o);
      else
        detail::power_sums_mode<T, V, false>(wb, wpb, L, nb, K, x[o], x[o + 1], pn, qn, skr, ski, anr, ani, s + o,
                                             nullptr);
    }
  }
}

}  // namespace vandermonde
}  // namespace kernels
}  // namespace dssm

DSSM_WIDE_VECTORS_END
