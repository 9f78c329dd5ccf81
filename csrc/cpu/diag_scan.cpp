// ATen wrappers of diag_scan (kernels in kernels/diag_scan.h), registered as torch.ops.dssm.*:
//   diag_scan_fwd(v, dA, state) -> (xs, last)
//   diag_scan_bwd(dA, state, xs, g_xs, g_last, need_gv, need_gdA) -> (gv, gdA per row, gstate)
// The Python side (dssm_kernels/ops/diag_scan.py) validates user input; the checks here are internal
// guards. Outputs come from dssm::new_output (alloc.h: NaN-filled while the tests ask for it); an
// output not asked for (need_gv, need_gdA false) is an empty (0,) tensor. Semantics: those of the
// Triton launchers launch_fwd/launch_bwd; the per-row dA gradient (B, N) is summed over b in Python
// when dA is (N,).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "alloc.h"
#include "checks.h"
#include "kernels/diag_scan.h"

namespace {

namespace K = dssm::kernels::diag_scan;
using at::Tensor;
using dssm::OptTensor;

using dssm::check_opt;
using dssm::check_tensor;

// dA (N,) or (B, N) of the dtype of the sequence: its batch stride (0 when shared).
int64_t check_dA(const char* op, const Tensor& dA, at::ScalarType dtype, int64_t B, int64_t N) {
  TORCH_CHECK(dA.dim() == 1 || dA.dim() == 2, op, ": dA must be (N,) or (B, N), got ", dA.sizes());
  if (dA.dim() == 1) {
    check_tensor(op, "dA", dA, dtype, {N});
    return 0;
  }
  check_tensor(op, "dA", dA, dtype, {B, N});
  return N;
}

// Runs f(T{}) with T = float for complex64, double for complex128.
template <class F>
void dispatch_complex(const char* op, at::ScalarType ct, F&& f) {
  if (ct == at::kComplexFloat) {
    f(float{});
  } else {
    TORCH_CHECK(ct == at::kComplexDouble, op, ": complex64 or complex128 expected, got ", ct);
    f(double{});
  }
}

template <class T>
T* data(const Tensor* t) {
  return t == nullptr ? nullptr : static_cast<T*>(t->data_ptr());
}

std::tuple<Tensor, Tensor> diag_scan_fwd(const Tensor& v, const Tensor& dA, const OptTensor& state) {
  const char* op = "dssm::diag_scan_fwd";
  TORCH_CHECK(v.dim() == 3, op, ": v must be (B, L, N), got ", v.sizes());
  const int64_t B = v.size(0), L = v.size(1), N = v.size(2);
  const at::ScalarType ct = v.scalar_type();
  check_tensor(op, "v", v, ct, {B, L, N});
  const int64_t dA_stride = check_dA(op, dA, ct, B, N);
  const Tensor* Sp = check_opt(op, "state", state, ct, {B, N});
  Tensor xs = dssm::new_output({B, L, N}, v.options());
  Tensor last = dssm::new_output({B, N}, v.options());
  dispatch_complex(op, ct, [&](auto zero) {
    using T = decltype(zero);
    K::fwd<T>(data<T>(&v), data<T>(&dA), dA_stride, data<T>(Sp), data<T>(&xs), data<T>(&last), B, L, N,
              at::get_num_threads());
  });
  return {xs, last};
}

std::tuple<Tensor, Tensor, Tensor> diag_scan_bwd(const Tensor& dA, const OptTensor& state, const Tensor& xs,
                                                 const OptTensor& g_xs, const OptTensor& g_last, bool need_gv,
                                                 bool need_gdA) {
  const char* op = "dssm::diag_scan_bwd";
  TORCH_CHECK(xs.dim() == 3, op, ": xs must be (B, L, N), got ", xs.sizes());
  const int64_t B = xs.size(0), L = xs.size(1), N = xs.size(2);
  const at::ScalarType ct = xs.scalar_type();
  check_tensor(op, "xs (from diag_scan_fwd)", xs, ct, {B, L, N});
  const int64_t dA_stride = check_dA(op, dA, ct, B, N);
  const Tensor* Sp = check_opt(op, "state", state, ct, {B, N});
  const Tensor* Gp = check_opt(op, "g_xs", g_xs, ct, {B, L, N});
  const Tensor* GLp = check_opt(op, "g_last", g_last, ct, {B, N});
  const auto opts = xs.options();
  Tensor gv = need_gv ? dssm::new_output({B, L, N}, opts) : at::empty({0}, opts);
  Tensor gdA = need_gdA ? dssm::new_output({B, N}, opts) : at::empty({0}, opts);
  Tensor gstate = dssm::new_output({B, N}, opts);
  dispatch_complex(op, ct, [&](auto zero) {
    using T = decltype(zero);
    K::bwd<T>(data<T>(&dA), dA_stride, data<T>(Sp), data<T>(&xs), data<T>(Gp), data<T>(GLp),
              need_gv ? data<T>(&gv) : nullptr, need_gdA ? data<T>(&gdA) : nullptr, data<T>(&gstate), B, L, N,
              at::get_num_threads());
  });
  return {gv, gdA, gstate};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dssm, m) {
  m.def("diag_scan_fwd(Tensor v, Tensor dA, Tensor? state) -> (Tensor, Tensor)");
  m.def("diag_scan_bwd(Tensor dA, Tensor? state, Tensor xs, Tensor? g_xs, Tensor? g_last, bool need_gv, "
        "bool need_gdA) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(dssm, CPU, m) {
  m.impl("diag_scan_fwd", &diag_scan_fwd);
  m.impl("diag_scan_bwd", &diag_scan_bwd);
}
