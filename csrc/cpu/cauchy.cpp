// ATen wrappers of the cauchy kernels (kernels/cauchy.h), registered as torch.ops.dssm.*:
//   cauchy_rows(v, z, w, square) -> out (R, L) complex
//   cauchy_modes(g, v, z, w, need_v, need_w) -> (gv (R, N) or (0,), gw (R, N) or (0,))
// Semantics: those of the Triton launchers launch_cauchy_rows / launch_cauchy_modes in
// dssm_kernels/ops/cauchy.py. The Python side validates user input and makes the operands
// contiguous; the checks here are internal guards.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "alloc.h"
#include "kernels/cauchy.h"

namespace {

namespace K = dssm::kernels::cauchy;
using at::Tensor;

// v, w complex64/complex128 (R, N) of one dtype; z (L,) of that dtype; all contiguous CPU tensors.
void check_operands(const char* op, const Tensor& v, const Tensor& z, const Tensor& w) {
  const auto ct = w.scalar_type();
  TORCH_CHECK(ct == at::kComplexFloat || ct == at::kComplexDouble, op, ": w must be complex64 or complex128, got ",
              ct);
  TORCH_CHECK(w.dim() == 2, op, ": w must be (R, N), got ", w.sizes());
  TORCH_CHECK(v.sizes() == w.sizes(), op, ": v must have the shape of w ", w.sizes(), ", got ", v.sizes());
  TORCH_CHECK(z.dim() == 1, op, ": z must be (L,), got ", z.sizes());
  for (const Tensor* t : {&v, &z, &w}) {
    TORCH_CHECK(t->device().is_cpu(), op, ": CPU tensors expected");
    TORCH_CHECK(t->scalar_type() == ct, op, ": v, z, w must share a dtype, got ", v.scalar_type(), ", ",
                z.scalar_type(), ", ", w.scalar_type());
    TORCH_CHECK(t->is_contiguous(), op, ": v, z, w must be contiguous");
  }
}

template <class T>
const T* rp(const Tensor& t) {
  return static_cast<const T*>(t.data_ptr());
}

Tensor cauchy_rows(const Tensor& v, const Tensor& z, const Tensor& w, bool square) {
  const char* op = "dssm::cauchy_rows";
  check_operands(op, v, z, w);
  const int64_t R = w.size(0), N = w.size(1), L = z.size(0);
  Tensor out = dssm::new_output({R, L}, w.options());
  if (R == 0 || L == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type() == at::kComplexFloat ? at::kFloat : at::kDouble, "cauchy_rows", [&] {
    K::cauchy_rows<scalar_t>(rp<scalar_t>(v), rp<scalar_t>(z), rp<scalar_t>(w), static_cast<scalar_t*>(out.data_ptr()),
                             R, N, L, square, at::get_num_threads());
  });
  return out;
}

std::tuple<Tensor, Tensor> cauchy_modes(const Tensor& g, const Tensor& v, const Tensor& z, const Tensor& w,
                                        bool need_v, bool need_w) {
  const char* op = "dssm::cauchy_modes";
  check_operands(op, v, z, w);
  const int64_t R = w.size(0), N = w.size(1), L = z.size(0);
  TORCH_CHECK(g.device().is_cpu() && g.scalar_type() == w.scalar_type() && g.is_contiguous(), op,
              ": g must be a contiguous CPU tensor of dtype ", w.scalar_type());
  TORCH_CHECK(g.dim() == 2 && g.size(0) == R && g.size(1) == L, op, ": g must be (R, L) = (", R, ", ", L, "), got ",
              g.sizes());
  const auto empty = [&] { return at::empty({0}, w.options()); };
  Tensor gv = need_v ? dssm::new_output({R, N}, w.options()) : empty();
  Tensor gw = need_w ? dssm::new_output({R, N}, w.options()) : empty();
  if (R == 0 || N == 0 || !(need_v || need_w)) return {gv, gw};
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type() == at::kComplexFloat ? at::kFloat : at::kDouble, "cauchy_modes", [&] {
    K::cauchy_modes<scalar_t>(rp<scalar_t>(g), rp<scalar_t>(v), rp<scalar_t>(z), rp<scalar_t>(w),
                              need_v ? static_cast<scalar_t*>(gv.data_ptr()) : nullptr,
                              need_w ? static_cast<scalar_t*>(gw.data_ptr()) : nullptr, R, N, L,
                              at::get_num_threads());
  });
  return {gv, gw};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dssm, m) {
  m.def("cauchy_rows(Tensor v, Tensor z, Tensor w, bool square) -> Tensor");
  m.def("cauchy_modes(Tensor g, Tensor v, Tensor z, Tensor w, bool need_v, bool need_w) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(dssm, CPU, m) {
  m.impl("cauchy_rows", &cauchy_rows);
  m.impl("cauchy_modes", &cauchy_modes);
}
