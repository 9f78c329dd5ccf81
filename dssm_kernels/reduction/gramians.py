"""Closed-form Gramians of diagonal systems, their accurate square-root factors, Hankel singular values.

For the conjugate-augmented standard form (poles x = [p, conj p], input rows g_i = [b; conj b]_i (m,),
conjugated output vectors h_i (p,); StdForm.augmented) the controllability Gramian P and the
observability Gramian Q are Cauchy-like, entry by entry:

    P_ij = (g_i . conj g_j) W(x_i, x_j),      Q_ij = (h_i . conj h_j) W(conj x_i, conj x_j),   with
    continuous, infinite:        W = 1 / -(x_i + conj x_j)            (A P + P A* + B B* = 0)
    continuous, horizon T:       W = (exp((x_i + conj x_j) T) - 1) / (x_i + conj x_j)
    discrete, infinite:          W = 1 / (1 - x_i conj x_j)            (P - A P A* = B B*)
    discrete, first L steps:     W = (1 - (x_i conj x_j)^L) / (1 - x_i conj x_j)  = sum_{k<L} (x_i conj x_j)^k

(a SISO system has m = p = 1: g_i conj(g_j) W). The Hankel singular values are sigma = svd(Lq* Lp) with
P = Lp Lp*, Q = Lq Lq* (the square-root method). Forming P and Q densely and factoring them (or
eig(P Q)) loses what these very ill-conditioned matrices hold: a Gramian known to eps ||P|| gives
factors only to sqrt(eps), so the small sigmas come out ~sqrt(eps) sigma_1 wrong. Instead the factors
are computed without forming P:
  - infinite horizon: Cholesky with diagonal pivoting on the Cauchy generators (Gohberg-Kailath-
    Olshevsky). At pivot k the generator matrix G (rows g_i) is first rotated, G <- G Theta with a
    unitary Householder Theta that leaves row k one nonzero (in column 0); P = G G* o W is unchanged,
    the pivot column is g_i0 conj(g_k0) W_ik, and the Schur complement is again Cauchy-like on the same
    nodes with column 0 scaled, g_i0 <- g_i0 (x_i - x_k) / (x_i + conj x_k) (continuous) or
    g_i0 (x_i - x_k) / (1 - x_i conj x_k) (discrete), the other columns unchanged. For one input (SISO)
    no rotation is needed and every entry of the factor is computed from differences of nodes, to a few
    ulps relative, however small (exact zeros for the twin of a real pole); with several inputs the
    rotation adds an error of ~eps times each row's norm. The discrete 1 - x_i conj x_k come from
    log_ratio (below), not from the rounded product, which near |x| = 1 would keep only
    eps / |1 - x_i conj x_k| of them;
  - finite horizon: square-root doubling. With E_a = exp(l a) the propagator over a steps / a time
    (l = log x discrete, l = x continuous), P over a + b is P_a + E_a P_b E_a*, so a factor of P_(a+b)
    is [F_a, E_a F_b], compressed back to n columns by a QR of its conjugate transpose (Lp = R*,
    backward stable). Discrete: the bits of L from the top (P_2m from P_m, P_(m+1) from P_m and G);
    continuous: Gauss-Legendre on one panel [0, h] with max|x| h <= 4 (exact to rounding), h = T / 2^k,
    then k doublings. O(n^3 log T) whatever the horizon (L = 10**15 takes ~100 small QRs), nothing of
    size T is formed, and sigma stays accurate to eps ||Lq|| ||Lp|| (times ~log T QR steps).
    E_a is computed as exp(a l) from the per-pole logarithm: its relative error ~eps (1 + |a l|) is
    what perturbing x by an ulp does to x^a (the conditioning of the data), nothing more. A horizon
    that every mode has outlived (|x|^T <= sqrt(eps)) gives the infinite-horizon Gramian to within
    eps per entry, and takes the infinite-horizon factor.

The closed-form weights W (discrete) use the same per-pole logarithms: log(x_i conj x_j) =
log x_i + conj(log x_j) (imaginary part wrapped to (-pi, pi]), W = -1 / expm1(log q) or
expm1(L log q) / expm1(log q), so a nearly marginal pair (x_i conj x_j within 1e-13 of 1) keeps its
digits, where the rounded product q would keep only eps / |1 - q| of them.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from dssm_kernels.reduction._common import single_threaded
from dssm_kernels.reduction.system import StdForm, _ModalSystem

DEFAULT_STEPS = 1024          # finite horizon used for unstable discrete systems given no horizon
DEFAULT_TIME = 10.0           # ... and for unstable continuous ones
_GL_NODES = 20                # Gauss-Legendre nodes on the base panel, which has max|x| * length <= 4
_MAX_HORIZON = 1e300          # beyond this a horizon (steps or time) no longer converts to a float safely


# ------------------------------------------------------------------------------------- horizon
def check_horizon(who: str, discrete: bool, horizon, name: str = "horizon"):
    """None, an int L >= 1 (discrete) or a float T > 0 (continuous; an int is taken as a time);
    TypeError/ValueError naming `name` otherwise (bools are refused: True is not a horizon)."""
    if horizon is None:
        return None
    if discrete:
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)):
            raise TypeError(f"{who}: {name} of a discrete system must be an int number of steps, got {horizon!r} "
                            f"({type(horizon).__name__})")
        if horizon < 1:
            raise ValueError(f"{who}: {name} must be >= 1 step, got {horizon}")
        if horizon > _MAX_HORIZON:
            raise ValueError(f"{who}: {name} must be <= {_MAX_HORIZON:g} steps, got ~1e{int(math.log10(horizon))}")
        return int(horizon)
    if isinstance(horizon, bool) or not isinstance(horizon, (int, float, np.integer, np.floating)):
        raise TypeError(f"{who}: {name} of a continuous system must be a float time T, got {horizon!r} "
                        f"({type(horizon).__name__})")
    if not (horizon > 0 and horizon <= _MAX_HORIZON):   # also refuses NaN
        raise ValueError(f"{who}: {name} must be a finite time T > 0 (at most {_MAX_HORIZON:g}), got {horizon}")
    return float(horizon)


def resolve_horizon(who: str, sys, horizon):
    """The horizon to use: as given; or, for a system with unstable modes and none given, the default
    finite horizon with a warning (infinite-horizon Gramians and norms do not exist for those)."""
    horizon = check_horizon(who, sys.discrete, horizon)
    n_bad = sys.unstable_count() if horizon is None else 0
    if n_bad:
        horizon = DEFAULT_STEPS if sys.discrete else DEFAULT_TIME
        warnings.warn(f"{who}: {n_bad} unstable mode(s) (Re lam >= 0): no infinite-horizon Gramian exists, using the "
                      f"finite horizon {horizon} {'steps' if sys.discrete else '(time)'}", RuntimeWarning, stacklevel=3)
    return horizon


# ------------------------------------------------------------------------------- closed forms
def _as_t(x):
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.complex128))


def log_ratio(xi, xj):
    """log(x_i conj x_j) from the per-pole logarithms, imaginary part wrapped to (-pi, pi] (torch,
    differentiable, or numpy; x = 0 gives real part -inf). Each log x is accurate to ulps relative,
    also for |x| within 1e-15 of 1, so a nearly marginal pair keeps its decay rate: 1 - x_i conj x_j =
    -expm1(log_ratio) keeps its digits, where forming the product first would leave an absolute error
    eps, i.e. a relative one of eps / |1 - x_i conj x_j| (1e-7 for |x|^2 = 1 - 2e-9)."""
    if isinstance(xi, torch.Tensor):
        li, lj = torch.log(xi), torch.log(xj)
        d = li.imag - lj.imag
        return torch.complex(li.real + lj.real, d - (2 * math.pi) * torch.round(d / (2 * math.pi)))
    with np.errstate(divide="ignore", invalid="ignore"):
        li, lj = np.log(np.asarray(xi, np.complex128)), np.log(np.asarray(xj, np.complex128))
    d = li.imag - lj.imag
    return (li.real + lj.real) + 1j * (d - 2 * np.pi * np.round(d / (2 * np.pi)))


def weight(xi, xj, discrete: bool, horizon=None, who: str = "gramians") -> torch.Tensor:
    """W(x_i, x_j) of the module docstring, broadcasting xi against xj (torch, complex128, differentiable).

    horizon may be 0 (an empty sum: W = 0). The finite forms are ratios of expm1 (accurate to ulps for
    complex arguments near 0) of log_ratio, so they stay accurate for nearly marginal modes and cost
    the same for any horizon. ValueError when the horizon is so long that unstable modes overflow."""
    xi, xj = _as_t(xi), _as_t(xj)
    if discrete:
        # 1 / (1 - q) = -1 / expm1(log q);  sum_{k<L} q^k = expm1(L log q) / expm1(log q);
        # = L at q = 1, = 1 at q = 0 (L >= 1; x = 0 is masked so that no gradient sees log 0)
        zero = (xi == 0) | (xj == 0)
        one_c = torch.ones((), dtype=xi.dtype)
        lq = log_ratio(torch.where(xi == 0, one_c, xi), torch.where(xj == 0, one_c, xj))
        unit = lq == 0
        safe = torch.where(unit, torch.ones_like(lq), lq)
        if horizon is None:
            return torch.where(zero, torch.ones_like(lq), -1 / torch.expm1(safe))
        L = float(horizon)
        out = torch.where(unit, torch.full_like(lq, L), torch.expm1(L * safe) / torch.expm1(safe))
        out = torch.where(zero, torch.full_like(out, float(horizon > 0)), out)
    else:
        s = xi + xj.conj()
        if horizon is None:
            return -1 / s
        sT = s * float(horizon)    # (exp(s T) - 1) / s, = T at s = 0
        zero = sT == 0
        safe = torch.where(zero, torch.ones_like(sT), sT)
        out = float(horizon) * torch.where(zero, torch.ones_like(sT), torch.expm1(safe) / safe)
    _check_finite(who, out, horizon)
    return out


def _check_finite(who: str, values, horizon) -> None:
    finite = torch.isfinite(values).all() if isinstance(values, torch.Tensor) else np.all(np.isfinite(values))
    if not bool(finite):
        raise ValueError(f"{who}: horizon={horizon} is too long for the growth of the unstable modes "
                         "(|x|^horizon overflows float64); give a shorter horizon")


def _columns(g) -> np.ndarray:
    """Generators as a matrix (..., n, k): a vector (n,) (SISO, the tests' form) is one column."""
    g = np.asarray(g, dtype=np.complex128)
    return g[..., None] if g.ndim == 1 else g


def gram(x, g, discrete: bool, horizon=None, who: str = "gramians") -> np.ndarray:
    """(g_i . conj g_j) W(x_i, x_j): complex (..., n, n); g (..., n, k) or (n,)."""
    g = _columns(g)
    W = weight(x[..., :, None], x[..., None, :], discrete, horizon, who).numpy()
    return np.einsum("...ik,...jk->...ij", g, np.conj(g)) * W


def augmented(s: StdForm):
    """(x, g, h): poles, input rows and conjugated output vectors of the conjugate-augmented system
    (StdForm.augmented); for a SISO form g and h are vectors (..., 2N)."""
    x, g, h = s.augmented()
    if g.shape[-1] == 1 and h.shape[-1] == 1:
        return x, g[..., 0], h[..., 0]
    return x, g, h


def gramians(sys, horizon=None):
    """(P, Q): the controllability and observability Gramians of the conjugate-augmented standard
    realisation (A = diag(x), B = g, C = h^H) of a DiagonalSystem or MimoSystem, complex (..., 2N, 2N),
    in closed form.

    horizon: None (infinite), an int L (discrete: first L steps) or a float T (continuous: [0, T]).
    For the real realisation of DiagonalSystem.realization() they are T P T*, T Q T* (T = augmented_to_real).
    """
    if not isinstance(sys, _ModalSystem):
        raise TypeError(f"gramians: sys must be a DiagonalSystem or MimoSystem, got {type(sys).__name__}")
    horizon = resolve_horizon("gramians", sys, horizon)
    x, g, h = sys.std.augmented()
    return gram(x, g, sys.discrete, horizon), gram(np.conj(x), h, sys.discrete, horizon)


# ----------------------------------------------------------------------------------- factors
def _rotate_to_first_column(G: np.ndarray, k: int) -> None:
    """G <- G conj(H) in place, H the Householder reflector with H G[k]^T = alpha e_0: afterwards row k
    is (alpha, 0, ..., 0) and G G* is unchanged (conj(H) is unitary)."""
    w = G[k]
    norm = np.linalg.norm(w)
    if norm == 0 or np.linalg.norm(w[1:]) == 0:
        return
    phase = w[0] / abs(w[0]) if w[0] != 0 else 1.0
    u = w.copy()
    u[0] += phase * norm                  # u = w - alpha e_0 with alpha = -phase ||w||: no cancellation
    G -= np.outer(G @ np.conj(u), u) * (2 / np.vdot(u, u).real)
    G[k, 1:] = 0.0                        # exactly: what the reflection leaves there is rounding


def cauchy_cholesky(x, g, discrete: bool) -> np.ndarray:
    """L (n, j) with L L* = gram(x, g) (infinite horizon, all x stable), by pivoted Cholesky on the
    generators g (n,) or (n, k) (module docstring). j = the number of nonzero pivots; L's rows are in
    x's order."""
    n = x.shape[0]
    G = _columns(g).copy()
    L = np.zeros((n, n), np.complex128)
    active = np.ones(n, bool)
    # the Cauchy denominators 1 - x_i conj x_k (discrete) through log_ratio: no cancellation near |x| = 1
    dd = -np.expm1(2 * log_ratio(x, 1.0).real) if discrete else -2 * x.real
    for j in range(n):
        piv = np.where(active, np.sum(np.abs(G) ** 2, 1) / dd, -np.inf)
        k = int(np.argmax(piv))
        if not piv[k] > 0:
            return L[:, :j]
        if G.shape[1] > 1:
            _rotate_to_first_column(G, k)
        g0 = G[:, 0]
        den = -np.expm1(log_ratio(x, x[k])) if discrete else -(x + np.conj(x[k]))
        L[active, j] = (g0 * np.conj(g0[k]) / den)[active] / math.sqrt(piv[k])
        active[k] = False
        step = (x - x[k]) / (den if discrete else -den)
        G[:, 0] = g0 * step
        G[~active] = 0
    return L


def _compress(F: np.ndarray) -> np.ndarray:
    """A factor of F F* with at most n = F.shape[0] columns: R* from the QR of F* (backward stable)."""
    if F.shape[1] <= F.shape[0]:
        return F
    return np.linalg.qr(F.conj().T, mode="r").conj().T


def _propagator(logx: np.ndarray, zero: np.ndarray, m: int) -> np.ndarray:
    """x^m = exp(m log x) (0 where x = 0), m >= 1 steps; inf where it overflows (reported by _grow)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(zero, 0, np.exp(float(m) * logx))


def _grow(F: np.ndarray, E: np.ndarray, G: np.ndarray, who: str, horizon) -> np.ndarray:
    """A factor of F F* + E G G* E* (E diagonal, given as a vector)."""
    with np.errstate(over="ignore", invalid="ignore"):      # overflow is reported just below
        Z = np.concatenate([F, E[:, None] * G], 1)
    _check_finite(who, Z, horizon)
    return _compress(Z)


def finite_gram_factor(x, g, discrete: bool, horizon, who: str = "gramians") -> np.ndarray:
    """A factor L (n, j <= n) of gram(x, g, horizon) for a finite horizon, by square-root doubling
    (module docstring): O(n^3 log horizon) time, O(n^2) memory. g: (n,) or (n, k)."""
    G = _columns(g)
    if discrete:
        zero = x == 0
        logx = np.log(np.where(zero, 1, x))
        F, m = G, 1                                # P_1 = G G*
        for bit in bin(int(horizon))[3:]:          # the bits below the leading one
            E = _propagator(logx, zero, m)
            if not np.any(E):                      # every mode has died out: later terms add nothing
                break
            F, m = _grow(F, E, F, who, horizon), 2 * m                    # P_2m = P_m + x^m P_m x^m*
            if bit == "1":
                F, m = _grow(F, _propagator(logx, zero, m), G, who, horizon), m + 1   # + x^m G G* x^m*
        return F
    scale = float(np.max(np.abs(x), initial=0.0)) * horizon
    k = 0 if scale <= 4 else math.ceil(math.log2(scale / 4))
    h = math.ldexp(horizon, -k)                    # T / 2^k exactly: max|x| h <= 4
    nodes, weights = np.polynomial.legendre.leggauss(_GL_NODES)
    t = h * (1 + nodes) / 2
    with np.errstate(over="ignore", invalid="ignore"):
        F = (np.sqrt(h * weights / 2) * G[:, :, None] * np.exp(x[:, None, None] * t)).reshape(len(x), -1)
    _check_finite(who, F, horizon)
    F = _compress(F)
    for j in range(k):                             # P_2a = P_a + exp(x a) P_a exp(x a)*,  a = h 2^j
        with np.errstate(over="ignore", invalid="ignore"):     # overflow is reported by _grow
            E = np.exp(math.ldexp(h, j) * x)
        if not np.any(E):
            break
        F = _grow(F, E, F, who, horizon)
    return F


def gram_factor(x, g, discrete: bool, horizon=None, who: str = "gramians") -> np.ndarray:
    """A factor L (n, k) of gram(x, g, horizon), computed without forming the Gramian (one system)."""
    if horizon is None or _outlived(x, discrete, horizon):
        return cauchy_cholesky(x, g, discrete)
    return finite_gram_factor(x, g, discrete, horizon, who)


def _outlived(x, discrete: bool, horizon) -> bool:
    """True when every mode has decayed below sqrt(eps) by the horizon: then |(x_i conj x_j)^T| <= eps
    (or |exp((x_i + conj x_j) T)| <= eps), so the finite-horizon Gramian is the infinite one to within
    eps relative, entry by entry, and the infinite-horizon factor (accurate to ulps) serves."""
    with np.errstate(divide="ignore"):
        rate = np.log(np.abs(x)) if discrete else x.real
    return bool(np.all(rate * float(horizon) <= 0.5 * math.log(np.finfo(np.float64).eps)))


def gramian_factors(s: StdForm, horizon=None, who: str = "gramians"):
    """(Lp, Lq) with P = Lp Lp*, Q = Lq Lq* for one unbatched standard form (augmented coordinates)."""
    x, g, h = s.augmented()
    return gram_factor(x, g, s.discrete, horizon, who), gram_factor(np.conj(x), h, s.discrete, horizon, who)


def system_factors(one, horizon=None, who: str = "gramians"):
    """(Lp, Lq) of one unbatched system: the closed-form factors of a diagonal system (augmented
    coordinates, complex), or what a dense system computes itself (DenseSystem.gramian_factors, real)."""
    if isinstance(one, _ModalSystem):
        return gramian_factors(one.std, horizon, who)
    return one.gramian_factors(horizon, who)


def hsv_from_factors(Lp: np.ndarray, Lq: np.ndarray, n: int) -> np.ndarray:
    """sigma = svd(Lq* Lp), zero-padded (or cut) to n values."""
    out = np.zeros(n)
    if Lp.size and Lq.size:
        sv = np.linalg.svd(Lq.conj().T @ Lp, compute_uv=False)[:n]
        out[:sv.size] = sv
    return out


@single_threaded
def hankel_singular_values(sys, horizon=None) -> np.ndarray:
    """The Hankel singular values of the real system (a DiagonalSystem or MimoSystem: size 2N; a
    DenseSystem: n): float64 (..., 2N), descending.

    horizon: None (infinite-horizon Gramians; systems with unstable modes fall back to a finite
    horizon with a warning), an int L (discrete: first L steps) or a float T (continuous: [0, T]);
    the cost grows with log(horizon) at most (module docstring), so 10**15 steps are fine.
    sigma_i = svd(Lq* Lp)_i with the factors of gramian_factors (accurate to ~eps ||Lp|| ||Lq||).
    """
    if not getattr(type(sys), "_reducible", False):
        raise TypeError(f"hankel_singular_values: sys must be a DiagonalSystem, MimoSystem or DenseSystem, got "
                        f"{type(sys).__name__}")
    horizon = resolve_horizon("hankel_singular_values", sys, horizon)
    out = np.zeros(sys.batch_shape + (sys.n_states,))
    flat = out.reshape(-1, out.shape[-1])
    for i, one in enumerate(sys.flat()):
        flat[i] = hsv_from_factors(*system_factors(one, horizon, "hankel_singular_values"), sys.n_states)
    return out
