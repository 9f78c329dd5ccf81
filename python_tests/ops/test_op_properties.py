"""Property-based tests of every public op on every backend this machine has (hypothesis).

Hypothesis draws shapes (zero sizes included), precisions, magnitudes over 60 decades, non-finite
entries, strided and stride-0 views, and bad arguments. Whatever it draws, the outcome must be one of:
- a result whose every element lies within a rounding bound of the float64 reference run on the
  same (rounded) inputs, wherever that reference is finite and representable in the op's precision;
- a TypeError / ValueError / RuntimeError whose message starts with the op's name and names the
  argument at fault.
Never another exception, a NaN where the reference is finite, or an allocation that was not checked.

The rounding bound of each op is C * eps * K * M: eps of the precision computed in, K the length of the
longest chain of roundings an output element goes through (the terms summed plus a few per term), M
the same expression evaluated on absolute values (and, where a phase l * x is rounded, weighted by
1 + l |x|, the amplification of its relative error), so cancellation and conditioning are accounted
for, not averaged away; plus C * K * tiny * F for intermediates that underflow (tiny the smallest
normal number, F the magnitude of what multiplies them afterwards). C = 16 covers the constants of
the textbook bounds (Higham, ch. 3-4).

Failures print the hypothesis seed (`--hypothesis-seed=N` reproduces them); examples are bounded so
the whole file runs in about a minute, the Triton interpreter (slow) on fewer and smaller cases.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dssm_kernels as dk
from dssm_kernels._backend import cpp_unavailable_reason
from testing import assert_clear_error

C_BOUND = 16
BACKENDS = ["reference", "triton"] + (["cpp"] if cpp_unavailable_reason() is None else [])
EXAMPLES = {"reference": 40, "cpp": 40, "triton": 12}
MAX_N = {"reference": 6, "cpp": 6, "triton": 4}
MAX_L = {"reference": 40, "cpp": 40, "triton": 16}


def _settings(backend):
    return settings(max_examples=EXAMPLES[backend], deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


# ------------------------------------------------------------------------------------------ drawing
@st.composite
def magnitudes(draw, lo=-30, hi=30):
    """A scale 10^k, k in [lo, hi], with the middle decades more likely (realistic cases dominate)."""
    k = draw(st.one_of(st.integers(-3, 3), st.integers(lo, hi)))
    return 10.0 ** k


def _complex(draw, shape, scale, re_range=(-1.0, 1.0), im_scale=1.0, gen_seed=None):
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    re = re_range[0] + (re_range[1] - re_range[0]) * torch.rand(shape, dtype=torch.float64, generator=g)
    im = im_scale * torch.randn(shape, dtype=torch.float64, generator=g)
    return scale * torch.complex(re, im)


def _real(draw, shape, scale):
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return scale * torch.randn(shape, dtype=torch.float64, generator=g)


@st.composite
def non_finite(draw, t: torch.Tensor):
    """t with at most two entries set to nan, +-inf (complex: in the real or imaginary part)."""
    if t.numel() == 0 or not draw(st.booleans()):
        return t
    t = t.clone()
    flat = torch.view_as_real(t).reshape(-1) if t.is_complex() else t.reshape(-1)
    for _ in range(draw(st.integers(1, 2))):
        i = draw(st.integers(0, flat.numel() - 1))
        flat[i] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    return t


@st.composite
def layout(draw, t: torch.Tensor):
    """The same values as a contiguous tensor, a transposed copy viewed back, or a strided slice."""
    kind = draw(st.sampled_from(["contiguous", "transposed", "strided"]))
    if kind == "transposed" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if kind == "strided" and t.dim() >= 1:
        return torch.stack([t, torch.full_like(t, 7.0)], -1)[..., 0]
    return t


def batch_shapes(max_dims=2, max_size=3):
    return st.lists(st.integers(0, max_size), min_size=0, max_size=max_dims).map(tuple)


# ------------------------------------------------------------------------------------------ checking
def _eps(dtype):
    real = {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)
    return torch.finfo(real).eps, torch.finfo(real).max


def _tiny(dtype):
    """The smallest normal number: an intermediate that underflows loses at most this much."""
    real = {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)
    return torch.finfo(real).tiny


def check_against_reference(op, got, ref, bound, dtype):
    """Where the float64 reference is finite and its magnitude representable in `dtype`: got is
    finite and |got - ref| <= bound. Elsewhere (overflow of the precision, non-finite inputs) any
    value is accepted but a crash is not."""
    _, big = _eps(dtype)
    got = got.detach().to(ref.dtype)
    # the result itself may be subnormal: its rounding is absolute, up to the smallest normal number
    bound = bound + C_BOUND * _tiny(dtype)
    checked = torch.isfinite(ref) & torch.isfinite(bound) & (ref.abs() + bound < big / 16)
    bad_nan = checked & ~torch.isfinite(got)
    assert not bad_nan.any(), f"{op}: non-finite output where the float64 reference is finite ({int(bad_nan.sum())} elements)"
    err = (got - ref).abs()
    over = checked & (err > bound)
    assert not over.any(), (f"{op}: error above the rounding bound at {int(over.sum())} elements; worst "
                            f"err/bound {float((err[over] / bound[over]).max()):.3g}")


def run(op, fn, names):
    """fn() -> result, or None when it raised an allowed, clear error."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the property is about which exceptions escape
        assert_clear_error(exc, names, where=op)
        return None


# ------------------------------------------------------------------------------------------ vandermonde
@st.composite
def vandermonde_case(draw, backend):
    dtype = draw(st.sampled_from([torch.complex64, torch.complex128]))
    batch = draw(batch_shapes())
    N = draw(st.integers(1, MAX_N[backend]))
    L = draw(st.integers(1, MAX_L[backend]))
    v = _complex(draw, (*batch, N), draw(magnitudes()))
    decay = draw(st.sampled_from([(-1.0, 0.0), (-1e-3, 0.0), (-30.0, -1.0), (-1.0, 0.1)]))
    x = _complex(draw, (*batch, N), 1.0, re_range=decay, im_scale=draw(st.sampled_from([0.0, 1.0, 10.0, 300.0])))
    v, x = draw(non_finite(v)), draw(non_finite(x))
    return dtype, draw(layout(v.to(dtype))), draw(layout(x.to(dtype))), L


def vandermonde_bound(v, x, L, eps):
    l = torch.arange(L, dtype=torch.float64)
    term = 2 * v.abs().unsqueeze(-1) * torch.exp(x.real.unsqueeze(-1) * l) * (1 + l * x.abs().unsqueeze(-1))
    K = C_BOUND * (v.shape[-1] + 4)
    return K * eps * term.sum(-2) + K * _tiny(torch.float32 if eps > 1e-10 else torch.float64) * 2 * v.abs().sum(-1, keepdim=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vandermonde(backend):
    @_settings(backend)
    @given(vandermonde_case(backend))
    def prop(case):
        dtype, v, x, L = case
        got = run("vandermonde", lambda: dk.vandermonde(v, x, L, backend=backend), ["v", "x", "L"])
        if got is None:
            return
        v64, x64 = v.to(torch.complex128), x.to(torch.complex128)
        ref = dk.vandermonde_ref(v64, x64, L)
        assert got.shape == ref.shape and got.dtype == _real_of(dtype)
        check_against_reference("vandermonde", got, ref, vandermonde_bound(v64, x64, L, _eps(dtype)[0]), dtype)

    prop()


def _real_of(dtype):
    return torch.float32 if dtype == torch.complex64 else torch.float64


# ------------------------------------------------------------------------------------------ vandermonde_transpose
@st.composite
def vandermonde_transpose_case(draw, backend):
    dtype = draw(st.sampled_from([torch.complex64, torch.complex128]))
    batch = draw(batch_shapes())
    N = draw(st.integers(1, MAX_N[backend]))
    L = draw(st.integers(1, MAX_L[backend]))
    u = _real(draw, (*batch, L), draw(magnitudes()))
    v = _complex(draw, (*batch, N), draw(magnitudes(-10, 10)))
    x = _complex(draw, (*batch, N), 1.0, re_range=(-1.0, 0.0), im_scale=draw(st.sampled_from([0.0, 1.0, 30.0])))
    u, v = draw(non_finite(u)), draw(non_finite(v))
    return dtype, draw(layout(u.to(_real_of(dtype)))), draw(layout(v.to(dtype))), draw(layout(x.to(dtype)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_vandermonde_transpose(backend):
    @_settings(backend)
    @given(vandermonde_transpose_case(backend))
    def prop(case):
        dtype, u, v, x = case
        got = run("vandermonde_transpose", lambda: dk.vandermonde_transpose(u, v, x, backend=backend), ["u", "v", "x"])
        if got is None:
            return
        u64, v64, x64 = u.double(), v.to(torch.complex128), x.to(torch.complex128)
        ref = dk.vandermonde_transpose_ref(u64, v64, x64)
        L = u.shape[-1]
        p = torch.arange(L - 1, -1, -1, dtype=torch.float64)
        term = (u64.abs().unsqueeze(-2) * torch.exp(x64.real.unsqueeze(-1) * p) * (1 + p * x64.abs().unsqueeze(-1)))
        K = C_BOUND * (L + 4)
        bound = K * v64.abs() * (_eps(dtype)[0] * term.sum(-1) + _tiny(dtype) * u64.abs().sum(-1, keepdim=True))
        assert got.shape == ref.shape and got.dtype == dtype
        check_against_reference("vandermonde_transpose", got, ref, bound, dtype)

    prop()


# ------------------------------------------------------------------------------------------ cauchy
@st.composite
def cauchy_case(draw, backend):
    dtype = draw(st.sampled_from([torch.complex64, torch.complex128]))
    batch = draw(batch_shapes())
    N = draw(st.integers(1, MAX_N[backend]))
    L = draw(st.integers(1, MAX_L[backend]))
    v = _complex(draw, (*batch, N), draw(magnitudes()))
    w = _complex(draw, (*batch, N), draw(magnitudes(-20, 20)), re_range=(-1.0, 0.0))
    z = _complex(draw, (L,), draw(magnitudes(-20, 20)))
    if draw(st.booleans()) and w.numel():   # a point very near a pole: |z - w| far below |w|
        z[0] = w.reshape(-1, N)[0, 0] * (1 + draw(st.sampled_from([1e-3, 1e-6, 1e-12])))
    v, w, z = draw(non_finite(v)), draw(non_finite(w)), draw(non_finite(z))
    return dtype, draw(layout(v.to(dtype))), draw(layout(z.to(dtype))), draw(layout(w.to(dtype)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_cauchy(backend):
    @_settings(backend)
    @given(cauchy_case(backend))
    def prop(case):
        dtype, v, z, w = case
        got = run("cauchy", lambda: dk.cauchy(v, z, w, backend=backend), ["v", "z", "w"])
        if got is None:
            return
        v64, z64, w64 = (t.to(torch.complex128) for t in (v, z, w))
        ref = dk.cauchy_ref(v64, z64, w64)
        vv, ww = v64.abs().unsqueeze(-1), w64.unsqueeze(-1)
        # each term is one subtraction and one division, each exact to eps relative: no amplification
        term = vv / (z64 - ww).abs() + vv / (z64 - ww.conj()).abs()
        K = C_BOUND * (v64.shape[-1] + 4)
        bound = K * _eps(dtype)[0] * term.sum(-2) + K * _tiny(dtype)
        # a point at infinity: the reference's limit there is 0, the kernels' scaled division gives
        # NaN (inf / inf); cauchy's docstring says points must be finite, so such columns are not checked
        bound[..., ~torch.isfinite(z64)] = float("inf")
        assert got.shape == ref.shape and got.dtype == dtype
        check_against_reference("cauchy", got, ref, bound, dtype)

    prop()


# ------------------------------------------------------------------------------------------ fftconv
@st.composite
def fftconv_case(draw, backend):
    u_dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]))
    k_dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    B, H = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    L = draw(st.integers(1, MAX_L[backend] * 2))
    Lk = draw(st.integers(1, MAX_L[backend] * 2))
    scale = draw(magnitudes(-4, 4)) if u_dtype in (torch.float16,) else draw(magnitudes(-15, 15))
    u = _real(draw, (B, H, L), scale)
    k = _real(draw, (H, Lk), draw(magnitudes(-10, 10)))
    D = _real(draw, (H,), 1.0) if draw(st.booleans()) else None
    u, k = draw(non_finite(u)), draw(non_finite(k))
    return (draw(layout(u.to(u_dtype))), draw(layout(k.to(k_dtype))),
            None if D is None else draw(layout(D.to(torch.float32))))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "cpp"])
def test_fftconv(backend):
    @_settings(backend)
    @given(fftconv_case(backend))
    def prop(case):
        u, k, D = case
        got = run("fftconv", lambda: dk.fftconv(u, k, D, backend=backend), ["u", "k", "D"])
        if got is None:
            return
        u64, k64 = u.double(), k.double()
        D64 = None if D is None else D.double()
        ref = dk.fftconv_ref(u64, k64, D64)
        L = u.shape[-1]
        compute = torch.float64 if torch.float64 in (u.dtype, k.dtype) else torch.float32
        n = 2 * L
        # FFT convolution: every output element is within eps log2(n) ||k|| ||u|| (2-norms per row)
        # of exact; the result is then rounded to u's dtype (half an ulp of |y|)
        norm = k64[..., :L].norm(dim=-1).unsqueeze(-1) * u64.norm(dim=-1, keepdim=True)
        bound = C_BOUND * _eps(compute)[0] * math.log2(n + 1) * norm * math.sqrt(n)
        if D64 is not None:
            bound = bound + C_BOUND * _eps(compute)[0] * (D64.abs().unsqueeze(-1) * u64.abs())
        bound = bound + _eps(u.dtype)[0] * ref.abs() + C_BOUND * n * _tiny(u.dtype)
        assert got.shape == ref.shape and got.dtype == u.dtype
        check_against_reference("fftconv", got, ref, bound, u.dtype)

    prop()


# ------------------------------------------------------------------------------------------ scans
@st.composite
def ssm_case(draw, backend, with_sequence=True):
    dtype = draw(st.sampled_from([torch.complex64, torch.complex128]))
    B, H, N = draw(st.integers(0, 3)), draw(st.integers(0, 3)), draw(st.integers(1, MAX_N[backend]))
    L = draw(st.integers(1, MAX_L[backend]))
    rho = draw(st.sampled_from([0.5, 0.99, 0.9999, 1.0]))
    dA = torch.polar(rho * torch.ones(H, N, dtype=torch.float64),
                     _real(draw, (H, N), draw(st.sampled_from([0.0, 1.0, 3.0]))))
    dB = _complex(draw, (H, N), draw(magnitudes(-10, 10)))
    C = _complex(draw, (H, N), draw(magnitudes(-10, 10)))
    D = _real(draw, (H,), 1.0) if draw(st.booleans()) else None
    state = _complex(draw, (B, H, N), draw(magnitudes(-10, 10))) if draw(st.booleans()) else None
    u = _real(draw, (B, H, L) if with_sequence else (B, H), draw(magnitudes(-15, 15)))
    u = draw(non_finite(u))
    real = _real_of(dtype)
    lay = lambda t, d: None if t is None else draw(layout(t.to(d)))  # noqa: E731
    return dtype, lay(u, real), lay(dA, dtype), lay(dB, dtype), lay(C, dtype), lay(D, real), lay(state, dtype)


def _magnitude_scan(u, dA, dB, C, D, state):
    """The recurrence on absolute values: the rounding bound's M (y's, and the last state's)."""
    B, H, L = u.shape
    x = torch.zeros(B, H, dA.shape[-1], dtype=torch.float64) if state is None else state.abs()
    ys = []
    for t in range(L):
        x = dA.abs() * x + dB.abs() * u[..., t].abs().unsqueeze(-1)
        y = 2 * (C.abs() * x).sum(-1)
        if D is not None:
            y = y + D.abs() * u[..., t].abs()
        ys.append(y)
    return torch.stack(ys, -1), x


def _underflow_factor(u, dA, dB, C, D, state):
    """F of the underflow floor: a state entry lost to underflow reaches y through |C|, every step."""
    c = 2 * C.abs().sum().item() + (0.0 if D is None or D.numel() == 0 else D.abs().max().item()) + 1
    return c * (1 + (dB.abs().max().item() if dB.numel() else 0.0)) * (u.shape[-1] + 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ssm_scan(backend):
    @_settings(backend)
    @given(ssm_case(backend))
    def prop(case):
        dtype, u, dA, dB, C, D, state = case
        got = run("ssm_scan", lambda: dk.ssm_scan(u, dA, dB, C, D, state, backend=backend),
                  ["u", "dA", "dB", "C", "D", "state"])
        if got is None:
            return
        args64 = [None if t is None else t.to(torch.complex128 if t.is_complex() else torch.float64)
                  for t in (u, dA, dB, C, D, state)]
        ref_y, ref_last = dk.ssm_scan_ref(*args64)
        my, mx = _magnitude_scan(*args64)
        K = C_BOUND * (u.shape[-1] + dA.shape[-1] + 4)
        floor = K * _tiny(dtype) * _underflow_factor(*args64)
        check_against_reference("ssm_scan", got[0], ref_y, K * _eps(dtype)[0] * my + floor, dtype)
        check_against_reference("ssm_scan", got[1], ref_last, K * _eps(dtype)[0] * mx + floor, dtype)

    prop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_ssm_step(backend):
    @_settings(backend)
    @given(ssm_case(backend, with_sequence=False))
    def prop(case):
        dtype, u, dA, dB, C, D, state = case
        got = run("ssm_step", lambda: dk.ssm_step(u, state, dA, dB, C, D, backend=backend),
                  ["u", "dA", "dB", "C", "D", "state"])
        if got is None:
            return
        args64 = [None if t is None else t.to(torch.complex128 if t.is_complex() else torch.float64)
                  for t in (u, state, dA, dB, C, D)]
        ref_y, ref_new = dk.ssm_step_ref(*args64)
        u64, s64, dA64, dB64, C64, D64 = args64
        my, mx = _magnitude_scan(u64.unsqueeze(-1), dA64, dB64, C64, D64, s64)
        K = C_BOUND * (dA.shape[-1] + 4)
        floor = K * _tiny(dtype) * _underflow_factor(u64.unsqueeze(-1), dA64, dB64, C64, D64, s64)
        check_against_reference("ssm_step", got[0], ref_y, K * _eps(dtype)[0] * my[..., 0] + floor, dtype)
        check_against_reference("ssm_step", got[1], ref_new, K * _eps(dtype)[0] * mx + floor, dtype)

    prop()


@st.composite
def diag_scan_case(draw, backend):
    dtype = draw(st.sampled_from([torch.complex64, torch.complex128]))
    B, L, N = draw(st.integers(0, 3)), draw(st.integers(0, MAX_L[backend])), draw(st.integers(1, MAX_N[backend]))
    rho = draw(st.sampled_from([0.5, 0.99, 1.0]))
    shape = (N,) if draw(st.booleans()) else (B, N)
    dA = torch.polar(rho * torch.ones(shape, dtype=torch.float64), _real(draw, shape, 1.0))
    v = draw(non_finite(_complex(draw, (B, L, N), draw(magnitudes()))))
    state = _complex(draw, (B, N), draw(magnitudes(-10, 10))) if draw(st.booleans()) else None
    lay = lambda t: None if t is None else draw(layout(t.to(dtype)))  # noqa: E731
    return dtype, lay(v), lay(dA), lay(state)


@pytest.mark.parametrize("backend", BACKENDS)
def test_diag_scan(backend):
    @_settings(backend)
    @given(diag_scan_case(backend))
    def prop(case):
        dtype, v, dA, state = case
        got = run("diag_scan", lambda: dk.diag_scan(v, dA, state, backend=backend), ["v", "dA", "state"])
        if got is None:
            return
        v64, dA64 = v.to(torch.complex128), dA.to(torch.complex128)
        s64 = None if state is None else state.to(torch.complex128)
        ref_xs, ref_last = dk.diag_scan_ref(v64, dA64, s64)
        B, L, N = v.shape
        x = torch.zeros(B, N, dtype=torch.float64) if s64 is None else s64.abs()
        mags = []
        for t in range(L):
            x = dA64.abs() * x + v64[:, t].abs()
            mags.append(x)
        mxs = torch.stack(mags, 1) if mags else torch.zeros(B, 0, N, dtype=torch.float64)
        K = C_BOUND * (L + 4)
        floor = K * (L + 1) * _tiny(dtype)
        check_against_reference("diag_scan", got[0], ref_xs, K * _eps(dtype)[0] * mxs + floor, dtype)
        check_against_reference("diag_scan", got[1], ref_last, K * _eps(dtype)[0] * x + floor, dtype)

    prop()


# ------------------------------------------------------------------------------------------ bad arguments
def _valid_args(op):
    c = lambda *s: torch.randn(*s, dtype=torch.complex64)  # noqa: E731
    r = lambda *s: torch.randn(*s)  # noqa: E731
    return {
        "vandermonde": (dk.vandermonde, {"v": c(2, 3), "x": -c(2, 3).abs() + 0j, "L": 5}),
        "vandermonde_transpose": (dk.vandermonde_transpose, {"u": r(2, 5), "v": c(2, 3), "x": c(2, 3)}),
        "cauchy": (dk.cauchy, {"v": c(2, 3), "z": c(5), "w": c(2, 3)}),
        "fftconv": (dk.fftconv, {"u": r(2, 3, 5), "k": r(3, 4), "D": r(3)}),
        "ssm_scan": (dk.ssm_scan, {"u": r(2, 3, 5), "dA": c(3, 4), "dB": c(3, 4), "C": c(3, 4), "D": r(3),
                                   "state": c(2, 3, 4)}),
        "ssm_step": (dk.ssm_step, {"u": r(2, 3), "state": c(2, 3, 4), "dA": c(3, 4), "dB": c(3, 4),
                                   "C": c(3, 4), "D": r(3)}),
        "diag_scan": (dk.diag_scan, {"v": c(2, 5, 4), "dA": c(4), "state": c(2, 4)}),
    }[op]


OPS = ["vandermonde", "vandermonde_transpose", "cauchy", "fftconv", "ssm_scan", "ssm_step", "diag_scan"]


def _corrupt(draw, value):
    """A wrong version of one argument: another type, dtype, rank, device, or a non-tensor."""
    if isinstance(value, int):
        return draw(st.sampled_from([0, -3, 2.5, True, "5", None, 2**40, 2**63]))
    kind = draw(st.sampled_from(["list", "float", "int64", "bool", "other_precision", "complex_real",
                                 "extra_dim", "fewer_dims", "meta", "empty_last"]))
    if kind == "list":
        return value.tolist()
    if kind == "float":
        return 1.5
    if kind in ("int64", "bool"):
        return torch.ones(value.shape, dtype=torch.int64 if kind == "int64" else torch.bool)
    if kind == "other_precision":
        other = {torch.complex64: torch.complex128, torch.float32: torch.float64}[value.dtype]
        return value.to(other)
    if kind == "complex_real":
        return value.real.contiguous() if value.is_complex() else value.to(torch.complex64)
    if kind == "extra_dim":
        return value.unsqueeze(0).expand(2, *value.shape)
    if kind == "fewer_dims":
        return value[0] if value.dim() > 0 else value
    if kind == "meta":
        return value.to("meta")
    return value[..., :0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_bad_arguments_give_clear_errors(op, backend):
    """One argument corrupted at a time: either the op still computes the reference's result (some
    corruptions are legal: a broadcastable extra dimension), or it raises a clear error naming it."""
    if op == "fftconv" and backend == "cpp":
        pytest.skip("fftconv has no C++ backend")

    @settings(max_examples=25, deadline=None, database=None, print_blob=True)
    @given(st.data())
    def prop(data):
        fn, args = _valid_args(op)
        name = data.draw(st.sampled_from(sorted(args)))
        args[name] = _corrupt(data.draw, args[name])
        try:
            fn(**args, backend=backend)
        except Exception as exc:  # noqa: BLE001
            assert_clear_error(exc, [name], where=op)

    prop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_sizes_are_refused_before_allocating(backend, monkeypatch):
    """Stride-0 views make a 2**31-long input cost nothing; the op must refuse the output it would
    allocate with a ValueError, not try (several GiB) or overflow an index. The limit is set to 1 GiB
    here, below every call's need (the default, 80% of memory, would let the smaller ones run)."""
    monkeypatch.setenv("DSSM_MAX_ALLOC_BYTES", str(2**30))
    c = torch.ones(1, 1, dtype=torch.complex64)
    calls = {
        "vandermonde": lambda: dk.vandermonde(c, c, 2**31, backend=backend),
        "vandermonde(L=2**63)": lambda: dk.vandermonde(c, c, 2**63, backend=backend),
        "vandermonde_transpose": lambda: dk.vandermonde_transpose(torch.ones(1).expand(2**31)[None].expand(4, -1), c.expand(4, 1), c.expand(4, 1), backend=backend),
        "cauchy": lambda: dk.cauchy(c.expand(2**20, 1), torch.ones(1, dtype=torch.complex64).expand(2**16), c.expand(2**20, 1), backend=backend),
        "ssm_scan": lambda: dk.ssm_scan(torch.ones(1, 1, 1).expand(64, 1024, 2**20), c.expand(1024, 1), c.expand(1024, 1), c.expand(1024, 1), backend=backend),
        "diag_scan": lambda: dk.diag_scan(c[0, 0].expand(64, 2**22, 16), c[0].expand(16), backend=backend),
    }
    if backend != "cpp":
        calls["fftconv"] = lambda: dk.fftconv(torch.ones(1, 1, 1).expand(64, 1024, 2**20), torch.ones(1, 1).expand(1024, 8), backend=backend)
    for what, call in calls.items():
        with pytest.raises(ValueError) as info:
            call()
        assert info.value.args[0].split(":")[0] in what, what
