// The Python module dssm_kernels._C: the families' kernel functions (each .cpp registers its own
// with DSSM_BIND, see aten.h) and what Python wants to know about the build.
#include "aten.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <string>

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
  m.doc() = "C++ CPU kernels of dssm_kernels: plain functions behind the torch.ops.dssm primitives";
  m.def("openmp_max_threads", &openmp_max_threads, "OpenMP threads the kernels may use");
  m.def("build_info", &build_info, "How the extension was compiled (OpenMP, vector ISA)");
  m.def("set_fill_outputs_with_nan", &dssm::set_fill_outputs_with_nan,
        "Tests: fill every kernel output with NaN before the kernel writes it");
  for (dssm::Binder bind : dssm::binders()) bind(m);
}
