"""Double backward (create_graph=True): the Triton and C++ backward kernels are not differentiable, so
each op's kernel backward refuses to build a graph, naming the op and pointing to backend="reference",
whose plain torch ops differentiate twice (checked with gradgradcheck)."""
import pytest
import torch

import dssm_kernels as dk
from cases import backends_under_test, crandn, gen, stable_modes

OPS = ["vandermonde", "vandermonde_transpose", "cauchy", "fftconv", "ssm_scan", "ssm_step", "diag_scan"]


def _case(op: str, backend: str):
    """(fn, args): small float64 / complex128 arguments, all differentiable, and fn(*args) running
    the op on `backend`."""
    g = gen(3)
    H, N, L, B = 2, 3, 5, 2
    real = lambda *shape: torch.randn(shape, dtype=torch.float64, generator=g)  # noqa: E731
    dA = torch.exp(stable_modes(H, N, g=g))
    if op == "vandermonde":
        return lambda v, x: dk.vandermonde(v, x, L, backend=backend), (crandn(H, N, g=g), stable_modes(H, N, g=g))
    if op == "vandermonde_transpose":
        return (lambda u, v, x: dk.vandermonde_transpose(u, v, x, backend=backend),
                (real(H, L), crandn(H, N, g=g), stable_modes(H, N, g=g)))
    if op == "cauchy":
        return (lambda v, z, w: dk.cauchy(v, z, w, backend=backend),
                (crandn(H, N, g=g), crandn(L, g=g), stable_modes(H, N, g=g, decay=(0.1, 1.0))))
    if op == "fftconv":
        return lambda u, k, D: dk.fftconv(u, k, D, backend=backend), (real(B, H, L), real(H, L), real(H))
    if op == "ssm_scan":
        return (lambda u, dA, dB, C, D, s: dk.ssm_scan(u, dA, dB, C, D, s, backend=backend),
                (real(B, H, L), dA, crandn(H, N, g=g), crandn(H, N, g=g), real(H), crandn(B, H, N, g=g)))
    if op == "ssm_step":
        return (lambda u, s, dA, dB, C, D: dk.ssm_step(u, s, dA, dB, C, D, backend=backend),
                (real(B, H), crandn(B, H, N, g=g), dA, crandn(H, N, g=g), crandn(H, N, g=g), real(H)))
    assert op == "diag_scan"
    return lambda v, dA, s: dk.diag_scan(v, dA, s, backend=backend), (crandn(B, L, N, g=g), dA[0], crandn(B, N, g=g))


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
    fn, args = _case(op, backend)
    leaves = [a.clone().requires_grad_() for a in args]
    with pytest.raises(RuntimeError, match=rf"{op}: backend '{backend}' computes first derivatives only, .*"
                                           r"create_graph=True.*use backend='reference'"):
        torch.autograd.grad(_linear_loss(fn, leaves), leaves, create_graph=True)
    leaves = [a.clone().requires_grad_() for a in args]  # first derivatives alone still work
    assert all(g is not None for g in torch.autograd.grad(_linear_loss(fn, leaves), leaves))


@pytest.mark.parametrize("op", OPS)
def test_reference_double_backward(op):
    fn, args = _case(op, "reference")
    assert torch.autograd.gradgradcheck(fn, tuple(a.clone().requires_grad_() for a in args))
