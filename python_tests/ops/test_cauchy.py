"""cauchy: parity with the float64 reference (v, w and z gradients), gradcheck, bad input."""
import math

import pytest
import torch

from testing import GRID, backends_under_test, check_parity, crandn, gen, s4d_lin, stable_modes
from dssm_kernels.ops import cauchy as cauchy_mod
from dssm_kernels.ops.cauchy import cauchy, cauchy_ref

BACKENDS = backends_under_test()


def _points(L, g):
    """Evaluation points near the imaginary axis (0 <= Re z < 0.05), frequencies spread over [-20, 20]:
    with the modes' Re w <= -0.1 no pole is closer than 0.1."""
    re = 0.05 * torch.rand(L, dtype=torch.float64, generator=g)
    return torch.complex(re, 40 * torch.rand(L, dtype=torch.float64, generator=g) - 20)


def _inputs(N, L, batch, seed, device):
    g = gen(seed)
    inputs = {"v": crandn(*batch, N, g=g), "z": _points(L, g),
              "w": stable_modes(*batch, N, g=g, decay=(0.1, 1.0), freq=10.0)}
    return {k: t.to(device) for k, t in inputs.items()}


def _check(backend, inputs, grad_names=("v", "w", "z"), **kw):
    return check_parity("cauchy", backend, lambda **a: cauchy(**a, backend=backend), cauchy_ref,
                        inputs, list(grad_names), **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("N,L,batch", GRID)
def test_cauchy_parity(backend, N, L, batch, device):
    _check(backend, _inputs(N, L, batch, N * 1000 + L, device))


def _s4_points(L_fft: int) -> torch.Tensor:
    """The bilinear transform of the first L_fft // 2 + 1 roots of unity of order L_fft (z_0 = 0)."""
    omega = torch.exp(-2j * math.pi * torch.arange(L_fft // 2 + 1, dtype=torch.float64) / L_fft)
    return 2 * (1 - omega) / (1 + omega)


@pytest.mark.parametrize("backend", BACKENDS)
def test_realistic_s4(backend, device):
    """S4's evaluation: modes A_n = -1/2 + i pi n (N = 32, H = 4), dt per channel log-uniform in
    [1e-3, 1e-1], at 2049 bilinear-transformed roots of unity of order 4097 (|z| up to ~5.2e3).
    S4 folds dt into the modes, sum v / (2/dt (1-omega)/(1+omega) - A) = dt sum v / (z - dt A), so w = dt A
    and v = dt C (B = 1) give every channel its own dt over one shared z."""
    g = gen(13)
    _, dt, dtA, _, C = s4d_lin(4, 32, g)
    inputs = {"v": (dt * C).to(device), "z": _s4_points(4097).to(device), "w": dtA.to(device)}
    _check(backend, inputs, tol64=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dt", [1e-3, 1e-1])
def test_realistic_unscaled_points(backend, dt, device):
    """The same evaluation without folding dt: z_j = 2/dt (1 - omega_j)/(1 + omega_j), w = A. At dt = 1e-3
    |z| reaches ~5e6 against |w| <= 100, the widest dynamic range the op sees in S4."""
    g = gen(17)
    A, _, _, _, C = s4d_lin(4, 32, g)
    inputs = {"v": C.to(device), "z": (_s4_points(4097) / dt).to(device), "w": A.to(device)}
    _check(backend, inputs, tol64=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_and_broadcast(backend, device):
    """float64 runs match the oracle to 1e-10; v broadcasts against w's batch (shared v, per-channel w)
    and back: the gradients of the broadcast input sum over the batch it was expanded to."""
    g = gen(3)
    z = _points(77, g).to(device)
    inputs = {"v": crandn(5, g=g).to(device), "z": z,
              "w": stable_modes(3, 5, g=g, decay=(0.1, 1.0), freq=10.0).to(device)}
    _check(backend, inputs, tol64=1e-10)
    inputs = {"v": crandn(2, 1, 5, g=g).to(device), "z": z,
              "w": stable_modes(3, 5, g=g, decay=(0.1, 1.0), freq=10.0).to(device)}
    _check(backend, inputs, tol64=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_only_where_asked(backend, device, monkeypatch):
    """Each gradient alone; the kernel for z's gradient runs only when z requires grad."""
    inputs = _inputs(33, 129, (2,), 21, device)
    for names in (("v",), ("w",), ("z",)):
        _check(backend, inputs, names)
    squares = []
    rows = cauchy_mod.CAUCHY_ROWS

    def recording_rows(v, z, w, square, backend):
        squares.append(square)
        return rows(v, z, w, square, backend=backend)

    monkeypatch.setattr(cauchy_mod, "CAUCHY_ROWS", recording_rows)
    v, z, w = (t.to(torch.complex64) for t in (inputs["v"], inputs["z"], inputs["w"]))
    for z_grad, expected in ((False, [False]), (True, [False, True])):
        squares.clear()
        leaves = (v.clone().requires_grad_(), z.clone().requires_grad_(z_grad), w.clone().requires_grad_())
        cauchy(*leaves, backend=backend).abs().sum().backward()
        assert squares == expected
        assert (leaves[1].grad is not None) == z_grad


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous(backend, device):
    g = gen(5)
    v = crandn(8, 6, g=g).to(device).t()                                          # (6, 8), strided
    w = stable_modes(8, 6, g=g, decay=(0.1, 1.0), freq=10.0).to(device).t()
    z = _points(100, g).to(device)[::2]                                           # (50,), stride 2
    assert not (v.is_contiguous() or w.is_contiguous() or z.is_contiguous())
    c64 = torch.complex64
    want = cauchy_ref(v, z, w)
    got = cauchy(v.to(c64), z.to(c64), w.to(c64), backend=backend)
    assert (got.cdouble() - want).abs().max() <= 1e-5 * want.abs().max()
    _check(backend, {"v": v, "z": z, "w": w})


def test_gradcheck_reference():
    g = gen(9)
    v = crandn(2, 3, g=g).requires_grad_()
    w = stable_modes(2, 3, g=g, decay=(0.1, 1.0), freq=2.0).requires_grad_()
    z = _points(5, g).requires_grad_()
    assert torch.autograd.gradcheck(cauchy_ref, (v, z, w))


C64 = torch.complex64


def _c(*shape, dtype=C64):
    return torch.ones(shape, dtype=dtype)


@pytest.mark.parametrize("args,exc,match", [
    ((torch.ones(3), _c(4), _c(3)), TypeError, r"cauchy: v must be complex64 or complex128, got torch.float32"),
    ((_c(3), torch.ones(4), _c(3)), TypeError, r"cauchy: z must be complex64 or complex128, got torch.float32"),
    ((_c(3), _c(4), torch.ones(3, dtype=torch.float64)), TypeError, r"cauchy: w must be complex64 or complex128, got torch.float64"),
    ((_c(3), _c(4, dtype=torch.complex128), _c(3)), TypeError,
     r"v, z, w must share one dtype, got v: torch.complex64, z: torch.complex128, w: torch.complex64"),
    ((_c(3), _c(2, 4), _c(3)), ValueError, r"cauchy: z must have 1 dimension\(s\), got shape \(2, 4\)"),
    ((_c(3), _c(), _c(3)), ValueError, r"z must have 1 dimension\(s\), got shape \(\)"),
    ((_c(3), _c(0), _c(3)), ValueError, r"z must hold L >= 1 points, got shape \(0,\)"),
    ((_c(), _c(4), _c(3)), ValueError, r"v must have at least 1 dimension"),
    ((_c(0), _c(4), _c(0)), ValueError, r"v must have a last \(mode\) dimension N >= 1, got shape \(0,\)"),
    ((_c(3), _c(4), _c(2, 0)), ValueError, r"w must have a last \(mode\) dimension N >= 1, got shape \(2, 0\)"),
    ((_c(2, 3), _c(4), _c(4, 3)), ValueError, r"batch shapes of v, w are not broadcastable, got v: \(2, 3\), w: \(4, 3\)"),
    ((_c(3), _c(4), _c(5)), ValueError, r"batch shapes of v, w are not broadcastable, got v: \(3,\), w: \(5,\)"),
    (([1j], _c(4), _c(3)), TypeError, r"v must be a torch.Tensor, got list"),
    ((_c(3), _c(4), _c(3), "cuda-please"), ValueError, r"cauchy: backend must be one of"),
])
def test_cauchy_bad_input(args, exc, match):
    *tensors, backend = args if len(args) == 4 else (*args, "auto")
    with pytest.raises(exc, match=match):
        cauchy(*tensors, backend=backend)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for a second device")
def test_mismatched_devices():
    with pytest.raises(ValueError, match=r"all tensors must be on one device, got v on cpu, z on cuda:0, w on cpu"):
        cauchy(_c(3), _c(4).cuda(), _c(3))


# Far poles and points next to a pole, where |z - w|^2 overflows or underflows although the result
# is finite: far = 2e19 / 2e154 (|z - w|^2 > the largest float / double), near = 1e-20 / 1e-160
# (|z - w|^2 below the smallest normal). Each row holds one such mode, so the result is its term alone.
EXTREME = {torch.complex64: (2e19, 1e-20), torch.complex128: (2e154, 1e-160)}


def _max_error(got, want):
    """max |got - want| and max |want|, in complex128 (abs is a hypot: no underflow of squares)."""
    got, want = got.detach().to(torch.complex128), want.detach().to(torch.complex128)
    return (got - want).abs().max().item(), want.abs().max().item()


# the Triton interpreter runs on numpy, which warns of the overflow a tile's range check exists to catch
@pytest.mark.filterwarnings("ignore::RuntimeWarning:triton")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", list(EXTREME))
def test_far_and_near_poles(backend, dtype, device):
    """Rounding bound: each reciprocal is a few roundings off (the scaling is exact), a term adds the
    products by v and g: |error| <= 16 eps(dtype) max|value| covers it; values below the smallest
    normal (grad_w of a far pole, ~1/far^2) add 4 subnormal spacings. Before the fix the C++ and Triton
    kernels gave 0 for the far pole and NaN next to the pole."""
    far, near = EXTREME[dtype]
    eps, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps
    z = torch.tensor([0, -1 - 0.25j, 2 + 0.5j], dtype=dtype, device=device)
    v = torch.tensor([[1 + 0.5j], [-0.75 + 2j]], dtype=dtype, device=device)
    w = torch.tensor([[-far + 0j], [complex(near, -near)]], dtype=dtype, device=device)
    g = torch.tensor([[0.5 - 1j, 2 + 0.25j, -1 + 1j]] * 2, dtype=torch.complex128, device=device)
    results = {}
    for who, fn, cast in (("ref", cauchy_ref, torch.complex128), ("backend", lambda *a: cauchy(*a, backend=backend), dtype)):
        leaves = [t.to(cast).requires_grad_() for t in (v, z, w)]
        out = fn(*leaves)
        grads = torch.autograd.grad((out * g.to(out.dtype).conj()).real.sum(), [leaves[0], leaves[2]])
        results[who] = (out, *grads)
    for name, got, want, rows in zip(("out", "grad_v", "grad_w"), results["backend"], results["ref"],
                                     ((0, 1), (0, 1), (0,))):  # grad_w next to a pole ~ 1/near^2 overflows
        for r in rows:
            err, scale = _max_error(got[r], want[r])
            assert scale > 0 and err <= 16 * eps * scale + 4 * tiny, (name, r, err, scale)
