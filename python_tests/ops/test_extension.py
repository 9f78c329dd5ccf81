"""The C++ extension is built by the README's set-up, so a silent build failure fails CI rather than
quietly dropping "cpp" from every parity test."""
import os

import pytest

from dssm_kernels._backend import cpp_unavailable_reason


@pytest.mark.skipif(os.environ.get("DSSM_NO_EXTENSION") == "1", reason="switched off by DSSM_NO_EXTENSION=1")
def test_extension_is_built_with_openmp():
    assert cpp_unavailable_reason() is None, cpp_unavailable_reason()
    from dssm_kernels._backend import cpp_extension

    info = cpp_extension().build_info()
    assert "OpenMP" in info and "no OpenMP" not in info, info
    assert cpp_extension().openmp_max_threads() >= 1
