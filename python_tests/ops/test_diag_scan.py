"""diag_scan: parity with the float64 reference, agreement with ssm_scan, gradcheck, edge sizes, bad input."""
import pytest
import torch

from testing import backends_under_test, check_parity, crandn, gen, rel_rms, stable_modes
from dssm_kernels._backend import cpp_unavailable_reason
from dssm_kernels.ops import diag_scan as scan_module
from dssm_kernels.ops.diag_scan import diag_scan, diag_scan_ref
from dssm_kernels.ops.ssm_scan import ssm_scan_ref

BACKENDS = backends_under_test()

# (B, L, N, dA (B, N) rather than (N,), start state): every N of {1, 3, 32, 33} and L of
# {1, 7, 129, 1000}, both dA shapes and both state paths, trimmed from the full grid to keep the
# interpreted run short (a Python loop per step in the reference, a Python-level step per chunk in
# the interpreter).
CASES = [
    (1, 1, 1, False, True),
    (2, 7, 3, True, False),
    (3, 129, 32, False, False),
    (2, 129, 33, True, True),
    (2, 1000, 33, False, True),
    (2, 1000, 1, True, False),
    (1, 7, 32, True, True),
    (2, 1, 33, False, False),
]


def _inputs(B, L, N, batched, with_state, seed, device):
    """v random, dA = exp(stable modes) (|dA| < 1), state random; complex128."""
    g = gen(seed)
    inputs = {"v": crandn(B, L, N, g=g), "dA": torch.exp(stable_modes(*((B, N) if batched else (N,)), g=g)),
              "state": crandn(B, N, g=g) if with_state else None}
    return {k: (None if t is None else t.to(device)) for k, t in inputs.items()}


def _check(backend, inputs, **kw):
    grad_names = [k for k, t in inputs.items() if t is not None]
    return check_parity("diag_scan", backend, lambda **a: diag_scan(**a, backend=backend), diag_scan_ref,
                        inputs, grad_names, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[f"B{b}-L{l}-N{n}-dA{'BN' if bt else 'N'}-{'state' if s else 'zero'}"
                                             for b, l, n, bt, s in CASES])
def test_diag_scan_parity(backend, case, device):
    """complex64 against the float64 oracle (tolerance: twice the reference's own complex64 error
    + 1e-6), forward and the gradients of a random-weighted sum of xs and last_state."""
    B, L, N, batched, with_state = case
    _check(backend, _inputs(B, L, N, batched, with_state, seed=N * 1000 + L, device=device))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batched", [False, True])
def test_complex128(backend, batched, device):
    """complex128 matches the oracle to 1e-10 (and complex64 its tolerance, checked on the way)."""
    _check(backend, _inputs(2, 300, 33, batched, True, seed=3, device=device), tol64=1e-10)


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_agrees_with_ssm_scan(backend, device):
    """An independent route: the single-input system x_t = dA x_{t-1} + dB u_t, y_t = 2 Re(C x_t) + D u_t
    is ssm_scan's (reference, float64) and, with v = dB u, diag_scan's followed by the readout.
    Outputs and the gradients of u, dA, dB, C, state must agree to 1e-10 (both exact up to rounding)."""
    g = gen(7)
    B, L, N = 3, 50, 5
    u = torch.randn(B, 1, L, dtype=torch.float64, generator=g)
    params = {"dA": torch.exp(stable_modes(1, N, g=g)), "dB": crandn(1, N, g=g), "C": crandn(1, N, g=g),
              "D": torch.randn(1, dtype=torch.float64, generator=g), "state": crandn(B, 1, N, g=g)}
    leaves = {k: t.to(device) for k, t in {"u": u, **params}.items()}
    w = torch.randn(B, 1, L, dtype=torch.float64, generator=g).to(device)
    wl = crandn(B, 1, N, g=g).to(device)

    def via_ssm_scan(u, dA, dB, C, D, state):
        return ssm_scan_ref(u, dA, dB, C, D, state)

    def via_diag_scan(u, dA, dB, C, D, state):
        v = u[:, 0, :, None] * dB  # (B, L, N)
        xs, last = diag_scan(v, dA[0], state[:, 0], backend=backend)
        y = 2 * (xs * C).sum(-1).real + D * u[:, 0]
        return y[:, None], last[:, None]

    results = []
    for route in (via_ssm_scan, via_diag_scan):
        args = {k: t.clone().requires_grad_() for k, t in leaves.items()}
        y, last = route(**args)
        loss = (y * w).sum() + (last * wl.conj()).real.sum()
        results.append([y, last, *torch.autograd.grad(loss, list(args.values()))])
    names = ["y", "last_state", *(f"grad_{k}" for k in leaves)]
    for name, got, want in zip(names, results[1], results[0]):
        assert rel_rms(got, want) <= 1e-10, (name, rel_rms(got, want))


def test_gradcheck_reference():
    for batched in (False, True):
        inputs = _inputs(2, 4, 3, batched, True, seed=9, device="cpu")
        leaves = tuple(t.requires_grad_() for t in inputs.values())
        assert torch.autograd.gradcheck(diag_scan_ref, leaves)


@pytest.mark.parametrize("backend", ["triton"])  # the two in-chunk scans and mode blocks: Triton's alone
@pytest.mark.parametrize("native", [True, False])
def test_small_chunks_and_mode_blocks(backend, native, device, monkeypatch):
    """As a GPU runs it: several 16-step chunks with a partial last one, and several mode blocks with a
    partial last one (the interpreter's own configuration has one block of all modes). Both scans:
    tl.associative_scan, the compiled path (about a millisecond per element interpreted: small sizes),
    and the Hillis-Steele twin."""
    monkeypatch.setattr(scan_module, "_config",
                        lambda N, L, dev: {"NATIVE": native, "BLOCK_N": 2, "BLOCK_T": 16})
    for batched in (False, True):
        _check(backend, _inputs(2, 40, 5, batched, True, seed=21, device=device))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("wanted", ["v", "dA", "state", "v+dA"])
@pytest.mark.parametrize("which", [0, 1])
def test_partial_outputs_and_gradients(backend, wanted, which, device):
    """Only xs (or only last_state) reaches the loss, and only some inputs want a gradient: the kernels
    skip the unused ones (no grad_v buffer, xs not read back), with the same values."""
    inputs = _inputs(2, 70, 5, wanted == "v+dA", True, seed=8, device=device)
    w = None
    grads = []
    for fn in (diag_scan_ref, lambda *a: diag_scan(*a, backend=backend)):
        leaves = [t.clone().requires_grad_(k in wanted.split("+")) for k, t in inputs.items()]
        out = fn(*leaves)[which]
        w = torch.randn(out.shape, dtype=out.dtype, generator=gen(1)).to(device) if w is None else w
        want = [t for t in leaves if t.requires_grad]
        grads.append(torch.autograd.grad((out * w.conj()).real.sum(), want))
    for got, ref in zip(grads[1], grads[0]):
        assert (got - ref).abs().max() <= 1e-12 * max(ref.abs().max(), 1.0)


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
@pytest.mark.parametrize("with_state", [False, True])
def test_empty_batch_and_empty_sequence(backend, with_state, device):
    """B = 0: empty outputs and zero dA gradient. L = 0: xs is (B, 0, N), last_state the start state
    (or zeros), which passes its gradient straight through."""
    g = gen(2)
    dA = torch.exp(stable_modes(4, g=g)).to(device).requires_grad_()
    v0 = torch.zeros(0, 6, 4, dtype=torch.complex128, device=device, requires_grad=True)
    xs, last = diag_scan(v0, dA, crandn(0, 4, g=g).to(device) if with_state else None, backend=backend)
    assert xs.shape == (0, 6, 4) and last.shape == (0, 4)
    (gdA,) = torch.autograd.grad(xs.real.sum() + last.real.sum(), [dA], allow_unused=True)
    assert gdA is None or (gdA == 0).all()

    state = crandn(3, 4, g=g).to(device).requires_grad_() if with_state else None
    v = torch.zeros(3, 0, 4, dtype=torch.complex128, device=device, requires_grad=True)
    xs, last = diag_scan(v, dA, state, backend=backend)
    assert xs.shape == (3, 0, 4)
    assert torch.equal(last, state if with_state else torch.zeros(3, 4, dtype=torch.complex128, device=device))
    if with_state:
        gl = crandn(3, 4, g=g).to(device)
        (gs,) = torch.autograd.grad((last * gl.conj()).real.sum(), [state])
        assert torch.equal(gs, gl)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous(backend, device):
    g = gen(6)
    v = crandn(5, 70, 2, g=g).to(device).permute(2, 1, 0)           # (2, 70, 5)
    dA = torch.exp(stable_modes(5, 2, g=g)).to(device).t()          # (2, 5)
    state = crandn(5, 2, g=g).to(device).t()                        # (2, 5)
    want = diag_scan_ref(v, dA, state)
    got = diag_scan(v, dA, state, backend=backend)
    assert all(rel_rms(a, b) <= 1e-12 for a, b in zip(got, want))


@pytest.mark.skipif(cpp_unavailable_reason() is not None, reason=str(cpp_unavailable_reason()))
def test_torch_compile_fullgraph_cpp():
    """The C++ ops with their fake kernels: one graph, forward and backward, eager values."""
    inputs = _inputs(2, 9, 3, False, True, seed=4, device="cpu")

    def f(v, dA, state):
        xs, last = diag_scan(v, dA, state, backend="cpp")
        return xs.abs().sum() + last.real.sum()

    def grads(fn):
        leaves = [t.clone().requires_grad_() for t in inputs.values()]
        out = fn(*leaves)
        return [out, *torch.autograd.grad(out, leaves)]

    torch._dynamo.reset()
    for got, want in zip(grads(torch.compile(f, fullgraph=True, backend="aot_eager")), grads(f)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


C64 = torch.complex64


def _good(B=2, L=5, N=4):
    return dict(v=torch.ones(B, L, N, dtype=C64), dA=torch.ones(N, dtype=C64), state=torch.ones(B, N, dtype=C64))


@pytest.mark.parametrize("change,exc,match", [
    (dict(v=[1.0]), TypeError, r"diag_scan: v must be a torch.Tensor, got list"),
    (dict(v=torch.ones(5, 4, dtype=C64)), ValueError, r"diag_scan: v must have 3 dimension\(s\), got shape \(5, 4\)"),
    (dict(v=torch.ones(2, 5, 4)), TypeError, r"v must be complex64 or complex128, got torch.float32"),
    (dict(v=torch.ones(2, 5, 0, dtype=C64)), ValueError, r"v must have a last \(mode\) dimension N >= 1"),
    (dict(dA=None), TypeError, r"dA must be a torch.Tensor, got NoneType"),
    (dict(dA=torch.ones(4)), TypeError, r"dA must be complex64 or complex128, got torch.float32"),
    (dict(dA=torch.ones(4, dtype=torch.complex128)), TypeError,
     r"v, dA must share one dtype, got v: torch.complex64, dA: torch.complex128"),
    (dict(dA=torch.ones(5, dtype=C64)), ValueError,
     r"dA must have shape \(N,\) = \(4,\) or \(B, N\) = \(2, 4\) with \(B, L, N\) = v.shape, got \(5,\)"),
    (dict(dA=torch.ones(3, 4, dtype=C64)), ValueError, r"dA must have shape .* got \(3, 4\)"),
    (dict(dA=torch.ones(1, 2, 4, dtype=C64)), ValueError, r"dA must have shape .* got \(1, 2, 4\)"),
    (dict(state=torch.ones(2, 4)), TypeError, r"state must be complex64 or complex128, got torch.float32"),
    (dict(state=torch.ones(2, 4, dtype=torch.complex128)), TypeError, r"v, state must share one dtype"),
    (dict(state=torch.ones(2, 1, 4, dtype=C64)), ValueError, r"state must have 2 dimension\(s\), got shape \(2, 1, 4\)"),
    (dict(state=torch.ones(3, 4, dtype=C64)), ValueError, r"state \(B, N\) must have shape \(2, 4\), got \(3, 4\)"),
])
def test_bad_input(change, exc, match):
    with pytest.raises(exc, match=match):
        diag_scan(**{**_good(), **change})


def test_unknown_backend():
    with pytest.raises(ValueError, match=r"diag_scan: backend must be one of .* got 'gpu'"):
        diag_scan(**_good(), backend="gpu")
