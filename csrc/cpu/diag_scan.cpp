// ATen wrappers of the diag_scan kernels (kernels/diag_scan.h), the "cpp" implementations of the
// primitives diag_scan_fwd and diag_scan_bwd (signatures and semantics: their declarations in
// dssm_kernels/ops/diag_scan.py). The per-row dA gradient (B, N) is summed over b in Python when dA
// is (N,).
#include "aten.h"
#include "kernels/diag_scan.h"

namespace {

namespace K = dssm::kernels::diag_scan;
using dssm::OptTensor;
using dssm::Tensor;

// dA (N,) or (B, N) of the sequence's dtype: its batch stride (0 when shared).
int64_t check_dA(const char* fn, const Tensor& dA, at::ScalarType dtype, int64_t B, int64_t N) {
  TORCH_CHECK(dA.dim() == 1 || dA.dim() == 2, fn, ": dA must be (N,) or (B, N), got ", dA.sizes());
  if (dA.dim() == 1) {
    dssm::check_tensor(fn, "dA", dA, dtype, {N});
    return 0;
  }
  dssm::check_tensor(fn, "dA", dA, dtype, {B, N});
  return N;
}

std::tuple<Tensor, Tensor> diag_scan_fwd(const Tensor& v, const Tensor& dA, const OptTensor& state) {
  const char* fn = "dssm::diag_scan_fwd";
  dssm::check_dim(fn, "v", v, 3, "(B, L, N)");
  const int64_t B = v.size(0), L = v.size(1), N = v.size(2);
  const at::ScalarType ct = dssm::complex_type(fn, "v", v);
  dssm::check_tensor(fn, "v", v, ct, {B, L, N});
  const int64_t dA_stride = check_dA(fn, dA, ct, B, N);
  dssm::check_opt(fn, "state", state, ct, {B, N});
  Tensor xs = dssm::new_output({B, L, N}, v.options());
  Tensor last = dssm::new_output({B, N}, v.options());
  dssm::dispatch_precision(fn, ct, [&](auto zero) {
    using T = decltype(zero);
    K::fwd<T>(dssm::data<T>(v), dssm::data<T>(dA), dA_stride, dssm::data<T>(state), dssm::mutable_data<T>(xs),
              dssm::mutable_data<T>(last), B, L, N, dssm::threads());
  });
  return {xs, last};
}

std::tuple<Tensor, Tensor, Tensor> diag_scan_bwd(const Tensor& dA, const OptTensor& state, const Tensor& xs,
                                                 const OptTensor& g_xs, const OptTensor& g_last, bool need_gv,
                                                 bool need_gdA) {
  const char* fn = "dssm::diag_scan_bwd";
  dssm::check_dim(fn, "xs", xs, 3, "(B, L, N)");
  const int64_t B = xs.size(0), L = xs.size(1), N = xs.size(2);
  const at::ScalarType ct = dssm::complex_type(fn, "xs", xs);
  dssm::check_tensor(fn, "xs (from diag_scan_fwd)", xs, ct, {B, L, N});
  const int64_t dA_stride = check_dA(fn, dA, ct, B, N);
  dssm::check_opt(fn, "state", state, ct, {B, N});
  dssm::check_opt(fn, "g_xs", g_xs, ct, {B, L, N});
  dssm::check_opt(fn, "g_last", g_last, ct, {B, N});
  const auto opts = xs.options();
  Tensor gv = dssm::new_output_if(need_gv, {B, L, N}, opts);
  Tensor gdA = dssm::new_output_if(need_gdA, {B, N}, opts);
  Tensor gstate = dssm::new_output({B, N}, opts);
  dssm::dispatch_precision(fn, ct, [&](auto zero) {
    using T = decltype(zero);
    K::bwd<T>(dssm::data<T>(dA), dA_stride, dssm::data<T>(state), dssm::data<T>(xs), dssm::data<T>(g_xs),
              dssm::data<T>(g_last), dssm::mutable_data_if<T>(need_gv, gv), dssm::mutable_data_if<T>(need_gdA, gdA),
              dssm::mutable_data<T>(gstate), B, L, N, dssm::threads());
  });
  return {gv, gdA, gstate};
}

}  // namespace

DSSM_BIND(m) {
  using pybind11::arg;
  m.def("diag_scan_fwd", &diag_scan_fwd, arg("v"), arg("dA"), arg("state"));
  m.def("diag_scan_bwd", &diag_scan_bwd, arg("dA"), arg("state"), arg("xs"), arg("g_xs"), arg("g_last"), arg("need_gv"),
        arg("need_gdA"));
}
