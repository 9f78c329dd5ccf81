// Internal guards the ATen wrappers share (the Python side validates user input first): a tensor's
// device, dtype, shape and contiguity, and the same for an optional tensor that may be absent.
#pragma once

#include <ATen/ATen.h>

namespace dssm {

using OptTensor = c10::optional<at::Tensor>;

inline void check_tensor(const char* op, const char* name, const at::Tensor& t, at::ScalarType dtype,
                         at::IntArrayRef shape) {
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}

// The present optional tensor, checked, or null when absent.
inline const at::Tensor* check_opt(const char* op, const char* name, const OptTensor& t, at::ScalarType dtype,
                                   at::IntArrayRef shape) {
  if (!t.has_value() || !t->defined()) return nullptr;
  check_tensor(op, name, *t, dtype, shape);
  return &*t;
}

}  // namespace dssm
