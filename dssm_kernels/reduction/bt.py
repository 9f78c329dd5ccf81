"""Square-root balanced truncation of diagonal systems, with the reduced system back in modal form.

With Gramian factors P = Zp Zp^T, Q = Zq Zq^T of the real realisation (A, B, C, d) (gramians.py:
accurate structured factors, never an explicit Gramian or its inverse) and the SVD
Zq^T Zp = U diag(sigma) V^T, the balancing projections of rank r are

    V_r = Zp V[:, :r] sigma_r^(-1/2),   W_r = Zq U[:, :r] sigma_r^(-1/2)     (W_r^T V_r = I_r),
    A_r = W_r^T A V_r,   B_r = W_r^T B,   C_r = C V_r,   d_r = d,

and, for the infinite horizon, ||G - G_r||_inf <= 2 sum_{i > r} sigma_i (continuous and discrete).
The factors are made real ([Re M, Im M] of a complex factor M of a real Gramian), so the reduced
system is real; it is then re-diagonalised (modal_from_real) into conjugate pairs and real poles.
A rank asking for more than the numerical rank (sigma_i <= 2N eps sigma_1, where the projection
would divide by noise) stops there: that truncation is exact to rounding.

The API follows pyMOR's BTReductor (reduce(r=None, tol=None), error bounds 2 * tail sums).
"""
from __future__ import annotations

import numpy as np

from dssm_kernels.reduction._common import (Piece, ReductionInfo, assemble, check_max_modes, check_rank, check_system,
                                            check_tol, modal_from_real, single_threaded)
from dssm_kernels.reduction.gramians import gramian_factors, resolve_horizon
from dssm_kernels.reduction.system import DiagonalSystem, StdForm, augmented_to_real

_EPS = np.finfo(np.float64).eps


class Balancer:
    """The balancing of one (unbatched) standard form; project(r) gives its rank-r truncation."""

    def __init__(self, s: StdForm, horizon=None, who: str = "balanced_truncation"):
        n = 2 * s.p.shape[-1]
        T = augmented_to_real(n // 2)
        Lp, Lq = gramian_factors(s, horizon, who)
        real = lambda M: np.concatenate([M.real, M.imag], 1)  # noqa: E731  (M M* real => [Re M, Im M] factors it)
        self.Zp, self.Zq = real(T @ Lp), real(T @ Lq)
        self.A, self.B, self.C, _ = s.realization(real=True)
        if self.Zp.size and self.Zq.size:
            U, sv, Vt = np.linalg.svd(self.Zq.T @ self.Zp, full_matrices=False)
        else:
            U, sv, Vt = None, np.zeros(0), None
        k = min(n, sv.size)
        self.U, self.V, self.sv = (U[:, :k], Vt[:k].T, sv[:k]) if k else (None, None, sv)
        # the reported HSVs: those of the complex factors (what hankel_singular_values gives; exact
        # zeros where a factor has fewer columns); the real SVD above has the same values to rounding
        self.hsv = np.zeros(n)
        if Lp.size and Lq.size:
            cs = np.linalg.svd(Lq.conj().T @ Lp, compute_uv=False)[:n]
            self.hsv[:cs.size] = cs
        self.numerical_rank = int(np.sum(self.hsv > n * _EPS * max(self.hsv[0], 1e-300)))
        self.tails = 2 * np.concatenate([np.cumsum(self.hsv[::-1])[::-1], [0.0]])   # tails[r] = 2 sum_{i >= r}

    def rank_for(self, rank: int | None, tol: float | None) -> int:
        """min(rank, the smallest r with 2 sum_{i > r} sigma_i <= tol), capped at the numerical rank."""
        r = len(self.hsv) if rank is None else rank
        if tol is not None:
            r = min(r, int(np.argmax(self.tails <= tol)))
        return min(r, self.numerical_rank)

    def realization(self, r: int):
        """The balanced rank-r truncation (A_r, B_r, C_r), real (r, r), (r, 1), (1, r); d is unchanged."""
        s = 1 / np.sqrt(self.sv[:r])
        Vr, Wr = self.Zp @ (self.V[:, :r] * s), self.Zq @ (self.U[:, :r] * s)
        return Wr.T @ self.A @ Vr, Wr.T @ self.B, self.C @ Vr

    def project(self, r: int):
        """(p, res, rediag_error) of the rank-r truncation in pole-residue form (modal_from_real)."""
        if r == 0:
            return np.zeros(0, complex), np.zeros(0, complex), 0.0
        return modal_from_real(*self.realization(r))

    def piece(self, r: int, guaranteed: bool, max_modes: int | None = None) -> Piece:
        """The rank-r piece; with max_modes, r is lowered until the modal form fits in that many modes
        (each real pole takes a whole complex mode)."""
        while True:
            p, res, err = self.project(r)
            if max_modes is None or len(p) <= max_modes or r == 0:
                break
            r -= 1
        return Piece(p, res, r, dict(hsv=self.hsv, hsv_tail=self.tails[r],
                                     error_bound=self.tails[r] if guaranteed else np.nan, rediag_error=err))


@single_threaded
def balanced_truncation(sys: DiagonalSystem, rank: int | None = None, tol: float | None = None, horizon=None,
                        *, max_modes: int | None = None):
    """Square-root balanced truncation (module docstring) of each system of the batch.

    Args:
        sys: DiagonalSystem (..., N).   rank: the real state size to keep (1 <= rank < 2N).
        tol: keep the smallest rank whose bound 2 * sum of the discarded HSVs is <= tol (with rank too:
            the smaller of the two).   At least one of rank, tol.
        horizon: None (infinite), an int L (discrete) or float T (continuous): time-limited Gramians
            (no guaranteed bound). Systems with unstable modes use a finite horizon, with a warning.
        max_modes: lower the rank of a system until its modal form fits in this many complex modes.
    Returns:
        (reduced DiagonalSystem (..., n_modes), ReductionInfo) with info.hsv, info.error_bound
        (2 * sum of the discarded HSVs; None for a finite horizon), info.rank per system.
    """
    who = "balanced_truncation"
    check_system(who, sys)
    rank = check_rank(who, sys, rank, required=False)
    tol = check_tol(who, tol)
    max_modes = check_max_modes(who, max_modes)
    if rank is None and tol is None:
        raise ValueError(f"{who}: give rank or tol (or both), got neither")
    horizon = resolve_horizon(who, sys, horizon)
    pieces = []
    for one in sys.flat():
        bal = Balancer(one.std, horizon, who)
        pieces.append(bal.piece(bal.rank_for(rank, tol), horizon is None, max_modes))
    info = ReductionInfo("bt", dict(rank=rank, tol=tol, horizon=horizon, max_modes=max_modes), None, 0, None)
    out, info = assemble(who, sys, pieces, info)
    info.hsv, info.hsv_tail = info.extra.pop("hsv"), info.extra.pop("hsv_tail")
    bound = info.extra.pop("error_bound")
    info.error_bound = bound if horizon is None else None
    return out, info
