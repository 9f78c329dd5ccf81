"""H2 and H-infinity norms of diagonal systems (of the real system they stand for).

H2, in closed form from the augmented poles x = [p, conj p] and residues R = [r, conj r] of the
standard form (system.py), whose impulse response is g(t) = sum_i R_i exp(x_i t) (continuous) or
g[k] = sum_i R_i x_i^(k-1), k >= 1, g[0] = d (discrete):

    <G1, G2> = sum_ij R1_i conj(R2_j) W(x1_i, x2_j)   (+ d1 d2, discrete)

with the Gramian weight W of gramians.py (horizon T: the integral over [0, T]; discrete horizon L:
the first L samples g[0..L-1], i.e. W with L - 1 terms). ||G||_2^2 = <G, G>. The continuous H2
norm is that of the strictly proper part (D's impulse has no finite energy). For a layer, the
discrete ||G||_2 over L steps is the 2-norm of its convolution kernel K[0..L-1]; h2_norm sums that
kernel's first DIRECT_SAMPLES samples directly and takes only the rest from the closed form.

H-infinity: the peak of |G| over the imaginary axis (continuous) or the unit circle (discrete), on
a grid refined around each mode's frequency (its resonance has width ~|Re lam|), then the best
candidate peaks polished by a bounded scalar search. A grid search can only under-estimate.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from dssm_kernels.reduction._common import single_threaded
from dssm_kernels.reduction.gramians import resolve_horizon, weight
from dssm_kernels.reduction.system import DiagonalSystem

_BASE_POINTS = 801
_OFFSETS = np.concatenate([[0.0], np.logspace(-2, 2, 25)])   # in units of each mode's damping
_POLISH = 6                                                   # local maxima polished per system
DIRECT_SAMPLES = 1024     # discrete h2_norm: kernel samples summed directly before the closed-form tail


def h2_inner(x1, R1, x2, R2, discrete: bool, horizon=None, who: str = "h2_inner") -> torch.Tensor:
    """sum_ij R1_i conj(R2_j) W(x1_i, x2_j) (complex, over the last axis; torch, differentiable).

    x, R: the *augmented* poles and residues. horizon: None, T, or (discrete) the number of samples
    g[1..] counted, i.e. L - 1 for the first L samples."""
    W = weight(x1[..., :, None], x2[..., None, :], discrete, horizon, who)
    return torch.einsum("...i,...ij,...j->...", R1, W, R2.conj())


def _augmented_t(s):
    t = lambda a: torch.as_tensor(np.concatenate([a, np.conj(a)], -1))  # noqa: E731
    return t(s.p), t(s.r)


@single_threaded
def h2_norm(sys: DiagonalSystem, horizon=None):
    """||G||_2 (continuous: strictly proper part; discrete: sqrt(sum_l K[l]^2), K[0] = D + 2 Re sum C dB).

    horizon: None (infinite; unstable systems fall back to a finite horizon with a warning), an int L
    (discrete: the first L samples) or a float T (continuous: [0, T]). The cost does not depend on the
    horizon. Discrete: the first DIRECT_SAMPLES samples are summed directly and only the tail comes
    from the closed form (with the residues shifted, r x^(DIRECT_SAMPLES - 1)), so the norm of an
    error system G - G_r whose kernel is small at the start is not lost in the cancellation of the
    closed form's terms (~eps ||G||^2 each) beyond what its tail carries. Returns a float (unbatched)
    or a float64 array of the batch shape."""
    if not isinstance(sys, DiagonalSystem):
        raise TypeError(f"h2_norm: sys must be a DiagonalSystem, got {type(sys).__name__}")
    horizon = resolve_horizon("h2_norm", sys, horizon)
    if sys.discrete:
        sq = _kernel_energy(sys, horizon)
    else:
        x, R = _augmented_t(sys.std)
        sq = h2_inner(x, R, x, R, False, horizon, "h2_norm").real.numpy()
    out = np.sqrt(np.maximum(sq, 0.0))
    return float(out) if out.ndim == 0 else out


def _kernel_energy(sys: DiagonalSystem, L) -> np.ndarray:
    """sum_{l < L} K[l]^2 (L None: all l) of a discrete system, per system: the head directly, the
    tail K[l] = sum_i R_i x_i^(l-1) (augmented, l >= head) as h2_inner over x with R x^(head-1)."""
    head = DIRECT_SAMPLES if L is None else min(L, DIRECT_SAMPLES)
    sq = np.sum(sys.kernel(head) ** 2, -1)
    if L is not None and L <= head:
        return sq
    x, R = _augmented_t(sys.std)
    zero = x == 0
    shift = torch.where(zero, 0, torch.exp((head - 1) * torch.log(torch.where(zero, 1, x))))
    Rs = R * shift
    return sq + h2_inner(x, Rs, x, Rs, True, None if L is None else L - head, "h2_norm").real.numpy()


def _response(p, r, d, discrete: bool, w) -> np.ndarray:
    """|G| at frequencies w (one system, std form)."""
    x = np.exp(1j * w) if discrete else 1j * w
    G = d + np.sum(r / (x[:, None] - p) + np.conj(r) / (x[:, None] - np.conj(p)), -1)
    return np.abs(G)


def _grid(p, discrete: bool) -> np.ndarray:
    if discrete:
        centre, width, top = np.abs(np.angle(p)), np.maximum(1 - np.abs(p), 1e-12), np.pi
        base = np.linspace(0.0, np.pi, _BASE_POINTS)
    else:
        centre, width = np.abs(p.imag), np.maximum(np.abs(p.real), 1e-300)
        scale = np.abs(p)
        lo, hi = np.log10(max(scale.min(), 1e-300)) - 3, np.log10(max(scale.max(), 1e-300)) + 3
        base = np.concatenate([[0.0], np.logspace(lo, hi, _BASE_POINTS)])
        top = np.inf
    local = centre[:, None] + width[:, None] * np.concatenate([-_OFFSETS[1:], _OFFSETS])
    return np.unique(np.clip(np.concatenate([base, local.ravel()]), 0.0, top))


def _hinf_one(s) -> tuple[float, float]:
    p, r, d = s.p, s.r, float(s.d)
    w = _grid(p, s.discrete)
    mag = _response(p, r, d, s.discrete, w)
    best, at = (abs(d), np.inf) if not s.discrete else (-1.0, 0.0)
    interior = np.flatnonzero((mag[1:-1] >= mag[:-2]) & (mag[1:-1] >= mag[2:])) + 1
    cand = np.concatenate([interior, [0, len(w) - 1]])
    cand = cand[np.argsort(mag[cand])[::-1][:_POLISH]]
    for i in cand:
        if mag[i] > best:
            best, at = float(mag[i]), float(w[i])
        lo, hi = w[max(i - 1, 0)], w[min(i + 1, len(w) - 1)]
        if hi > lo:
            res = minimize_scalar(lambda v: -_response(p, r, d, s.discrete, np.array([v]))[0], bounds=(lo, hi),
                                  method="bounded", options={"xatol": 1e-14 * max(abs(hi), 1e-300)})
            if -res.fun > best:
                best, at = float(-res.fun), float(res.x)
    return best, at


@single_threaded
def hinf_norm(sys: DiagonalSystem, return_frequency: bool = False):
    """sup |G| over s = i w (continuous) or z = exp(i w) (discrete), by a refined grid (module docstring).

    Returns a float (unbatched) or float64 array of the batch shape; with return_frequency, also the
    peak's w (inf: the continuous peak is |D| at infinity). A system with an unstable mode has no
    finite H-infinity norm: inf, with a warning."""
    if not isinstance(sys, DiagonalSystem):
        raise TypeError(f"hinf_norm: sys must be a DiagonalSystem, got {type(sys).__name__}")
    stable = sys.std.stable()
    if not np.all(stable):
        warnings.warn(f"hinf_norm: {int(np.sum(~stable))} unstable mode(s): the H-infinity norm is infinite there",
                      RuntimeWarning, stacklevel=2)
    vals, freqs = [], []
    for one in sys.flat():
        if np.all(one.std.stable()):
            v, f = _hinf_one(one.std)
        else:
            v, f = np.inf, np.nan
        vals.append(v)
        freqs.append(f)
    shape = sys.batch_shape
    vals, freqs = np.array(vals).reshape(shape), np.array(freqs).reshape(shape)
    if not shape:
        vals, freqs = float(vals), float(freqs)
    return (vals, freqs) if return_frequency else vals


__all__ = ["h2_norm", "hinf_norm", "h2_inner"]
