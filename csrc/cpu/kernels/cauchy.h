// Cauchy-kernel primitives of the cauchy op (CPU, float and double).
//
//   cauchy_rows:  out[r, j] = sum_n v[r, n] / a^P + conj(v[r, n]) / b^P,           complex (R, L)
//                 P = 2 if `square` else 1 (P = 2 is -d out / d z, for the gradient of z)
//   cauchy_modes: gv[r, n]  = sum_j g[r, j] conj(1/a) + conj(g[r, j]) / b,          complex (R, N)
//                 gw[r, n]  = conj(v[r, n]) sum_j g[r, j] conj(1/a)^2 + conj(g[r, j]) / b^2
// with a = z_j - w[r, n], b = z_j - conj(w[r, n]); z (L,) is shared by every row. Complex arrays are
// interleaved (re, im) pairs, row-major.
//
// Each term costs one division: 1/a = conj(a) / |a|^2, and Re(a) = Re(b) serves both. That formula
// is accurate while |a|^2 neither overflows nor underflows (SafeRange); outside that range it gives
// 0 (|a|^2 = inf: a far pole, |w| > ~1e19 in float) or inf/NaN (|a|^2 subnormal or 0: z within
// ~1e-19 of a pole) where the true value is finite. So a call first bounds every |a|^2 from above
// by the inputs' largest components (O(L + R N)), and each tile records the smallest |a|^2 it met
// (two min per term); a call that may overflow, or a tile that underflowed, is computed with
// scaled_reciprocal instead (the operands scaled by a power of two into the safe range first, as
// robust complex division does). The rows
// kernel runs a tile of modes across the lanes (the points are a scalar loop). Tiles are padded with
// copies of their last real point or mode, so a padded lane is finite exactly when a real one is,
// and its result is never stored. The modes kernel sums the points in blocks of kPointBlock before
// adding them to the totals: the summation error then grows with kPointBlock + L / kPointBlock
// rather than with L.
#pragma once

#include "common.h"
#include <algorithm>
#include <cstdint>

DSSM_WIDE_VECTORS_BEGIN

namespace dssm {
namespace kernels {
namespace cauchy {

using common::lanes;

// Points summed into partial sums before they join the totals (cauchy_modes).
constexpr int64_t kPointBlock = 64;

// Below this many (point, mode) pairs a call runs on one thread.
constexpr int64_t kMinParallelWork = int64_t(1) << 14;

namespace detail {

using common::team_size;

// |a|^2 in [lo, hi]: conj(a) / |a|^2 is accurate (|a|^2, its reciprocal and their products are
// normal numbers). Scale: components beyond [small, big] are scaled by `down` / `up` first.
template <typename T>
struct SafeRange;
template <>
struct SafeRange<float> {
  static constexpr float lo = 0x1p-100f, hi = 0x1p100f;
  static constexpr float small = 0x1p-50f, big = 0x1p50f, up = 0x1p100f, down = 0x1p-100f;
};
template <>
struct SafeRange<double> {
  static constexpr double lo = 0x1p-900, hi = 0x1p900;
  static constexpr double small = 0x1p-500, big = 0x1p500, up = 0x1p1000, down = 0x1p-1000;
};

// 1 / (x + i y) for every x + i y whose reciprocal is representable: the larger component is
// brought into [small, big] by an exact power-of-two scale k, so |k a|^2 is a normal number, and
// 1/a = k conj(k a) / |k a|^2, the last product by k done last (it overflows only when 1/a does).
template <typename T>
inline void scaled_reciprocal(T x, T y, T& re, T& im) {
  using S = SafeRange<T>;
  const T ax = x < T(0) ? -x : x, ay = y < T(0) ? -y : y;
  const T s = ax > ay ? ax : ay;
  const T k = s > S::big ? S::down : (s < S::small ? S::up : T(1));
  const T xs = x * k, ys = y * k;
  const T inv = T(1) / (xs * xs + ys * ys);
  re = (xs * inv) * k;
  im = -(ys * inv) * k;
}

// |a|^2 and |b|^2 of the plain formula, the smaller taken into the caller's record dmin (a NaN
// operand compares false: it stays on the plain path and gives NaN, as it should).
template <typename T>
inline void squared_norms(T dr, T ai, T bi, T& da, T& db, T& dmin) {
  const T dr2 = dr * dr;
  da = dr2 + ai * ai;
  db = dr2 + bi * bi;
  dmin = da < dmin ? da : dmin;
  dmin = db < dmin ? db : dmin;
}

// 1 / (dr + i ai) and 1 / (dr + i bi) as (Ar, Ai, Br, Bi): scaled_reciprocal when Robust, else the
// plain formula with the smallest |.|^2 recorded.
template <typename T, bool Robust>
inline void reciprocals(T dr, T ai, T bi, T& Ar, T& Ai, T& Br, T& Bi, T& dmin) {
  if (Robust) {
    scaled_reciprocal(dr, ai, Ar, Ai);
    scaled_reciprocal(dr, bi, Br, Bi);
  } else {
    T da, db;
    squared_norms(dr, ai, bi, da, db, dmin);
    const T inv_a = T(1) / da;
    const T inv_b = T(1) / db;
    Ar = dr * inv_a;
    Ai = -ai * inv_a;
    Br = dr * inv_b;
    Bi = -bi * inv_b;
  }
}

// Whether any of the n recorded minima fell below the safe range.
template <typename T>
inline bool below_range(const T* dmin, int n) {
  bool below = false;
  for (int i = 0; i < n; ++i) below = below || dmin[i] < SafeRange<T>::lo;
  return below;
}

// Whether every |z_j - w_n|^2 and |z_j - conj(w_n)|^2 is at most SafeRange::hi, from the largest
// components of the interleaved complex arrays z (L,) and w (M,): (max|Re z| + max|Re w|)^2 +
// (max|Im z| + max|Im w|)^2 bounds them all. False for non-finite input.
template <typename T>
inline bool bounded_above(const T* z, int64_t L, const T* w, int64_t M) {
  double zr = 0, zi = 0, wr = 0, wi = 0;
  for (int64_t j = 0; j < L; ++j) {
    zr = std::max(zr, std::fabs(double(z[2 * j])));
    zi = std::max(zi, std::fabs(double(z[2 * j + 1])));
  }
  for (int64_t n = 0; n < M; ++n) {
    wr = std::max(wr, std::fabs(double(w[2 * n])));
    wi = std::max(wi, std::fabs(double(w[2 * n + 1])));
  }
  const double bound = (zr + wr) * (zr + wr) + (zi + wi) * (zi + wi);
  return bound <= double(SafeRange<T>::hi);
}

// One tile of JT points (zr, zi) against all N modes of a row: the rows sums into (out_r, out_i).
// Returns false when a term left the plain formula's safe range (then the caller recomputes the
// tile with Robust); the Robust variant always returns true.
template <typename T, int JT, bool Square, bool Robust>
inline bool rows_tile(const T* zr, const T* zi, const T* v, const T* w, int64_t N, T* out_r, T* out_i) {
  alignas(64) T acc_r[JT] = {};
  alignas(64) T acc_i[JT] = {};
  alignas(64) T dmin[JT];
  for (int j = 0; j < JT; ++j) dmin[j] = SafeRange<T>::lo;  // in range: only a smaller term trips
  for (int64_t n = 0; n < N; ++n) {
    const T vr = v[2 * n], vi = v[2 * n + 1], wr = w[2 * n], wi = w[2 * n + 1];
#pragma omp simd
    for (int j = 0; j < JT; ++j) {
      const T dr = zr[j] - wr;
      const T ai = zi[j] - wi;
      const T bi = zi[j] + wi;
      if (Square || Robust) {
        T Ar, Ai, Br, Bi;  // 1/a, 1/b
        reciprocals<T, Robust>(dr, ai, bi, Ar, Ai, Br, Bi, dmin[j]);
        if (Square) {
          const T a2r = Ar * Ar - Ai * Ai, a2i = T(2) * Ar * Ai;
          const T b2r = Br * Br - Bi * Bi, b2i = T(2) * Br * Bi;
          // v A^2 + conj(v) B^2
          acc_r[j] += vr * (a2r + b2r) - vi * (a2i - b2i);
          acc_i[j] += vr * (a2i + b2i) + vi * (a2r - b2r);
        } else {
          // v A + conj(v) B
          acc_r[j] += vr * (Ar + Br) - vi * (Ai - Bi);
          acc_i[j] += vr * (Ai + Bi) + vi * (Ar - Br);
        }
      } else {
        // the same sum on the plain path, shared factors first: Re(1/a) + Re(1/b) = dr (inv_a + inv_b),
        // Im(1/a) - Im(1/b) = q - p, Im(1/a) + Im(1/b) = -(p + q), Re(1/a) - Re(1/b) = dr (inv_a - inv_b)
        T da, db;
        squared_norms(dr, ai, bi, da, db, dmin[j]);
        const T inv_a = T(1) / da;
        const T inv_b = T(1) / db;
        const T p = ai * inv_a, q = bi * inv_b;
        acc_r[j] += vr * (dr * (inv_a + inv_b)) + vi * (p - q);
        acc_i[j] += vi * (dr * (inv_a - inv_b)) - vr * (p + q);
      }
    }
  }
  if (!Robust && below_range(dmin, JT)) return false;
#pragma omp simd
  for (int j = 0; j < JT; ++j) {
    out_r[j] = acc_r[j];
    out_i[j] = acc_i[j];
  }
  return true;
}

// One tile of MT modes (wr, wi) of a row against all L points: (gv, gw) sums before the conj(v)
// factor. tot: 4 arrays of MT (gv re, gv im, gw re, gw im), zero on entry. Returns false (tot then
// unusable) when a term left the plain formula's safe range; the Robust variant always returns true.
template <typename T, int MT, bool NeedV, bool NeedW, bool Robust>
inline bool modes_tile(const T* g, const T* z, int64_t L, const T* wr, const T* wi, T (*tot)[MT]) {
  alignas(64) T dmin[MT];
  for (int m = 0; m < MT; ++m) dmin[m] = SafeRange<T>::lo;  // in range: only a smaller term trips
  for (int64_t j0 = 0; j0 < L; j0 += kPointBlock) {
    const int64_t j1 = std::min(L, j0 + kPointBlock);
    alignas(64) T part[4][MT] = {};
    for (int64_t j = j0; j < j1; ++j) {
      const T zr = z[2 * j], zi = z[2 * j + 1], gr = g[2 * j], gi = g[2 * j + 1];
#pragma omp simd
      for (int m = 0; m < MT; ++m) {
        T Ar, Ai, Br, Bi;  // 1/a, 1/b
        reciprocals<T, Robust>(zr - wr[m], zi - wi[m], zi + wi[m], Ar, Ai, Br, Bi, dmin[m]);
        // g conj(A) + conj(g) B
        if (NeedV) {
          part[0][m] += gr * (Ar + Br) + gi * (Ai + Bi);
          part[1][m] += gi * (Ar - Br) - gr * (Ai - Bi);
        }
        if (NeedW) {
          const T a2r = Ar * Ar - Ai * Ai, a2i = T(2) * Ar * Ai;
          const T b2r = Br * Br - Bi * Bi, b2i = T(2) * Br * Bi;
          part[2][m] += gr * (a2r + b2r) + gi * (a2i + b2i);
          part[3][m] += gi * (a2r - b2r) - gr * (a2i - b2i);
        }
      }
    }
    for (int k = 0; k < 4; ++k)
#pragma omp simd
      for (int m = 0; m < MT; ++m) tot[k][m] += part[k][m];
  }
  return Robust || !below_range(dmin, MT);
}

template <typename T, int MT, bool NeedV, bool NeedW>
void modes_impl(const T* g, const T* v, const T* z, const T* w, T* gv, T* gw, int64_t R, int64_t N, int64_t L,
                int num_threads) {
  const bool plain = bounded_above(z, L, w, R * N);
  const int64_t tiles = (N + MT - 1) / MT;
  const int64_t items = R * tiles;
#pragma omp parallel for schedule(static) num_threads(team_size(num_threads, items)) \
    if (R * N * L >= kMinParallelWork)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t r = item / tiles;
    const int64_t n0 = (item % tiles) * MT;
    const int64_t nm = std::min<int64_t>(MT, N - n0);
    const T* wrow = w + 2 * (r * N + n0);
    alignas(64) T wr[MT];
    alignas(64) T wi[MT];
    for (int m = 0; m < MT; ++m) {
      const int64_t k = std::min<int64_t>(m, nm - 1);
      wr[m] = wrow[2 * k];
      wi[m] = wrow[2 * k + 1];
    }
    alignas(64) T tot[4][MT] = {};
    if (!(plain && modes_tile<T, MT, NeedV, NeedW, false>(g + 2 * r * L, z, L, wr, wi, tot))) {
      for (int k = 0; k < 4; ++k) std::fill(tot[k], tot[k] + MT, T(0));
      modes_tile<T, MT, NeedV, NeedW, true>(g + 2 * r * L, z, L, wr, wi, tot);
    }
    for (int64_t m = 0; m < nm; ++m) {
      const int64_t o = 2 * (r * N + n0 + m);
      if (NeedV) {
        gv[o] = tot[0][m];
        gv[o + 1] = tot[1][m];
      }
      if (NeedW) {  // conj(v) * sum
        const T vr = v[o], vi = v[o + 1];
        gw[o] = vr * tot[2][m] + vi * tot[3][m];
        gw[o + 1] = vr * tot[3][m] - vi * tot[2][m];
      }
    }
  }
}

}  // namespace detail

// out (R, L) complex; v, w (R, N) complex; z (L,) complex. Work items are (row, tile of points).
template <typename T>
void cauchy_rows(const T* v, const T* z, const T* w, T* out, int64_t R, int64_t N, int64_t L, bool square,
                 int num_threads = 0) {
  constexpr int JT = 2 * lanes<T>();
  if (R <= 0 || L <= 0) return;
  const int64_t tiles = (L + JT - 1) / JT;
  const int64_t items = R * tiles;
  const bool plain = detail::bounded_above(z, L, w, R * N);
#pragma omp parallel for schedule(static) num_threads(detail::team_size(num_threads, items)) \
    if (R * N * L >= kMinParallelWork)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t r = item / tiles;
    const int64_t j0 = (item % tiles) * JT;
    const int64_t nj = std::min<int64_t>(JT, L - j0);
    alignas(64) T zr[JT];
    alignas(64) T zi[JT];
    for (int j = 0; j < JT; ++j) {
      const int64_t k = j0 + std::min<int64_t>(j, nj - 1);
      zr[j] = z[2 * k];
      zi[j] = z[2 * k + 1];
    }
    alignas(64) T res_r[JT];
    alignas(64) T res_i[JT];
    const T* vrow = v + 2 * r * N;
    const T* wrow = w + 2 * r * N;
    if (square) {
      if (!(plain && detail::rows_tile<T, JT, true, false>(zr, zi, vrow, wrow, N, res_r, res_i)))
        detail::rows_tile<T, JT, true, true>(zr, zi, vrow, wrow, N, res_r, res_i);
    } else if (!(plain && detail::rows_tile<T, JT, false, false>(zr, zi, vrow, wrow, N, res_r, res_i))) {
      detail::rows_tile<T, JT, false, true>(zr, zi, vrow, wrow, N, res_r, res_i);
    }
    T* o = out + 2 * (r * L + j0);
    for (int64_t j = 0; j < nj; ++j) {
      o[2 * j] = res_r[j];
      o[2 * j + 1] = res_i[j];
    }
  }
}

// gv, gw (R, N) complex, each skipped when null; g (R, L) complex. Work items are (row, tile of
// modes).
template <typename T>
void cauchy_modes(const T* g, const T* v, const T* z, const T* w, T* gv, T* gw, int64_t R, int64_t N, int64_t L,
                  int num_threads = 0) {
  constexpr int MT = lanes<T>();
  if (R <= 0 || N <= 0 || (gv == nullptr && gw == nullptr)) return;
  if (gv != nullptr && gw != nullptr)
    detail::modes_impl<T, MT, true, true>(g, v, z, w, gv, gw, R, N, L, num_threads);
  else if (gv != nullptr)
    detail::modes_impl<T, MT, true, false>(g, v, z, w, gv, gw, R, N, L, num_threads);
  else
    detail::modes_impl<T, MT, false, true>(g, v, z, w, gv, gw, R, N, L, num_threads);
}

}  // namespace cauchy
}  // namespace kernels
}  // namespace dssm

DSSM_WIDE_VECTORS_END
