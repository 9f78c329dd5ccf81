// Cauchy-kernel primitives of the cauchy op (CPU, float and double).
//
//   cauchy_rows:  out[r, j] = sum_n v[r, n] / a^P + conj(v[r, n]) / b^P,           complex (R, L)
//                 P = 2 if `square` else 1 (P = 2 is -d out / d z, for the gradient of z)
//   cauchy_modes: gv[r, n]  = sum_j g[r, j] conj(1/a) + conj(g[r, j]) / b,          complex (R, N)
//                 gw[r, n]  = conj(v[r, n]) sum_j g[r, j] conj(1/a)^2 + conj(g[r, j]) / b^2
// with a = z_j - w[r, n], b = z_j - conj(w[r, n]); z (L,) is shared by every row. Complex arrays are
// interleaved (re, im) pairs, row-major.
//
// Each term costs one division: 1/a = conj(a) / |a|^2, and Re(a) = Re(b) serves both. The rows
// kernel runs the points of a tile across the SIMD lanes (the modes are a scalar loop); the modes
// kernel runs a tile of modes across the lanes (the points are a scalar loop). Tiles are padded with
// copies of their last real point or mode, so a padded lane is finite exactly when a real one is,
// and its result is never stored. The modes kernel sums the points in blocks of kPointBlock before
// adding them to the totals: the summation error then grows with kPointBlock + L / kPointBlock
// rather than with L.
#pragma once

#include "common.h"
#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

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

// One tile of JT points (zr, zi) against all N modes of a row: the rows sums into (out_r, out_i).
template <typename T, int JT, bool Square>
inline void rows_tile(const T* zr, const T* zi, const T* v, const T* w, int64_t N, T* out_r, T* out_i) {
  alignas(64) T acc_r[JT] = {};
  alignas(64) T acc_i[JT] = {};
  for (int64_t n = 0; n < N; ++n) {
    const T vr = v[2 * n], vi = v[2 * n + 1], wr = w[2 * n], wi = w[2 * n + 1];
#pragma omp simd
    for (int j = 0; j < JT; ++j) {
      const T dr = zr[j] - wr;
      const T ai = zi[j] - wi;
      const T bi = zi[j] + wi;
      const T dr2 = dr * dr;
      const T inv_a = T(1) / (dr2 + ai * ai);
      const T inv_b = T(1) / (dr2 + bi * bi);
      if (Square) {
        // 1/a = (Ar, Ai), 1/b = (Br, Bi), squared
        const T Ar = dr * inv_a, Ai = -ai * inv_a, Br = dr * inv_b, Bi = -bi * inv_b;
        const T a2r = Ar * Ar - Ai * Ai, a2i = T(2) * Ar * Ai;
        const T b2r = Br * Br - Bi * Bi, b2i = T(2) * Br * Bi;
        // v A^2 + conj(v) B^2
        acc_r[j] += vr * (a2r + b2r) - vi * (a2i - b2i);
        acc_i[j] += vr * (a2i + b2i) + vi * (a2r - b2r);
      } else {
        // v / a + conj(v) / b with Re(1/a) + Re(1/b) = dr (inv_a + inv_b), Im(1/a) - Im(1/b) = q - p,
        // Im(1/a) + Im(1/b) = -(p + q), Re(1/a) - Re(1/b) = dr (inv_a - inv_b)
        const T p = ai * inv_a, q = bi * inv_b;
        acc_r[j] += vr * (dr * (inv_a + inv_b)) + vi * (p - q);
        acc_i[j] += vi * (dr * (inv_a - inv_b)) - vr * (p + q);
      }
    }
  }
#pragma omp simd
  for (int j = 0; j < JT; ++j) {
    out_r[j] = acc_r[j];
    out_i[j] = acc_i[j];
  }
}

// One tile of MT modes (wr, wi) of a row against all L points: (gv, gw) sums before the conj(v)
// factor. tot: 4 arrays of MT (gv re, gv im, gw re, gw im).
template <typename T, int MT, bool NeedV, bool NeedW>
inline void modes_tile(const T* g, const T* z, int64_t L, const T* wr, const T* wi, T (*tot)[MT]) {
  for (int64_t j0 = 0; j0 < L; j0 += kPointBlock) {
    const int64_t j1 = std::min(L, j0 + kPointBlock);
    alignas(64) T part[4][MT] = {};
    for (int64_t j = j0; j < j1; ++j) {
      const T zr = z[2 * j], zi = z[2 * j + 1], gr = g[2 * j], gi = g[2 * j + 1];
#pragma omp simd
      for (int m = 0; m < MT; ++m) {
        const T dr = zr - wr[m];
        const T ai = zi - wi[m];
        const T bi = zi + wi[m];
        const T dr2 = dr * dr;
        const T inv_a = T(1) / (dr2 + ai * ai);
        const T inv_b = T(1) / (dr2 + bi * bi);
        const T Ar = dr * inv_a, Ai = -ai * inv_a, Br = dr * inv_b, Bi = -bi * inv_b;
        // g conj(A) + conj(g) B, with A = 1/a, B = 1/b
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
}

template <typename T, int MT, bool NeedV, bool NeedW>
void modes_impl(const T* g, const T* v, const T* z, const T* w, T* gv, T* gw, int64_t R, int64_t N, int64_t L,
                int num_threads) {
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
    modes_tile<T, MT, NeedV, NeedW>(g + 2 * r * L, z, L, wr, wi, tot);
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
    if (square)
      detail::rows_tile<T, JT, true>(zr, zi, vrow, wrow, N, res_r, res_i);
    else
      detail::rows_tile<T, JT, false>(zr, zi, vrow, wrow, N, res_r, res_i);
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
