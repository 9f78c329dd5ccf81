"""vandermonde and vandermonde_transpose: parity with the float64 reference, gradcheck, bad input."""
import pytest
import torch

import dssm_kernels as dk
from testing import GRID, backends_under_test, check_parity, crandn, gen, s4d_lin, stable_modes

BACKENDS = backends_under_test()


def _vandermonde_inputs(N, L, batch, seed):
    g = gen(seed)
    return {"v": crandn(*batch, N, g=g), "x": stable_modes(*batch, N, g=g), "L": L}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("N,L,batch", GRID)
def test_vandermonde_parity(backend, N, L, batch, device):
    inputs = {k: (t.to(device) if isinstance(t, torch.Tensor) else t)
              for k, t in _vandermonde_inputs(N, L, batch, seed=N * 1000 + L).items()}
    check_parity("vandermonde", backend, lambda **a: dk.vandermonde(**a, backend=backend),
                 dk.vandermonde_ref, inputs, ["v", "x"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("N,L,batch", GRID)
def test_vandermonde_transpose_parity(backend, N, L, batch, device):
    g = gen(N * 1000 + L + 7)
    inputs = {"u": torch.randn(*batch, L, dtype=torch.float64, generator=g),
              "v": crandn(*batch, N, g=g), "x": stable_modes(*batch, N, g=g)}
    inputs = {k: t.to(device) for k, t in inputs.items()}
    check_parity("vandermonde_transpose", backend, lambda **a: dk.vandermonde_transpose(**a, backend=backend),
                 dk.vandermonde_transpose_ref, inputs, ["u", "v", "x"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_realistic_s4d_lin(backend, device):
    """S4D-Lin modes, dt in [1e-3, 1e-1], L = 4096: kernel and state of the layer a user trains."""
    g = gen(11)
    H, N, L = 4, 32, 4096
    _, _, dtA, dB, C = s4d_lin(H, N, g)
    inputs = {"v": (C * dB).to(device), "x": dtA.to(device), "L": L}
    check_parity("vandermonde", backend, lambda **a: dk.vandermonde(**a, backend=backend),
                 dk.vandermonde_ref, inputs, ["v", "x"])
    inputs = {"u": torch.randn(H, L, dtype=torch.float64, generator=g).to(device), "v": dB.to(device),
              "x": dtA.to(device)}
    check_parity("vandermonde_transpose", backend, lambda **a: dk.vandermonde_transpose(**a, backend=backend),
                 dk.vandermonde_transpose_ref, inputs, ["u", "v", "x"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_and_broadcast(backend, device):
    """float64 runs match the oracle to 1e-10; v broadcasts against x's batch (shared v, per-channel x)."""
    g = gen(3)
    inputs = {"v": crandn(5, g=g).to(device), "x": stable_modes(3, 5, g=g).to(device), "L": 77}
    check_parity("vandermonde", backend, lambda **a: dk.vandermonde(**a, backend=backend),
                 dk.vandermonde_ref, inputs, ["v", "x"], tol64=1e-10)
    inputs = {"u": torch.randn(77, dtype=torch.float64, generator=g).to(device), "v": crandn(3, 5, g=g).to(device),
              "x": stable_modes(1, 5, g=g).to(device)}
    check_parity("vandermonde_transpose", backend, lambda **a: dk.vandermonde_transpose(**a, backend=backend),
                 dk.vandermonde_transpose_ref, inputs, ["u", "v", "x"], tol64=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous(backend, device):
    g = gen(5)
    v = crandn(8, 6, g=g).to(device).t()          # (6, 8) non-contiguous
    x = stable_modes(8, 6, g=g).to(device).t()
    u = torch.randn(50, 6, dtype=torch.float64, generator=g).to(device).t()
    c64 = torch.complex64
    want = dk.vandermonde_ref(v, x, 50)
    got = dk.vandermonde(v.to(c64), x.to(c64), 50, backend=backend)
    assert (got.double() - want).abs().max() <= 1e-5 * want.abs().max()
    want = dk.vandermonde_transpose_ref(u, v, x)
    got = dk.vandermonde_transpose(u.float(), v.to(c64), x.to(c64), backend=backend)
    assert (got.cdouble() - want).abs().max() <= 1e-5 * want.abs().max()


def test_gradcheck_references():
    g = gen(9)
    v = crandn(2, 3, g=g).requires_grad_()
    x = stable_modes(2, 3, g=g).requires_grad_()
    u = torch.randn(2, 5, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(lambda v, x: dk.vandermonde_ref(v, x, 5), (v, x))
    assert torch.autograd.gradcheck(dk.vandermonde_transpose_ref, (u, v, x))


C64 = torch.complex64


@pytest.mark.parametrize("args,exc,match", [
    ((torch.ones(3), torch.ones(3, dtype=C64), 4), TypeError, r"vandermonde: v must be complex64 or complex128, got torch.float32"),
    ((torch.ones(3, dtype=C64), torch.ones(3), 4), TypeError, r"x must be complex64 or complex128, got torch.float32"),
    ((torch.ones(3, dtype=C64), torch.ones(3, dtype=torch.complex128), 4), TypeError, r"v, x must share one dtype"),
    ((torch.ones(2, 3, dtype=C64), torch.ones(4, 3, dtype=C64), 4), ValueError, r"not broadcastable, got v: \(2, 3\), x: \(4, 3\)"),
    ((torch.ones(3, dtype=C64), torch.ones(3, dtype=C64), 0), ValueError, r"L must be an int >= 1, got 0"),
    ((torch.ones(3, dtype=C64), torch.ones(3, dtype=C64), 4.0), TypeError, r"L must be an int, got float"),
    ((torch.ones((), dtype=C64), torch.ones(3, dtype=C64), 4), ValueError, r"v must have at least 1 dimension"),
    ((torch.ones(0, dtype=C64), torch.ones(0, dtype=C64), 4), ValueError, r"v must have a last \(mode\) dimension N >= 1"),
    (([1j], torch.ones(3, dtype=C64), 4), TypeError, r"v must be a torch.Tensor, got list"),
])
def test_vandermonde_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        dk.vandermonde(*args)


@pytest.mark.parametrize("args,exc,match", [
    ((torch.ones(4, dtype=C64), torch.ones(3, dtype=C64), torch.ones(3, dtype=C64)), TypeError, r"u must be real \(torch.float32\), got torch.complex64"),
    ((torch.ones(4, dtype=torch.float64), torch.ones(3, dtype=C64), torch.ones(3, dtype=C64)), TypeError, r"u must be torch.float32 to match v \(torch.complex64\), got torch.float64"),
    ((torch.ones(2, 4), torch.ones(3, 3, dtype=C64), torch.ones(3, dtype=C64)), ValueError, r"batch shapes of u, v/x are not broadcastable"),
    ((torch.ones(0), torch.ones(3, dtype=C64), torch.ones(3, dtype=C64)), ValueError, r"L = u.shape\[-1\] must be an int >= 1, got 0"),
    ((torch.ones(4), torch.ones(3), torch.ones(3, dtype=C64)), TypeError, r"v must be complex64 or complex128"),
])
def test_vandermonde_transpose_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        dk.vandermonde_transpose(*args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for a second device")
def test_mismatched_devices():
    with pytest.raises(ValueError, match=r"all tensors must be on one device, got v on cpu, x on cuda"):
        dk.vandermonde(torch.ones(3, dtype=C64), torch.ones(3, dtype=C64, device="cuda"), 4)


# the Triton interpreter runs on numpy, which warns of -inf * 0 = NaN, the value this test expects
@pytest.mark.filterwarnings("ignore::RuntimeWarning:triton")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reverse_op", [False, True])
def test_vanishing_mode(backend, reverse_op, device):
    """A mode with Re x = -inf (dA = 0: it dies out at once) contributes exp(x l) = 0 at every l >= 1
    and, at l = 0, NaN: -inf * 0 is undefined in IEEE arithmetic, as in the reference. Only that
    position is NaN; the others are the finite modes' alone (float64: the same computation as
    without the mode, to rounding: 1e-12 relative). L = 3000 spans several C++ anchor spans. For
    vandermonde_transpose's u-gradient (the same kernel, positions reversed) the NaN sits at l = L-1.
    Before the fix the C++ kernel made the whole row NaN."""
    L = 3000
    g = gen(31)
    v, x = crandn(2, 4, g=g).to(device), stable_modes(2, 4, g=g).to(device)
    x_inf = x.clone()
    x_inf[0, 1] = complex(float("-inf"), 0.3)
    v_without = v.clone()
    v_without[0, 1] = 0
    if reverse_op:  # grad_u of vandermonde_transpose = Re( sum_n conj(g_n) v_n exp(x_n (L-1-l)) )
        u = torch.randn(2, L, dtype=torch.float64, generator=g).to(device).requires_grad_()
        weights = crandn(2, 4, g=g).to(device)
        run = lambda vv, xx: torch.autograd.grad(  # noqa: E731
            (dk.vandermonde_transpose(u, vv, xx, backend=backend) * weights.conj()).real.sum(), u)[0]
        at0 = L - 1
    else:
        run = lambda vv, xx: dk.vandermonde(vv, xx, L, backend=backend)  # noqa: E731
        at0 = 0
    want_ref = dk.vandermonde_ref(v, x_inf, L)
    assert torch.isnan(want_ref[0, 0]) and not torch.isnan(want_ref[0, 1:]).any()  # the reference's semantics
    got, want = run(v, x_inf), run(v_without, x)
    assert torch.isnan(got[0, at0]), "p(l) = 0 of the row with the vanishing mode"
    keep = torch.ones_like(got, dtype=torch.bool)
    keep[0, at0] = False
    assert not torch.isnan(got[keep]).any()
    assert (got[keep] - want[keep]).abs().max() <= 1e-12 * want[keep].abs().max()
