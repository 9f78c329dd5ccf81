// Output allocation shared by the ATen wrappers: uninitialised, or NaN-filled while the tests ask
// for it (dssm_kernels._C.set_fill_outputs_with_nan), so an element a kernel forgets to write shows.
#pragma once
#include <ATen/ATen.h>

namespace dssm {

bool fill_outputs_with_nan();
void set_fill_outputs_with_nan(bool on);

inline at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out = at::empty(sizes, options);
  if (fill_outputs_with_nan() && out.numel() > 0) {
    out.fill_(std::numeric_limits<double>::quiet_NaN());
  }
  return out;
}

}  // namespace dssm
