// The elementwise and recurrent pieces of the streaming decoder (csrc/cpu/decoder.cpp), pure C++17
// on raw pointers: no torch here. T is float or double. The decoder's dense products (the encoder,
// each block's output map, the classifier head, S5's input and output maps) are BLAS calls made by
// decoder.cpp; everything between them is here.
//
// Activations are row-major (M, H) with row m = b * T + t (B streams, T tokens of each per call).
//
//   layer_norm   y = (x - mean) / sqrt(var + eps) * gamma + beta per row (biased variance, as torch)
//   gelu         y = x / 2 (1 + erf(x / sqrt 2))                  (torch's exact GELU)
//   glu_residual h += z[:, :H] * sigmoid(z[:, H:])                 (GLU output map, then the residual)
//   diag_scan    S4D / DSS: per channel h and mode n, in the scaled state s = x / dB,
//                  s_t = dA s_{t-1} + u_t,   y_t = 2 Re( sum_n (C dB)_n s_t,n ) + D u_t,
//                which is the layer's x_t = dA x_{t-1} + dB u_t, y_t = 2 Re(C x_t) + D u_t with one
//                complex array less to stream per token (dB = 0 is exact too: C dB = 0).
//                Parameters and state are mode-major planes (N, H), so the loops run over channels
//                (full vectors at any N, which reduced models need).
//   dplr_step    S4: the bilinear step of diag(lam) - P^T conj(P) by Woodbury (rank r), per channel.
//   mimo_scan    S5: x_t = dA x_{t-1} + v_t over the N shared modes, v = u dB^T from a BLAS call.
//   pool_rows    the classifier's running mean (or last output) per stream, one row per token.
//
// Vectorised exp / erf for float: GCC vectorises these loops only through code it can see, so float
// uses the polynomial exp below (about 1 ulp on [-87, 88]) and the erf of Abramowitz & Stegun 7.1.26
// (absolute error < 1.5e-7: what torch's own vectorised CPU GELU uses for float); double calls libm.
#pragma once

#include "common.h"
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

DSSM_FP_CONTRACT_BEGIN
DSSM_WIDE_VECTORS_BEGIN

namespace dssm {
namespace kernels {
namespace decode {

// Element counts below which a loop over rows stays on one thread (waking the team costs more).
constexpr int64_t kMinParallelElems = int64_t(1) << 15;

namespace detail {

// exp(x) for float, vectorisable: x = k ln2 + r (Cody-Waite), e^r by its Taylor polynomial to r^7
// (|r| <= ln2 / 2: truncation < 5e-9 relative), times 2^k as two normal powers 2^(k/2) 2^(k - k/2)
// built in the exponent bits (one would overflow at k = 128). Below -87.3 it gives exp(-87.3) (no
// denormals), above 88.72 inf (where float's exp overflows); NaN passes through. k is rounded by
// adding and subtracting 1.5 * 2^23 (its bits then hold k): GCC vectorises neither std::floor
// (without -fno-trapping-math) nor a float-to-int conversion after the clamps in these loops.
inline float exp_f(float x) {
  float xc = x < -87.3f ? -87.3f : x;  // ternaries, not std::min/max: those leave branches in the loop
  xc = xc > 88.72f ? 88.72f : xc;
  constexpr float kRound = 12582912.0f;
  const float km = xc * 1.44269504f + kRound;
  const float k = km - kRound;
  const int32_t ki = __builtin_bit_cast(int32_t, km) - __builtin_bit_cast(int32_t, kRound);
  const int32_t k1 = ki / 2;
  float r = xc - k * 0.693145752f;  // ln2 in two parts: the product with the high part is exact
  r = r - k * 1.42860677e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float s1 = __builtin_bit_cast(float, static_cast<uint32_t>(k1 + 127) << 23);
  const float s2 = __builtin_bit_cast(float, static_cast<uint32_t>(ki - k1 + 127) << 23);
  const float e = p * s1 * s2;
  return x > 88.7228f ? std::numeric_limits<float>::infinity() : e;
}

// erf(x) for float: below |x| = 1 its Taylor series to x^21 (truncation < 2e-8); above, Abramowitz &
// Stegun 7.1.26 on |x| (absolute error < 1.5e-7), sign restored. (7.1.26 alone: 1 - (...) cancels to
// an absolute error of 5e-7 near 0.)
inline float erf_f(float x) {
  const float x2 = x * x;
  float q = -1.0f / 76204800.0f;
  q = q * x2 + 1.0f / 6894720.0f;
  q = q * x2 - 1.0f / 685440.0f;
  q = q * x2 + 1.0f / 75600.0f;
  q = q * x2 - 1.0f / 9360.0f;
  q = q * x2 + 1.0f / 1320.0f;
  q = q * x2 - 1.0f / 216.0f;
  q = q * x2 + 1.0f / 42.0f;
  q = q * x2 - 1.0f / 10.0f;
  q = q * x2 + 1.0f / 3.0f;
  q = 1.0f - q * x2;  // 1 - x^2 / 3 + x^4 / 10 - ...
  const float small = 1.12837917f * x * q;  // 2 / sqrt(pi)
  const float ax = std::fabs(x);
  const float t = 1.0f / (1.0f + 0.3275911f * ax);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const float e = 1.0f - p * t * exp_f(-x2);
  return ax < 1.0f ? small : std::copysign(e, x);
}

inline float exp_t(float x) { return exp_f(x); }
inline double exp_t(double x) { return std::exp(x); }
inline float erf_t(float x) { return erf_f(x); }
inline double erf_t(double x) { return std::erf(x); }

// v_n -= sum_k Q_kn s_k for n < N (dplr_scan's rank-r corrections): Q points at one channel of
// (2, r, H, N) planes (real part of term k at Q + k * HN, imaginary part r * HN further), s real (r,).
template <class T>
inline void sub_rank_terms(const T* Q, const T* s, int64_t r, int64_t HN, int64_t N, T* vr, T* vi) {
  for (int64_t k = 0; k < r; ++k) {
    const T* qr = Q + k * HN;
    const T* qi = qr + r * HN;
    const T sk = s[k];
#pragma omp simd
    for (int64_t n = 0; n < N; ++n) {
      vr[n] -= qr[n] * sk;
      vi[n] -= qi[n] * sk;
    }
  }
}

}  // namespace detail

// y[m, :] = layer norm of x[m, :] (M rows of H): (x - mean) / sqrt(var + eps) * gamma + beta, two
// passes per row (mean, then the centred variance). y may be x.
template <class T>
void layer_norm(const T* x, T* y, const T* gamma, const T* beta, T eps, int64_t M, int64_t H,
                int num_threads = 0) {
#pragma omp parallel for schedule(static) if (M * H >= kMinParallelElems) \
    num_threads(common::team_size(num_threads, M))
  for (int64_t m = 0; m < M; ++m) {
    const T* xr = x + m * H;
    T* yr = y + m * H;
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t h = 0; h < H; ++h) s += xr[h];
    const T mean = s / T(H);
    T v = 0;
#pragma omp simd reduction(+ : v)
    for (int64_t h = 0; h < H; ++h) v += (xr[h] - mean) * (xr[h] - mean);
    const T rstd = T(1) / std::sqrt(v / T(H) + eps);
#pragma omp simd
    for (int64_t h = 0; h < H; ++h) yr[h] = (xr[h] - mean) * rstd * gamma[h] + beta[h];
  }
}

// x <- GELU(x) = x / 2 (1 + erf(x / sqrt 2)), n elements.
constexpr int64_t kElemChunk = 4096;  // elements per work item of the elementwise loops

template <class T>
void gelu(T* x, int64_t n, int num_threads = 0) {
  const int64_t chunks = (n + kElemChunk - 1) / kElemChunk;
#pragma omp parallel for schedule(static) if (n >= kMinParallelElems) \
    num_threads(common::team_size(num_threads, chunks))
  for (int64_t c = 0; c < chunks; ++c) {
    T* xc = x + c * kElemChunk;  // a local pointer: GCC vectorises no loop that reloads a shared one
    const int64_t m = std::min(kElemChunk, n - c * kElemChunk);
#pragma omp simd
    for (int64_t i = 0; i < m; ++i) xc[i] = T(0.5) * xc[i] * (T(1) + detail::erf_t(xc[i] * T(0.70710678118654752440)));
  }
}

// h[m, :] += z[m, :H] * sigmoid(z[m, H:2H]) (z: M rows of 2H), the GLU output map and the residual.
template <class T>
void glu_residual(const T* z, T* h, int64_t M, int64_t H, int num_threads = 0) {
#pragma omp parallel for schedule(static) if (M * H >= kMinParallelElems) \
    num_threads(common::team_size(num_threads, M))
  for (int64_t m = 0; m < M; ++m) {
    const T* a = z + m * 2 * H;
    const T* g = a + H;
    T* o = h + m * H;
#pragma omp simd
    for (int64_t i = 0; i < H; ++i) o[i] += a[i] / (T(1) + detail::exp_t(-g[i]));
  }
}

// h += z elementwise (n elements): the residual of a plain linear output map.
template <class T>
void add_into(const T* z, T* h, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) h[i] += z[i];
}

// S4D / DSS over T tokens of B streams (see the header): u, y (B, T, H); ar, ai, cr, ci (N, H) planes
// of dA and 2 C dB (the factor 2 of 2 Re folded in); D (H,) or null; state (B, 2, N, H): re planes
// then im planes of s, updated in place. Work items are (channel block, stream), streams innermost:
// a block's parameters (4 N kChannelBlock values: 16 KiB at N = 32 in float) stay in L1 over the T
// tokens and across the streams a thread takes in turn, so a batch streams each stream's state once
// and the parameters once, not once per stream.
constexpr int64_t kChannelBlock = 32;

template <class T>
void diag_scan(const T* u, T* y, const T* ar, const T* ai, const T* cr, const T* ci, const T* D, T* state,
               int64_t B, int64_t T_, int64_t H, int64_t N, int num_threads = 0) {
  const int64_t hblocks = (H + kChannelBlock - 1) / kChannelBlock;
  const int64_t items = B * hblocks;
#pragma omp parallel for schedule(static) if (B * T_ * H * N >= kMinParallelElems) \
    num_threads(common::team_size(num_threads, items))
  for (int64_t item = 0; item < items; ++item) {
    const int64_t b = item % B;
    const int64_t h0 = (item / B) * kChannelBlock;
    const int64_t nh = std::min(kChannelBlock, H - h0);
    T* sr = state + b * 2 * N * H + h0;
    T* si = sr + N * H;
    for (int64_t t = 0; t < T_; ++t) {
      const T* ut = u + (b * T_ + t) * H + h0;
      T* yt = y + (b * T_ + t) * H + h0;
#pragma omp simd
      for (int64_t j = 0; j < nh; ++j) yt[j] = D != nullptr ? D[h0 + j] * ut[j] : T(0);
      for (int64_t n = 0; n < N; ++n) {
        const T* a_r = ar + n * H + h0;
        const T* a_i = ai + n * H + h0;
        const T* c_r = cr + n * H + h0;
        const T* c_i = ci + n * H + h0;
        T* s_r = sr + n * H;
        T* s_i = si + n * H;
#pragma omp simd
        for (int64_t j = 0; j < nh; ++j) {
          const T xr = a_r[j] * s_r[j] - a_i[j] * s_i[j] + ut[j];
          const T xi = a_r[j] * s_i[j] + a_i[j] * s_r[j];
          s_r[j] = xr;
          s_i[j] = xi;
          yt[j] += c_r[j] * xr - c_i[j] * xi;
        }
      }
    }
  }
}

// S4 (DPLR) over T tokens of B streams, one bilinear step per token and channel (nn/s4.py's step):
//   s_k  = 2 Re sum_n conj(P_kn) x_n                                 (k < r)
//   w_n  = a_n x_n - sum_k hP_kn s_k + b_n u,      a = 1 + h lam,  hP = h P,  b = 2 h B
//   q_k  = 2 Re sum_n G_kn w_n,                    G = conj(P) Dinv,  Dinv = 1 / (1 - h lam)
//   x'_n = Dinv_n w_n - sum_k E_kn (Minv q)_k,     E = h Dinv P
//   y    = 2 Re sum_n C_n x'_n + D u
// Complex parameters are (re, im) planes: a, b, c, dinv (2, H, N); P, hP, G, E (2, r, H, N); Minv
// (H, r, r); state (B, 2, H, N) updated in place. `scratch` holds 2 N + 2 r values per thread.
template <class T>
void dplr_scan(const T* u, T* y, const T* a, const T* bv, const T* c, const T* dinv, const T* P, const T* hP,
               const T* G, const T* E, const T* Minv, const T* D, T* state, int64_t B, int64_t T_, int64_t H,
               int64_t N, int64_t r, int num_threads = 0) {
  const int64_t HN = H * N, rHN = r * H * N;
  const int64_t items = B * H;
#pragma omp parallel num_threads(common::team_size(num_threads, items)) if (B * T_ * H * N * r >= kMinParallelElems)
  {
    T wbuf[2 * 64];
    T* heap = nullptr;
    if (N > 64) heap = new T[2 * N];
    T* wr = heap != nullptr ? heap : wbuf;
    T* wi = wr + N;
    T sk[8], qk[8], tk[8];
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t b = item / H, h = item % H;
      const int64_t o = h * N;
      T* xr = state + b * 2 * HN + o;
      T* xi = xr + HN;
      for (int64_t t = 0; t < T_; ++t) {
        const T uu = u[(b * T_ + t) * H + h];
        for (int64_t k = 0; k < r; ++k) {
          const T* pr = P + k * HN + o;
          const T* pi = P + rHN + k * HN + o;
          T acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int64_t n = 0; n < N; ++n) acc += pr[n] * xr[n] + pi[n] * xi[n];
          sk[k] = T(2) * acc;
        }
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) {
          wr[n] = a[o + n] * xr[n] - a[HN + o + n] * xi[n] + bv[o + n] * uu;
          wi[n] = a[o + n] * xi[n] + a[HN + o + n] * xr[n] + bv[HN + o + n] * uu;
        }
        detail::sub_rank_terms(hP + o, sk, r, HN, N, wr, wi);
        for (int64_t k = 0; k < r; ++k) {
          const T* gr = G + k * HN + o;
          const T* gi = G + rHN + k * HN + o;
          T acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int64_t n = 0; n < N; ++n) acc += gr[n] * wr[n] - gi[n] * wi[n];
          qk[k] = T(2) * acc;
        }
        const T* mi = Minv + h * r * r;
        for (int64_t k = 0; k < r; ++k) {
          T acc = 0;
          for (int64_t j = 0; j < r; ++j) acc += mi[k * r + j] * qk[j];
          tk[k] = acc;
        }
        const T* dr = dinv + o;
        const T* di = dinv + HN + o;
#pragma omp simd
        for (int64_t n = 0; n < N; ++n) {
          const T nr = dr[n] * wr[n] - di[n] * wi[n];
          const T ni = dr[n] * wi[n] + di[n] * wr[n];
          xr[n] = nr;
          xi[n] = ni;
        }
        detail::sub_rank_terms(E + o, tk, r, HN, N, xr, xi);
        const T* cr_ = c + o;
        const T* ci_ = c + HN + o;
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t n = 0; n < N; ++n) acc += cr_[n] * xr[n] - ci_[n] * xi[n];
        y[(b * T_ + t) * H + h] = T(2) * acc + (D != nullptr ? D[h] * uu : T(0));
      }
    }
    delete[] heap;
  }
}

// Largest rank dplr_scan takes (its per-thread scratch for s, q and Minv q).
constexpr int64_t kMaxDplrRank = 8;

// S5 over T tokens of B streams: v (B, T, 2N) rows [re | im] of dB u (from a BLAS call), overwritten
// by the states x_t in the same layout; dA (2, N); state (B, 2, N) updated in place.
template <class T>
void mimo_scan(T* v, const T* dA, T* state, int64_t B, int64_t T_, int64_t N, int num_threads = 0) {
  const T* ar = dA;
  const T* ai = dA + N;
#pragma omp parallel for schedule(static) if (B * T_ * N >= kMinParallelElems) \
    num_threads(common::team_size(num_threads, B))
  for (int64_t b = 0; b < B; ++b) {
    T* sr = state + b * 2 * N;
    T* si = sr + N;
    for (int64_t t = 0; t < T_; ++t) {
      T* vr = v + (b * T_ + t) * 2 * N;
      T* vi = vr + N;
#pragma omp simd
      for (int64_t n = 0; n < N; ++n) {
        const T xr = ar[n] * sr[n] - ai[n] * si[n] + vr[n];
        const T xi = ar[n] * si[n] + ai[n] * sr[n] + vi[n];
        sr[n] = xr;
        si[n] = xi;
        vr[n] = xr;
        vi[n] = xi;
      }
    }
  }
}

// y[m, :] += D * u[m, :] (M rows of H): S5's feedthrough after its output map.
template <class T>
void add_feedthrough(const T* u, const T* D, T* y, int64_t M, int64_t H) {
  for (int64_t m = 0; m < M; ++m) {
    const T* ur = u + m * H;
    T* yr = y + m * H;
#pragma omp simd
    for (int64_t h = 0; h < H; ++h) yr[h] += D[h] * ur[h];
  }
}

// The classifier's pooling over T tokens of B streams, h (B, T, H) -> pooled (B, T, H):
// mean: total_b += h_t, count_b += 1, pooled_t = total_b / count_b (the running mean of step());
// last: pooled_t = h_t (pooled may be h: nothing to do). total (B, H), count (B,) updated in place.
template <class T>
void pool_mean(const T* h, T* pooled, T* total, T* count, int64_t B, int64_t T_, int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    T* tot = total + b * H;
    for (int64_t t = 0; t < T_; ++t) {
      const T* hr = h + (b * T_ + t) * H;
      T* pr = pooled + (b * T_ + t) * H;
      count[b] += T(1);
      const T cnt = count[b];
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        tot[j] += hr[j];
        pr[j] = tot[j] / cnt;
      }
    }
  }
}

}  // namespace decode
}  // namespace kernels
}  // namespace dssm

DSSM_WIDE_VECTORS_END

DSSM_FP_CONTRACT_END
