"""Modal truncation: keep the dominant modes of a diagonal system as they are.

Each mode's real-system term G_n = r_n / (x - p_n) + conj(r_n) / (x - conj p_n) (standard form) has
    ||G_n||_inf <= 2 |r_n| / |Re p_n|        (continuous)        2 |r_n| / (1 - |p_n|)     (discrete)
(2 |Re r_n| / ... for a real pole, whose twin is itself), its dominance. The modes are kept in order
of dominance while they fit the real state size (a conjugate pair takes 2, a real pole 1), and
||G - G_r||_inf <= sum of the dropped dominances is a guaranteed bound. Over a finite horizon (and for
systems with unstable modes, which have no peak) the dominance is each mode's h2 norm over the
horizon, and there is no bound. Kept modes keep their lam, B and C; only D changes for a discrete
system, so that K[0] (the standard form's d) stays exact.
"""
from __future__ import annotations

import numpy as np
import torch

from dssm_kernels.reduction._common import ReductionInfo, check_max_modes, check_rank, check_system, single_threaded
from dssm_kernels.reduction.gramians import hankel_singular_values, resolve_horizon
from dssm_kernels.reduction.norms import h2_inner
from dssm_kernels.reduction.system import DiagonalSystem, StdForm, pad_modes


def dominance(s: StdForm, horizon=None) -> np.ndarray:
    """Per-mode dominance (..., N): the H-infinity bound of the module docstring, or with a horizon the
    mode's h2 norm over it."""
    real = s.real_modes()
    if horizon is None:
        gain = 2 * np.where(real, np.abs(s.r.real), np.abs(s.r))
        return gain / (1 - np.abs(s.p) if s.discrete else np.abs(s.p.real))
    x = torch.as_tensor(np.stack([s.p, np.conj(s.p)], -1))
    R = torch.as_tensor(np.stack([s.r, np.conj(s.r)], -1))
    h = horizon - 1 if s.discrete else horizon     # discrete: samples 1 .. L-1 (d is shared by all modes)
    return np.sqrt(np.maximum(h2_inner(x, R, x, R, s.discrete, h, "modal_truncation").real.numpy(), 0.0))


def _select(dom: np.ndarray, real: np.ndarray, rank: int, max_modes: int | None) -> np.ndarray:
    """Indices of the kept modes: by descending dominance, each taken if it still fits."""
    kept, used = [], 0
    for n in np.argsort(-dom, kind="stable"):
        size = 1 if real[n] else 2
        if used + size <= rank and (max_modes is None or len(kept) < max_modes):
            kept.append(n)
            used += size
    return np.array(sorted(kept), dtype=int)


@single_threaded
def modal_truncation(sys: DiagonalSystem, rank: int, *, horizon=None, max_modes: int | None = None):
    """Keep the dominant modes (module docstring) of each system of the batch.

    Args:
        sys: DiagonalSystem (..., N).   rank: the real state size to keep (1 <= rank < 2N).
        horizon: rank the modes by their h2 norm over this horizon instead (no bound then); systems with
            unstable modes use a finite horizon, with a warning.
        max_modes: keep at most this many complex modes.
    Returns:
        (reduced DiagonalSystem (..., n_modes), ReductionInfo); info.error_bound = sum of the dropped
        dominances (None with a horizon); info.extra["kept"] the kept mode indices (-1 = padding).
    """
    who = "modal_truncation"
    check_system(who, sys)
    rank = check_rank(who, sys, rank, required=True)
    max_modes = check_max_modes(who, max_modes)
    horizon = resolve_horizon(who, sys, horizon)
    s = sys.std
    dom = dominance(s, horizon)
    real = s.real_modes()
    flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
    picks = [_select(d, rl, rank, max_modes) for d, rl in zip(flat(dom), flat(real))]
    n = max(1, max(len(k) for k in picks))
    lam, B, C, kept = (np.empty((len(picks), n), t) for t in (complex, complex, complex, int))
    for i, k in enumerate(picks):
        lam[i], B[i], C[i] = pad_modes(flat(sys.lam)[i, k], flat(sys.B)[i, k], flat(sys.C)[i, k], n)
        kept[i] = np.concatenate([k, -np.ones(n - len(k), int)])
    batch = sys.batch_shape
    lam, B, C = (a.reshape(batch + (n,)) for a in (lam, B, C))
    D = sys.D
    if sys.discrete:   # keep K[0] = D + 2 Re sum C dB: what the dropped modes gave moves into D
        _, dB = sys.discretized()
        dropped = np.ones(flat(dom).shape, bool)
        for i, k in enumerate(picks):
            dropped[i, k] = False
        D = D + 2 * np.sum((sys.C * dB).real * dropped.reshape(dom.shape), -1)
    out = DiagonalSystem(lam, B, C, D, sys.dt, sys.disc)
    ranks = np.array([int(np.sum(np.where(rl[k], 1, 2))) for k, rl in zip(picks, flat(real))]).reshape(batch)
    bound = np.array([d.sum() - d[k].sum() for d, k in zip(flat(dom), picks)]).reshape(batch)
    info = ReductionInfo("modal", dict(rank=rank, horizon=horizon, max_modes=max_modes), ranks, n,
                         hankel_singular_values(sys, horizon), error_bound=None if horizon is not None else bound,
                         extra=dict(kept=kept.reshape(batch + (n,)), dominance=dom))
    return out, info
