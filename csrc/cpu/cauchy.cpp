// ATen wrappers of the cauchy kernels (kernels/cauchy.h), the "cpp" implementations of the
// primitives cauchy_rows and cauchy_modes (signatures and semantics: their declarations in
// dssm_kernels/ops/cauchy.py).
#include "aten.h"
#include "kernels/cauchy.h"

namespace {

namespace K = dssm::kernels::cauchy;
using dssm::Tensor;

// v, w complex (R, N) of one dtype, z (L,) of that dtype: returns the dtype.
at::ScalarType check_operands(const char* fn, const Tensor& v, const Tensor& z, const Tensor& w) {
  const at::ScalarType ct = dssm::complex_type(fn, "w", w);
  dssm::check_dim(fn, "w", w, 2, "(R, N)");
  dssm::check_dim(fn, "z", z, 1, "(L,)");
  dssm::check_tensor(fn, "w", w, ct, w.sizes());
  dssm::check_tensor(fn, "v", v, ct, w.sizes());
  dssm::check_tensor(fn, "z", z, ct, z.sizes());
  return ct;
}

Tensor cauchy_rows(const Tensor& v, const Tensor& z, const Tensor& w, bool square) {
  const char* fn = "dssm::cauchy_rows";
  const at::ScalarType ct = check_operands(fn, v, z, w);
  const int64_t R = w.size(0), N = w.size(1), L = z.size(0);
  Tensor out = dssm::new_output({R, L}, w.options());
  if (R == 0 || L == 0) return out;
  dssm::dispatch_precision(fn, ct, [&](auto zero) {
    using T = decltype(zero);
    K::cauchy_rows<T>(dssm::data<T>(v), dssm::data<T>(z), dssm::data<T>(w), dssm::mutable_data<T>(out), R, N, L,
                      square, dssm::threads());
  });
  return out;
}

std::tuple<Tensor, Tensor> cauchy_modes(const Tensor& g, const Tensor& v, const Tensor& z, const Tensor& w,
                                        bool need_v, bool need_w) {
  const char* fn = "dssm::cauchy_modes";
  const at::ScalarType ct = check_operands(fn, v, z, w);
  const int64_t R = w.size(0), N = w.size(1), L = z.size(0);
  dssm::check_tensor(fn, "g", g, ct, {R, L});
  Tensor gv = dssm::new_output_if(need_v, {R, N}, w.options());
  Tensor gw = dssm::new_output_if(need_w, {R, N}, w.options());
  if (R == 0 || N == 0 || !(need_v || need_w)) return {gv, gw};
  dssm::dispatch_precision(fn, ct, [&](auto zero) {
    using T = decltype(zero);
    K::cauchy_modes<T>(dssm::data<T>(g), dssm::data<T>(v), dssm::data<T>(z), dssm::data<T>(w),
                       dssm::mutable_data_if<T>(need_v, gv), dssm::mutable_data_if<T>(need_w, gw), R, N, L,
                       dssm::threads());
  });
  return {gv, gw};
}

}  // namespace

DSSM_BIND(m) {
  using pybind11::arg;
  m.def("cauchy_rows", &cauchy_rows, arg("v"), arg("z"), arg("w"), arg("square"));
  m.def("cauchy_modes", &cauchy_modes, arg("g"), arg("v"), arg("z"), arg("w"), arg("need_v"), arg("need_w"));
}
