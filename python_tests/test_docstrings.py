"""The runnable example in every public op's docstring runs and prints what it says."""
import doctest
import importlib

import pytest

OP_MODULES = ["vandermonde", "vandermonde_transpose", "cauchy", "fftconv", "ssm_scan", "ssm_step", "diag_scan"]


@pytest.mark.parametrize("name", OP_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"dssm_kernels.ops.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"dssm_kernels.ops.{name} has no docstring example"
    assert result.failed == 0


NN_MODULES = ["s4d", "dss", "s4", "s5", "model"]


@pytest.mark.parametrize("name", NN_MODULES)
def test_layer_docstring_examples(name):
    module = importlib.import_module(f"dssm_kernels.nn.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"dssm_kernels.nn.{name} has no docstring example"
    assert result.failed == 0
