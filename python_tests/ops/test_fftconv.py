"""fftconv: parity with the float64 reference, FFT length, gradcheck, bad input."""
import pytest
import torch

from testing import GRID, accumulated, backends_under_test, check_parity, gen, s4d_lin
from dssm_kernels.ops.fftconv import fft_length, fftconv, fftconv_ref
from dssm_kernels.ops.vandermonde import vandermonde_ref

BACKENDS = backends_under_test(has_cpp=False)
OP = "fftconv"
F64 = torch.float64

# fftconv takes (B, H, L): the grid's batch shapes give (B, H), and its N (meaningless here) picks
# the kernel length, so that kernels equal to, shorter than and longer than L are all covered.
_BH = {(): (1, 1), (2,): (2, 1), (2, 3): (2, 3)}
_LK = {1: lambda L: L, 3: lambda L: L // 2 + 1, 32: lambda L: 2 * L, 33: lambda L: 3}


def _inputs(B, H, L, Lk, seed, device, with_D=True):
    g = gen(seed)
    inputs = {"u": torch.randn(B, H, L, dtype=F64, generator=g),
              "k": torch.randn(H, Lk, dtype=F64, generator=g),
              "D": torch.randn(H, dtype=F64, generator=g) if with_D else None}
    return {k: (t.to(device) if t is not None else None) for k, t in inputs.items()}


def _check(backend, inputs, **kw):
    grads = [name for name, t in inputs.items() if t is not None]
    return check_parity(OP, backend, lambda **a: fftconv(**a, backend=backend), fftconv_ref, inputs, grads, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("N,L,batch", GRID)
def test_fftconv_parity(backend, N, L, batch, device):
    B, H = _BH[batch]
    for with_D in (True, False):
        _check(backend, _inputs(B, H, L, _LK[N](L), N * 1000 + L, device, with_D))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("L,Lk", [(7, 7), (1000, 300), (129, 500)])
def test_half_precision_u(backend, dtype, L, Lk, device):
    """u in bfloat16/float16 (k, D float32): computed in float32, output and grad_u in u's dtype."""
    _check(backend, _inputs(2, 3, L, Lk, L + Lk, device), low_dtypes={"u": dtype})


@pytest.mark.parametrize("backend", BACKENDS)
def test_realistic_s4d_lin(backend, device):
    """The kernel of an S4D-Lin layer (dt in [1e-3, 1e-1]) applied to a length-4096 sequence."""
    g = gen(11)
    B, H, N, L = 2, 4, 32, 4096
    _, _, dtA, dB, C = s4d_lin(H, N, g)
    inputs = {"u": torch.randn(B, H, L, dtype=F64, generator=g), "k": vandermonde_ref(C * dB, dtA, L),
              "D": torch.randn(H, dtype=F64, generator=g)}
    _check(backend, {k: t.to(device) for k, t in inputs.items()})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("L,Lk,with_D", [(77, 40, True), (50, 123, False), (1, 1, True)])
def test_float64(backend, L, Lk, with_D, device):
    _check(backend, _inputs(3, 2, L, Lk, L * Lk, device, with_D), tol64=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("u_dtype,k_dtype", [(torch.float32, F64), (F64, torch.float32),
                                             (torch.bfloat16, F64)])
def test_mixed_precision_computes_in_float64(backend, u_dtype, k_dtype, device):
    """A float64 u or k makes the whole computation float64; the output keeps u's dtype."""
    inputs = _inputs(2, 3, 60, 45, 4, device)
    u, k, D = inputs["u"].to(u_dtype), inputs["k"].to(k_dtype), inputs["D"].float()
    got = fftconv(u, k, D, backend=backend)
    want = fftconv_ref(u.double(), k.double(), D.double())
    assert got.dtype == u_dtype
    # Computed in float64 and rounded once to u's dtype, every element is within half an ulp of u's
    # dtype of the exact value, and the float64 reference is within ~1e-15 of it: so within one ulp
    # (at most eps * |want|) of the reference, plus an absolute float64 term for elements near zero.
    # Not bitwise: another FFT order (another processor) may tip a value lying near a rounding tie.
    bound = torch.finfo(u_dtype).eps * want.abs() + accumulated(2 * 60) * want.abs().max()
    assert ((got.double() - want).abs() <= bound).all()
    if u_dtype == torch.float32:  # the check can fail: float32 arithmetic misses it somewhere
        in_float32 = fftconv_ref(u.float(), k.float(), D.float()).double()
        assert ((in_float32 - want).abs() > bound).any()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("grad_names", [("u",), ("k",), ("D",), ("k", "D")])
def test_partial_gradients(backend, grad_names, device):
    """Only the requested gradients are computed, and those match the reference."""
    inputs = _inputs(2, 3, 33, 20, 8, device)
    out = {}
    for who, f in (("ref", fftconv_ref), ("backend", lambda *a: fftconv(*a, backend=backend))):
        leaves = {n: t.clone().requires_grad_(n in grad_names) for n, t in inputs.items()}
        y = f(leaves["u"], leaves["k"], leaves["D"])
        out[who] = torch.autograd.grad(y.sum(), [leaves[n] for n in grad_names])
    for a, b in zip(out["backend"], out["ref"]):
        assert (a - b).abs().max() <= 1e-12 * b.abs().max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous(backend, device):
    g = gen(5)
    u = torch.randn(2, 50, 6, dtype=F64, generator=g).to(device).transpose(1, 2)  # (2, 6, 50)
    k = torch.randn(30, 6, dtype=F64, generator=g).to(device).t()                  # (6, 30)
    D = torch.randn(12, dtype=F64, generator=g).to(device)[::2]
    assert not (u.is_contiguous() or k.is_contiguous() or D.is_contiguous())
    want = fftconv_ref(u, k, D)
    got = fftconv(u.float(), k.float(), D.float(), backend=backend)
    assert (got.double() - want).abs().max() <= 1e-5 * want.abs().max()
    _check(backend, {"u": u, "k": k, "D": D})


def test_fft_length_is_smallest_5_smooth():
    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for L in range(1, 3000):
        n = fft_length(L)
        assert n >= 2 * L - 1 and smooth(n), (L, n)
        assert not any(smooth(m) for m in range(2 * L - 1, n)), (L, n)
    assert fft_length(1000) == 2000 and fft_length(4096) == 8192 and fft_length(129) == 270


def test_reference_matches_direct_sum():
    """The oracle itself against the defining sum, including cut (Lk > L) and padded kernels."""
    g = gen(2)
    for L, Lk in [(9, 4), (9, 15), (1, 1)]:
        u = torch.randn(2, 3, L, dtype=F64, generator=g)
        k = torch.randn(3, Lk, dtype=F64, generator=g)
        D = torch.randn(3, dtype=F64, generator=g)
        want = D[:, None] * u
        for t in range(L):
            for s in range(min(t + 1, Lk)):
                want[..., t] += k[:, s] * u[..., t - s]
        assert torch.allclose(fftconv_ref(u, k, D), want, rtol=0, atol=1e-12)


def test_gradcheck_reference():
    g = gen(9)
    for L, Lk in [(6, 4), (5, 8)]:
        u = torch.randn(2, 3, L, dtype=F64, generator=g).requires_grad_()
        k = torch.randn(3, Lk, dtype=F64, generator=g).requires_grad_()
        D = torch.randn(3, dtype=F64, generator=g).requires_grad_()
        assert torch.autograd.gradcheck(fftconv_ref, (u, k, D))


_U, _K = torch.ones(2, 3, 8), torch.ones(3, 5)


@pytest.mark.parametrize("args,exc,match", [
    ((torch.ones(2, 3, 8, dtype=torch.complex64), _K), TypeError,
     r"fftconv: u must be float32 or float16 or bfloat16 or float64, got torch.complex64"),
    ((torch.ones(2, 3, 8, dtype=torch.int32), _K), TypeError, r"u must be .*, got torch.int32"),
    ((torch.ones(3, 8), _K), ValueError, r"u must have 3 dimension\(s\), got shape \(3, 8\)"),
    ((torch.ones(2, 3, 0), _K), ValueError, r"L = u.shape\[-1\] must be an int >= 1, got 0"),
    ((torch.ones(0, 3, 8), _K), ValueError, r"u must have shape \(B, H, L\) with B >= 1 and H >= 1, got \(0, 3, 8\)"),
    ((_U, torch.ones(5)), ValueError, r"k must have 2 dimension\(s\), got shape \(5,\)"),
    ((_U, torch.ones(3, 5, dtype=torch.float16)), TypeError, r"k must be float32 or float64, got torch.float16"),
    ((_U, torch.ones(4, 5)), ValueError,
     r"k must have shape \(H, Lk\) with H = u.shape\[1\] = 3, got k: \(4, 5\), u: \(2, 3, 8\)"),
    ((_U, torch.ones(3, 0)), ValueError, r"Lk = k.shape\[-1\] must be an int >= 1, got 0"),
    ((_U, _K, torch.ones(4)), ValueError, r"D must have shape \(3,\), got \(4,\)"),
    ((_U, _K, torch.ones(3, dtype=torch.complex64)), TypeError, r"D must be .*, got torch.complex64"),
    ((_U, _K, [1.0, 2.0, 3.0]), TypeError, r"D must be a torch.Tensor, got list"),
    (([[1.0]], _K), TypeError, r"u must be a torch.Tensor, got list"),
])
def test_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        fftconv(*args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for a second device")
def test_mismatched_devices():
    with pytest.raises(ValueError, match=r"all tensors must be on one device, got u on cuda:0, k on cpu"):
        fftconv(torch.ones(2, 3, 8, device="cuda"), _K)
