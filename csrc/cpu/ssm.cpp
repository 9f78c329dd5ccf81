// ATen wrappers of the recurrent kernels (kernels/ssm.h), the "cpp" implementations of the
// primitives ssm_scan_fwd, ssm_scan_bwd, ssm_step_fwd and ssm_step_bwd (signatures and semantics:
// their declarations in dssm_kernels/ops/ssm_scan.py and ssm_step.py). The per-row mode gradients
// (B, H, N) are summed over b in Python.
#include "aten.h"
#include "kernels/ssm.h"

namespace {

namespace K = dssm::kernels::ssm;
using dssm::OptTensor;
using dssm::Tensor;

// dA, dB, C complex (H, N) of one dtype: returns the dtype.
at::ScalarType check_modes(const char* fn, const Tensor& dA, const Tensor& dB, const Tensor& C, int64_t H) {
  const at::ScalarType ct = dssm::complex_type(fn, "dA", dA);
  dssm::check_dim(fn, "dA", dA, 2, "(H, N)");
  TORCH_CHECK(dA.size(0) == H, fn, ": dA must be (H, N) with H = u.shape[1] = ", H, ", got ", dA.sizes());
  for (const auto& [name, t] : {std::pair<const char*, const Tensor&>{"dA", dA}, {"dB", dB}, {"C", C}})
    dssm::check_tensor(fn, name, t, ct, dA.sizes());
  return ct;
}

// The sizes and dtypes of a call, its common arguments checked: u real, (B, H, L) for a scan or (B, H)
// for a step (then L = 1), the modes (check_modes), a scan's chunk >= 1 (n_chunks = ceil(L / chunk)).
struct Sizes {
  int64_t B, H, L, N, n_chunks;
  at::ScalarType ct, rt;
};

Sizes check_call(const char* fn, const Tensor& u, const Tensor& dA, const Tensor& dB, const Tensor& C, bool scan,
                 int64_t chunk = 1) {
  dssm::check_dim(fn, "u", u, scan ? 3 : 2, scan ? "(B, H, L)" : "(B, H)");
  const int64_t H = u.size(1), L = scan ? u.size(2) : 1;
  const at::ScalarType ct = check_modes(fn, dA, dB, C, H);
  const at::ScalarType rt = dssm::real_type(ct);
  TORCH_CHECK(chunk >= 1, fn, ": chunk must be >= 1, got ", chunk);
  dssm::check_tensor(fn, "u", u, rt, u.sizes());  // the shape is checked above: here dtype and layout
  return {u.size(0), H, L, dA.size(1), (L + chunk - 1) / chunk, ct, rt};
}

std::tuple<Tensor, Tensor, Tensor> ssm_scan_fwd(const Tensor& u, const Tensor& dA, const Tensor& dB,
                                                const Tensor& C, const OptTensor& D, const OptTensor& state,
                                                bool save_checkpoints, int64_t chunk) {
  const char* fn = "dssm::ssm_scan_fwd";
  const Sizes sz = check_call(fn, u, dA, dB, C, true, chunk);  // named copies below: lambdas capture them
  const int64_t B = sz.B, H = sz.H, L = sz.L, N = sz.N, n_chunks = sz.n_chunks;
  const at::ScalarType ct = sz.ct, rt = sz.rt;
  dssm::check_opt(fn, "D", D, rt, {H});
  const bool has_state = dssm::check_opt(fn, "state", state, ct, {B, H, N});
  Tensor y = dssm::new_output({B, H, L}, u.options());
  Tensor last = dssm::new_output({B, H, N}, dA.options());
  Tensor ckpt = dssm::new_output_if(save_checkpoints, {B, H, n_chunks, N}, dA.options());
  if (B * H == 0) return {y, last, ckpt};
  if (L == 0) {  // nothing to scan: the state passes through
    if (has_state) last.copy_(*state); else last.zero_();
    return {y, last, ckpt};
  }
  dssm::dispatch_precision(fn, ct, [&](auto zero) {
    using T = decltype(zero);
    K::scan_fwd<T>(dssm::data<T>(u), dssm::data<T>(dA), dssm::data<T>(dB), dssm::data<T>(C), dssm::data<T>(D),
                   dssm::data<T>(state), dssm::mutable_data<T>(y), dssm::mutable_data<T>(last),
                   dssm::mutable_data_if<T>(save_checkpoints, ckpt), B, H, N, L, chunk, dssm::threads());
  });
  return {y, last, ckpt};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> ssm_scan_bwd(
    const Tensor& u, const Tensor& dA, const Tensor& dB, const Tensor& C, const OptTensor& D, const Tensor& ckpt,
    int64_t chunk, const Tensor& gy, const OptTensor& g_last) {
  const char* fn = "dssm::ssm_scan_bwd";
  const Sizes sz = check_call(fn, u, dA, dB, C, true, chunk);  // named copies below: lambdas capture them
  const int64_t B = sz.B, H = sz.H, L = sz.L, N = sz.N, n_chunks = sz.n_chunks;
  const at::ScalarType ct = sz.ct, rt = sz.rt;
  dssm::check_tensor(fn, "gy", gy, rt, {B, H, L});
  dssm::check_tensor(fn, "ckpt (from ssm_scan_fwd with save_checkpoints and the same chunk)", ckpt, ct,
                     {B, H, n_chunks, N});
  dssm::check_opt(fn, "D", D, rt, {H});
  const bool has_g_last = dssm::check_opt(fn, "g_last", g_last, ct, {B, H, N});
  Tensor gu = dssm::new_output({B, H, L}, u.options());
  Tensor gstate = dssm::new_output({B, H, N}, dA.options());
  Tensor gdA = dssm::new_output({B, H, N}, dA.options());
  Tensor gdB = dssm::new_output({B, H, N}, dA.options());
  Tensor gC = dssm::new_output({B, H, N}, dA.options());
  Tensor gD = dssm::new_output({B, H}, u.options());
  if (B * H == 0) return {gu, gstate, gdA, gdB, gC, gD};
  if (L == 0) {
    if (has_g_last) gstate.copy_(*g_last); else gstate.zero_();
    for (Tensor* t : {&gdA, &gdB, &gC, &gD}) t->zero_();
    return {gu, gstate, gdA, gdB, gC, gD};
  }
  dssm::dispatch_precision(fn, ct, [&](auto zero) {
    using T = decltype(zero);
    K::scan_bwd<T>(dssm::data<T>(u), dssm::data<T>(dA), dssm::data<T>(dB), dssm::data<T>(C), dssm::data<T>(D),
                   dssm::data<T>(ckpt), dssm::data<T>(gy), dssm::data<T>(g_last), dssm::mutable_data<T>(gu),
                   dssm::mutable_data<T>(gstate), dssm::mutable_data<T>(gdA), dssm::mutable_data<T>(gdB),
                   dssm::mutable_data<T>(gC), dssm::mutable_data<T>(gD), B, H, N, L, chunk, dssm::threads());
  });
  return {gu, gstate, gdA, gdB, gC, gD};
}

std::tuple<Tensor, Tensor> ssm_step_fwd(const Tensor& u, const OptTensor& state, const Tensor& dA, const Tensor& dB,
                                        const Tensor& C, const OptTensor& D) {
  const char* fn = "dssm::ssm_step_fwd";
  const Sizes sz = check_call(fn, u, dA, dB, C, false);
  const int64_t B = sz.B, H = sz.H, N = sz.N;
  const at::ScalarType ct = sz.ct, rt = sz.rt;
  dssm::check_opt(fn, "state", state, ct, {B, H, N});
  dssm::check_opt(fn, "D", D, rt, {H});
  Tensor y = dssm::new_output({B, H}, u.options());
  Tensor xnew = dssm::new_output({B, H, N}, dA.options());
  if (B * H == 0) return {y, xnew};
  dssm::dispatch_precision(fn, ct, [&](auto zero) {
    using T = decltype(zero);
    K::step_fwd<T>(dssm::data<T>(u), dssm::data<T>(state), dssm::data<T>(dA), dssm::data<T>(dB), dssm::data<T>(C),
                   dssm::data<T>(D), dssm::mutable_data<T>(y), dssm::mutable_data<T>(xnew), B, H, N, dssm::threads());
  });
  return {y, xnew};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> ssm_step_bwd(const Tensor& u, const OptTensor& state,
                                                                const Tensor& dA, const Tensor& dB, const Tensor& C,
                                                                const OptTensor& D, const Tensor& gy,
                                                                const OptTensor& g_new) {
  const char* fn = "dssm::ssm_step_bwd";
  const Sizes sz = check_call(fn, u, dA, dB, C, false);
  const int64_t B = sz.B, H = sz.H, N = sz.N;
  const at::ScalarType ct = sz.ct, rt = sz.rt;
  dssm::check_tensor(fn, "gy", gy, rt, {B, H});
  const bool has_state = dssm::check_opt(fn, "state", state, ct, {B, H, N});
  dssm::check_opt(fn, "D", D, rt, {H});
  dssm::check_opt(fn, "g_new", g_new, ct, {B, H, N});
  Tensor gu = dssm::new_output({B, H}, u.options());
  // without a state, grad_state and the per-row grad_dA are not computed: shape (0,)
  Tensor gstate = dssm::new_output_if(has_state, {B, H, N}, dA.options());
  Tensor gdA = dssm::new_output_if(has_state, {B, H, N}, dA.options());
  Tensor gdB = dssm::new_output({B, H, N}, dA.options());
  Tensor gC = dssm::new_output({B, H, N}, dA.options());
  if (B * H == 0) return {gu, gstate, gdA, gdB, gC};
  dssm::dispatch_precision(fn, ct, [&](auto zero) {
    using T = decltype(zero);
    K::step_bwd<T>(dssm::data<T>(u), dssm::data<T>(state), dssm::data<T>(dA), dssm::data<T>(dB), dssm::data<T>(C),
                   dssm::data<T>(D), dssm::data<T>(gy), dssm::data<T>(g_new), dssm::mutable_data<T>(gu),
                   dssm::mutable_data_if<T>(has_state, gstate), dssm::mutable_data_if<T>(has_state, gdA),
                   dssm::mutable_data<T>(gdB), dssm::mutable_data<T>(gC), B, H, N, dssm::threads());
  });
  return {gu, gstate, gdA, gdB, gC};
}

}  // namespace

DSSM_BIND(m) {
  using pybind11::arg;
  m.def("ssm_scan_fwd", &ssm_scan_fwd, arg("u"), arg("dA"), arg("dB"), arg("C"), arg("D"), arg("state"),
        arg("save_checkpoints"), arg("chunk"));
  m.def("ssm_scan_bwd", &ssm_scan_bwd, arg("u"), arg("dA"), arg("dB"), arg("C"), arg("D"), arg("ckpt"), arg("chunk"),
        arg("gy"), arg("g_last"));
  m.def("ssm_step_fwd", &ssm_step_fwd, arg("u"), arg("state"), arg("dA"), arg("dB"), arg("C"), arg("D"));
  m.def("ssm_step_bwd", &ssm_step_bwd, arg("u"), arg("state"), arg("dA"), arg("dB"), arg("C"), arg("D"), arg("gy"),
        arg("g_new"));
}
