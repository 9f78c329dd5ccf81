// SIMD plumbing of the "rows in lanes" kernels (kernels/ssm.h): one vector register holds one value
// of W rows, and these move data between row-major arrays and lane-major tiles. No torch here.
//
//   Vec<T>::type    GCC's vector extension of W = Vec<T>::W lanes of T (GCC and Clang; no
//                   intrinsics, any x86/ARM target)
//   VecBuf<T>       an uninitialised, aligned array of such vectors
//   tile_in/out     (rows, time) <-> time-major tiles, an in-register W x W transpose per W steps
//   cplx_in/out     interleaved complex rows <-> per-mode (re, im) vectors, the same transpose
//   lane_rows       the row pointers of a group's lanes; prefetch_rows the next block's rows
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <utility>

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define DSSM_SIMD_HAVE_SHUFFLE 1
#endif
#endif

namespace dssm {
namespace kernels {
namespace simd {

// Vector width: one 512-bit register with AVX-512; 256 bits on x86 without it (AVX2: twice the
// registers of the 512-bit emulation would not fit the sixteen ymm registers); 512 bits elsewhere.
#if defined(__x86_64__) && !defined(__AVX512F__)
#define DSSM_SIMD_VEC_BYTES 32
#else
#define DSSM_SIMD_VEC_BYTES 64
#endif

template <class T>
struct Vec;
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(DSSM_SIMD_VEC_BYTES)));
  static constexpr int W = DSSM_SIMD_VEC_BYTES / 4;
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(DSSM_SIMD_VEC_BYTES)));
  static constexpr int W = DSSM_SIMD_VEC_BYTES / 8;
};

// An uninitialised, vector-aligned array of n vectors of T (std::vector of the vector type would
// drop its attributes in the template argument).
template <class T>
class VecBuf {
 public:
  using V = typename Vec<T>::type;
  explicit VecBuf(size_t n)
      : p_(static_cast<V*>(::operator new(sizeof(V) * (n > 0 ? n : 1), std::align_val_t(alignof(V))))) {}
  ~VecBuf() { ::operator delete(p_, std::align_val_t(alignof(V))); }
  VecBuf(const VecBuf&) = delete;
  VecBuf& operator=(const VecBuf&) = delete;
  V* data() { return p_; }
  V& operator[](size_t i) { return p_[i]; }

 private:
  V* p_;
};


#ifdef DSSM_SIMD_HAVE_SHUFFLE
// One butterfly stage of the in-register W x W transpose (Eklundh): rows a = i and b = i + S (bit S
// of i clear) swap their S x S off-diagonal blocks.
template <class V, int W, int S, size_t... C>
inline void butterfly(V& a, V& b, std::index_sequence<C...>) {
  const V lo = __builtin_shufflevector(a, b, ((C & S) ? W + C - S : C)...);
  const V hi = __builtin_shufflevector(a, b, ((C & S) ? W + C : C + S)...);
  a = lo;
  b = hi;
}

template <class V, int W, int S>
inline void transpose_stage(V* r) {
  for (int i = 0; i < W; ++i)
    if ((i & S) == 0) butterfly<V, W, S>(r[i], r[i + S], std::make_index_sequence<W>());
}

// r[k][l] <- r[l][k] for a W x W block held in W vectors.
template <class T>
inline void transpose_block(typename Vec<T>::type* r) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::W;
  if constexpr (W >= 16) transpose_stage<V, W, 8>(r);
  if constexpr (W >= 8) transpose_stage<V, W, 4>(r);
  transpose_stage<V, W, 2>(r);
  transpose_stage<V, W, 1>(r);
}
#endif

// Prefetch src[(r0 + l) * ld + t0 + j], j < nt, l < nr: the rows of the next time block.
template <class T>
inline void prefetch_rows(const T* src, int64_t ld, int64_t r0, int nr, int64_t t0, int64_t nt) {
#if defined(__GNUC__)
  for (int l = 0; l < nr; ++l) {
    const char* q = reinterpret_cast<const char*>(src + (r0 + l) * ld + t0);
    for (int64_t off = 0; off < nt * int64_t(sizeof(T)); off += 64) __builtin_prefetch(q + off);
  }
#else
  (void)src; (void)ld; (void)r0; (void)nr; (void)t0; (void)nt;
#endif
}

// tile[j][l] = src[(r0 + l) * ld + t0 + j] for j < nt, l < nr; lanes past nr get zeros.
template <class T>
inline void tile_in(const T* src, int64_t ld, int64_t r0, int nr, int64_t t0, int64_t nt,
                    typename Vec<T>::type* tile) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::W;
  int64_t j0 = 0;
#ifdef DSSM_SIMD_HAVE_SHUFFLE
  if (nr == W) {
    for (; j0 + W <= nt; j0 += W) {
      V r[W];
      for (int l = 0; l < W; ++l) std::memcpy(&r[l], src + (r0 + l) * ld + t0 + j0, sizeof(V));
      transpose_block<T>(r);
      for (int k = 0; k < W; ++k) tile[j0 + k] = r[k];
    }
  }
#endif
  T* dst = reinterpret_cast<T*>(tile);
  for (int l = 0; l < W; ++l) {
    if (l < nr) {
      const T* s = src + (r0 + l) * ld + t0;
      for (int64_t j = j0; j < nt; ++j) dst[j * W + l] = s[j];
    } else {
      for (int64_t j = j0; j < nt; ++j) dst[j * W + l] = T(0);
    }
  }
}

// dst[(r0 + l) * ld + t0 + j] = tile[j][l] for j < nt, l < nr.
template <class T>
inline void tile_out(const typename Vec<T>::type* tile, int64_t ld, int64_t r0, int nr, int64_t t0,
                     int64_t nt, T* dst) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::W;
  int64_t j0 = 0;
#ifdef DSSM_SIMD_HAVE_SHUFFLE
  if (nr == W) {
    for (; j0 + W <= nt; j0 += W) {
      V r[W];
      for (int k = 0; k < W; ++k) r[k] = tile[j0 + k];
      transpose_block<T>(r);
      for (int l = 0; l < W; ++l) std::memcpy(dst + (r0 + l) * ld + t0 + j0, &r[l], sizeof(V));
    }
  }
#endif
  const T* s = reinterpret_cast<const T*>(tile);
  for (int l = 0; l < nr; ++l) {
    T* d = dst + (r0 + l) * ld + t0;
    for (int64_t j = j0; j < nt; ++j) d[j] = s[j * W + l];
  }
}

// Complex vectors of N modes, one per lane: buf[2n] / buf[2n + 1] (re / im over lanes) <- the
// interleaved rows[l][2n], rows[l][2n + 1]; a null row (or l >= nr) gives zeros.
template <class T>
inline void cplx_in(const T* const* rows, int nr, int64_t N, typename Vec<T>::type* buf) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::W;
  int64_t n0 = 0;
#ifdef DSSM_SIMD_HAVE_SHUFFLE
  bool all = nr == W;
  for (int l = 0; l < nr; ++l) all = all && rows[l] != nullptr;
  if (all) {
    for (; n0 + W / 2 <= N; n0 += W / 2) {  // W/2 modes: a W x W block
      V r[W];
      for (int l = 0; l < W; ++l) std::memcpy(&r[l], rows[l] + 2 * n0, sizeof(V));
      transpose_block<T>(r);
      for (int k = 0; k < W; ++k) buf[2 * n0 + k] = r[k];
    }
  }
#endif
  for (int64_t n = n0; n < N; ++n) {
    for (int l = 0; l < W; ++l) {
      const bool ok = l < nr && rows[l] != nullptr;
      buf[2 * n][l] = ok ? rows[l][2 * n] : T(0);
      buf[2 * n + 1][l] = ok ? rows[l][2 * n + 1] : T(0);
    }
  }
}

// rows[l][2n], rows[l][2n + 1] = buf[2n][l], buf[2n + 1][l] for l < nr.
template <class T>
inline void cplx_out(const typename Vec<T>::type* buf, int64_t N, T* const* rows, int nr) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::W;
  int64_t n0 = 0;
#ifdef DSSM_SIMD_HAVE_SHUFFLE
  if (nr == W) {
    for (; n0 + W / 2 <= N; n0 += W / 2) {
      V r[W];
      for (int k = 0; k < W; ++k) r[k] = buf[2 * n0 + k];
      transpose_block<T>(r);
      for (int l = 0; l < W; ++l) std::memcpy(rows[l] + 2 * n0, &r[l], sizeof(V));
    }
  }
#endif
  for (int l = 0; l < nr; ++l) {
    for (int64_t n = n0; n < N; ++n) {
      rows[l][2 * n] = buf[2 * n][l];
      rows[l][2 * n + 1] = buf[2 * n + 1][l];
    }
  }
}

// Row pointers base + (r0 + l) * stride + offset for the lanes of a group (null base: all null).
template <class P>
inline void lane_rows(P* base, int64_t stride, int64_t offset, int64_t r0, int nr, int W, P** rows) {
  for (int l = 0; l < W; ++l) rows[l] = (base != nullptr && l < nr) ? base + (r0 + l) * stride + offset : nullptr;
}


}  // namespace simd
}  // namespace kernels
}  // namespace dssm
