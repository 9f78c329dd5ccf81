"""Balancing methods: square-root balanced truncation (BT) and balanced singular perturbation (BSP).

With Gramian factors P = Zp Zp^T, Q = Zq Zq^T of the real realisation (A, B, C, d) (gramians.py, dense.py:
accurate factors, never an explicit Gramian or its inverse) and Zq^T Zp = U diag(sigma) V^T, the
balancing projections of order r are V_r = Zp V_r sigma_r^(-1/2), W_r = Zq U_r sigma_r^(-1/2).

BT keeps the balanced states 1..r: A_r = W_r^T A V_r, B_r = W_r^T B, C_r = C V_r, d_r = d (so a discrete
layer's K[0] is kept).

BSP keeps them too but replaces the discarded ones by their steady state: with the balanced
realisation of order k (the numerical rank) partitioned at r,
    continuous (x2' = 0):   A_r = A11 - A12 A22^-1 A21,   B_r = B1 - A12 A22^-1 B2,
                            C_r = C1 - C2 A22^-1 A21,    d_r = d - C2 A22^-1 B2;
    discrete (x2 = A21 x1 + A22 x2 + B2 u):  with X = (I - A22)^-1,
                            A_r = A11 + A12 X A21,  B_r = B1 + A12 X B2,  C_r = C1 + C2 X A21,  d_r = d + C2 X B2,
so the reduced DC gain (s = 0; z = 1) is the full one exactly (to rounding): G_r(1) = G(1). (A22 of a
stable balanced realisation is stable, so the inverses exist.)

Both have, for the infinite horizon, ||G - G_r||_inf <= 2 sum_{i > r} sigma_i (continuous and discrete;
BSP: Liu & Anderson 1989, the discrete case through the bilinear map, which preserves HSVs and this
construction). The reduced systems are re-diagonalised by the reductor loop (reductor.py). A rank
asking for more than the numerical rank (sigma_i <= n eps sigma_1, where the projection would divide
by noise) stops there: that truncation is exact to rounding. Over a finite horizon (time-limited
Gramians) there is no guaranteed bound.
"""
from __future__ import annotations

import numpy as np

from dssm_kernels.reduction._common import single_threaded
from dssm_kernels.reduction.reductor import Method, Reduced, check_common, run


class BT(Method):
    name = "bt"
    has_tails = True

    def bounds(self, ctx):
        return ctx.balancing.tails

    def max_rank(self, ctx):
        return ctx.balancing.numerical_rank

    def reduce(self, ctx, r):
        bal = ctx.balancing
        A, B, C = bal.truncation(r)
        return Reduced(bal.d, A=A, B=B, C=C, rank=r)

    def bound(self, ctx, r, red):
        return float(ctx.balancing.tails[r])


class BSP(BT):
    name = "bsp"

    def reduce(self, ctx, r):
        bal = ctx.balancing
        k = bal.numerical_rank
        A, B, C = bal.truncation(k)
        d = bal.d
        if r < k:
            A11, A12, A21, A22 = A[:r, :r], A[:r, r:], A[r:, :r], A[r:, r:]
            B1, B2, C1, C2 = B[:r], B[r:], C[:, :r], C[:, r:]
            if ctx.discrete:
                M = np.eye(k - r) - A22
                sign = 1.0
            else:
                M = A22
                sign = -1.0
            XA, XB = np.linalg.solve(M, A21), np.linalg.solve(M, B2)
            A, B, C, d = (A11 + sign * A12 @ XA, B1 + sign * A12 @ XB, C1 + sign * C2 @ XA, d + sign * C2 @ XB)
        return Reduced(d, A=A, B=B, C=C, rank=min(r, k))


def _check(who, sys, rank, tol, horizon, max_modes):
    rank, tol, horizon, max_modes = check_common(who, sys, rank, tol, horizon, max_modes, rank_required=False)
    if rank is None and tol is None:
        raise ValueError(f"{who}: give rank or tol (or both), got neither")
    return rank, tol, horizon, max_modes


@single_threaded
def balanced_truncation(sys, rank: int | None = None, tol: float | None = None, horizon=None, *,
                        max_modes: int | None = None):
    """Square-root balanced truncation (module docstring) of each system of the batch.

    Args:
        sys: DiagonalSystem (..., N), MimoSystem, or DenseSystem.   rank: the real state size to keep
            (1 <= rank < the real order: 2N, or n).
        tol: keep the smallest rank whose bound 2 * sum of the discarded HSVs is <= tol (with rank too:
            the smaller of the two).   At least one of rank, tol.
        horizon: None (infinite), an int L (discrete) or float T (continuous): time-limited Gramians
            (no guaranteed bound). Systems with unstable modes use a finite horizon, with a warning.
        max_modes: lower the rank of a system until its modal form fits in this many complex modes.
    Returns:
        (reduced system (..., n_modes) of sys.modal_class, ReductionInfo) with info.hsv, info.error_bound
        (2 * sum of the discarded HSVs; None for a finite horizon), info.rank per system.
    """
    who = "balanced_truncation"
    rank, tol, horizon, max_modes = _check(who, sys, rank, tol, horizon, max_modes)
    return run(BT(who, horizon, max_modes, rank=rank, tol=tol), sys, rank, tol)


@single_threaded
def balanced_singular_perturbation(sys, rank: int | None = None, tol: float | None = None, horizon=None, *,
                                   max_modes: int | None = None):
    """Balanced singular perturbation (module docstring): BT's states, the discarded ones at steady state,
    so that the DC gain (G(0) continuous, G(1) discrete) is kept exactly. Same arguments, bound and
    info as balanced_truncation; d changes (a discrete layer's K[0] is not kept)."""
    who = "balanced_singular_perturbation"
    rank, tol, horizon, max_modes = _check(who, sys, rank, tol, horizon, max_modes)
    return run(BSP(who, horizon, max_modes, rank=rank, tol=tol), sys, rank, tol)
