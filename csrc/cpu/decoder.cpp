// The streaming decoder's fused step (dssm_kernels/deploy/decoder.py builds it): one C++ call runs a
// whole network over T tokens of B independent streams, keeping every layer's state between calls.
//
// The network, as dssm_kernels.nn defines it (SequenceClassifier, ResidualBlock, or a bare layer):
//   encoder      Linear(d_in, H) or Embedding(V, H) (or none: the input is already (B, T, H))
//   blocks       u = norm(h) (prenorm) | h;  y = SSM(u);  z = out(GELU(y));  h = h + z (then norm,
//                postnorm), out = Linear(H, 2H) + GLU or Linear(H, H); a bare layer is h = SSM(h)
//   head         pooling over time (running mean or last) and Linear(H, C), or none
// Dense products go to torch's BLAS (the Fortran sgemm_/dgemm_ of the MKL that torch links, resolved
// weakly at load time; at::mm_out where a torch build exports none); the rest is kernels/decode.h.
// Weights arrive laid out for these calls (transposed to (K, N_out), complex parameters as (re, im)
// planes, mode-major where the loops run over channels): deploy/decoder.py documents each layout.
#include "aten.h"
#include "kernels/decode.h"

#include <string>
#include <vector>

extern "C" {
// Fortran BLAS (LP64) as the MKL inside libtorch_cpu exports it; weak: null where it does not.
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc) __attribute__((weak));
}

namespace {

namespace K = dssm::kernels::decode;
using dssm::Tensor;

// C (M, n_out) = A (M, k) W (k, n_out) + bias (n_out,) [bias may be null]; all row-major, contiguous.
template <class T>
void gemm_rows(const T* A, const T* W, const T* bias, T* C, int64_t M, int64_t k, int64_t n_out) {
  if (M == 0 || n_out == 0) return;
  if (bias != nullptr) {
    for (int64_t m = 0; m < M; ++m) std::memcpy(C + m * n_out, bias, sizeof(T) * n_out);
  }
  const T beta = bias != nullptr ? T(1) : T(0);
  auto* blas = [] {
    if constexpr (sizeof(T) == 4) return &sgemm_; else return &dgemm_;
  }();
  if (blas != nullptr) {
    // row-major C = A W is column-major C^T = W^T A^T: no transposes, leading dimensions n_out and k
    const int m_ = int(n_out), n_ = int(M), k_ = int(k);
    const T one = T(1);
    blas("N", "N", &m_, &n_, &k_, &one, W, &m_, A, &k_, &beta, C, &m_);
    return;
  }
  const auto opt = at::TensorOptions().dtype(sizeof(T) == 4 ? at::kFloat : at::kDouble);
  Tensor a = at::from_blob(const_cast<T*>(A), {M, k}, opt);
  Tensor w = at::from_blob(const_cast<T*>(W), {k, n_out}, opt);
  Tensor c = at::from_blob(C, {M, n_out}, opt);
  if (bias != nullptr) at::addmm_out(c, c, a, w); else at::mm_out(c, a, w);
}

enum SsmKind : int64_t { kDiag = 0, kDplr = 1, kMimo = 2 };
enum Encoder : int64_t { kNoEncoder = 0, kLinear = 1, kEmbedding = 2 };
enum Pool : int64_t { kNoHead = 0, kMean = 1, kLast = 2 };
// Block flags (bits)
constexpr int64_t kHasNorm = 1, kPrenorm = 2, kGlu = 4, kMix = 8;

struct Block {
  int64_t ssm, flags, N, rank;
  double eps;
  std::vector<Tensor> p;  // the SSM's parameters, then norm gamma, beta, then out W, bias (see decoder.py)
  Tensor state;
};

class Decoder {
 public:
  Decoder(int64_t batch, int64_t d_model, int64_t encoder, std::vector<Tensor> enc, std::vector<int64_t> ssm_kinds,
          std::vector<int64_t> flags, std::vector<int64_t> n_modes, std::vector<int64_t> ranks, std::vector<double> eps,
          std::vector<std::vector<Tensor>> params, std::vector<Tensor> states, int64_t pool, std::vector<Tensor> head,
          Tensor total, Tensor count)
      : B_(batch), H_(d_model), encoder_(encoder), enc_(std::move(enc)), pool_(pool), head_(std::move(head)),
        total_(std::move(total)), count_(std::move(count)) {
    const size_t n = ssm_kinds.size();
    TORCH_CHECK(flags.size() == n && n_modes.size() == n && ranks.size() == n && eps.size() == n &&
                    params.size() == n && states.size() == n,
                "dssm Decoder: one entry per block in every block list");
    for (size_t i = 0; i < n; ++i) {
      TORCH_CHECK(ssm_kinds[i] == kDiag || ssm_kinds[i] == kDplr || ssm_kinds[i] == kMimo,
                  "dssm Decoder: unknown SSM kind ", ssm_kinds[i]);
      TORCH_CHECK(ssm_kinds[i] != kDplr || ranks[i] <= K::kMaxDplrRank, "dssm Decoder: DPLR rank ", ranks[i],
                  " > ", K::kMaxDplrRank);
      blocks_.push_back(Block{ssm_kinds[i], flags[i], n_modes[i], ranks[i], eps[i], std::move(params[i]),
                              std::move(states[i])});
    }
    dtype_ = total_.defined() && total_.numel() > 0 ? total_.scalar_type() : blocks_.at(0).state.scalar_type();
    for (const Block& b : blocks_) {
      for (const Tensor& t : b.p)
        TORCH_CHECK(!t.defined() || (t.is_contiguous() && t.scalar_type() == dtype_ && t.device().is_cpu()),
                    "dssm Decoder: parameters must be contiguous CPU tensors of one dtype");
      TORCH_CHECK(b.state.is_contiguous() && b.state.scalar_type() == dtype_, "dssm Decoder: bad state tensor");
    }
  }

  // x: (B, T, d_in) real, or (B, T) int64 token ids; out: (B, T, n_out), written.
  void run(const Tensor& x, Tensor& out) {
    TORCH_CHECK(x.dim() >= 2 && x.size(0) == B_, "dssm Decoder.run: x must hold the decoder's batch of ", B_,
                " streams, got shape ", x.sizes());
    TORCH_CHECK(x.is_contiguous() && out.is_contiguous(), "dssm Decoder.run: x and out must be contiguous");
    dssm::dispatch_precision("dssm Decoder.run", dtype_, [&](auto zero) {
      using T = decltype(zero);
      run_typed<T>(x, out);
    });
  }

 private:
  template <class T>
  T* buffer(Tensor& t, int64_t n) {
    if (!t.defined() || t.numel() < n) t = at::empty({std::max<int64_t>(n, 1)}, at::TensorOptions().dtype(dtype_));
    return static_cast<T*>(t.data_ptr());
  }

  template <class T>
  static const T* ptr(const Tensor& t) {
    return t.defined() && t.numel() > 0 ? static_cast<const T*>(t.const_data_ptr()) : nullptr;
  }

  template <class T>
  void run_typed(const Tensor& x, Tensor& out) {
    const int64_t T_ = x.size(1), M = B_ * T_, H = H_;
    const int threads = dssm::threads();
    T* h = buffer<T>(h_, M * H);
    // encoder
    if (encoder_ == kEmbedding) {
      TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kLong, "dssm Decoder.run: token ids must be (B, T) int64");
      const int64_t V = enc_.at(0).size(0);
      const int64_t* ids = x.const_data_ptr<int64_t>();
      const T* table = ptr<T>(enc_[0]);
      for (int64_t m = 0; m < M; ++m) {
        if (ids[m] < 0 || ids[m] >= V)
          throw pybind11::value_error("StreamingDecoder: x must hold token ids in [0, vocab_size=" + std::to_string(V) +
                                      "), got " + std::to_string(ids[m]) + " at stream " + std::to_string(m / T_) +
                                      ", token " + std::to_string(m % T_));
        std::memcpy(h + m * H, table + ids[m] * H, sizeof(T) * H);
      }
    } else {
      TORCH_CHECK(x.dim() == 3 && x.scalar_type() == dtype_, "dssm Decoder.run: features must be (B, T, d_in) of the "
                  "decoder's dtype");
      const T* xs = ptr<T>(x);
      if (encoder_ == kLinear) {
        gemm_rows<T>(xs, ptr<T>(enc_[0]), ptr<T>(enc_[1]), h, M, x.size(2), H);
      } else {
        std::memcpy(h, xs, sizeof(T) * M * H);
      }
    }
    T* u = buffer<T>(u_, M * H);
    T* y = buffer<T>(y_, M * H);
    for (Block& blk : blocks_) {
      const bool norm = blk.flags & kHasNorm, pre = blk.flags & kPrenorm, glu = blk.flags & kGlu,
                 mix = blk.flags & kMix;
      const size_t np = blk.p.size();
      const Tensor& gamma = blk.p[np - 4];
      const Tensor& beta = blk.p[np - 3];
      const T* uin = h;
      if (norm && pre) {
        K::layer_norm<T>(h, u, ptr<T>(gamma), ptr<T>(beta), T(blk.eps), M, H, threads);
        uin = u;
      }
      T* yout = mix ? y : u;  // a bare layer writes its output where h is copied from
      run_ssm<T>(blk, uin, yout, T_);
      if (!mix) {
        std::memcpy(h, yout, sizeof(T) * M * H);
        continue;
      }
      K::gelu<T>(y, M * H, threads);
      const Tensor& W = blk.p[np - 2];
      const Tensor& bias = blk.p[np - 1];
      const int64_t n_out = W.size(1);
      T* z = buffer<T>(z_, M * n_out);
      gemm_rows<T>(y, ptr<T>(W), ptr<T>(bias), z, M, H, n_out);
      if (glu) K::glu_residual<T>(z, h, M, H, threads); else K::add_into<T>(z, h, M * H);
      if (norm && !pre) K::layer_norm<T>(h, h, ptr<T>(gamma), ptr<T>(beta), T(blk.eps), M, H, threads);
    }
    T* o = static_cast<T*>(out.data_ptr());
    if (pool_ == kNoHead) {
      std::memcpy(o, h, sizeof(T) * M * H);
      return;
    }
    const T* pooled = h;
    if (pool_ == kMean) {
      T* pm = buffer<T>(u_, M * H);
      K::pool_mean<T>(h, pm, static_cast<T*>(total_.data_ptr()), static_cast<T*>(count_.data_ptr()), B_, T_, H);
      pooled = pm;
    }
    gemm_rows<T>(pooled, ptr<T>(head_[0]), ptr<T>(head_[1]), o, M, H, head_[0].size(1));
  }

  template <class T>
  void run_ssm(Block& blk, const T* u, T* y, int64_t T_) {
    const std::vector<Tensor>& p = blk.p;
    T* state = static_cast<T*>(blk.state.data_ptr());
    const int threads = dssm::threads();
    const int64_t H = H_, N = blk.N;
    if (blk.ssm == kDiag) {
      // p: dA (2, N, H), 2 C dB (2, N, H), D (H,) or empty
      const T* a = ptr<T>(p[0]);
      const T* c = ptr<T>(p[1]);
      K::diag_scan<T>(u, y, a, a + N * H, c, c + N * H, ptr<T>(p[2]), state, B_, T_, H, N, threads);
    } else if (blk.ssm == kDplr) {
      // p: a, b, c, dinv (2, H, N); P, hP, G, E (2, r, H, N); Minv (H, r, r); D (H,)
      K::dplr_scan<T>(u, y, ptr<T>(p[0]), ptr<T>(p[1]), ptr<T>(p[2]), ptr<T>(p[3]), ptr<T>(p[4]), ptr<T>(p[5]),
                      ptr<T>(p[6]), ptr<T>(p[7]), ptr<T>(p[8]), ptr<T>(p[9]), state, B_, T_, H, N, blk.rank,
                      threads);
    } else {
      // p: dA (2, N), dB as (H, 2N) [re | im] of dB^T, 2 C as (2N, H) [Re C^T; -Im C^T], D (H,)
      const int64_t M = B_ * T_;
      T* v = buffer<T>(v_, M * 2 * N);
      gemm_rows<T>(u, ptr<T>(p[1]), nullptr, v, M, H, 2 * N);
      K::mimo_scan<T>(v, ptr<T>(p[0]), state, B_, T_, N, threads);
      gemm_rows<T>(v, ptr<T>(p[2]), nullptr, y, M, 2 * N, H);
      if (ptr<T>(p[3]) != nullptr) K::add_feedthrough<T>(u, ptr<T>(p[3]), y, M, H);
    }
  }

  int64_t B_, H_, encoder_;
  std::vector<Tensor> enc_;
  std::vector<Block> blocks_;
  int64_t pool_;
  std::vector<Tensor> head_;
  Tensor total_, count_;
  at::ScalarType dtype_;
  Tensor h_, u_, y_, z_, v_;  // scratch, grown to the largest call
};

bool have_blas() { return sgemm_ != nullptr && dgemm_ != nullptr; }

}  // namespace

DSSM_BIND(m) {
  using pybind11::arg;
  pybind11::class_<Decoder>(m, "Decoder", "The streaming decoder's fused network (dssm_kernels.deploy)")
      .def(pybind11::init<int64_t, int64_t, int64_t, std::vector<Tensor>, std::vector<int64_t>, std::vector<int64_t>,
                          std::vector<int64_t>, std::vector<int64_t>, std::vector<double>,
                          std::vector<std::vector<Tensor>>, std::vector<Tensor>, int64_t, std::vector<Tensor>, Tensor,
                          Tensor>(),
           arg("batch"), arg("d_model"), arg("encoder"), arg("enc"), arg("ssm_kinds"), arg("flags"), arg("n_modes"),
           arg("ranks"), arg("eps"), arg("params"), arg("states"), arg("pool"), arg("head"), arg("total"),
           arg("count"))
      .def("run", &Decoder::run, arg("x"), arg("out"), pybind11::call_guard<pybind11::gil_scoped_release>());
  m.def("decoder_blas", &have_blas, "Whether the decoder calls torch's Fortran BLAS directly (else at::mm_out)");
}
