"""Modal methods: keep the dominant modes of a diagonal system as they are (modal truncation), or keep
them and replace the others by their DC gain (modal singular perturbation).

Each mode's real-system term G_n = R_n / (x - p_n) + conj(R_n) / (x - conj p_n) (standard form, R_n =
c_n b_n^T) has
    ||G_n||_inf <= 2 ||R_n|| / |Re p_n|        (continuous)        2 ||R_n|| / (1 - |p_n|)     (discrete)
(||2 Re R_n|| for a real pole, whose twin is itself; ||.|| the spectral norm, ||c_n|| ||b_n|| for a rank-1
R_n), its dominance. Modes are kept in order of their score while they fit the real state size (a
conjugate pair takes 2, a real pole its residue's rank: 1 for SISO).

Modal truncation (MT): score = dominance; ||G - G_r||_inf <= sum of the dropped dominances. Kept modes keep
their poles and vectors; d is unchanged, so a discrete layer's K[0] stays exact.

Modal singular perturbation (MSP): the dropped modes contribute their DC gain, d_r = d + sum_dropped
G_n(DC) (G_n(0) = -2 Re(R_n / p_n) continuous, G_n(1) = 2 Re(R_n / (1 - p_n)) discrete), so G_r(DC) =
G(DC) exactly. Error per dropped mode ||G_n - G_n(DC)||_inf: continuous, each twin's
|r s / (p (s - p))| peaks at ||R|| / |Re p| over the imaginary axis, so the bound is the dominance again;
discrete, ||R|| sup_{|z|=1} |1 - z| / |z - p| / |1 - p| per twin, the sup of the Moebius map
z -> (1 - z) / (z - p) over the unit circle in closed form (the image circle's |centre| + radius).
score = that per-mode bound; ||G - G_r||_inf <= sum over the dropped modes.

Over a finite horizon (and for systems with unstable modes, which have no peak) the score is each mode's
h2 norm over the horizon and there is no bound. Dense systems (S4) use the modal form of their minimal
balanced realisation (reductor.SystemContext.std).
"""
from __future__ import annotations

import numpy as np
import torch

from dssm_kernels.reduction._common import REDIAG_WARN, single_threaded
from dssm_kernels.reduction.norms import h2_inner_factored
from dssm_kernels.reduction.reductor import Method, Reduced, check_common, run
from dssm_kernels.reduction.system import StdForm


def _residue_norms(s: StdForm) -> np.ndarray:
    """(..., N): ||c_n b_n^T|| for a conjugate pair, ||Re(c_n b_n^T)|| for a real pole (spectral norms)."""
    R = s.residues()
    pair = np.linalg.norm(s.c, axis=-2) * np.linalg.norm(s.b, axis=-1)
    if not np.any(s.real_modes()):
        return pair
    re = np.linalg.norm(R.real, ord=2, axis=(-2, -1)) if R.shape[-1] * R.shape[-2] > 1 else np.abs(R.real[..., 0, 0])
    return np.where(s.real_modes(), re, pair)


def dominance(s: StdForm, horizon=None) -> np.ndarray:
    """Per-mode dominance (..., N): the H-infinity bound of the module docstring, or with a horizon the
    mode's h2 norm over it."""
    if horizon is None:
        gain = 2 * _residue_norms(s)
        return gain / (1 - np.abs(s.p) if s.discrete else np.abs(s.p.real))
    return _mode_h2(s, horizon)


def _mode_h2(s: StdForm, horizon) -> np.ndarray:
    """Each mode's h2 norm over the horizon (discrete: samples 1 .. L-1; d is shared by all modes)."""
    x = torch.as_tensor(np.stack([s.p, np.conj(s.p)], -1))                                  # (..., N, 2)
    b = torch.as_tensor(np.stack([s.b, np.conj(s.b)], -2))                                  # (..., N, 2, m)
    ct = np.swapaxes(s.c, -1, -2)
    c = torch.as_tensor(np.stack([ct, np.conj(ct)], -2))                                    # (..., N, 2, p)
    h = horizon - 1 if s.discrete else horizon
    sq = h2_inner_factored(x, b, c, x, b, c, s.discrete, h, "modal_truncation").real.numpy()
    return np.sqrt(np.maximum(sq, 0.0))


def dc_terms(s: StdForm) -> np.ndarray:
    """Each mode's DC gain G_n(0) (continuous) or G_n(1) (discrete): real (..., N, p, m)."""
    R = s.residues()
    den = (1 - s.p) if s.discrete else -s.p
    return 2 * (R / den[..., None, None]).real


def _moebius_peak(p: np.ndarray) -> np.ndarray:
    """sup_{|z| = 1} |1 - z| / |z - p| for |p| < 1: the image of the unit circle under the Moebius map
    f(z) = (1 - z) / (z - p) is a circle; its points f(1) = 0, f(-1), f(i) give centre and radius."""
    a, b, c = np.zeros_like(p), 2 / (-1 - p), (1 - 1j) / (1j - p)
    # circumcentre of the three points (complex formula)
    ab, ac = b - a, c - a
    den = 2 * (ab.real * ac.imag - ab.imag * ac.real)
    safe = np.where(np.abs(den) > 0, den, 1.0)
    ux = (ac.imag * np.abs(ab) ** 2 - ab.imag * np.abs(ac) ** 2) / safe
    uy = (ab.real * np.abs(ac) ** 2 - ac.real * np.abs(ab) ** 2) / safe
    centre = a + ux + 1j * uy
    peak = np.abs(centre) + np.abs(centre - a)
    # collinear points (p real): the image is a line through 0 and the peak is at z = -1 or z = -p/|p|...:
    # bound it by the crude 2 / (1 - |p|), always valid
    return np.where(np.abs(den) > 1e-14 * np.maximum(np.abs(ab) * np.abs(ac), 1e-300), np.minimum(peak, 2 / (1 - np.abs(p))),
                    2 / (1 - np.abs(p)))


def msp_score(s: StdForm, horizon=None) -> np.ndarray:
    """Per-mode bound on ||G_n - G_n(DC)||_inf (module docstring); with a horizon, the mode's h2 norm."""
    if horizon is not None or not s.discrete:
        return dominance(s, horizon)
    return 2 * _residue_norms(s) * _moebius_peak(s.p) / np.abs(1 - s.p)


def select(score: np.ndarray, sizes: np.ndarray, rank: int, max_modes: int | None) -> np.ndarray:
    """Indices of the kept modes: by descending score, each taken if it still fits the rank (and
    max_modes); modes of size 0 (residue 0) are never kept."""
    kept, used = [], 0
    for n in np.argsort(-score, kind="stable"):
        size = int(sizes[n])
        if size and used + size <= rank and (max_modes is None or len(kept) < max_modes):
            kept.append(n)
            used += size
    return np.array(sorted(kept), dtype=int)


class MT(Method):
    """Modal truncation."""
    name = "modal"

    def score(self, ctx):
        return dominance(ctx.std, self.horizon)

    def _scores(self, ctx):
        cache = ctx.__dict__.setdefault("_modal_scores", {})
        if self.name not in cache:
            cache[self.name] = (self.score(ctx), ctx.std.mode_orders())
        return cache[self.name]

    def bounds(self, ctx):
        score, sizes = self._scores(ctx)
        total = score.sum()
        mm = self.modes_limit(ctx)
        return np.array([total - score[select(score, sizes, r, mm)].sum() for r in range(ctx.n + 1)])

    def bounds_by_modes(self, ctx) -> np.ndarray:
        """The bound when keeping k complex modes (rank 2k, at most k modes), k = 0 .. the system's modes."""
        score, sizes = self._scores(ctx)
        total = score.sum()
        return np.array([total - score[select(score, sizes, 2 * k, k)].sum() for k in range(len(score) + 1)])

    def reduce(self, ctx, r):
        s = ctx.std
        score, sizes = self._scores(ctx)
        k = select(score, sizes, r, self.modes_limit(ctx))
        d = s.d + (self.dc(s, k) if self.name == "msp" else 0.0)
        dropped = np.setdiff1d(np.arange(s.n_modes), k)
        return Reduced(d, p=s.p[k], b=s.b[k], c=s.c[:, k], rank=int(sizes[k].sum()), modes=k,
                       extra=dict(bound=float(score[dropped].sum()), dominance=score), per_mode=dict(kept=k))

    def dc(self, s, k):
        return 0.0

    def bound(self, ctx, r, red):
        # a dense system's modal form is its diagonalised balanced realisation: exact only to modal_error
        return red.extra["bound"] if ctx.modal_error <= REDIAG_WARN else float("nan")


class MSP(MT):
    """Modal singular perturbation."""
    name = "msp"

    def score(self, ctx):
        return msp_score(ctx.std, self.horizon)

    def dc(self, s, k):
        dropped = np.setdiff1d(np.arange(s.n_modes), k)
        return dc_terms(s)[dropped].sum(0)


def _modal(method_cls, who, sys, rank, horizon, max_modes):
    rank, _, horizon, max_modes = check_common(who, sys, rank, None, horizon, max_modes, rank_required=True)
    out, info = run(method_cls(who, horizon, max_modes, rank=rank), sys, rank, None)
    info.extra.pop("bound")
    return out, info


@single_threaded
def modal_truncation(sys, rank: int, *, horizon=None, max_modes: int | None = None):
    """Keep the dominant modes (module docstring) of each system of the batch.

    Args:
        sys: DiagonalSystem (..., N), MimoSystem or DenseSystem.   rank: the real state size to keep.
        horizon: rank the modes by their h2 norm over this horizon instead (no bound then); systems with
            unstable modes use a finite horizon, with a warning.
        max_modes: keep at most this many complex modes.
    Returns:
        (reduced system, ReductionInfo); info.error_bound = sum of the dropped dominances (None with a
        horizon); info.extra["kept"] the kept mode indices (-1 = padding), ["dominance"] every mode's.
    """
    return _modal(MT, "modal_truncation", sys, rank, horizon, max_modes)


@single_threaded
def modal_singular_perturbation(sys, rank: int, *, horizon=None, max_modes: int | None = None):
    """Keep the modes with the largest bound on ||G_n - G_n(DC)||, the others replaced by their DC gain
    (module docstring): G_r(DC) = G(DC). Same arguments and info as modal_truncation (["dominance"]: each
    mode's score, the bound on its ||G_n - G_n(DC)||)."""
    return _modal(MSP, "modal_singular_perturbation", sys, rank, horizon, max_modes)
