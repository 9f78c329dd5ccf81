"""Inputs that are views rather than plain tensors give the reference's values and gradients on every
backend: lazily conjugated complex tensors (conj bit set: their memory holds the conjugate), lazily
negated real ones (x.conj().imag), stride-0 (expanded) and transposed ones. float64 / complex128 on
both sides: the backends differ from the reference by rounding alone, 1e-10 of the largest value is
the float64 parity tolerance (testing.check_parity's tol64)."""
import pytest
import torch

import dssm_kernels as dk
from testing import OPS, backends_under_test, crandn, gen, stable_modes, tiny_call


def _lazy_conj(t: torch.Tensor) -> torch.Tensor:
    """The same values with the conj bit set (memory holds their conjugate)."""
    out = t.conj().resolve_conj().conj()
    assert out.is_conj() and torch.equal(out, t)
    return out


def _lazy_neg(t: torch.Tensor) -> torch.Tensor:
    """The same values with the negative bit set (x.conj().imag: memory holds their negation)."""
    out = torch.complex(torch.zeros_like(t), -t).conj().imag
    assert out.is_neg() and torch.equal(out, t)
    return out


def _strided(t: torch.Tensor) -> torch.Tensor:
    """The same values in a non-contiguous layout (transposed; every other element for a vector)."""
    if t.dim() < 2:
        out = torch.stack([t, torch.zeros_like(t)], -1)[..., 0]
    else:
        out = t.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not out.is_contiguous() and torch.equal(out, t)
    return out


VIEWS = {"conj": lambda t: _lazy_conj(t) if t.is_complex() else _lazy_neg(t), "strided": _strided}


def _run(fn, backend, args, view):
    leaves = [a.clone().requires_grad_() for a in args]
    out = fn(backend, *[view(a) for a in leaves])
    out = out if isinstance(out, tuple) else (out,)
    g = gen(1)
    weights = [torch.randn(o.shape, dtype=o.dtype, generator=g) for o in out]
    # conj(o) makes the gradients reaching the op conj-bit views too
    loss = sum((o.conj() * w).real.sum() for o, w in zip(out, weights))
    return out, torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("backend", backends_under_test())
@pytest.mark.parametrize("view", list(VIEWS))
@pytest.mark.parametrize("op", OPS)
def test_views_match_the_reference(op, view, backend):
    """Before: the Triton backend failed on conj-bit tensors inside view_as_real."""
    if backend == "cpp" and op == "fftconv":
        pytest.skip("fftconv has no C++ kernels")
    fn, args = tiny_call(op, seed=7)
    want = _run(fn, "reference", args, lambda t: t)
    got = _run(fn, backend, args, VIEWS[view])
    for a, b in zip([*got[0], *got[1]], [*want[0], *want[1]]):
        assert (a - b).abs().max() <= 1e-10 * b.abs().max(), op


@pytest.mark.parametrize("backend", backends_under_test())
def test_expanded_modes(backend):
    """Stride-0 parameters (one set of modes shared by every channel, expanded) in every op that
    takes (H, N) or (..., N) modes."""
    g = gen(8)
    H, N, L, B = 3, 4, 9, 2
    v, x, dB, C = crandn(N, g=g), stable_modes(N, g=g), crandn(N, g=g), crandn(N, g=g)
    u = torch.randn(B, H, L, dtype=torch.float64, generator=g)
    for fn, args in (
            (lambda b, v, x: dk.vandermonde(v, x, L, backend=b), (v.expand(H, N), x.expand(H, N))),
            (lambda b, v, x: dk.cauchy(v, crandn(L, g=gen(2)), x - 0.5, backend=b), (v.expand(H, N), x.expand(H, N))),
            (lambda b, dA, dB, C: dk.ssm_scan(u, dA, dB, C, backend=b),
             (x.exp().expand(H, N), dB.expand(H, N), C.expand(H, N))),
            (lambda b, v: dk.diag_scan(v, x.exp(), backend=b), (C.expand(B, L, N),)),
    ):
        want = fn("reference", *args)
        got = fn(backend, *args)
        for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            assert (a - b).abs().max() <= 1e-10 * b.abs().max()
