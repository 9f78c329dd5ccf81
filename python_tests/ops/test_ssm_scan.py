"""ssm_scan and ssm_step: parity with the float64 reference, step == scan, gradcheck, bad input."""
import pytest
import torch

from testing import BATCHES, GRID, NS, backends_under_test, check_parity, crandn, gen, rel_rms, s4d_lin, stable_modes
from dssm_kernels.ops import ssm_scan as scan_module
from dssm_kernels.ops.ssm_scan import ssm_scan, ssm_scan_ref
from dssm_kernels.ops.ssm_step import ssm_step, ssm_step_ref

BACKENDS = backends_under_test()
# The GRID's batch shapes name the (B, H) of u: () -> one sequence, (2,) -> two, (2, 3) -> 2 x 3 channels.
BH = {(): (1, 1), (2,): (2, 1), (2, 3): (2, 3)}


def _params(H, N, g):
    """dA = exp(stable modes), so |dA| < 1; dB, C random; D real."""
    return {"dA": torch.exp(stable_modes(H, N, g=g)), "dB": crandn(H, N, g=g), "C": crandn(H, N, g=g),
            "D": torch.randn(H, dtype=torch.float64, generator=g)}


def _scan_inputs(B, H, N, L, seed, extras, device):
    """u, dA, dB, C, and D and state when `extras` (else both None)."""
    g = gen(seed)
    inputs = {"u": torch.randn(B, H, L, dtype=torch.float64, generator=g), **_params(H, N, g),
              "state": crandn(B, H, N, g=g)}
    if not extras:
        inputs["D"] = inputs["state"] = None
    return {k: (t.to(device) if t is not None else None) for k, t in inputs.items()}


def _grad_names(inputs):
    return [k for k, t in inputs.items() if t is not None]


def _check_scan(backend, inputs, **kw):
    return check_parity("ssm_scan", backend, lambda **a: ssm_scan(**a, backend=backend), ssm_scan_ref,
                        inputs, _grad_names(inputs), **kw)


def _check_step(backend, inputs, **kw):
    return check_parity("ssm_step", backend, lambda **a: ssm_step(**a, backend=backend), ssm_step_ref,
                        inputs, _grad_names(inputs), **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("i", range(len(GRID)), ids=[f"N{n}-L{l}-b{len(b)}" for n, l, b in GRID])
def test_ssm_scan_parity(backend, i, device):
    """Every other case passes D and a start state, so both the given and the absent paths run."""
    N, L, batch = GRID[i]
    _check_scan(backend, _scan_inputs(*BH[batch], N, L, seed=N * 1000 + L, extras=i % 2 == 0, device=device))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("extras", [True, False])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("N", NS)
def test_ssm_step_parity(backend, N, batch, extras, device):
    B, H = BH[batch]
    g = gen(N + 17)
    inputs = {"u": torch.randn(B, H, dtype=torch.float64, generator=g), "state": crandn(B, H, N, g=g),
              **_params(H, N, g)}
    if not extras:
        inputs["D"] = inputs["state"] = None
    _check_step(backend, {k: (t.to(device) if t is not None else None) for k, t in inputs.items()})


@pytest.mark.parametrize("backend", BACKENDS)
def test_realistic_s4d_lin(backend, device):
    """S4D-Lin modes with dt in [1e-3, 1e-1], ZOH dB, L = 4096, a start state and D: one layer's scan."""
    g = gen(11)
    B, H, N, L = 2, 4, 32, 4096
    _, _, dtA, dB, C = s4d_lin(H, N, g)
    inputs = {"u": torch.randn(B, H, L, dtype=torch.float64, generator=g), "dA": torch.exp(dtA), "dB": dB,
              "C": C, "D": torch.randn(H, dtype=torch.float64, generator=g), "state": crandn(B, H, N, g=g)}
    _check_scan(backend, {k: t.to(device) for k, t in inputs.items()})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("extras", [True, False])
def test_float64(backend, extras, device):
    """float64 matches the oracle to 1e-10. L = 512 is a whole number of chunks for every block size."""
    _check_scan(backend, _scan_inputs(2, 3, 33, 512, seed=3, extras=extras, device=device), tol64=1e-10)
    g = gen(4)
    inputs = {"u": torch.randn(2, 3, dtype=torch.float64, generator=g), "state": crandn(2, 3, 33, g=g),
              **_params(3, 33, g)}
    _check_step(backend, {k: t.to(device) for k, t in inputs.items()}, tol64=1e-10)


@pytest.mark.parametrize("backend", ["triton"])  # Triton's two in-chunk scans; C++ has one loop
@pytest.mark.parametrize("native", [True, False])
def test_scan_paths_small_chunks(backend, native, device, monkeypatch):
    """Both in-chunk scans with 16-step chunks, as a GPU runs them (several chunks, a partial last one):
    tl.associative_scan, the compiled path, and the Hillis-Steele twin the interpreter runs. The native
    one costs about a millisecond per element under the interpreter: small sizes."""
    config = scan_module._scan_config
    monkeypatch.setattr(scan_module, "_scan_config",
                        lambda N, L, dev: {**config(N, L, dev), "NATIVE": native, "BLOCK_T": 16})
    _check_scan(backend, _scan_inputs(1, 2, 3, 40, seed=21, extras=True, device=device))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which", [0, 1])
def test_one_output_used(backend, which, device):
    """Gradients when only y, or only last_state, reaches the loss (the other grad is None)."""
    inputs = _scan_inputs(2, 3, 5, 300, seed=8, extras=True, device=device)
    grads = []
    for fn in (ssm_scan_ref, lambda **a: ssm_scan(**a, backend=backend)):
        leaves = {k: t.clone().requires_grad_() for k, t in inputs.items()}
        out = fn(**leaves)[which]
        w = torch.randn(out.shape, dtype=out.dtype, generator=gen(1)).to(device)
        g = torch.autograd.grad((out * w.conj()).real.sum(), list(leaves.values()), allow_unused=True)
        grads.append([torch.zeros_like(t) if gt is None else gt for t, gt in zip(inputs.values(), g)])
    for name, got, want in zip(inputs, grads[1], grads[0]):
        assert (got - want).abs().max() <= 1e-12 * max(want.abs().max(), 1.0), name


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_step_over_sequence_equals_scan(backend, device):
    """Decoding with ssm_step, one step at a time, gives ssm_scan's outputs and last state (float64)."""
    inputs = _scan_inputs(2, 3, 7, 50, seed=5, extras=True, device=device)
    y, last = ssm_scan(**inputs, backend=backend)
    state, ys = inputs["state"], []
    for t in range(inputs["u"].shape[-1]):
        y_t, state = ssm_step(inputs["u"][..., t], state, inputs["dA"], inputs["dB"], inputs["C"], inputs["D"],
                              backend=backend)
        ys.append(y_t)
    assert (torch.stack(ys, -1) - y).abs().max() <= 1e-12 * y.abs().max()
    assert (state - last).abs().max() <= 1e-12 * last.abs().max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous(backend, device):
    g = gen(6)
    u = torch.randn(70, 3, 2, dtype=torch.float64, generator=g).to(device).permute(2, 1, 0)  # (2, 3, 70)
    dA = torch.exp(stable_modes(5, 3, g=g)).to(device).t()                                  # (3, 5)
    dB, C = crandn(5, 3, g=g).to(device).t(), crandn(5, 3, g=g).to(device).t()
    D = torch.randn(3, 2, dtype=torch.float64, generator=g).to(device)[:, 0]
    state = crandn(5, 3, 2, g=g).to(device).permute(2, 1, 0)
    c64 = torch.complex64
    want_y, want_last = ssm_scan_ref(u, dA, dB, C, D, state)
    got_y, got_last = ssm_scan(u.float(), dA.to(c64), dB.to(c64), C.to(c64), D.float(), state.to(c64),
                               backend=backend)
    assert rel_rms(got_y, want_y) <= 1e-5 and rel_rms(got_last, want_last) <= 1e-5
    want_y, want_new = ssm_step_ref(u[..., 0], state, dA, dB, C, D)
    got_y, got_new = ssm_step(u[..., 0], state, dA, dB, C, D, backend=backend)
    assert rel_rms(got_y, want_y) <= 1e-12 and rel_rms(got_new, want_new) <= 1e-12


def test_gradcheck_references():
    inputs = _scan_inputs(2, 2, 3, 5, seed=9, extras=True, device="cpu")
    leaves = {k: t.requires_grad_() for k, t in inputs.items()}
    assert torch.autograd.gradcheck(lambda *a: ssm_scan_ref(*a), tuple(leaves.values()))
    u = leaves["u"][..., 0].detach().requires_grad_()
    step_args = (u, leaves["state"], leaves["dA"], leaves["dB"], leaves["C"], leaves["D"])
    assert torch.autograd.gradcheck(ssm_step_ref, step_args)


C64, F32 = torch.complex64, torch.float32


def _good_scan(B=2, H=3, N=4, L=5):
    return dict(u=torch.ones(B, H, L), dA=torch.ones(H, N, dtype=C64), dB=torch.ones(H, N, dtype=C64),
                C=torch.ones(H, N, dtype=C64), D=torch.ones(H), state=torch.ones(B, H, N, dtype=C64))


@pytest.mark.parametrize("change,exc,match", [
    (dict(u=torch.ones(3, 5)), ValueError, r"ssm_scan: u must have 3 dimension\(s\), got shape \(3, 5\)"),
    (dict(u=torch.ones(2, 3, 0)), ValueError, r"L = u.shape\[-1\] must be an int >= 1, got 0"),
    (dict(u=torch.ones(2, 3, 5, dtype=C64)), TypeError, r"u must be real \(torch.float32\), got torch.complex64"),
    (dict(u=torch.ones(2, 3, 5, dtype=torch.float64)), TypeError,
     r"u must be torch.float32 to match dA \(torch.complex64\), got torch.float64"),
    (dict(dA=torch.ones(3, 4)), TypeError, r"dA must be complex64 or complex128, got torch.float32"),
    (dict(dB=torch.ones(3, 4, dtype=torch.complex128)), TypeError, r"dA, dB, C must share one dtype"),
    (dict(dA=torch.ones(4, dtype=C64)), ValueError, r"dA must have 2 dimension\(s\), got shape \(4,\)"),
    (dict(dA=torch.ones(2, 4, dtype=C64)), ValueError,
     r"dA \(H = u.shape\[1\], N\) must have shape \(3, 4\), got \(2, 4\)"),
    (dict(C=torch.ones(3, 5, dtype=C64)), ValueError, r"C \(H = u.shape\[1\], N\) must have shape \(3, 4\), got \(3, 5\)"),
    (dict(dA=torch.ones(3, 0, dtype=C64)), ValueError, r"dA must have a last \(mode\) dimension N >= 1"),
    (dict(D=torch.ones(3, dtype=torch.float64)), TypeError, r"D must be torch.float32 to match dA"),
    (dict(D=torch.ones(4)), ValueError, r"D \(H,\) must have shape \(3,\), got \(4,\)"),
    (dict(state=torch.ones(2, 3, 4)), TypeError, r"state must be complex64 or complex128, got torch.float32"),
    (dict(state=torch.ones(2, 3, 4, dtype=torch.complex128)), TypeError, r"dA, state must share one dtype"),
    (dict(state=torch.ones(1, 3, 4, dtype=C64)), ValueError,
     r"state \(B, H, N\) must have shape \(2, 3, 4\), got \(1, 3, 4\)"),
    (dict(u=[1.0]), TypeError, r"u must be a torch.Tensor, got list"),
])
def test_ssm_scan_bad_input(change, exc, match):
    with pytest.raises(exc, match=match):
        ssm_scan(**{**_good_scan(), **change})


@pytest.mark.parametrize("change,exc,match", [
    (dict(u=torch.ones(2, 3, 1)), ValueError, r"ssm_step: u must have 2 dimension\(s\), got shape \(2, 3, 1\)"),
    (dict(state=torch.ones(2, 3, 5, dtype=C64)), ValueError, r"state \(B, H, N\) must have shape \(2, 3, 4\)"),
    (dict(u=torch.ones(2, 3, dtype=torch.float64)), TypeError, r"u must be torch.float32 to match dA"),
    (dict(dB=torch.ones(3, 4)), TypeError, r"dB must be complex64 or complex128"),
])
def test_ssm_step_bad_input(change, exc, match):
    good = _good_scan()
    good["u"] = good["u"][..., 0]
    args = {**{k: good[k] for k in ("u", "state", "dA", "dB", "C", "D")}, **change}
    with pytest.raises(exc, match=match):
        ssm_step(**args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for a second device")
def test_mismatched_devices():
    args = _good_scan()
    args["state"] = args["state"].cuda()
    with pytest.raises(ValueError, match=r"all tensors must be on one device, got u on cpu, .*state on cuda"):
        ssm_scan(**args)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("extras", [True, False])
def test_ssm_step_without_autograd(backend, extras, device):
    """Decoding under no_grad skips the autograd wrapper: same outputs, NaN-filled outputs written."""
    g = gen(99)
    B, H, N = 2, 3, 33
    inputs = {"u": torch.randn(B, H, dtype=torch.float64, generator=g), "state": crandn(B, H, N, g=g),
              **_params(H, N, g)}
    if not extras:
        inputs["D"] = inputs["state"] = None
    inputs = {k: (None if t is None else t.to(device)) for k, t in inputs.items()}
    want = ssm_step_ref(**inputs)
    with torch.no_grad():
        got = ssm_step(**inputs, backend=backend)
    assert got[0].grad_fn is None and got[1].grad_fn is None
    for a, b in zip(got, want):
        assert (a - b).abs().max() <= 1e-12 * b.abs().max()
