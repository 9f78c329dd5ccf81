"""Build dssm_kernels, with the optional C++/CUDA extension dssm_kernels._C.

The extension is optional by design: if there are no sources, if DSSM_NO_EXTENSION=1, or if the
compiler fails, the pure-Python package (reference + Triton backends) still installs, and the "cpp"
backend reports at run time why it is unavailable. Build with
    pip install --no-build-isolation -e .
so that the torch already installed is used (build isolation would download another one).
"""
import glob
import os
import sys

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _extension_setup():
    """(ext_modules, cmdclass) for dssm_kernels._C, or ([], {}) with a printed reason."""
    if os.environ.get("DSSM_NO_EXTENSION", "0") == "1":
        print("dssm_kernels: DSSM_NO_EXTENSION=1, not building dssm_kernels._C", file=sys.stderr)
        return [], {}
    cpu_sources = sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    if not cpu_sources:
        print("dssm_kernels: no C++ sources in csrc/cpu, not building dssm_kernels._C", file=sys.stderr)
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError as exc:  # torch must be installed first (see README)
        print(f"dssm_kernels: torch not importable ({exc}); not building dssm_kernels._C", file=sys.stderr)
        return [], {}

    class OptionalBuildExtension(BuildExtension):
        """Build the extension, but let the install go on without it if compilation fails."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as exc:  # the failure reason is printed and "cpp" reports it at run time
                print(f"dssm_kernels: building {ext.name} failed, installing without it: {exc}",
                      file=sys.stderr)

    ext = CppExtension(
        "dssm_kernels._C",
        cpu_sources,
        extra_compile_args={"cxx": ["-O3", "-fopenmp", "-march=native"]},
        extra_link_args=["-fopenmp"],
    )
    return [ext], {"build_ext": OptionalBuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extension_setup()

setup(
    name="dssm_kernels",
    version="0.1.0",
    description="Kernels, layers and model reduction for diagonal state-space models (S4, S4D, DSS, S5)",
    packages=find_packages(include=["dssm_kernels", "dssm_kernels.*"]),
    python_requires=">=3.9",
    # torch is deliberately not listed: pip would resolve a bare "torch" to a multi-GB CUDA build.
    install_requires=["numpy", "scipy"],
    extras_require={"triton": ["triton"], "test": ["pytest", "pytest-benchmark"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
