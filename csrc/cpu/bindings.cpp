// The Python module dssm_kernels._C. The kernels themselves are registered as torch.library ops
// (namespace "dssm", one TORCH_LIBRARY_FRAGMENT per csrc/cpu/<family>.cpp) when this library is
// loaded; the pybind11 module adds what Python wants to know about the build.
#include <torch/extension.h>

#include "alloc.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

int openmp_max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

std::string build_info() {
  std::string info = "dssm_kernels._C: ";
#ifdef _OPENMP
  info += "OpenMP " + std::to_string(_OPENMP);
#else
  info += "no OpenMP";
#endif
#if defined(__AVX512F__)
  info += ", AVX-512";
#elif defined(__AVX2__)
  info += ", AVX2";
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "C++ CPU kernels of dssm_kernels; the ops live under torch.ops.dssm";
  m.def("openmp_max_threads", &openmp_max_threads, "OpenMP threads the kernels may use");
  m.def("build_info", &build_info, "How the extension was compiled (OpenMP, vector ISA)");
  m.def("set_fill_outputs_with_nan", &dssm::set_fill_outputs_with_nan,
        "Tests: fill every kernel output with NaN before the kernel writes it");
}
