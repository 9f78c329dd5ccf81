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
# Why dssm_kernels._C is missing, for the "cpp" backend's error message (absent when it was built).
STATUS_FILE = os.path.join(HERE, "dssm_kernels", "_C_status.txt")


def _record_status(reason):
    print(f"dssm_kernels: {reason}", file=sys.stderr)
    with open(STATUS_FILE, "w") as f:
        f.write(reason + "\n")


def _extension_setup():
    """(ext_modules, cmdclass) for dssm_kernels._C, or ([], {}) with the reason recorded."""
    if os.path.exists(STATUS_FILE):
        os.remove(STATUS_FILE)
    if os.environ.get("DSSM_NO_EXTENSION", "0") == "1":
        _record_status("the C++ extension was switched off at install time (DSSM_NO_EXTENSION=1)")
        return [], {}
    cpu_sources = sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    if not cpu_sources:
        _record_status("there were no C++ sources in csrc/cpu at install time")
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError as exc:  # torch must be installed first (see README)
        _record_status(f"torch was not importable at install time ({exc})")
        return [], {}

    class OptionalBuildExtension(BuildExtension):
        """Build the extension, but let the install go on without it if compilation fails."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as exc:  # recorded, and the "cpp" backend reports it at run time
                _record_status(f"building {ext.name} failed at install time: {type(exc).__name__}: {exc}")

    # -march=native: the extension is built on the machine that runs it (set-up compiles it there);
    # DSSM_CPU_ARCH overrides it for a portable build (e.g. DSSM_CPU_ARCH=x86-64-v3).
    arch = os.environ.get("DSSM_CPU_ARCH", "native")
    ext = CppExtension(
        "dssm_kernels._C",
        cpu_sources,
        include_dirs=[os.path.join(HERE, "csrc", "cpu")],
        extra_compile_args={"cxx": ["-O3", "-fopenmp", f"-march={arch}", "-mprefer-vector-width=512"]},
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
    install_requires=["numpy", "scipy", "scikit-learn", "matplotlib", "tqdm"],
    extras_require={"triton": ["triton"], "test": ["pytest", "pytest-benchmark"]},
    entry_points={"console_scripts": ["dssm = dssm_kernels.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
