// ATen wrappers of the vandermonde kernels (kernels/vandermonde.h), the "cpp" implementations of
// the primitives vandermonde_rows and power_sums (signatures and semantics: their declarations in
// dssm_kernels/ops/vandermonde.py).
#include "aten.h"
#include "kernels/vandermonde.h"

namespace {

namespace K = dssm::kernels::vandermonde;
using dssm::Tensor;

// x: complex (R, N), contiguous, on the CPU: returns its dtype.
at::ScalarType check_modes(const char* fn, const Tensor& x) {
  const at::ScalarType ct = dssm::complex_type(fn, "x", x);
  dssm::check_dim(fn, "x", x, 2, "(R, N)");
  dssm::check_tensor(fn, "x", x, ct, x.sizes());
  return ct;
}

Tensor vandermonde_rows(const Tensor& c, const Tensor& x, int64_t L, double scale, bool reverse) {
  const char* fn = "dssm::vandermonde_rows";
  const at::ScalarType ct = check_modes(fn, x);
  dssm::check_tensor(fn, "c", c, ct, x.sizes());
  TORCH_CHECK(L >= 0, fn, ": L must be >= 0, got ", L);
  const int64_t R = x.size(0), N = x.size(1);
  Tensor out = dssm::new_output({R, L}, x.options().dtype(dssm::real_type(ct)));
  if (R == 0 || L == 0) return out;
  if (N == 0) return out.zero_();
  dssm::dispatch_precision(fn, ct, [&](auto zero) {
    using T = decltype(zero);
    K::vandermonde_rows<T>(dssm::data<T>(c), dssm::data<T>(x), dssm::mutable_data<T>(out), R, N, L,
                           static_cast<T>(scale), reverse, dssm::threads());
  });
  return out;
}

std::tuple<Tensor, Tensor> power_sums(const Tensor& w, const Tensor& x, bool reverse, bool with_deriv) {
  const char* fn = "dssm::power_sums";
  const at::ScalarType ct = check_modes(fn, x);
  dssm::check_dim(fn, "w", w, 2, "(R, L)");
  const int64_t R = x.size(0), N = x.size(1), L = w.size(1);
  dssm::check_tensor(fn, "w", w, dssm::real_type(ct), {R, L});
  Tensor s = dssm::new_output({R, N}, x.options());
  Tensor ds = dssm::new_output_if(with_deriv, {R, N}, x.options());
  if (R == 0 || N == 0) return {s, ds};
  dssm::dispatch_precision(fn, ct, [&](auto zero) {
    using T = decltype(zero);
    K::power_sums<T>(dssm::data<T>(w), dssm::data<T>(x), dssm::mutable_data<T>(s),
                     dssm::mutable_data_if<T>(with_deriv, ds), R, N, L, reverse, dssm::threads());
  });
  return {s, ds};
}

}  // namespace

DSSM_BIND(m) {
  using pybind11::arg;
  m.def("vandermonde_rows", &vandermonde_rows, arg("c"), arg("x"), arg("L"), arg("scale"), arg("reverse"));
  m.def("power_sums", &power_sums, arg("w"), arg("x"), arg("reverse"), arg("with_deriv"));
}
