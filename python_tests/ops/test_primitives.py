"""The primitive registry (dssm_kernels/ops/_primitives.py): one declaration per primitive, which every
implementation and the fake agree with argument for argument, checked rather than kept by hand."""
import re
import sys

import pytest
import torch

from testing import OPS, backends_under_test, tiny_call
from dssm_kernels._backend import cpp_extension, cpp_unavailable_reason
from dssm_kernels.ops._primitives import REGISTRY, Primitive, declare


def _pybind_arg_names(fn) -> list[str]:
    """Argument names from a pybind11 signature line "name(a: T, b: T | None, ...) -> R"."""
    params = re.match(r"^\w+\((.*)\) ->", fn.__doc__.splitlines()[0]).group(1)
    return [p.split(":")[0].strip() for p in params.split(", ")]


def test_every_op_is_built_from_declared_primitives():
    """Each op module names the backends its primitives implement, and every primitive is some op's."""
    used = set()
    for op in OPS:
        module = sys.modules[f"dssm_kernels.ops.{op}"]
        assert module.KERNELS and module.KERNELS <= {"triton", "cpp"}, op
        used |= {p.name for p in vars(module).values() if isinstance(p, Primitive)}
    assert used == set(REGISTRY)


@pytest.mark.skipif(cpp_unavailable_reason() is not None, reason=str(cpp_unavailable_reason()))
@pytest.mark.parametrize("name", [n for n, p in REGISTRY.items() if "cpp" in p.impls])
def test_cpp_functions_take_the_declared_arguments(name):
    """dssm_kernels._C.<name> (pybind11) has the declaration's argument names, in its order."""
    assert _pybind_arg_names(getattr(cpp_extension(), name)) == REGISTRY[name].args


def test_declare_rejects_implementations_that_disagree():
    with pytest.raises(ValueError, match=r"probe_rows: the triton implementation takes \['c', 'x', 'L'\], the "
                                         r"signature \['c', 'x', 'L', 'scale'\]"):
        declare("probe_rows(Tensor c, Tensor x, int L, float scale) -> Tensor",
                fake=lambda c, x, L, scale: c, triton=lambda c, x, L: c)
    with pytest.raises(ValueError, match=r"probe_fake: the fake implementation takes \['x'\], "
                                         r"the signature \['x', 'y'\]"):
        declare("probe_fake(Tensor x, Tensor y) -> Tensor", fake=lambda x: x)
    with pytest.raises(ValueError, match=r"primitive vandermonde_rows is declared twice"):
        declare(REGISTRY["vandermonde_rows"].signature, fake=lambda c, x, L, scale, reverse: c)


def test_a_backend_without_an_implementation_raises():
    """The dispatch table is never a fallback: a backend a primitive lacks is an error, not another backend."""
    prim: Primitive = REGISTRY["fftconv_epilogue"]
    z = torch.zeros(1, 1, 4)
    with pytest.raises(RuntimeError, match=r"dssm::fftconv_epilogue has no implementation for backend 'cpp' "
                                           r"\(it has \['triton'\]\)"):
        prim(z, 4, 4, torch.float32, None, None, backend="cpp")


def _recorded_calls(monkeypatch, op, backend):
    """(primitive, args) of every primitive call one forward and backward of `op` makes."""
    calls = []
    original = Primitive.__call__

    def recording(self, *args, backend):
        calls.append((self, args))
        return original(self, *args, backend=backend)

    monkeypatch.setattr(Primitive, "__call__", recording)
    call, args = tiny_call(op)
    leaves = [a.clone().requires_grad_() for a in args]
    out = call(backend, *leaves)
    out = out if isinstance(out, tuple) else (out,)
    torch.autograd.grad(sum(o.abs().sum() for o in out), leaves)
    monkeypatch.setattr(Primitive, "__call__", original)
    return calls


@pytest.mark.parametrize("backend", backends_under_test())
@pytest.mark.parametrize("op", OPS)
def test_fakes_match_the_implementations(op, backend, monkeypatch):
    """For every primitive call an op makes, torch.library.opcheck runs the op under FakeTensorMode and
    for real and compares the outputs' shapes, strides and dtypes, and checks the schema."""
    if backend == "cpp" and op == "fftconv":
        pytest.skip("fftconv has no C++ kernels")
    calls = _recorded_calls(monkeypatch, op, backend)
    assert calls
    for prim, args in calls:
        torch.library.opcheck(prim.op, (*args, backend), test_utils=("test_schema", "test_faketensor"))
