"""The runnable example in every public op's, layer's and the tasks module's docstring runs and prints
what it says."""
import doctest
import importlib

import pytest

OPS = ["vandermonde", "vandermonde_transpose", "cauchy", "fftconv", "ssm_scan", "ssm_step", "diag_scan"]
MODULES = [f"ops.{m}" for m in OPS] + [f"nn.{m}" for m in ("s4d", "dss", "s4", "s5", "model")] + ["tasks"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"dssm_kernels.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"dssm_kernels.{name} has no docstring example"
    assert result.failed == 0
