"""What the tests share: tolerances derived from rounding, input generators, the parity check against
the float64 reference, layer cases, reduction systems and references, and small utilities. One module,
imported as `testing` (python_tests/ is on sys.path through its conftest.py)."""
from __future__ import annotations

import contextlib
import math
import signal
from typing import Callable, Mapping, Sequence

import mpmath as mp
import numpy as np
import scipy.linalg as sl
import torch

import dssm_kernels as dk
from dssm_kernels import tasks
from dssm_kernels._backend import cpp_unavailable_reason
from dssm_kernels.nn import DSS, LRU, S4, S4D, S5, SequenceClassifier
from dssm_kernels.reduction import DiagonalSystem
from dssm_kernels.workflows import checkpoint


# --------------------------------------------------------------------------------------- rounding
# Two evaluations of the same n-term sum or n-step recurrence (another summation order, FMA or not,
# another BLAS or SIMD kernel on another processor) each carry a relative error of at most about
# n * eps in the magnitudes summed (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
# section 3.1), so they agree to 2 n eps; SAFETY covers the few operations per term and the constants.
# Nothing here depends on the machine: the suite must pass on any x86-64 processor and thread count.
EPS64 = float(np.finfo(np.float64).eps)   # 2.2e-16, the float64 unit roundoff times 2
SAFETY = 8


def accumulated(n_terms: int, eps: float = EPS64) -> float:
    """Relative tolerance (to the magnitude of the terms) for two evaluations of an n-term sum."""
    return SAFETY * 2 * max(int(n_terms), 1) * eps


# -------------------------------------------------------------------------------------- op inputs
NS = (1, 3, 32, 33)
LS = (1, 7, 129, 1000)
BATCHES = ((), (2,), (2, 3))
GRID = [(n, l, b) for n in NS for l in LS for b in BATCHES]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def crandn(*shape, g: torch.Generator) -> torch.Tensor:
    return torch.complex(torch.randn(shape, dtype=torch.float64, generator=g),
                         torch.randn(shape, dtype=torch.float64, generator=g)) / math.sqrt(2)


def stable_modes(*shape, g: torch.Generator, decay=(0.0, 0.05), freq=1.0) -> torch.Tensor:
    """Discrete-time exponents x = dt*A with Re x in -[decay range], Im x ~ N(0, freq^2)."""
    re = -(decay[0] + (decay[1] - decay[0]) * torch.rand(shape, dtype=torch.float64, generator=g))
    return torch.complex(re, freq * torch.randn(shape, dtype=torch.float64, generator=g))


def s4d_lin(H: int, N: int, g: torch.Generator, dt_min=1e-3, dt_max=1e-1):
    """S4D-Lin modes A_n = -1/2 + i pi n with per-channel dt log-uniform in [dt_min, dt_max].

    Returns (A (H, N) continuous modes, dt (H, 1), dtA (H, N), dB (H, N) ZOH with B = 1,
    C (H, N) random), all complex128.
    """
    n = torch.arange(N, dtype=torch.float64)
    A = torch.complex(torch.full((H, N), -0.5, dtype=torch.float64), math.pi * n.expand(H, N))
    log_dt = math.log(dt_min) + (math.log(dt_max) - math.log(dt_min)) * torch.rand(H, 1, dtype=torch.float64, generator=g)
    dt = log_dt.exp()
    dtA = dt * A
    dB = (torch.exp(dtA) - 1) / A
    C = crandn(H, N, g=g)
    return A, dt, dtA, dB, C


def backends_under_test(has_cpp: bool = True) -> list[str]:
    """Triton always (compiled on a GPU, interpreted on a CPU); "cpp" where the op has C++ kernels and
    the extension is built (test_extension.py fails CI if it should have been and was not)."""
    return ["triton"] + (["cpp"] if has_cpp and cpp_unavailable_reason() is None else [])


OPS = ("vandermonde", "vandermonde_transpose", "cauchy", "fftconv", "ssm_scan", "ssm_step", "diag_scan")


def tiny_call(op: str, seed: int = 3):
    """(call, args) for one small call of `op`: args are float64 / complex128 tensors, all of them
    differentiable, and call(backend, *args) runs the op on `backend` (sizes the Triton interpreter
    runs in a blink)."""
    g = gen(seed)
    H, N, L, B = 3, 4, 9, 2
    real = lambda *shape: torch.randn(shape, dtype=torch.float64, generator=g)  # noqa: E731
    dA = torch.exp(stable_modes(H, N, g=g))
    args = {
        "vandermonde": lambda: (crandn(H, N, g=g), stable_modes(H, N, g=g)),
        "vandermonde_transpose": lambda: (real(H, L), crandn(H, N, g=g), stable_modes(H, N, g=g)),
        "cauchy": lambda: (crandn(H, N, g=g), crandn(L, g=g), stable_modes(H, N, g=g, decay=(0.1, 1.0))),
        "fftconv": lambda: (real(B, H, L), real(H, L), real(H)),
        "ssm_scan": lambda: (real(B, H, L), dA, crandn(H, N, g=g), crandn(H, N, g=g), real(H), crandn(B, H, N, g=g)),
        "ssm_step": lambda: (real(B, H), crandn(B, H, N, g=g), dA, crandn(H, N, g=g), crandn(H, N, g=g), real(H)),
        "diag_scan": lambda: (crandn(B, L, N, g=g), dA[0], crandn(B, N, g=g)),
    }[op]()
    if op == "vandermonde":
        return (lambda backend, v, x: dk.vandermonde(v, x, L, backend=backend)), args
    return (lambda backend, *a: getattr(dk, op)(*a, backend=backend)), args


# ----------------------------------------------------------------------------------------- parity
# Parity against the float64 reference, by relative RMS error. For each case the inputs are drawn in
# float64/complex128; the oracle is the reference run on them in float64. The backend under test runs
# on the inputs cast to the test precision (complex64 / float32, or an explicit dtype such as bfloat16),
# and so does the same reference: its error sets the bar, err(backend) <= 2 * err(reference at test
# precision) + 1e-6, for every output and for the gradients of a random-weighted sum of the outputs.
LOW = {torch.float64: torch.float32, torch.complex128: torch.complex64}
_WORST: dict = {}


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """sqrt(mean |a - b|^2) / sqrt(mean |b|^2), in float64; 0 when both are zero."""
    a = a.detach().to(torch.complex128 if (a.is_complex() or b.is_complex()) else torch.float64)
    b = b.detach().to(a.dtype)
    num = (a - b).abs().pow(2).mean().sqrt().item()
    den = b.abs().pow(2).mean().sqrt().item()
    if den == 0.0:
        return num
    return num / den


def worst_errors() -> dict:
    return _WORST


def _record(key, err, tol):
    old = _WORST.get(key)
    if old is None or err / tol > old[0] / old[1]:
        _WORST[key] = (err, tol)


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _weighted_sum(outputs, weights):
    total = 0.0
    for o, w in zip(outputs, weights):
        o = o.to(torch.complex128 if o.is_complex() else torch.float64)
        total = total + (o * w.conj()).real.sum() if o.is_complex() else total + (o * w).sum()
    return total


def _run(fn, inputs, grad_names):
    leaves = {k: (t.detach().clone().requires_grad_(k in grad_names) if isinstance(t, torch.Tensor) else t)
              for k, t in inputs.items()}
    outputs = _as_tuple(fn(**leaves))
    return leaves, outputs


def check_parity(op: str, backend: str, fn: Callable, ref: Callable, inputs: Mapping[str, object],
                 grad_names: Sequence[str], *, low_dtypes: Mapping[str, torch.dtype] | None = None,
                 seed: int = 0, tol64: float | None = None) -> dict:
    """Check `fn` (the backend) against `ref` (the reference), forward and backward.

    inputs: float64/complex128 tensors (and plain values) keyed by argument name.
    grad_names: inputs to differentiate.  low_dtypes: per-input test precision overriding LOW.
    tol64: when given, also run the backend in float64 and require err <= tol64.
    Returns the measured errors.
    """
    low_dtypes = dict(low_dtypes or {})

    def cast(k, t):
        if not isinstance(t, torch.Tensor):
            return t
        return t.to(low_dtypes.get(k, LOW.get(t.dtype, t.dtype)))

    # The oracle sees exactly the values the low-precision runs see.
    low = {k: cast(k, t) for k, t in inputs.items()}
    oracle_in = {k: (t.to(torch.complex128 if t.is_complex() else torch.float64) if isinstance(t, torch.Tensor)
                     and (t.is_floating_point() or t.is_complex()) else t) for k, t in low.items()}

    ref_leaves, ref_out = _run(ref, oracle_in, grad_names)
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(o.shape, dtype=torch.complex128 if o.is_complex() else torch.float64,
                           generator=gen).to(o.device) for o in ref_out]
    ref_grads = torch.autograd.grad(_weighted_sum(ref_out, weights), [ref_leaves[k] for k in grad_names])

    results = {}
    runs = [("low", low)] + ([("f64", oracle_in)] if tol64 is not None else [])
    for tag, run_in in runs:
        errs = {}
        for who, f in (("ref", ref), ("backend", fn)):
            leaves, out = _run(f, run_in, grad_names)
            assert len(out) == len(ref_out), f"{op}/{backend}: {len(out)} outputs, reference has {len(ref_out)}"
            for i, (o, r) in enumerate(zip(out, ref_out)):
                assert o.shape == r.shape, f"{op}/{backend}: output {i} shape {tuple(o.shape)} != {tuple(r.shape)}"
            grads = torch.autograd.grad(_weighted_sum(out, weights), [leaves[k] for k in grad_names],
                                        allow_unused=True)
            for i, (o, r) in enumerate(zip(out, ref_out)):
                errs[(who, f"out{i}")] = rel_rms(o, r)
            for k, g, r in zip(grad_names, grads, ref_grads):
                assert g is not None, f"{op}/{backend}: no gradient for {k}"
                assert g.shape == leaves[k].shape, f"{op}/{backend}: grad {k} shape {tuple(g.shape)}"
                errs[(who, f"grad_{k}")] = rel_rms(g, r)
        for (who, what), err in errs.items():
            if who != "backend":
                continue
            if tag == "low":
                tol = 2 * errs[("ref", what)] + 1e-6
                dtype = "/".join(sorted({str(t.dtype).replace("torch.", "") for t in low.values()
                                         if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())}))
            else:
                tol, dtype = tol64, "float64"
            _record((op, backend, dtype, what), err, tol)
            results[(tag, what)] = (err, tol)
            assert err <= tol, (f"{op}/{backend} [{tag}] {what}: relative RMS error {err:.3e} exceeds "
                                f"{tol:.3e} (reference at this precision: {errs[('ref', what)]:.3e})")
    return results


# ----------------------------------------------------------------------------------------- layers
# (name, constructor): every layer and each variant whose recurrence differs
LAYER_CASES = {
    "s4d-zoh": lambda **kw: S4D(init="s4d-inv", disc="zoh", **kw),
    "s4d-bilinear": lambda **kw: S4D(init="s4d-legs", disc="bilinear", **kw),
    "dss-exp": lambda **kw: DSS(variant="exp", **kw),
    "dss-softmax": lambda **kw: DSS(variant="softmax", l_max=64, **kw),
    "s4-legs": lambda **kw: S4(init="legs", **kw),
    "s4-legt-lmax": lambda **kw: S4(init="legt", l_max=64, **kw),
    "s5-legs-zoh": lambda **kw: S5(init="legs", disc="zoh", **kw),
    "s5-ptd-bilinear": lambda **kw: S5(init="ptd", disc="bilinear", **kw),
    "lru": lambda **kw: LRU(**kw),
}
STEP_TOL = {torch.float64: 1e-10, torch.float32: 1e-4}   # step against forward, relative


def run_steps(m, u):
    """Feed u (B, L, ...) one step at a time; the outputs stacked on dim 1."""
    state = m.default_state(u.shape[0])
    ys = []
    for t in range(u.shape[1]):
        y, state = m.step(u[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1)


# ------------------------------------------------------------------------------ reduction systems
def random_system(rng: np.random.Generator, N: int, dt=None, disc: str = "zoh", decay=(0.02, 1.0),
                  freq: float = 3.0, n_real: int = 0, batch: tuple = ()) -> DiagonalSystem:
    """Stable modes Re lam ~ -U(decay), Im lam ~ N(0, freq^2) (the last n_real real), B, C ~ CN(0, 1), D ~ N(0, 1)."""
    shape = batch + (N,)
    im = rng.normal(0, freq, shape)
    if n_real:
        im[..., N - n_real:] = 0.0
    lam = -rng.uniform(*decay, shape) + 1j * im
    cn = lambda: rng.normal(size=shape) + 1j * rng.normal(size=shape)  # noqa: E731
    return DiagonalSystem(lam, cn(), cn(), rng.normal(size=batch), dt=dt, disc=disc)


def dense_gramians(sys: DiagonalSystem, horizon=None):
    """(P, Q) of sys.realization() (real) from scipy's Lyapunov solvers (finite horizon: the right-hand
    side B B* - F B B* F* with F = exp(A T) or A^L)."""
    A, B, C, _ = sys.realization()
    BB, CC = B @ B.T, C.T @ C
    if horizon is not None:
        F = np.linalg.matrix_power(A, horizon) if sys.discrete else sl.expm(A * horizon)
        BB, CC = BB - F @ BB @ F.T, CC - F.T @ CC @ F
    if sys.discrete:
        return sl.solve_discrete_lyapunov(A, BB), sl.solve_discrete_lyapunov(A.T, CC)
    return sl.solve_continuous_lyapunov(A, -BB), sl.solve_continuous_lyapunov(A.T, -CC)


def dense_hsv(sys: DiagonalSystem) -> np.ndarray:
    """The textbook route the closed form replaces: dense Lyapunov solves, then sqrt(eig(P Q))."""
    P, Q = dense_gramians(sys)
    return np.sort(np.sqrt(np.abs(np.linalg.eigvals(P @ Q).real)))[::-1]


def mpc(v):
    return mp.mpc(float(v.real), float(v.imag))


def mp_energy(sys: DiagonalSystem, L) -> float:
    """sqrt(sum_{l<L} K[l]^2) of a discrete system from the closed form in 40-digit arithmetic (the
    float64 data taken as exact): d^2 + sum_ij R_i conj(R_j) W_(L-1)(x_i, x_j) over the augmented form."""
    mp.mp.dps = 40
    s = sys.std
    X = [mpc(v) for v in np.concatenate([s.p, np.conj(s.p)])]
    R = [mpc(v) for v in np.concatenate([s.r, np.conj(s.r)])]
    total = mp.mpf(float(s.d[..., 0, 0])) ** 2
    for i in range(len(X)):
        for j in range(len(X)):
            q = X[i] * mp.conj(X[j])
            total += R[i] * mp.conj(R[j]) * (1 / (1 - q) if L is None else (1 - q ** (L - 1)) / (1 - q))
    return float(mp.sqrt(mp.re(total)))


def random_mimo(rng: np.random.Generator, N: int, m: int, p: int, dt=None, disc: str = "zoh", decay=(0.02, 1.0),
                freq: float = 3.0, n_real: int = 0):
    """A MimoSystem like random_system: N stable modes (the last n_real real), B (N, m), C (p, N) ~ CN(0, 1),
    D (p, m) ~ N(0, 1)."""
    from dssm_kernels.reduction import MimoSystem
    im = rng.normal(0, freq, N)
    if n_real:
        im[N - n_real:] = 0.0
    lam = -rng.uniform(*decay, N) + 1j * im
    cn = lambda *s: rng.normal(size=s) + 1j * rng.normal(size=s)  # noqa: E731
    return MimoSystem(lam, cn(N, m), cn(p, N), rng.normal(size=(p, m)), dt=dt, disc=disc)


def dense_lyapunov_hsv(A, B, C, discrete: bool) -> np.ndarray:
    """sqrt(eig(P Q)) from scipy's dense Lyapunov solvers (the textbook route), descending."""
    if discrete:
        P, Q = sl.solve_discrete_lyapunov(A, B @ B.T), sl.solve_discrete_lyapunov(A.T, C.T @ C)
    else:
        P, Q = sl.solve_continuous_lyapunov(A, -B @ B.T), sl.solve_continuous_lyapunov(A.T, -C.T @ C)
    return np.sort(np.sqrt(np.abs(np.linalg.eigvals(P @ Q).real)))[::-1]


# ---------------------------------------------------------------------------------- deploy models
# Models and the forward oracle of the deploy tests (decoder, ONNX export). Every model is small
# (d_model 12, two blocks) so that L = 1000 stays quick. `outputs_every_position` is the model's forward
# at every prefix in one pass: the blocks are causal, so their (B, L, H) output holds each prefix's; a
# classifier's pooled value at t is the mean (or the last) of the first t + 1 block outputs, then the
# decoder Linear. Tolerance (relative RMS over all positions and outputs, against the float64 copy of
# the model): a float32 path may be off by at most twice the worse of the float32 model's own two
# evaluations (forward, and step by step), plus 1e-6 for outputs near zero: the decoder computes the
# same function in another order and so carries a rounding error of the same size. A float64 decoder
# must match to 1e-10.
DEPLOY_KINDS = ("s4d", "dss", "s4", "s5", "lru")


def small_classifier(kind: str, *, d_state=8, tokens=False, pool="mean", seed=0, dtype=torch.float32, **kw):
    extra = dict(vocab_size=11) if tokens else dict(d_input=3)
    return SequenceClassifier(n_classes=5, layer=kind, d_model=12, d_state=d_state, n_layers=2, pool=pool,
                              seed=seed, dtype=dtype, **extra, **kw).eval()


def reduced_classifier(kind: str, **kw):
    """A reduced model of `kind`: a d_state 12 model under a model-wide budget of 35 % of its states (BT,
    the bound-minimising allocation), so S4D / DSS channels keep different numbers of modes (the flat
    layout), an S4 becomes an S4D and S5 / LRU layers keep their own sizes."""
    from dssm_kernels.reduction import reduce_model
    model = small_classifier(kind, d_state=12, **kw)
    small, _ = reduce_model(model, fraction=0.35, method="bt", measure=False)
    return small.eval()


def classifier_inputs(model, B: int, L: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if isinstance(model.encoder, torch.nn.Embedding):
        return torch.randint(0, model.encoder.num_embeddings, (B, L), generator=g)
    return torch.randn(B, L, model.encoder.in_features, generator=g, dtype=model.decoder.weight.dtype)


@torch.no_grad()
def outputs_every_position(model, x: torch.Tensor) -> torch.Tensor:
    """(B, L, n_out): forward's output for every prefix of x (see the module docstring)."""
    if isinstance(model, SequenceClassifier):
        h = model.encoder(x)
        for block in model.blocks:
            h = block(h)
        if model.pool == "mean":
            steps = torch.arange(1, h.shape[1] + 1, dtype=h.dtype).view(1, -1, 1)
            h = h.cumsum(1) / steps
        return model.decoder(h)
    return model(x)


@torch.no_grad()
def step_outputs(model, x: torch.Tensor) -> torch.Tensor:
    """(B, L, n_out) from model.step token by token (the model's own recurrent evaluation)."""
    state, ys = None, []
    for t in range(x.shape[1]):
        y, state = model.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1)


def double_copy(model):
    import copy
    return copy.deepcopy(model).double()


def float32_tolerance(model, x: torch.Tensor, oracle: torch.Tensor, with_step: bool = True,
                      last_only: bool = False) -> float:
    """2 x the worse of the float32 model's forward and step errors against the oracle, + 1e-6.
    last_only: the oracle is the output after the whole sequence (forward's), not every position's."""
    pick = (lambda y: y[:, -1]) if last_only else (lambda y: y)  # noqa: E731
    errs = [rel_rms(pick(outputs_every_position(model, x)), oracle)]
    if with_step:
        errs.append(rel_rms(pick(step_outputs(model, x)), oracle))
    return 2 * max(errs) + 1e-6


# ------------------------------------------------------------------------------------ checkpoints
TINY_TASK = dict(seq_len=16, n_train=8, n_val=4, n_test=8)


def tiny_checkpoint(path, layer="s4d", d_state=8, n_noise=8) -> str:
    """An untrained 2-layer classifier (d_model 4) on a small recall task, saved: loading, reducing and
    timing it take well under a second."""
    t = tasks.load("recall", n_noise=n_noise, **TINY_TASK)
    model = SequenceClassifier(t.n_classes, vocab_size=t.vocab_size, layer=layer, d_model=4, d_state=d_state, seed=0)
    return checkpoint.save(str(path), model, t, history={"val_acc": [0.25]})


# -------------------------------------------------------------------------------------- utilities
def rel(a, b) -> float:
    """||a - b|| / ||b|| (Frobenius), of torch tensors or numpy arrays."""
    if isinstance(b, torch.Tensor):
        return float((a - b).norm() / b.norm())
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@contextlib.contextmanager
def deadline(seconds: float, what: str):
    """Fail (not hang) when the block runs longer than `seconds` of wall-clock time."""
    def _expired(signum, frame):
        raise TimeoutError(f"{what} took more than {seconds} s")
    old = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


ALLOWED_ERRORS = (TypeError, ValueError, RuntimeError)


def assert_clear_error(exc: BaseException, names: Sequence[str], where: str | None = None) -> None:
    """An exception a user may get: TypeError, ValueError or RuntimeError, whose message starts with
    `where` (when given) and, for a TypeError or ValueError, names one of `names`."""
    assert isinstance(exc, ALLOWED_ERRORS), f"{type(exc).__name__} escaped: {exc}"
    msg = str(exc)
    if where is not None:
        assert msg.startswith(where), f"message does not start with {where!r}: {msg!r}"
    if isinstance(exc, (TypeError, ValueError)) and names:
        assert any(n in msg for n in names), f"message names none of {list(names)}: {msg!r}"


def raises_clear_error(call: Callable, names: Sequence[str], where: str | None = None) -> bool:
    """Run call(): True if it raised a clear error (assert_clear_error), False if it returned."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the point is which exceptions escape
        assert_clear_error(exc, names, where)
        return True
    return False
