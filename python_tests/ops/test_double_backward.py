"""Double backward (create_graph=True): the Triton and C++ backward kernels are not differentiable, so
each op's kernel backward refuses to build a graph, naming the op and pointing to backend="reference",
whose plain torch ops differentiate twice (checked with gradgradcheck)."""
import pytest
import torch

from testing import OPS, backends_under_test, tiny_call


def _linear_loss(fn, leaves):
    """A loss linear in the outputs: the gradients reaching the op are constants, so only the op's
    own backward can carry the second derivative."""
    out = fn(*leaves)
    out = out if isinstance(out, tuple) else (out,)
    return sum((o.real if o.is_complex() else o).sum() for o in out)


@pytest.mark.parametrize("backend", backends_under_test())
@pytest.mark.parametrize("op", OPS)
def test_kernel_backward_refuses_create_graph(op, backend):
    """Before: second derivatives came back None, or as a part of the true ones, without a word."""
    if backend == "cpp" and op == "fftconv":
        pytest.skip("fftconv has no C++ kernels")
    call, args = tiny_call(op)
    fn = lambda *a: call(backend, *a)  # noqa: E731
    leaves = [a.clone().requires_grad_() for a in args]
    with pytest.raises(RuntimeError, match=rf"{op}: backend '{backend}' computes first derivatives only, .*"
                                           r"create_graph=True.*use backend='reference'"):
        torch.autograd.grad(_linear_loss(fn, leaves), leaves, create_graph=True)
    leaves = [a.clone().requires_grad_() for a in args]  # first derivatives alone still work
    assert all(g is not None for g in torch.autograd.grad(_linear_loss(fn, leaves), leaves))


@pytest.mark.parametrize("op", OPS)
def test_reference_double_backward(op):
    call, args = tiny_call(op)
    leaves = tuple(a.clone().requires_grad_() for a in args)
    assert torch.autograd.gradgradcheck(lambda *a: call("reference", *a), leaves)
