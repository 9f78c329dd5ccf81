// The ATen side of the "cpp" backend, shared by every wrapper in csrc/cpu/<family>.cpp: checks of
// the operands, typed data pointers, the complex -> real dtype mapping, output allocation, and the
// registration of a family's functions in the Python module dssm_kernels._C.
//
// A wrapper is a plain function on at::Tensor with the arguments of its primitive's signature,
// which is declared once, in Python (dssm_kernels/ops/_primitives.py); the op dssm::<name> calls
// it through pybind11. The Python side validates user input and makes operands contiguous; the
// checks here are internal guards, so their messages name the primitive rather than a user-facing
// argument.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/utils/pybind.h>

#include <optional>
#include <vector>

namespace dssm {

using at::Tensor;
using OptTensor = std::optional<at::Tensor>;

// --- checks -------------------------------------------------------------------------------------

// A contiguous CPU tensor of `dtype` and `shape`, with no lazy conjugation or negation (its memory
// holds its values: the op's dispatcher resolves both, a direct call from Python might not).
inline void check_tensor(const char* fn, const char* name, const Tensor& t, at::ScalarType dtype,
                         at::IntArrayRef shape) {
  TORCH_CHECK(t.device().is_cpu(), fn, ": ", name, " must be a CPU tensor, got one on ", t.device());
  TORCH_CHECK(t.scalar_type() == dtype, fn, ": ", name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.sizes() == shape, fn, ": ", name, " must have shape ", shape, ", got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), fn, ": ", name, " must be contiguous");
  TORCH_CHECK(!t.is_conj() && !t.is_neg(), fn, ": ", name, " must not be a lazily conjugated or negated view");
}

// check_tensor for an optional input; false when it is absent.
inline bool check_opt(const char* fn, const char* name, const OptTensor& t, at::ScalarType dtype,
                      at::IntArrayRef shape) {
  if (!t.has_value() || !t->defined()) return false;
  check_tensor(fn, name, *t, dtype, shape);
  return true;
}

// The dtype of a complex64 / complex128 tensor (anything else fails), to check the others against.
inline at::ScalarType complex_type(const char* fn, const char* name, const Tensor& t) {
  const at::ScalarType ct = t.scalar_type();
  TORCH_CHECK(ct == at::kComplexFloat || ct == at::kComplexDouble, fn, ": ", name,
              " must be complex64 or complex128, got ", ct);
  return ct;
}

// A tensor with `dim` dimensions (before its sizes are read).
inline void check_dim(const char* fn, const char* name, const Tensor& t, int64_t dim, const char* layout) {
  TORCH_CHECK(t.dim() == dim, fn, ": ", name, " must be ", layout, ", got shape ", t.sizes());
}

// --- dtypes -------------------------------------------------------------------------------------

// float32 for complex64, float64 for complex128.
inline at::ScalarType real_type(at::ScalarType complex_t) {
  return complex_t == at::kComplexFloat ? at::kFloat : at::kDouble;
}

// Runs f(T{}) with T = float for complex64 (or float32), double for complex128 (or float64): the
// kernels see a complex array as interleaved (re, im) pairs of T.
template <class F>
void dispatch_precision(const char* fn, at::ScalarType dtype, F&& f) {
  if (dtype == at::kComplexFloat || dtype == at::kFloat) {
    f(float{});
  } else {
    TORCH_CHECK(dtype == at::kComplexDouble || dtype == at::kDouble, fn, ": float32/complex64 or "
                "float64/complex128 expected, got ", dtype);
    f(double{});
  }
}

// --- data pointers ------------------------------------------------------------------------------

template <class T>
const T* data(const Tensor& t) {
  return static_cast<const T*>(t.const_data_ptr());
}

// An optional input's data, or null when absent.
template <class T>
const T* data(const OptTensor& t) {
  return t.has_value() && t->defined() ? data<T>(*t) : nullptr;
}

template <class T>
T* mutable_data(Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

// An output's data, or null when the call did not ask for it.
template <class T>
T* mutable_data_if(bool wanted, Tensor& t) {
  return wanted ? mutable_data<T>(t) : nullptr;
}

// --- outputs ------------------------------------------------------------------------------------

// Tests (dssm_kernels._C.set_fill_outputs_with_nan): fill every output with NaN before a kernel
// writes it, so an element it forgets to write shows.
bool fill_outputs_with_nan();
void set_fill_outputs_with_nan(bool on);

inline Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  Tensor out = at::empty(sizes, options);
  if (fill_outputs_with_nan() && out.numel() > 0) out.fill_(std::numeric_limits<double>::quiet_NaN());
  return out;
}

// An output of `sizes` when `wanted`, else the empty (0,) tensor that stands for one not asked for.
inline Tensor new_output_if(bool wanted, at::IntArrayRef sizes, const at::TensorOptions& options) {
  return wanted ? new_output(sizes, options) : at::empty({0}, options);
}

// The kernels' thread team: torch's intra-op thread count (torch.set_num_threads).
inline int threads() { return at::get_num_threads(); }

// --- registration in dssm_kernels._C ------------------------------------------------------------

// A family's binder adds its functions to the module; bindings.cpp runs every registered binder.
using Binder = void (*)(pybind11::module_&);
std::vector<Binder>& binders();

struct RegisterBinder {
  explicit RegisterBinder(Binder b) { binders().push_back(b); }
};

}  // namespace dssm

// DSSM_BIND(m) { m.def("name", &name, pybind11::arg("a"), ...); }  in a family's .cpp: its functions
// join dssm_kernels._C, with the argument names of their primitive's signature (checked from Python).
#define DSSM_BIND(m)                                                                   \
  static void dssm_bind_family(pybind11::module_& m);                                  \
  static const ::dssm::RegisterBinder dssm_bind_registered(&dssm_bind_family);         \
  static void dssm_bind_family(pybind11::module_& m)
