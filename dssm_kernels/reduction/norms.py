"""H2 and H-infinity norms of diagonal systems (of the real system they stand for) and of dense ones.

H2, in closed form from the augmented poles x = [p, conj p], input rows g = [b; conj b] and output
vectors k = [c, conj c]^T of the standard form (system.py), whose impulse response is
g(t) = sum_i k_i g_i^T exp(x_i t) (continuous) or g[l] = sum_i k_i g_i^T x_i^(l-1), l >= 1, g[0] = d
(discrete), the trace form

    <G1, G2> = sum_ij (g1_i . conj g2_j) (k1_i . conj k2_j) W(x1_i, x2_j)   (+ tr(d1 d2^T), discrete)

with the Gramian weight W of gramians.py (horizon T: the integral over [0, T]; discrete horizon L: the
first L samples g[0..L-1], i.e. W with L - 1 terms). ||G||_2^2 = <G, G> = sum_l ||K[l]||_F^2 (SISO: a
residue product r_i conj(r_j)). The continuous H2 norm is that of the strictly proper part (D's impulse
has no finite energy). For a layer, the discrete ||G||_2 over L steps is the 2-norm of its convolution
kernel K[0..L-1]; h2_norm sums that kernel's first DIRECT_SAMPLES samples directly and takes only the
rest from the closed form. A dense system's (dense.py): ||C F||_F with F a Gramian factor, after the
same directly summed head.

H-infinity: the peak of the largest singular value of G over the imaginary axis (continuous) or the
unit circle (discrete), on a grid refined around each pole's frequency (its resonance has width
~|Re lam|), then the best candidate peaks polished by a bounded scalar search. A grid search can only
under-estimate.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from dssm_kernels.reduction._common import single_threaded
from dssm_kernels.reduction.gramians import resolve_horizon, weight
from dssm_kernels.reduction.system import _ModalSystem

_BASE_POINTS = 801
_OFFSETS = np.concatenate([[0.0], np.logspace(-2, 2, 25)])   # in units of each mode's damping
_POLISH = 6                                                   # local maxima polished per system
DIRECT_SAMPLES = 1024     # discrete h2_norm: kernel samples summed directly before the closed-form tail


def h2_inner(x1, R1, x2, R2, discrete: bool, horizon=None, who: str = "h2_inner") -> torch.Tensor:
    """sum_ij R1_i conj(R2_j) W(x1_i, x2_j) (complex, over the last axis; torch, differentiable): the
    SISO case of h2_inner_factored, with scalar residues R.

    x, R: the *augmented* poles and residues. horizon: None, T, or (discrete) the number of samples
    g[1..] counted, i.e. L - 1 for the first L samples."""
    W = weight(x1[..., :, None], x2[..., None, :], discrete, horizon, who)
    return torch.einsum("...i,...ij,...j->...", R1, W, R2.conj())


def h2_inner_factored(x1, g1, k1, x2, g2, k2, discrete: bool, horizon=None, who: str = "h2_inner"):
    """sum_ij (g1_i . conj g2_j) (k1_i . conj k2_j) W(x1_i, x2_j) (torch, differentiable): the trace form of
    the module docstring. x (..., n), g (..., n, m) input rows, k (..., n, p) output vectors (rows)."""
    W = weight(x1[..., :, None], x2[..., None, :], discrete, horizon, who)
    G = torch.einsum("...ia,...ja->...ij", g1, g2.conj())
    K = torch.einsum("...ia,...ja->...ij", k1, k2.conj())
    return (G * K * W).sum((-2, -1))


def augmented_t(s):
    """(x, g, k) of a StdForm as torch tensors: augmented poles, input rows, output vectors (rows)."""
    x, g, h = s.augmented()
    return torch.as_tensor(x), torch.as_tensor(g), torch.as_tensor(np.conj(h))


def h2_norm(sys, horizon=None):
    """||G||_2 (continuous: strictly proper part; discrete: sqrt(sum_l ||K[l]||_F^2), K[0] = D + 2 Re C dB).

    sys: a DiagonalSystem, MimoSystem or DenseSystem. horizon: None (infinite; unstable systems fall back
    to a finite horizon with a warning), an int L (discrete: the first L samples) or a float T
    (continuous: [0, T]). The cost does not depend on the horizon. Discrete: the first DIRECT_SAMPLES
    samples are summed directly and only the tail comes from the closed form (with the residues
    shifted, x^(DIRECT_SAMPLES - 1)), so the norm of an error system G - G_r whose kernel is small at
    the start is not lost in the cancellation of the closed form's terms (~eps ||G||^2 each) beyond what
    its tail carries. Returns a float (unbatched) or a float64 array of the batch shape."""
    if not getattr(type(sys), "_reducible", False):
        raise TypeError(f"h2_norm: sys must be a DiagonalSystem, MimoSystem or DenseSystem, got {type(sys).__name__}")
    horizon = resolve_horizon("h2_norm", sys, horizon)
    if not isinstance(sys, _ModalSystem):
        sq = _dense_energy(sys, horizon)
    elif sys.discrete:
        sq = _kernel_energy(sys, horizon)
    else:
        x, g, k = augmented_t(sys.std)
        sq = h2_inner_factored(x, g, k, x, g, k, False, horizon, "h2_norm").real.numpy()
    out = np.sqrt(np.maximum(sq, 0.0))
    return float(out) if out.ndim == 0 else out


h2_norm_unthreaded = h2_norm                 # for callers already inside single_threaded (no second BLAS probe)
h2_norm = single_threaded(h2_norm)


def _kernel_sq(K: np.ndarray, n_batch: int) -> np.ndarray:
    """sum over everything but the batch dimensions of K**2."""
    return np.sum(K.reshape(K.shape[:n_batch] + (-1,)) ** 2, -1)


def _kernel_energy(sys, L) -> np.ndarray:
    """sum_{l < L} ||K[l]||^2 (L None: all l) of a discrete system, per system: the head directly, the
    tail K[l] = sum_i k_i g_i^T x_i^(l-1) (augmented, l >= head) in closed form with g x^(head-1)."""
    head = DIRECT_SAMPLES if L is None else min(L, DIRECT_SAMPLES)
    sq = _kernel_sq(sys.kernel(head), len(sys.batch_shape))
    if L is not None and L <= head:
        return sq
    x, g, k = augmented_t(sys.std)
    zero = x == 0
    shift = torch.where(zero, 0, torch.exp((head - 1) * torch.log(torch.where(zero, 1, x))))
    gs = g * shift[..., None]
    return sq + h2_inner_factored(x, gs, k, x, gs, k, True, None if L is None else L - head, "h2_norm").real.numpy()


def _dense_energy(sys, L) -> np.ndarray:
    """The same for a DenseSystem: the head directly, the tail ||C F||_F^2 with F a factor of the Gramian
    of (A, A^(head-1) B) over the remaining samples (continuous: ||C Lp||_F^2)."""
    from dssm_kernels.reduction.dense import square_root_doubling
    out = np.zeros(sys.batch_shape)
    flat = out.reshape(-1)
    for i, one in enumerate(sys.flat()):
        A, B, C, D = one.realization()
        if not one.discrete:
            Lp, _ = one.gramian_factors(L, "h2_norm")
            flat[i] = np.sum((C @ Lp) ** 2)
            continue
        head = DIRECT_SAMPLES if L is None else min(L, DIRECT_SAMPLES)
        flat[i] = np.sum(one.kernel(head) ** 2)
        if L is not None and L <= head:
            continue
        X = B
        for _ in range(head - 1):
            X = A @ X
        F = square_root_doubling(A, X, None if L is None else L - head, "h2_norm")
        flat[i] += np.sum((C @ F) ** 2)
    return out


def _sigma_max(G: np.ndarray) -> np.ndarray:
    """Largest singular value of each (..., p, m) matrix (|G| for 1 x 1)."""
    if G.shape[-1] == 1 or G.shape[-2] == 1:
        return np.linalg.norm(G, axis=(-2, -1))
    return np.linalg.norm(G, ord=2, axis=(-2, -1))


def _grid(p, discrete: bool) -> np.ndarray:
    if discrete:
        centre, width = np.abs(np.angle(p)), np.maximum(1 - np.abs(p), 1e-12)
        base, top = np.linspace(0.0, np.pi, _BASE_POINTS), np.pi
    else:
        centre, width = np.abs(p.imag), np.maximum(np.abs(p.real), 1e-300)
        scale = np.abs(p) if p.size else np.ones(1)
        lo, hi = np.log10(max(scale.min(), 1e-300)) - 3, np.log10(max(scale.max(), 1e-300)) + 3
        base = np.concatenate([[0.0], np.logspace(lo, hi, _BASE_POINTS)])
        top = np.inf
    local = centre[:, None] + width[:, None] * np.concatenate([-_OFFSETS[1:], _OFFSETS])
    return np.unique(np.clip(np.concatenate([base, local.ravel()]), 0.0, top))


def _hinf_one(response, poles, d_norm: float, discrete: bool, io: int = 1) -> tuple[float, float]:
    """Peak of sigma_max(G(i w)) / sigma_max(G(exp(i w))) of one system: response(x (K,)) -> (K, p, m), io = p m.
    The grid is evaluated in chunks of at most 2^22 / io points (64 MiB of responses)."""
    mag_of = lambda w: _sigma_max(response(np.exp(1j * w) if discrete else 1j * w))  # noqa: E731
    w = _grid(poles, discrete)
    chunk = max(1, min(512, (1 << 22) // max(io, 1)))
    mag = np.concatenate([mag_of(w[i:i + chunk]) for i in range(0, len(w), chunk)])
    best, at = (d_norm, np.inf) if not discrete else (-1.0, 0.0)
    interior = np.flatnonzero((mag[1:-1] >= mag[:-2]) & (mag[1:-1] >= mag[2:])) + 1
    cand = np.concatenate([interior, [0, len(w) - 1]])
    cand = cand[np.argsort(mag[cand])[::-1][:_POLISH]]
    for i in cand:
        if mag[i] > best:
            best, at = float(mag[i]), float(w[i])
        lo, hi = w[max(i - 1, 0)], w[min(i + 1, len(w) - 1)]
        if hi > lo:
            res = minimize_scalar(lambda v: -mag_of(np.array([v]))[0], bounds=(lo, hi),
                                  method="bounded", options={"xatol": 1e-14 * max(abs(hi), 1e-300)})
            if -res.fun > best:
                best, at = float(-res.fun), float(res.x)
    return best, at


@single_threaded
def hinf_norm(sys, return_frequency: bool = False):
    """sup over s = i w (continuous) or z = exp(i w) (discrete) of the largest singular value of G (|G| for
    a SISO system), by a refined grid (module docstring). sys: DiagonalSystem, MimoSystem or DenseSystem.

    Returns a float (unbatched) or float64 array of the batch shape; with return_frequency, also the
    peak's w (inf: the continuous peak is ||D|| at infinity). A system with an unstable mode has no
    finite H-infinity norm: inf, with a warning."""
    if not getattr(type(sys), "_reducible", False):
        raise TypeError(f"hinf_norm: sys must be a DiagonalSystem, MimoSystem or DenseSystem, got {type(sys).__name__}")
    n_bad = sys.unstable_count()
    if n_bad:
        what = "mode(s)" if isinstance(sys, _ModalSystem) else "system(s)"
        warnings.warn(f"hinf_norm: {n_bad} unstable {what}: the H-infinity norm is infinite there",
                      RuntimeWarning, stacklevel=2)
    vals, freqs = [], []
    for one in sys.flat():
        if one.unstable_count():
            v, f = np.inf, np.nan
        elif isinstance(one, _ModalSystem):
            s = one.std
            v, f = _hinf_one(s.response, s.p, float(_sigma_max(s.d)), s.discrete, int(np.prod(one.io_shape)))
        else:
            v, f = _hinf_one(one.response, np.linalg.eigvals(one.A), float(_sigma_max(one.D)), one.discrete,
                             int(np.prod(one.io_shape)))
        vals.append(v)
        freqs.append(f)
    shape = sys.batch_shape
    vals, freqs = np.array(vals).reshape(shape), np.array(freqs).reshape(shape)
    if not shape:
        vals, freqs = float(vals), float(freqs)
    return (vals, freqs) if return_frequency else vals


__all__ = ["h2_norm", "hinf_norm", "h2_inner", "h2_inner_factored"]
