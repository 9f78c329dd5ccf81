// ATen wrappers of the recurrent ops (kernels in kernels/ssm.h), registered as torch.ops.dssm.*:
//   ssm_scan_fwd, ssm_scan_bwd, ssm_step_fwd, ssm_step_bwd.
// The Python side (dssm_kernels/ops/ssm_scan.py, ssm_step.py) validates user input; the checks here
// are internal guards. Outputs come from dssm::new_output (alloc.h: NaN-filled while the tests ask
// for it). Semantics: those of the Triton launchers launch_scan_fwd/bwd and
// launch_step_fwd/bwd; the per-row mode gradients (B, H, N) are summed over b in Python.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "alloc.h"
#include "checks.h"
#include "kernels/ssm.h"

namespace {

namespace K = dssm::kernels::ssm;
using at::Tensor;
using dssm::OptTensor;

// Complex dtype of the modes and the matching real dtype.
struct Dtypes {
  at::ScalarType complex_t, real_t;
};

Dtypes check_modes(const char* op, const Tensor& dA, const Tensor& dB, const Tensor& C) {
  const auto ct = dA.scalar_type();
  TORCH_CHECK(ct == at::kComplexFloat || ct == at::kComplexDouble, op, ": dA must be complex64 or complex128, got ",
              ct);
  TORCH_CHECK(dA.dim() == 2, op, ": dA must be (H, N), got ", dA.sizes());
  for (const Tensor* t : {&dA, &dB, &C}) {
    TORCH_CHECK(t->device().is_cpu(), op, ": CPU tensors expected");
    TORCH_CHECK(t->scalar_type() == ct, op, ": dA, dB, C must share a dtype");
    TORCH_CHECK(t->sizes() == dA.sizes(), op, ": dA, dB, C must have one shape (H, N)");
    TORCH_CHECK(t->is_contiguous(), op, ": dA, dB, C must be contiguous");
  }
  return {ct, ct == at::kComplexFloat ? at::kFloat : at::kDouble};
}

using dssm::check_opt;
using dssm::check_tensor;

template <class T>
const T* rp(const Tensor& t) {
  return static_cast<const T*>(t.data_ptr());
}
template <class T>
const T* rp(const Tensor* t) {
  return t == nullptr ? nullptr : static_cast<const T*>(t->data_ptr());
}
template <class T>
T* wp(Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

int threads() { return at::get_num_threads(); }

std::tuple<Tensor, Tensor, Tensor> ssm_scan_fwd(const Tensor& u, const Tensor& dA, const Tensor& dB,
                                                const Tensor& C, const OptTensor& D, const OptTensor& state,
                                                bool save_checkpoints, int64_t chunk) {
  const char* op = "dssm::ssm_scan_fwd";
  const Dtypes dt = check_modes(op, dA, dB, C);
  TORCH_CHECK(u.dim() == 3, op, ": u must be (B, H, L), got ", u.sizes());
  const int64_t B = u.size(0), H = u.size(1), L = u.size(2), N = dA.size(1);
  TORCH_CHECK(dA.size(0) == H, op, ": dA must be (H, N) with H = u.shape[1]");
  TORCH_CHECK(chunk >= 1, op, ": chunk must be >= 1, got ", chunk);
  check_tensor(op, "u", u, dt.real_t, {B, H, L});
  const Tensor* Dp = check_opt(op, "D", D, dt.real_t, {H});
  const Tensor* Sp = check_opt(op, "state", state, dt.complex_t, {B, H, N});
  const int64_t n_chunks = (L + chunk - 1) / chunk;
  Tensor y = dssm::new_output({B, H, L}, u.options());
  Tensor last = dssm::new_output({B, H, N}, dA.options());
  Tensor ckpt = save_checkpoints ? dssm::new_output({B, H, n_chunks, N}, dA.options()) : at::empty({0}, dA.options());
  if (B * H == 0) return {y, last, ckpt};
  if (L == 0) {  // nothing to scan: the state passes through
    if (Sp != nullptr) last.copy_(*Sp); else last.zero_();
    return {y, last, ckpt};
  }
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "ssm_scan_fwd", [&] {
    K::scan_fwd<scalar_t>(rp<scalar_t>(u), rp<scalar_t>(dA), rp<scalar_t>(dB), rp<scalar_t>(C), rp<scalar_t>(Dp),
                          rp<scalar_t>(Sp), wp<scalar_t>(y), wp<scalar_t>(last),
                          save_checkpoints ? wp<scalar_t>(ckpt) : nullptr, B, H, N, L, chunk, threads());
  });
  return {y, last, ckpt};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> ssm_scan_bwd(const Tensor& u, const Tensor& dA, const Tensor& dB,
                                                                const Tensor& C, const OptTensor& D,
                                                                const Tensor& ckpt, int64_t chunk, const Tensor& gy,
                                                                const OptTensor& g_last) {
  const char* op = "dssm::ssm_scan_bwd";
  const Dtypes dt = check_modes(op, dA, dB, C);
  TORCH_CHECK(u.dim() == 3, op, ": u must be (B, H, L), got ", u.sizes());
  const int64_t B = u.size(0), H = u.size(1), L = u.size(2), N = dA.size(1);
  TORCH_CHECK(dA.size(0) == H, op, ": dA must be (H, N) with H = u.shape[1]");
  TORCH_CHECK(chunk >= 1, op, ": chunk must be >= 1, got ", chunk);
  const int64_t n_chunks = (L + chunk - 1) / chunk;
  check_tensor(op, "u", u, dt.real_t, {B, H, L});
  check_tensor(op, "gy", gy, dt.real_t, {B, H, L});
  check_tensor(op, "ckpt (from ssm_scan_fwd with save_checkpoints and the same chunk)", ckpt, dt.complex_t,
               {B, H, n_chunks, N});
  const Tensor* Dp = check_opt(op, "D", D, dt.real_t, {H});
  const Tensor* Gp = check_opt(op, "g_last", g_last, dt.complex_t, {B, H, N});
  Tensor gu = dssm::new_output({B, H, L}, u.options());
  Tensor gstate = dssm::new_output({B, H, N}, dA.options());
  Tensor gdA = dssm::new_output({B, H, N}, dA.options());
  Tensor gdB = dssm::new_output({B, H, N}, dA.options());
  Tensor gC = dssm::new_output({B, H, N}, dA.options());
  Tensor gD = dssm::new_output({B, H}, u.options());
  if (B * H == 0) return {gu, gstate, gdA, gdB, gC, gD};
  if (L == 0) {
    if (Gp != nullptr) gstate.copy_(*Gp); else gstate.zero_();
    gdA.zero_();
    gdB.zero_();
    gC.zero_();
    gD.zero_();
    return {gu, gstate, gdA, gdB, gC, gD};
  }
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "ssm_scan_bwd", [&] {
    K::scan_bwd<scalar_t>(rp<scalar_t>(u), rp<scalar_t>(dA), rp<scalar_t>(dB), rp<scalar_t>(C), rp<scalar_t>(Dp),
                          rp<scalar_t>(ckpt), rp<scalar_t>(gy), rp<scalar_t>(Gp), wp<scalar_t>(gu),
                          wp<scalar_t>(gstate), wp<scalar_t>(gdA), wp<scalar_t>(gdB), wp<scalar_t>(gC),
                          wp<scalar_t>(gD), B, H, N, L, chunk, threads());
  });
  return {gu, gstate, gdA, gdB, gC, gD};
}

std::tuple<Tensor, Tensor> ssm_step_fwd(const Tensor& u, const OptTensor& state, const Tensor& dA, const Tensor& dB,
                                        const Tensor& C, const OptTensor& D) {
  const char* op = "dssm::ssm_step_fwd";
  const Dtypes dt = check_modes(op, dA, dB, C);
  TORCH_CHECK(u.dim() == 2, op, ": u must be (B, H), got ", u.sizes());
  const int64_t B = u.size(0), H = u.size(1), N = dA.size(1);
  TORCH_CHECK(dA.size(0) == H, op, ": dA must be (H, N) with H = u.shape[1]");
  check_tensor(op, "u", u, dt.real_t, {B, H});
  const Tensor* Sp = check_opt(op, "state", state, dt.complex_t, {B, H, N});
  const Tensor* Dp = check_opt(op, "D", D, dt.real_t, {H});
  Tensor y = dssm::new_output({B, H}, u.options());
  Tensor xnew = dssm::new_output({B, H, N}, dA.options());
  if (B * H == 0) return {y, xnew};
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "ssm_step_fwd", [&] {
    K::step_fwd<scalar_t>(rp<scalar_t>(u), rp<scalar_t>(Sp), rp<scalar_t>(dA), rp<scalar_t>(dB), rp<scalar_t>(C),
                          rp<scalar_t>(Dp), wp<scalar_t>(y), wp<scalar_t>(xnew), B, H, N, threads());
  });
  return {y, xnew};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> ssm_step_bwd(const Tensor& u, const OptTensor& state,
                                                                const Tensor& dA, const Tensor& dB, const Tensor& C,
                                                                const OptTensor& D, const Tensor& gy,
                                                                const OptTensor& g_new) {
  const char* op = "dssm::ssm_step_bwd";
  const Dtypes dt = check_modes(op, dA, dB, C);
  TORCH_CHECK(u.dim() == 2, op, ": u must be (B, H), got ", u.sizes());
  const int64_t B = u.size(0), H = u.size(1), N = dA.size(1);
  TORCH_CHECK(dA.size(0) == H, op, ": dA must be (H, N) with H = u.shape[1]");
  check_tensor(op, "u", u, dt.real_t, {B, H});
  check_tensor(op, "gy", gy, dt.real_t, {B, H});
  const Tensor* Sp = check_opt(op, "state", state, dt.complex_t, {B, H, N});
  const Tensor* Dp = check_opt(op, "D", D, dt.real_t, {H});
  const Tensor* Gp = check_opt(op, "g_new", g_new, dt.complex_t, {B, H, N});
  Tensor gu = dssm::new_output({B, H}, u.options());
  // without a state, grad_state and the per-row grad_dA are not computed: shape (0,)
  Tensor gstate = Sp != nullptr ? dssm::new_output({B, H, N}, dA.options()) : at::empty({0}, dA.options());
  Tensor gdA = Sp != nullptr ? dssm::new_output({B, H, N}, dA.options()) : at::empty({0}, dA.options());
  Tensor gdB = dssm::new_output({B, H, N}, dA.options());
  Tensor gC = dssm::new_output({B, H, N}, dA.options());
  if (B * H == 0) return {gu, gstate, gdA, gdB, gC};
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "ssm_step_bwd", [&] {
    K::step_bwd<scalar_t>(rp<scalar_t>(u), rp<scalar_t>(Sp), rp<scalar_t>(dA), rp<scalar_t>(dB), rp<scalar_t>(C),
                          rp<scalar_t>(Dp), rp<scalar_t>(gy), rp<scalar_t>(Gp), wp<scalar_t>(gu),
                          Sp != nullptr ? wp<scalar_t>(gstate) : nullptr, Sp != nullptr ? wp<scalar_t>(gdA) : nullptr,
                          wp<scalar_t>(gdB), wp<scalar_t>(gC), B, H, N, threads());
  });
  return {gu, gstate, gdA, gdB, gC};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dssm, m) {
  m.def("ssm_scan_fwd(Tensor u, Tensor dA, Tensor dB, Tensor C, Tensor? D, Tensor? state, bool save_checkpoints, "
        "int chunk) -> (Tensor, Tensor, Tensor)");
  m.def("ssm_scan_bwd(Tensor u, Tensor dA, Tensor dB, Tensor C, Tensor? D, Tensor ckpt, int chunk, Tensor gy, "
        "Tensor? g_last) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("ssm_step_fwd(Tensor u, Tensor? state, Tensor dA, Tensor dB, Tensor C, Tensor? D) -> (Tensor, Tensor)");
  m.def("ssm_step_bwd(Tensor u, Tensor? state, Tensor dA, Tensor dB, Tensor C, Tensor? D, Tensor gy, Tensor? g_new) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(dssm, CPU, m) {
  m.impl("ssm_scan_fwd", &ssm_scan_fwd);
  m.impl("ssm_scan_bwd", &ssm_scan_bwd);
  m.impl("ssm_step_fwd", &ssm_step_fwd);
  m.impl("ssm_step_bwd", &ssm_step_bwd);
}
