// CPU kernels of diag_scan (forward and backward), pure C++17 on raw pointers: no torch here. T is
// float or double; complex arrays are interleaved (re, im) pairs, as a contiguous complex tensor is
// laid out.
//
//   x_t = dA * x_{t-1} + v_t   (x_{-1} = state, or 0),   t = 0 .. L-1
//
// Layouts: v, xs, g_xs, gv (B, L, N) complex, modes innermost (element (b, t, n) at
// ((b * L + t) * N + n) * 2); dA row b at b * dA_stride (dA_stride = N for a (B, N) dA, 0 for an
// (N,) one shared by the batch); state, last, g_last, grad_state, per-row grad_dA (B, N) complex.
//
// Algorithm: a work item is one batch row and a block of up to kModeBlock modes; OpenMP splits the
// B * ceil(N / kModeBlock) items over the threads. An item walks t in order, its block's states in a
// small interleaved array (L1-resident), and each step is one loop over the block's modes that the
// compiler vectorises (interleaved complex: stride-2 loads and stores, permutes). The recurrence of
// a mode is sequential in t, but the block holds kModeBlock independent chains, and every step
// streams a contiguous slice of v in and of xs out: the loop is memory-bound for N >= 16 or so.
// Absent inputs (state, g_xs, g_last) read a zero array and absent outputs (gv, grad_dA) write a
// scratch array, both per item, so the step loops have no branches.
//
// Backward (PyTorch's complex-gradient convention), t from L-1 down to 0, carry mu_L = g_last:
//   lambda_t = g_xs_t + mu_{t+1},   mu_t = conj(dA) lambda_t,   gv_t = lambda_t,
//   gdA += lambda_t conj(x_{t-1})   (x_{t-1} read back from xs; x_{-1} = state),
//   grad_state = mu_0.
// gdA's terms are summed in T over at most kAccBlock steps, then into double totals, so the error
// does not grow with L.
#pragma once

#include "common.h"
#include <algorithm>
#include <cstdint>

DSSM_FP_CONTRACT_BEGIN  // the recurrence wants fused multiply-adds
DSSM_WIDE_VECTORS_BEGIN

namespace dssm {
namespace kernels {
namespace diag_scan {

// Complex modes per work item: 64 keeps the block's states, dA and (backward) the gradient partials
// within a few KiB of L1, and is 4 (float) or 8 (double) 512-bit vectors of work per step.
constexpr int64_t kModeBlock = 64;
// Steps whose grad_dA terms are summed in T before they go into the double totals.
constexpr int64_t kAccBlock = 64;

namespace detail {

// One work item's view: batch row b, modes [n0, n0 + nb).
struct Item {
  int64_t b, n0, nb;
};

inline Item item_of(int64_t i, int64_t N) {
  const int64_t blocks = (N + kModeBlock - 1) / kModeBlock;
  const int64_t n0 = (i % blocks) * kModeBlock;
  return {i / blocks, n0, std::min(kModeBlock, N - n0)};
}

inline int64_t items(int64_t B, int64_t N) { return B * ((N + kModeBlock - 1) / kModeBlock); }

// dst[0 .. 2 nb) = src[0 .. 2 nb), or zeros for a null src.
template <class T>
inline void load_block(const T* src, int64_t nb, T* dst) {
  for (int64_t k = 0; k < 2 * nb; ++k) dst[k] = src != nullptr ? src[k] : T(0);
}

}  // namespace detail

// xs (B, L, N) and last (B, N) from v (B, L, N), dA and state (null: zero). L = 0: last = state.
template <class T>
void fwd(const T* v, const T* dA, int64_t dA_stride, const T* state, T* xs, T* last, int64_t B, int64_t L,
         int64_t N, int num_threads = 0) {
  const int64_t n_items = detail::items(B, N);
#pragma omp parallel for schedule(static) num_threads(common::team_size(num_threads, n_items))
  for (int64_t i = 0; i < n_items; ++i) {
    const detail::Item it = detail::item_of(i, N);
    alignas(64) T a[2 * kModeBlock], x[2 * kModeBlock];
    const int64_t nb = it.nb;
    detail::load_block(dA + (it.b * dA_stride + it.n0) * 2, nb, a);
    detail::load_block(state == nullptr ? nullptr : state + (it.b * N + it.n0) * 2, nb, x);
    for (int64_t t = 0; t < L; ++t) {
      const int64_t off = ((it.b * L + t) * N + it.n0) * 2;
      const T* vt = v + off;
      T* xt = xs + off;
#pragma omp simd
      for (int64_t k = 0; k < nb; ++k) {
        const T ar = a[2 * k], ai = a[2 * k + 1], sr = x[2 * k], si = x[2 * k + 1];
        const T nr = vt[2 * k] + ar * sr - ai * si;
        const T ni = vt[2 * k + 1] + ar * si + ai * sr;
        x[2 * k] = nr;
        x[2 * k + 1] = ni;
        xt[2 * k] = nr;
        xt[2 * k + 1] = ni;
      }
    }
    T* out = last + (it.b * N + it.n0) * 2;
    for (int64_t k = 0; k < 2 * nb; ++k) out[k] = x[k];
  }
}

// Backward. Inputs: dA, state (null: zero), xs from fwd, g_xs (null: zero), g_last (null: zero).
// Outputs: gv (B, L, N) (null: not written), gdA per row (B, N) (null: not computed, and xs not
// read), gstate (B, N).
template <class T>
void bwd(const T* dA, int64_t dA_stride, const T* state, const T* xs, const T* g_xs, const T* g_last, T* gv,
         T* gdA, T* gstate, int64_t B, int64_t L, int64_t N, int num_threads = 0) {
  const int64_t n_items = detail::items(B, N);
#pragma omp parallel for schedule(static) num_threads(common::team_size(num_threads, n_items))
  for (int64_t i = 0; i < n_items; ++i) {
    const detail::Item it = detail::item_of(i, N);
    const int64_t nb = it.nb;
    const int64_t row = (it.b * N + it.n0) * 2;
    alignas(64) T a[2 * kModeBlock], mu[2 * kModeBlock], x0[2 * kModeBlock];
    alignas(64) T zeros[2 * kModeBlock] = {}, scratch[2 * kModeBlock], part[2 * kModeBlock];
    double tot[2 * kModeBlock] = {};
    detail::load_block(dA + (it.b * dA_stride + it.n0) * 2, nb, a);
    detail::load_block(g_last == nullptr ? nullptr : g_last + row, nb, mu);
    detail::load_block(state == nullptr ? nullptr : state + row, nb, x0);
    for (int64_t hi = L; hi > 0; hi -= kAccBlock) {
      const int64_t lo = std::max<int64_t>(0, hi - kAccBlock);
      std::fill(part, part + 2 * nb, T(0));
      for (int64_t t = hi - 1; t >= lo; --t) {
        const int64_t off = ((it.b * L + t) * N + it.n0) * 2;
        const T* g = g_xs != nullptr ? g_xs + off : zeros;
        T* out = gv != nullptr ? gv + off : scratch;
        const T* prev = gdA == nullptr ? zeros : (t > 0 ? xs + off - 2 * N : x0);
#pragma omp simd
        for (int64_t k = 0; k < nb; ++k) {
          const T ar = a[2 * k], ai = a[2 * k + 1];
          const T lr = g[2 * k] + mu[2 * k];
          const T li = g[2 * k + 1] + mu[2 * k + 1];
          out[2 * k] = lr;
          out[2 * k + 1] = li;
          const T pr = prev[2 * k], pi = prev[2 * k + 1];
          part[2 * k] += lr * pr + li * pi;  // lambda conj(x_{t-1})
          part[2 * k + 1] += li * pr - lr * pi;
          mu[2 * k] = ar * lr + ai * li;  // conj(dA) lambda
          mu[2 * k + 1] = ar * li - ai * lr;
        }
      }
      for (int64_t k = 0; k < 2 * nb; ++k) tot[k] += part[k];
    }
    for (int64_t k = 0; k < 2 * nb; ++k) gstate[row + k] = mu[k];
    if (gdA != nullptr)
      for (int64_t k = 0; k < 2 * nb; ++k) gdA[row + k] = static_cast<T>(tot[k]);
  }
}

}  // namespace diag_scan
}  // namespace kernels
}  // namespace dssm

DSSM_WIDE_VECTORS_END

DSSM_FP_CONTRACT_END
