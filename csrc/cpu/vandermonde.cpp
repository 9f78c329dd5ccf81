// ATen wrappers of the vandermonde kernels (kernels/vandermonde.h), registered as torch.ops.dssm.*:
//   vandermonde_rows(c, x, L, scale, reverse) -> out (R, L) real
//   power_sums(w, x, reverse, with_deriv) -> (s (R, N), ds (R, N) or (0,))
// Semantics: those of the Triton launchers launch_vandermonde_rows / launch_power_sums in
// dssm_kernels/ops/vandermonde.py. The Python side validates user input and makes the operands
// contiguous; the checks here are internal guards.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "alloc.h"
#include "kernels/vandermonde.h"

namespace {

namespace K = dssm::kernels::vandermonde;
using at::Tensor;

at::ScalarType real_of(at::ScalarType complex_t) {
  return complex_t == at::kComplexFloat ? at::kFloat : at::kDouble;
}

// c and x (or w and x): complex64/complex128 (R, N), one dtype, contiguous, on the CPU.
void check_modes(const char* op, const char* name, const Tensor& t, const Tensor& x) {
  const auto ct = x.scalar_type();
  TORCH_CHECK(ct == at::kComplexFloat || ct == at::kComplexDouble, op, ": x must be complex64 or complex128, got ",
              ct);
  TORCH_CHECK(x.dim() == 2, op, ": x must be (R, N), got ", x.sizes());
  TORCH_CHECK(x.device().is_cpu() && t.device().is_cpu(), op, ": CPU tensors expected");
  TORCH_CHECK(x.is_contiguous() && t.is_contiguous(), op, ": ", name, " and x must be contiguous");
}

Tensor vandermonde_rows(const Tensor& c, const Tensor& x, int64_t L, double scale, bool reverse) {
  const char* op = "dssm::vandermonde_rows";
  check_modes(op, "c", c, x);
  TORCH_CHECK(c.scalar_type() == x.scalar_type(), op, ": c and x must share a dtype, got ", c.scalar_type(), " and ",
              x.scalar_type());
  TORCH_CHECK(c.sizes() == x.sizes(), op, ": c and x must have one shape (R, N), got ", c.sizes(), " and ", x.sizes());
  TORCH_CHECK(L >= 0, op, ": L must be >= 0, got ", L);
  const int64_t R = x.size(0), N = x.size(1);
  Tensor out = dssm::new_output({R, L}, x.options().dtype(real_of(x.scalar_type())));
  if (R == 0 || L == 0) return out;
  if (N == 0) return out.zero_();
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "vandermonde_rows", [&] {
    K::vandermonde_rows<scalar_t>(static_cast<const scalar_t*>(c.data_ptr()), static_cast<const scalar_t*>(x.data_ptr()),
                                  out.data_ptr<scalar_t>(), R, N, L, static_cast<scalar_t>(scale), reverse,
                                  at::get_num_threads());
  });
  return out;
}

std::tuple<Tensor, Tensor> power_sums(const Tensor& w, const Tensor& x, bool reverse, bool with_deriv) {
  const char* op = "dssm::power_sums";
  check_modes(op, "w", w, x);
  const auto rt = real_of(x.scalar_type());
  TORCH_CHECK(w.scalar_type() == rt, op, ": w must be ", rt, " to match x (", x.scalar_type(), "), got ",
              w.scalar_type());
  TORCH_CHECK(w.dim() == 2 && w.size(0) == x.size(0), op, ": w must be (R, L) with R = x.shape[0], got ", w.sizes(),
              " and x ", x.sizes());
  const int64_t R = x.size(0), N = x.size(1), L = w.size(1);
  Tensor s = dssm::new_output({R, N}, x.options());
  Tensor ds = with_deriv ? dssm::new_output({R, N}, x.options()) : at::empty({0}, x.options());
  if (R == 0 || N == 0) return {s, ds};
  AT_DISPATCH_FLOATING_TYPES(rt, "power_sums", [&] {
    K::power_sums<scalar_t>(w.data_ptr<scalar_t>(), static_cast<const scalar_t*>(x.data_ptr()),
                            static_cast<scalar_t*>(s.data_ptr()),
                            with_deriv ? static_cast<scalar_t*>(ds.data_ptr()) : nullptr, R, N, L, reverse,
                            at::get_num_threads());
  });
  return {s, ds};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dssm, m) {
  m.def("vandermonde_rows(Tensor c, Tensor x, int L, float scale, bool reverse) -> Tensor");
  m.def("power_sums(Tensor w, Tensor x, bool reverse, bool with_deriv) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(dssm, CPU, m) {
  m.impl("vandermonde_rows", &vandermonde_rows);
  m.impl("power_sums", &power_sums);
}
