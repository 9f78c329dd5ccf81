// CPU kernels of the recurrent ops ssm_scan and ssm_step (forward and backward), pure C++17 on raw
// pointers: no torch here. T is float or double; complex arrays are interleaved (re, im) pairs, as a
// contiguous complex tensor is laid out.
//
//   x_t = dA * x_{t-1} + dB * u_t   (x_{-1} = state, or 0),   y_t = 2 * Re( sum_n C * x_t ) + D * u_t
//
// Layouts (row r = b * H + h, R = B * H rows): u, y, gy, gu (R, L) real (scan) or (R,) (step);
// dA, dB, C (H, N) complex; D (H,) real or null; state, last, grad_state and the per-row mode
// gradients (R, N) complex; checkpoints (R, n_chunks, N) complex, n_chunks = ceil(L / chunk),
// checkpoint c = the state entering chunk c (x_{c * chunk - 1}; the initial state for c = 0).
//
// Scan algorithm ("rows in lanes"): one vector register holds one mode of W = 64 / sizeof(T) rows
// (16 float, 8 double; half that on x86 without AVX-512); a row group is W consecutive rows (b, h). So the sum over modes behind y_t
// is a plain vertical add (no horizontal reduction on or off the critical path), and any N works
// without padding. Per row group the rows are transposed into time-major tiles (u, y, gy, gu: one
// vector per step, an in-register W x W transpose per W steps), the time loop runs innermost with
// M modes interleaved (M independent latency chains of two fused multiply-adds per step), and the
// M-groups of modes take turns over a time block, their states parked in a small per-group array.
// Complex per-row vectors (state, checkpoints, gradients) go in and out of lanes through the same
// transpose. OpenMP splits the row groups over the threads. The vector type is GCC's vector
// extension (GCC and Clang; no intrinsics, any x86/ARM target); the step kernels are plain loops
// the compiler vectorises.
//
// Backward: per row group, chunks in reverse order. For each M-group of modes the chunk's states
// are rebuilt from the chunk's checkpoint into a ((chunk + 1) x M) buffer, then the chunk is walked
// backwards with the adjoint (PyTorch's complex-gradient convention):
//   lambda_t = 2 gy_t conj(C) + c_t,  c_{t-1} = conj(dA) lambda_t,  c_{L-1} = g_last (or 0),
//   gdA += lambda_t conj(x_{t-1}),  gdB += lambda_t u_t,  gC += 2 gy_t conj(x_t),
//   gu_t = Re( sum_n conj(dB) lambda_t ) + D gy_t,  grad_state = c_{-1} = conj(dA) lambda_0.
// The carry c and the gradient totals live in per-group arrays between chunks; the gradient terms
// are summed in registers over at most kAccBlock steps, and those partial sums go into the totals
// with compensated (Kahan) summation, so the error does not grow with L (chunk = 1 included).
#pragma once

#include "common.h"
#include "simd.h"
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <utility>

// The expressions below are written in the order that keeps the state chains two FMAs deep.
DSSM_FP_CONTRACT_BEGIN
DSSM_WIDE_VECTORS_BEGIN

namespace dssm {
namespace kernels {
namespace ssm {

using simd::Vec;

// Forward time block: steps per pass of an M-group of modes (rounded to a multiple of the chunk).
constexpr int64_t kFwdBlock = 256;
// Backward: time span transposed at once (rounded to a multiple of the chunk), and the steps whose
// gradient terms are summed in registers before the compensated totals.
constexpr int64_t kBwdSpan = 256;
constexpr int64_t kAccBlock = 64;
// Modes interleaved in the forward and in the backward time loops.
constexpr int kFwdModes = 4;
constexpr int kBwdRebuildModes = 4;
constexpr int kBwdWalkModes = 2;
// Step kernels: go parallel only from this many state updates on (measured: B=1, H=256, N=32 runs
// 7.2 us per call on one thread, 5.4 us on two, call overhead included).
constexpr int64_t kStepParallelWork = int64_t(1) << 12;

namespace detail {

using common::team_size;
using simd::cplx_in;
using simd::VecBuf;

// A complex number as a pair of reals (scalars, or vectors of rows).
template <class V>
struct Complex {
  V re, im;
};

// x' = dA x + dB u for one mode: (dB u) first, so each new component is two FMAs deep in the old
// state. V is a vector of rows (the scans) or a scalar (the steps), u its input. (Returned by value:
// GCC vectorised the steps' interleaved loops ~10% slower from an in-place, by-reference form.)
template <class V, class U>
inline Complex<V> updated_state(V ar, V ai, V br, V bi, U u, V xr, V xi) {
  return {br * u - ai * xi + ar * xr, bi * u + ai * xr + ar * xi};
}

// Per-row-group parameters, lanes = rows: A[2n], A[2n + 1] = re, im of dA[h, n] (likewise B, C).
template <class T>
struct GroupParams {
  using V = typename Vec<T>::type;
  static constexpr int W = Vec<T>::W;
  VecBuf<T> buf;  // 6 * N vectors
  V* A; V* B; V* C;
  V Dv;
  explicit GroupParams(int64_t N) : buf(6 * size_t(N)), Dv() {
    A = buf.data(); B = A + 2 * N; C = B + 2 * N;
  }
  // Rows r0 .. r0 + nr - 1; lanes past nr get zeros (their rows are never written).
  void load(const T* dA, const T* dB, const T* Cm, const T* D, int64_t H, int64_t N, int64_t r0, int nr) {
    const T* rows[W];
    for (int l = 0; l < W; ++l) rows[l] = l < nr ? dA + ((r0 + l) % H) * N * 2 : nullptr;
    cplx_in<T>(rows, nr, N, A);
    for (int l = 0; l < W; ++l) rows[l] = l < nr ? dB + ((r0 + l) % H) * N * 2 : nullptr;
    cplx_in<T>(rows, nr, N, B);
    for (int l = 0; l < W; ++l) rows[l] = l < nr ? Cm + ((r0 + l) % H) * N * 2 : nullptr;
    cplx_in<T>(rows, nr, N, C);
    for (int l = 0; l < W; ++l) Dv[l] = (D != nullptr && l < nr) ? D[(r0 + l) % H] : T(0);
  }
};

// Forward over tile steps [j0, j1) for modes m0 .. m0 + M - 1: the states xs[2n], xs[2n + 1] in
// registers meanwhile, y accumulated into the y tile.
template <class T, int M>
inline void fwd_run(const GroupParams<T>& p, int64_t m0, typename Vec<T>::type* xs,
                    const typename Vec<T>::type* ut, typename Vec<T>::type* yt, int64_t j0, int64_t j1) {
  using V = typename Vec<T>::type;
  V ar[M], ai[M], br[M], bi[M], cr[M], ci[M], sr[M], si[M];
  for (int m = 0; m < M; ++m) {
    const int64_t k = 2 * (m0 + m);
    ar[m] = p.A[k]; ai[m] = p.A[k + 1];
    br[m] = p.B[k]; bi[m] = p.B[k + 1];
    cr[m] = p.C[k] * T(2); ci[m] = p.C[k + 1] * T(2);
    sr[m] = xs[k]; si[m] = xs[k + 1];
  }
  for (int64_t j = j0; j < j1; ++j) {
    const V uu = ut[j];
    V acc = yt[j];
    for (int m = 0; m < M; ++m) {
      const Complex<V> x = updated_state(ar[m], ai[m], br[m], bi[m], uu, sr[m], si[m]);
      sr[m] = x.re;
      si[m] = x.im;
      acc = acc + cr[m] * sr[m];  // y += 2 Re(C x'), off the chain
      acc = acc - ci[m] * si[m];
    }
    yt[j] = acc;
  }
  for (int m = 0; m < M; ++m) {
    xs[2 * (m0 + m)] = sr[m];
    xs[2 * (m0 + m) + 1] = si[m];
  }
}

// One time block [t0, t0 + nt) for modes m0 .. m0 + M - 1, split at chunk starts; with ckb, the
// state entering chunk c goes to ckb[(c - c_first) * 2N + 2n (+1)].
template <class T, int M>
inline void fwd_modes(const GroupParams<T>& p, int64_t m0, int64_t N, typename Vec<T>::type* xs,
                      const typename Vec<T>::type* ut, typename Vec<T>::type* yt, int64_t t0,
                      int64_t nt, typename Vec<T>::type* ckb, int64_t chunk, int64_t c_first) {
  if (ckb == nullptr) {
    fwd_run<T, M>(p, m0, xs, ut, yt, 0, nt);
    return;
  }
  int64_t j = 0;
  while (j < nt) {
    const int64_t t = t0 + j;
    const int64_t c = t / chunk;
    if (t == c * chunk) {
      for (int m = 0; m < 2 * M; ++m) ckb[(c - c_first) * 2 * N + 2 * m0 + m] = xs[2 * m0 + m];
    }
    const int64_t j1 = std::min(nt, (c + 1) * chunk - t0);
    fwd_run<T, M>(p, m0, xs, ut, yt, j, j1);
    j = j1;
  }
}

// Backward, step 1: rebuild one chunk's states (tile steps 0 .. n-1) for modes m0 .. m0 + M - 1
// from its checkpoint x0 (2N vectors, all modes): xb[j * 2M + 2m (+1)] = x_{t0+j-1}, j = 0 .. n.
template <class T, int M>
inline void bwd_rebuild(const GroupParams<T>& p, int64_t m0, const typename Vec<T>::type* x0,
                        typename Vec<T>::type* xb, const typename Vec<T>::type* ut, int64_t n) {
  using V = typename Vec<T>::type;
  V ar[M], ai[M], br[M], bi[M], sr[M], si[M];
  for (int m = 0; m < M; ++m) {
    const int64_t k = 2 * (m0 + m);
    ar[m] = p.A[k]; ai[m] = p.A[k + 1];
    br[m] = p.B[k]; bi[m] = p.B[k + 1];
    sr[m] = x0[k]; si[m] = x0[k + 1];
    xb[2 * m] = sr[m];
    xb[2 * m + 1] = si[m];
  }
  for (int64_t j = 0; j < n; ++j) {
    const V uu = ut[j];
    V* dst = xb + (j + 1) * 2 * M;
    for (int m = 0; m < M; ++m) {
      const Complex<V> x = updated_state(ar[m], ai[m], br[m], bi[m], uu, sr[m], si[m]);
      sr[m] = x.re;
      si[m] = x.im;
      dst[2 * m] = sr[m];
      dst[2 * m + 1] = si[m];
    }
  }
}

// Backward, step 2: walk one chunk backwards for modes m0 .. m0 + M - 1, whose rebuilt states are
// xb[j * xstride + 2m (+1)] (xb already offset to mode m0).
//   carry: 2N vectors, c per mode (in: c_{t0+n-1}; out: c_{t0-1} = conj(dA) lambda_{t0}).
//   tot: 12N vectors: gdA, gdB, gC totals (2N each, interleaved), then their Kahan compensations.
// The gradient terms are summed in registers over at most kAccBlock steps at a time.
template <class T, int M>
inline void bwd_walk(const GroupParams<T>& p, int64_t m0, int64_t N, const typename Vec<T>::type* xb,
                     int64_t xstride, const typename Vec<T>::type* ut, const typename Vec<T>::type* gyt,
                     typename Vec<T>::type* gut, int64_t n, typename Vec<T>::type* carry,
                     typename Vec<T>::type* tot) {
  using V = typename Vec<T>::type;
  V ar[M], ai[M], br[M], bi[M], cr2[M], ci2[M], lr[M], li[M];
  V aAr[M], aAi[M], aBr[M], aBi[M], aCr[M], aCi[M];
  const V zero = {};
  for (int m = 0; m < M; ++m) {
    const int64_t k = 2 * (m0 + m);
    ar[m] = p.A[k]; ai[m] = p.A[k + 1];
    br[m] = p.B[k]; bi[m] = p.B[k + 1];
    cr2[m] = p.C[k] * T(2);
    ci2[m] = p.C[k + 1] * T(2);
    lr[m] = carry[k];  // c_t = conj(dA) lambda_{t+1}: the incoming carry at the chunk's end
    li[m] = carry[k + 1];
  }
  for (int64_t hi = n; hi > 0; hi -= kAccBlock) {
    const int64_t lo = hi > kAccBlock ? hi - kAccBlock : 0;
    for (int m = 0; m < M; ++m) aAr[m] = aAi[m] = aBr[m] = aBi[m] = aCr[m] = aCi[m] = zero;
    for (int64_t j = hi - 1; j >= lo; --j) {
      const V g = gyt[j];
      const V uu = ut[j];
      const V* xp = xb + j * xstride;        // x_{t-1}
      const V* xc = xb + (j + 1) * xstride;  // x_t
      V gacc = gut[j];
      for (int m = 0; m < M; ++m) {
        const V lam_r = cr2[m] * g + lr[m];  // lambda_t = 2 gy conj(C) + c_t
        const V lam_i = li[m] - ci2[m] * g;
        const V pr = xp[2 * m], pi = xp[2 * m + 1];
        const V qr = xc[2 * m], qi = xc[2 * m + 1];
        // One fused multiply-add per product (a = a + x y; a += x y + z w would cost an extra add).
        aAr[m] = aAr[m] + lam_r * pr;  // lambda conj(x_{t-1})
        aAr[m] = aAr[m] + lam_i * pi;
        aAi[m] = aAi[m] + lam_i * pr;
        aAi[m] = aAi[m] - lam_r * pi;
        aBr[m] = aBr[m] + lam_r * uu;  // lambda u
        aBi[m] = aBi[m] + lam_i * uu;
        aCr[m] = aCr[m] + g * qr;  // gy conj(x_t) (times 2 below)
        aCi[m] = aCi[m] - g * qi;
        gacc = gacc + br[m] * lam_r;  // Re(conj(dB) lambda)
        gacc = gacc + bi[m] * lam_i;
        lr[m] = ar[m] * lam_r + ai[m] * lam_i;  // c_{t-1} = conj(dA) lambda_t
        li[m] = ar[m] * lam_i - ai[m] * lam_r;
      }
      gut[j] = gacc;
    }
    for (int m = 0; m < M; ++m) {
      const int64_t k = 2 * (m0 + m);
      const V part[6] = {aAr[m], aAi[m], aBr[m], aBi[m], aCr[m] * T(2), aCi[m] * T(2)};
      for (int q = 0; q < 6; ++q) {
        const int64_t idx = (q / 2) * 2 * N + k + (q % 2);
        V& s = tot[idx];
        V& comp = tot[6 * N + idx];
        const V yq = part[q] - comp;
        const V tq = s + yq;
        comp = (tq - s) - yq;
        s = tq;
      }
    }
  }
  for (int m = 0; m < M; ++m) {
    carry[2 * (m0 + m)] = lr[m];
    carry[2 * (m0 + m) + 1] = li[m];
  }
}

// Backward through one chunk for modes m0 .. m0 + MR - 1: rebuild MR modes at once (MR latency
// chains), then walk them MW at a time (the walk holds more live vectors per mode).
template <class T, int MR, int MW>
inline void bwd_chunk(const GroupParams<T>& p, int64_t m0, int64_t N, const typename Vec<T>::type* x0,
                      typename Vec<T>::type* xb, const typename Vec<T>::type* ut,
                      const typename Vec<T>::type* gyt, typename Vec<T>::type* gut, int64_t n,
                      typename Vec<T>::type* carry, typename Vec<T>::type* tot) {
  static_assert(MR % MW == 0, "the walk splits the rebuilt modes evenly");
  bwd_rebuild<T, MR>(p, m0, x0, xb, ut, n);
  for (int w = 0; w < MR; w += MW)
    bwd_walk<T, MW>(p, m0 + w, N, xb + 2 * w, 2 * MR, ut, gyt, gut, n, carry, tot);
}

}  // namespace detail

// ssm_scan forward. state, D, ckpt may be null (ckpt null: no checkpoints). chunk >= 1.
// num_threads <= 0: the OpenMP default.
template <class T>
void scan_fwd(const T* u, const T* dA, const T* dB, const T* C, const T* D, const T* state, T* y,
              T* last, T* ckpt, int64_t B, int64_t H, int64_t N, int64_t L, int64_t chunk,
              int num_threads = 0) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::W;
  constexpr int M = kFwdModes;
  const int64_t R = B * H;
  const int64_t G = (R + W - 1) / W;
  const int64_t n_chunks = (L + chunk - 1) / chunk;
  // Time blocks start at chunk starts (chunk <= kFwdBlock) or hold at most one chunk start.
  const int64_t TB = chunk <= kFwdBlock ? chunk * (kFwdBlock / chunk) : kFwdBlock;
  const int64_t tile_len = std::max<int64_t>(1, std::min(TB, L));
  const int64_t ck_per_block = std::max<int64_t>(1, TB / chunk);
#pragma omp parallel num_threads(detail::team_size(num_threads, G))
  {
    detail::GroupParams<T> p(N);
    simd::VecBuf<T> xs(2 * size_t(N)), ut(tile_len), yt(tile_len);
    simd::VecBuf<T> ckb(ckpt != nullptr ? size_t(ck_per_block) * 2 * N : 0);
    const T* in_rows[W];
    T* out_rows[W];
#pragma omp for schedule(static)
    for (int64_t g = 0; g < G; ++g) {
      const int64_t r0 = g * W;
      const int nr = int(std::min<int64_t>(W, R - r0));
      p.load(dA, dB, C, D, H, N, r0, nr);
      simd::lane_rows<const T>(state, N * 2, 0, r0, nr, W, in_rows);
      simd::cplx_in<T>(in_rows, nr, N, xs.data());
      for (int64_t t0 = 0; t0 < L; t0 += TB) {
        const int64_t nt = std::min(TB, L - t0);
        const int64_t c_first = (t0 + chunk - 1) / chunk, c_end = (t0 + nt + chunk - 1) / chunk;
        simd::tile_in<T>(u, L, r0, nr, t0, nt, ut.data());
        if (t0 + TB < L) simd::prefetch_rows<T>(u, L, r0, nr, t0 + TB, std::min(TB, L - t0 - TB));
        for (int64_t j = 0; j < nt; ++j) yt[j] = p.Dv * ut[j];
        V* ck = ckpt != nullptr ? ckb.data() : nullptr;
        int64_t m0 = 0;
        for (; m0 + M <= N; m0 += M)
          detail::fwd_modes<T, M>(p, m0, N, xs.data(), ut.data(), yt.data(), t0, nt, ck, chunk, c_first);
        for (; m0 < N; ++m0)
          detail::fwd_modes<T, 1>(p, m0, N, xs.data(), ut.data(), yt.data(), t0, nt, ck, chunk, c_first);
        simd::tile_out<T>(yt.data(), L, r0, nr, t0, nt, y);
        if (ckpt != nullptr) {
          for (int64_t c = c_first; c < c_end; ++c) {
            simd::lane_rows<T>(ckpt, n_chunks * N * 2, c * N * 2, r0, nr, W, out_rows);
            simd::cplx_out<T>(ckb.data() + (c - c_first) * 2 * N, N, out_rows, nr);
          }
        }
      }
      simd::lane_rows<T>(last, N * 2, 0, r0, nr, W, out_rows);
      simd::cplx_out<T>(xs.data(), N, out_rows, nr);
    }
  }
}

// ssm_scan backward. D, g_last may be null. ckpt from scan_fwd with the same chunk. Outputs: gu
// (R, L); gstate, gdA, gdB, gC (R, N) complex (per-row partial gradients); gD (R,) real, the
// per-row sum_t gy_t u_t (D's gradient before the sum over the batch: the walk has both tiles at
// hand, where a separate pass would read them again and allocate their product).
template <class T>
void scan_bwd(const T* u, const T* dA, const T* dB, const T* C, const T* D, const T* ckpt,
              const T* gy, const T* g_last, T* gu, T* gstate, T* gdA, T* gdB, T* gC, T* gD, int64_t B,
              int64_t H, int64_t N, int64_t L, int64_t chunk, int num_threads = 0) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::W;
  constexpr int M = kBwdRebuildModes;
  const int64_t R = B * H;
  const int64_t G = (R + W - 1) / W;
  const int64_t n_chunks = (L + chunk - 1) / chunk;
  const int64_t TC = std::max<int64_t>(1, std::min(chunk, L));  // the longest chunk
  // Spans of whole chunks, walked in reverse: u and gy are transposed a span at a time.
  const int64_t SP = chunk <= kBwdSpan ? chunk * (kBwdSpan / chunk) : chunk;
  const int64_t n_spans = (L + SP - 1) / SP;
  const int64_t tile_len = std::max<int64_t>(1, std::min(SP, L));
#pragma omp parallel num_threads(detail::team_size(num_threads, G))
  {
    detail::GroupParams<T> p(N);
    simd::VecBuf<T> carry(2 * size_t(N)), tot(12 * size_t(N)), x0(2 * size_t(N));
    simd::VecBuf<T> ut(tile_len), gyt(tile_len), gut(tile_len), xb(size_t(TC + 1) * 2 * M);
    const T* in_rows[W];
    T* out_rows[W];
    const V zero = {};
#pragma omp for schedule(static)
    for (int64_t g = 0; g < G; ++g) {
      const int64_t r0 = g * W;
      const int nr = int(std::min<int64_t>(W, R - r0));
      p.load(dA, dB, C, D, H, N, r0, nr);
      simd::lane_rows<const T>(g_last, N * 2, 0, r0, nr, W, in_rows);
      simd::cplx_in<T>(in_rows, nr, N, carry.data());
      for (int64_t i = 0; i < 12 * N; ++i) tot[i] = zero;
      V gd_sum = zero, gd_comp = zero;  // sum_t gy u, compensated like the other totals
      for (int64_t sp = n_spans - 1; sp >= 0; --sp) {
        const int64_t T0 = sp * SP;
        const int64_t ns = std::min(SP, L - T0);
        simd::tile_in<T>(u, L, r0, nr, T0, ns, ut.data());
        simd::tile_in<T>(gy, L, r0, nr, T0, ns, gyt.data());
        if (sp > 0) {  // the next span back in time: its inputs and checkpoints
          simd::prefetch_rows<T>(u, L, r0, nr, T0 - SP, SP);
          simd::prefetch_rows<T>(gy, L, r0, nr, T0 - SP, SP);
          for (int64_t c = (T0 - SP) / chunk; c < T0 / chunk; ++c)
            simd::prefetch_rows<T>(ckpt, n_chunks * N * 2, r0, nr, c * N * 2, N * 2);
        }
        for (int64_t j = 0; j < ns; ++j) {
          gut[j] = p.Dv * gyt[j];
          const V term = ut[j] * gyt[j] - gd_comp;
          const V next = gd_sum + term;
          gd_comp = (next - gd_sum) - term;
          gd_sum = next;
        }
        for (int64_t c = (T0 + ns - 1) / chunk; c >= T0 / chunk; --c) {
          const int64_t t0 = c * chunk;
          const int64_t nt = std::min(chunk, L - t0);
          const int64_t o = t0 - T0;
          simd::lane_rows<const T>(ckpt, n_chunks * N * 2, c * N * 2, r0, nr, W, in_rows);
          simd::cplx_in<T>(in_rows, nr, N, x0.data());
          int64_t m0 = 0;
          for (; m0 + M <= N; m0 += M)
            detail::bwd_chunk<T, M, kBwdWalkModes>(p, m0, N, x0.data(), xb.data(), ut.data() + o, gyt.data() + o,
                                    gut.data() + o, nt, carry.data(), tot.data());
          for (; m0 < N; ++m0)
            detail::bwd_chunk<T, 1, 1>(p, m0, N, x0.data(), xb.data(), ut.data() + o, gyt.data() + o,
                                    gut.data() + o, nt, carry.data(), tot.data());
        }
        simd::tile_out<T>(gut.data(), L, r0, nr, T0, ns, gu);
      }
      for (int l = 0; l < nr; ++l) gD[r0 + l] = gd_sum[l];
      T* const outs[4] = {gstate, gdA, gdB, gC};
      for (int q = 0; q < 4; ++q) {
        simd::lane_rows<T>(outs[q], N * 2, 0, r0, nr, W, out_rows);
        simd::cplx_out<T>(q == 0 ? carry.data() : tot.data() + (q - 1) * 2 * N, N, out_rows, nr);
      }
    }
  }
}

namespace detail {

// One row of step_fwd: x' = dA x + dB u over the N modes (x = 0 without a state), returns
// sum_n Re(C x'). HasState selects the loop at compile time: the one without reads no state.
template <class T, bool HasState>
inline T step_row_fwd(T uu, const T* s, const T* a, const T* b, const T* c, T* x, int64_t N) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t n = 0; n < N; ++n) {
    T xr, xi;
    if constexpr (HasState) {
      const Complex<T> q = updated_state(a[2 * n], a[2 * n + 1], b[2 * n], b[2 * n + 1], uu, s[2 * n], s[2 * n + 1]);
      xr = q.re;
      xi = q.im;
    } else {  // from x = 0 the update is dB u
      xr = b[2 * n] * uu;
      xi = b[2 * n + 1] * uu;
    }
    x[2 * n] = xr;
    x[2 * n + 1] = xi;
    acc += c[2 * n] * xr - c[2 * n + 1] * xi;
  }
  return acc;
}

// One row of step_bwd, lambda = g_new + 2 gy conj(C) (g_new null: 0): writes gdB = lambda u,
// gC = 2 gy conj(x') (x' rebuilt by updated_state) and, HasState, gstate = conj(dA) lambda and
// gdA = lambda conj(state); returns Re(sum_n conj(dB) lambda).
template <class T, bool HasState>
inline T step_row_bwd(T uu, T gy, const T* s, const T* a, const T* b, const T* c, const T* gn, T* oS, T* oA,
                      T* oB, T* oC, int64_t N) {
  const T g2 = T(2) * gy;
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t n = 0; n < N; ++n) {
    const T lr = g2 * c[2 * n] + (gn != nullptr ? gn[2 * n] : T(0));
    const T li = (gn != nullptr ? gn[2 * n + 1] : T(0)) - g2 * c[2 * n + 1];
    const T ar = a[2 * n], ai = a[2 * n + 1];
    const T sr = HasState ? s[2 * n] : T(0), si = HasState ? s[2 * n + 1] : T(0);
    T xr, xi;
    if constexpr (HasState) {
      const Complex<T> q = updated_state(ar, ai, b[2 * n], b[2 * n + 1], uu, sr, si);
      xr = q.re;
      xi = q.im;
    } else {  // from x = 0 the update is dB u
      xr = b[2 * n] * uu;
      xi = b[2 * n + 1] * uu;
    }
    if (HasState) {
      oS[2 * n] = ar * lr + ai * li;
      oS[2 * n + 1] = ar * li - ai * lr;
      oA[2 * n] = lr * sr + li * si;
      oA[2 * n + 1] = li * sr - lr * si;
    }
    oB[2 * n] = lr * uu;
    oB[2 * n + 1] = li * uu;
    oC[2 * n] = g2 * xr;
    oC[2 * n + 1] = -g2 * xi;
    acc += b[2 * n] * lr + b[2 * n + 1] * li;
  }
  return acc;
}

}  // namespace detail

// ssm_step forward: new = dA * state + dB * u, y = 2 Re(sum_n C * new) + D * u. state, D may be null.
template <class T>
void step_fwd(const T* u, const T* state, const T* dA, const T* dB, const T* C, const T* D, T* y,
              T* xnew, int64_t B, int64_t H, int64_t N, int num_threads = 0) {
  const int64_t R = B * H;
#pragma omp parallel for schedule(static) if (R * N >= kStepParallelWork) \
    num_threads(detail::team_size(num_threads, R))
  for (int64_t r = 0; r < R; ++r) {
    const int64_t h = r % H;
    const T* a = dA + h * N * 2;
    const T* b = dB + h * N * 2;
    const T* c = C + h * N * 2;
    T* x = xnew + r * N * 2;
    const T acc = state != nullptr ? detail::step_row_fwd<T, true>(u[r], state + r * N * 2, a, b, c, x, N)
                                   : detail::step_row_fwd<T, false>(u[r], nullptr, a, b, c, x, N);
    y[r] = T(2) * acc + (D != nullptr ? D[h] * u[r] : T(0));
  }
}

// ssm_step backward, lambda = g_new + 2 gy conj(C):
//   gu = Re(sum_n conj(dB) lambda) + D gy, gstate = conj(dA) lambda, gdA = lambda conj(state),
//   gdB = lambda u, gC = 2 gy conj(new_state). state null: gstate, gdA are not written (may be null).
//   g_new, D may be null.
template <class T>
void step_bwd(const T* u, const T* state, const T* dA, const T* dB, const T* C, const T* D,
              const T* gy, const T* g_new, T* gu, T* gstate, T* gdA, T* gdB, T* gC, int64_t B,
              int64_t H, int64_t N, int num_threads = 0) {
  const int64_t R = B * H;
#pragma omp parallel for schedule(static) if (R * N >= kStepParallelWork) \
    num_threads(detail::team_size(num_threads, R))
  for (int64_t r = 0; r < R; ++r) {
    const int64_t h = r % H;
    const int64_t o = r * N * 2;
    const T* a = dA + h * N * 2;
    const T* b = dB + h * N * 2;
    const T* c = C + h * N * 2;
    const T* gn = g_new == nullptr ? nullptr : g_new + o;
    const T acc = state != nullptr
        ? detail::step_row_bwd<T, true>(u[r], gy[r], state + o, a, b, c, gn, gstate + o, gdA + o, gdB + o, gC + o, N)
        : detail::step_row_bwd<T, false>(u[r], gy[r], nullptr, a, b, c, gn, nullptr, nullptr, gdB + o, gC + o, N);
    gu[r] = acc + (D != nullptr ? D[h] * gy[r] : T(0));
  }
}

}  // namespace ssm
}  // namespace kernels
}  // namespace dssm

DSSM_WIDE_VECTORS_END

DSSM_FP_CONTRACT_END
