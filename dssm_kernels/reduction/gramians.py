"""Closed-form Gramians of diagonal systems, their accurate square-root factors, Hankel singular values.

For the conjugate-augmented standard form (poles x = [p, conj p], input g = [b, conj b], output
[c, conj c]; see system.py) the controllability Gramian P and the observability Gramian Q are
Cauchy-like, entry by entry:

    P_ij = g_i conj(g_j) W(x_i, x_j),      Q_ij = conj(c_i) c_j W(conj x_i, conj x_j),   with
    continuous, infinite:        W = 1 / -(x_i + conj x_j)            (A P + P A* + B B* = 0)
    continuous, horizon T:       W = (exp((x_i + conj x_j) T) - 1) / (x_i + conj x_j)
    discrete, infinite:          W = 1 / (1 - x_i conj x_j)            (P - A P A* = B B*)
    discrete, first L steps:     W = (1 - (x_i conj x_j)^L) / (1 - x_i conj x_j)  = sum_{k<L} (x_i conj x_j)^k

The Hankel singular values are sigma = svd(Lq* Lp) with P = Lp Lp*, Q = Lq Lq* (the square-root
method). Forming P and Q densely and factoring them (or eig(P Q)) loses what these very
ill-conditioned matrices hold: a Gramian known to eps ||P|| gives factors only to sqrt(eps), so the
small sigmas come out ~sqrt(eps) sigma_1 wrong. Instead the factors are computed without forming P:
  - infinite horizon: Cholesky with diagonal pivoting on the Cauchy generators. The Schur complement
    of P after pivot k is again Cauchy-like on the same nodes, with g_i <- g_i (x_i - x_k) / (x_i + conj x_k)
    (continuous) or g_i (x_i - x_k) / (1 - x_i conj x_k) (discrete), so every entry of the factor is
    computed from differences of nodes, to a few ulps relative, however small (exact zeros for the
    twin of a real pole);
  - finite horizon: P = Z Z* with Z the sampled trajectories g x^k (k < L) or sqrt(w_m) g exp(x t_m)
    at Gauss-Legendre nodes on [0, T] (panels short enough that the rule is exact to rounding), and
    Lp = R* from a QR of Z* (backward stable in Z, so sigma is accurate to eps ||Lq|| ||Lp||).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from dssm_kernels.reduction._common import single_threaded
from dssm_kernels.reduction.system import DiagonalSystem, StdForm

DEFAULT_STEPS = 1024          # finite horizon used for unstable discrete systems given no horizon
DEFAULT_TIME = 10.0           # ... and for unstable continuous ones
_GL_NODES = 20                # Gauss-Legendre nodes per panel; panels have max|x| * length <= 4
_MAX_NODES = 1 << 20          # beyond this the continuous finite-horizon factor is taken from eigh
_CHUNK = 4096                 # columns of Z per QR update


# ------------------------------------------------------------------------------------- horizon
def check_horizon(who: str, discrete: bool, horizon):
    """None, an int L >= 1 (discrete) or a float T > 0 (continuous); TypeError/ValueError otherwise."""
    if horizon is None:
        return None
    if discrete:
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)):
            raise TypeError(f"{who}: horizon of a discrete system must be an int number of steps, got {horizon!r}")
        if horizon < 1:
            raise ValueError(f"{who}: horizon must be >= 1 step, got {horizon}")
        return int(horizon)
    if isinstance(horizon, bool) or not isinstance(horizon, (int, float, np.integer, np.floating)):
        raise TypeError(f"{who}: horizon of a continuous system must be a float time T, got {horizon!r}")
    if not (math.isfinite(horizon) and horizon > 0):
        raise ValueError(f"{who}: horizon must be a finite time T > 0, got {horizon}")
    return float(horizon)


def resolve_horizon(who: str, sys: DiagonalSystem, horizon):
    """The horizon to use: as given; or, for a system with unstable modes and none given, the default
    finite horizon with a warning (infinite-horizon Gramians and norms do not exist for those)."""
    horizon = check_horizon(who, sys.discrete, horizon)
    if horizon is None and not np.all(sys.std.stable()):
        n_bad = int(np.sum(~sys.std.stable()))
        horizon = DEFAULT_STEPS if sys.discrete else DEFAULT_TIME
        warnings.warn(f"{who}: {n_bad} unstable mode(s) (Re lam >= 0): no infinite-horizon Gramian exists, using the "
                      f"finite horizon {horizon} {'steps' if sys.discrete else '(time)'}", RuntimeWarning, stacklevel=3)
    return horizon


# ------------------------------------------------------------------------------- closed forms
def _as_t(x):
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.complex128))


def weight(xi, xj, discrete: bool, horizon=None) -> torch.Tensor:
    """W(x_i, x_j) of the module docstring, broadcasting xi against xj (torch, complex128, differentiable).

    horizon may be 0 (an empty sum: W = 0). The finite forms go through expm1 (accurate to ulps for
    complex arguments near 0), so they stay accurate for nearly marginal modes."""
    xi, xj = _as_t(xi), _as_t(xj)
    if discrete:
        q = xi * xj.conj()
        if horizon is None:
            return 1 / (1 - q)
        # sum_{k<L} q^k = expm1(L log q) / expm1(log q); = L at q = 1, = 1 at q = 0 (L >= 1)
        lq = torch.log(torch.where(q == 0, torch.ones_like(q), q))
        one = lq == 0
        safe = torch.where(one, torch.ones_like(lq), lq)
        out = torch.where(one, torch.full_like(lq, float(horizon)), torch.expm1(horizon * safe) / torch.expm1(safe))
        return torch.where(q == 0, torch.full_like(q, float(horizon > 0)), out)
    s = xi + xj.conj()
    if horizon is None:
        return -1 / s
    sT = s * horizon    # (exp(s T) - 1) / s, = T at s = 0
    zero = sT == 0
    safe = torch.where(zero, torch.ones_like(sT), sT)
    return horizon * torch.where(zero, torch.ones_like(sT), torch.expm1(safe) / safe)


def gram(x, g, discrete: bool, horizon=None) -> np.ndarray:
    """g_i conj(g_j) W(x_i, x_j): complex (..., n, n)."""
    W = weight(x[..., :, None], x[..., None, :], discrete, horizon).numpy()
    return g[..., :, None] * np.conj(g[..., None, :]) * W


def augmented(s: StdForm):
    """(x, g, h): poles, input and conjugated output vectors of the conjugate-augmented system."""
    cat = lambda a: np.concatenate([a, np.conj(a)], -1)  # noqa: E731
    return cat(s.p), cat(s.b), np.conj(cat(s.c))


def gramians(sys: DiagonalSystem, horizon=None):
    """(P, Q): the controllability and observability Gramians of the conjugate-augmented standard
    realisation (A = diag(x), B = g, C = conj(h)), complex (..., 2N, 2N), in closed form.

    horizon: None (infinite), an int L (discrete: first L steps) or a float T (continuous: [0, T]).
    For the real realisation of DiagonalSystem.realization() they are T P T*, T Q T* (T = augmented_to_real).
    """
    horizon = resolve_horizon("gramians", sys, horizon)
    x, g, h = augmented(sys.std)
    return gram(x, g, sys.discrete, horizon), gram(np.conj(x), h, sys.discrete, horizon)


# ----------------------------------------------------------------------------------- factors
def cauchy_cholesky(x, g, discrete: bool) -> np.ndarray:
    """L (n, k) with L L* = gram(x, g) (infinite horizon, all x stable), by pivoted Cholesky on the
    generators (module docstring). k = the number of nonzero pivots; L's rows are in x's order."""
    n = x.shape[0]
    g = g.astype(np.complex128).copy()
    L = np.zeros((n, n), np.complex128)
    active = np.ones(n, bool)
    dd = (1 - np.abs(x) ** 2) if discrete else -2 * x.real
    for j in range(n):
        piv = np.where(active, np.abs(g) ** 2 / dd, -np.inf)
        k = int(np.argmax(piv))
        if not piv[k] > 0:
            return L[:, :j]
        den = (1 - x * np.conj(x[k])) if discrete else -(x + np.conj(x[k]))
        L[active, j] = (g * np.conj(g[k]) / den)[active] / math.sqrt(piv[k])
        active[k] = False
        step = (x - x[k]) / ((1 - x * np.conj(x[k])) if discrete else (x + np.conj(x[k])))
        g = np.where(active, g * step, 0)
    return L


def _qr_factor(chunks, n: int, who: str) -> np.ndarray:
    """L (n, k) with L L* = sum over chunks Z Z*, from a running QR of the stacked Z*."""
    R = np.zeros((0, n), np.complex128)
    for Z in chunks:
        if not np.all(np.isfinite(Z)):
            raise ValueError(f"{who}: the horizon is too long for the growth of the unstable modes "
                             "(trajectories overflow)")
        R = np.linalg.qr(np.concatenate([R, Z.conj().T]), mode="r")
    return R.conj().T


def _trajectories(x, g, discrete: bool, horizon):
    """Column chunks of Z with Z Z* = gram(x, g, horizon) (module docstring)."""
    if discrete:
        for k0 in range(0, horizon, _CHUNK):
            yield g[:, None] * x[:, None] ** np.arange(k0, min(horizon, k0 + _CHUNK))
        return
    xi, wi = np.polynomial.legendre.leggauss(_GL_NODES)
    panels = max(1, math.ceil(np.max(np.abs(x)) * horizon / 4))
    h = horizon / panels
    per_chunk = max(1, _CHUNK // _GL_NODES)
    for p0 in range(0, panels, per_chunk):
        starts = h * np.arange(p0, min(panels, p0 + per_chunk))
        t = (starts[:, None] + h * (1 + xi) / 2).ravel()
        w = np.tile(h * wi / 2, len(starts))
        yield np.sqrt(w) * g[:, None] * np.exp(x[:, None] * t)


def gram_factor(x, g, discrete: bool, horizon=None, who: str = "gramians") -> np.ndarray:
    """A factor L (n, k) of gram(x, g, horizon), computed without forming the Gramian (one system)."""
    if horizon is None:
        return cauchy_cholesky(x, g, discrete)
    if not discrete and np.max(np.abs(x)) * horizon / 4 * _GL_NODES > _MAX_NODES:
        # far too many oscillations over [0, T] to sample: factor the closed form (sqrt(eps)-accurate tail)
        warnings.warn(f"{who}: max|lam| T = {np.max(np.abs(x)) * horizon:.3g} is too large to sample; the Gramian "
                      "factor comes from an eigendecomposition (small Hankel singular values lose accuracy)",
                      RuntimeWarning, stacklevel=3)
        w, V = np.linalg.eigh(gram(x, g, discrete, horizon))
        keep = w > 0
        return V[:, keep] * np.sqrt(w[keep])
    return _qr_factor(_trajectories(x, g, discrete, horizon), x.shape[0], who)


def gramian_factors(s: StdForm, horizon=None, who: str = "gramians"):
    """(Lp, Lq) with P = Lp Lp*, Q = Lq Lq* for one unbatched standard form (augmented coordinates)."""
    x, g, h = augmented(s)
    return gram_factor(x, g, s.discrete, horizon, who), gram_factor(np.conj(x), h, s.discrete, horizon, who)


@single_threaded
def hankel_singular_values(sys: DiagonalSystem, horizon=None) -> np.ndarray:
    """The Hankel singular values of the real system (size 2N): float64 (..., 2N), descending.

    horizon: None (infinite-horizon Gramians; systems with unstable modes fall back to a finite
    horizon with a warning), an int L (discrete: first L steps) or a float T (continuous: [0, T]).
    sigma_i = svd(Lq* Lp)_i with the factors of gramian_factors (accurate to ~eps ||Lp|| ||Lq||).
    """
    if not isinstance(sys, DiagonalSystem):
        raise TypeError(f"hankel_singular_values: sys must be a DiagonalSystem, got {type(sys).__name__}")
    horizon = resolve_horizon("hankel_singular_values", sys, horizon)
    out = np.zeros(sys.batch_shape + (2 * sys.n_modes,))
    for i, one in enumerate(sys.flat()):
        Lp, Lq = gramian_factors(one.std, horizon, "hankel_singular_values")
        sv = np.linalg.svd(Lq.conj().T @ Lp, compute_uv=False) if Lp.size and Lq.size else np.zeros(0)
        out.reshape(-1, out.shape[-1])[i, :sv.size] = sv[: out.shape[-1]]
    return out
