"""h2-optimal reduction by gradient descent on the closed-form h2 error (the h2-MOR seed's method).

For the full system G and a reduced G_r, both in pole-residue form, the squared error is in closed
form (norms.h2_inner, over the augmented poles):

    E = ||G - G_r||^2 = <G, G> - 2 Re <G, G_r> + <G_r, G_r>       (infinite horizon, or over [0, T] /
                                                                  the first L samples: "time-limited h2")

For fixed reduced poles E is a quadratic in the residues, minimised by a linear solve (with
a = conj of the augmented reduced residues: W a = conj(q), W_ij = W(x_i, x_j) over the reduced
poles, q_j = sum_i R_i W(x_full_i, x_j)); so E is minimised over the poles alone (variable
projection) with L-BFGS (scipy, gradients from torch autograd through the solve, float64), all
systems of a batch at once (their errors relative to ||G||^2 summed: the problems are
independent). The poles keep a stable parameterisation,

    continuous  p = -exp(rho) + i w,        discrete  p = exp(-exp(rho) + i w),

so every iterate is stable; real poles stay real (w fixed at 0, or pi for a negative discrete pole)
and the reduced real order never changes. The start is balanced truncation at the same rank (or
modal truncation, or a given system); each system keeps the better of start and end, so the
result is never worse than its start.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from dssm_kernels.reduction._common import (Piece, ReductionInfo, assemble, check_max_iter, check_max_modes, check_rank,
                                            check_system, single_threaded)
from dssm_kernels.reduction.bt import Balancer
from dssm_kernels.reduction.gramians import hankel_singular_values, resolve_horizon, weight
from dssm_kernels.reduction.modal import modal_truncation
from dssm_kernels.reduction.norms import h2_inner
from dssm_kernels.reduction.system import DiagonalSystem

INITS = ("bt", "modal")
_WHO = "h2_reduction"


def _aug(p, r):
    return torch.cat([p, p.conj()], -1), torch.cat([r, r.conj()], -1)


class _Objective:
    """Relative squared h2 errors of reduced systems (batch, n) against full ones (batch, N)."""

    def __init__(self, full_p, full_r, live, discrete: bool, horizon):
        self.discrete, self.h = discrete, (horizon - 1 if discrete and horizon is not None else horizon)
        self.xf, self.Rf = _aug(torch.as_tensor(full_p), torch.as_tensor(full_r))
        self.gg = h2_inner(self.xf, self.Rf, self.xf, self.Rf, discrete, self.h, _WHO).real
        self.scale = 1 / torch.clamp(self.gg, min=1e-300)
        self.live = torch.as_tensor(np.concatenate([live, live], -1))   # False for padding: residue 0

    def poles(self, rho, w):
        z = torch.complex(-torch.exp(rho), w)
        return torch.exp(z) if self.discrete else z

    def residues(self, p):
        """The h2-optimal residues (batch, n) for poles p (module docstring); padding gets 0."""
        x = torch.cat([p, p.conj()], -1)
        W = weight(x[..., :, None], x[..., None, :], self.discrete, self.h, _WHO)
        Wf = weight(self.xf[..., :, None], x[..., None, :], self.discrete, self.h, _WHO)
        q = torch.einsum("bi,bij->bj", self.Rf, Wf)
        live = self.live
        eye = torch.eye(x.shape[-1], dtype=W.dtype)
        W = torch.where(live[:, :, None] & live[:, None, :], W, eye)
        # a real pole appears twice (x = conj x): W is singular there; the tiny ridge splits its
        # residue evenly between the twins, which is the conjugate-symmetric solution
        ridge = 1e-13 * torch.diagonal(W, dim1=-2, dim2=-1).abs().amax(-1)[:, None, None] * eye
        a = torch.linalg.solve(W + ridge, torch.where(live, q.conj(), 0))
        return a[..., :p.shape[-1]].conj()

    def errors(self, p, r):
        """Relative squared errors (batch,) of the reduced systems (p, r)."""
        xr, Rr = _aug(p, r)
        e = (self.gg - 2 * h2_inner(self.xf, self.Rf, xr, Rr, self.discrete, self.h, _WHO).real
             + h2_inner(xr, Rr, xr, Rr, self.discrete, self.h, _WHO).real)
        return e * self.scale


def _to_params(p: np.ndarray, discrete: bool):
    """(rho, w) with p = poles(rho, w); unstable start poles are mirrored to stable ones."""
    z = np.log(p) if discrete else p
    return np.log(np.maximum(np.abs(z.real), 1e-12)), z.imag


@single_threaded
def h2_reduction(sys: DiagonalSystem, rank: int, init="bt", horizon=None, *, max_modes: int | None = None,
                 max_iter: int = 500):
    """h2-optimal reduction (module docstring) of each system of the batch.

    Args:
        sys: DiagonalSystem (..., N).   rank: the real state size (1 <= rank < 2N).
        init: "bt" (balanced truncation at the same rank and horizon), "modal", or a reduced
            DiagonalSystem of sys's batch shape, dt and disc to start from.
        horizon: None (h2 over all time) or an int L / float T: the time-limited h2 error over the first
            L samples / [0, T] (systems with unstable modes use a finite horizon, with a warning).
        max_modes: (with init "bt"/"modal") fit the modal form in this many complex modes.
        max_iter: L-BFGS iterations (0: return the start).
    Returns:
        (reduced DiagonalSystem, ReductionInfo); info.extra: "h2_error_init" and "h2_error" (relative
        h2 errors over the horizon, start and result: result <= start), "iterations". No error bound.
    """
    who = "h2_reduction"
    check_system(who, sys)
    rank = check_rank(who, sys, rank, required=True)
    horizon = resolve_horizon(who, sys, horizon)
    max_iter = check_max_iter(who, max_iter)
    max_modes = check_max_modes(who, max_modes)
    start, start_ranks = _start(who, sys, rank, init, horizon, max_modes)
    s0, sf = start.std, sys.std
    shape = (-1, s0.p.shape[-1])
    p0, r0 = s0.p.reshape(shape), s0.r.reshape(shape)
    real = s0.real_modes().reshape(shape)
    live = np.abs(r0) > 0
    obj = _Objective(sf.p.reshape(-1, sf.p.shape[-1]), sf.r.reshape(-1, sf.p.shape[-1]), live, sys.discrete, horizon)
    rho, w = _to_params(p0, sys.discrete)
    real = torch.as_tensor(real)
    fixed_w = torch.as_tensor(w)

    def poles(x):
        t = torch.as_tensor(x).reshape(2, *rho.shape)
        return obj.poles(t[0], torch.where(real, fixed_w, t[1]))

    with torch.no_grad():
        e_start = obj.errors(torch.as_tensor(p0), torch.as_tensor(r0)).numpy()
    # L-BFGS-B's stopping tests are absolute: scale the objective to start near 1
    unit = 1 / max(float(e_start.sum()), 1e-300)

    def fun(x):
        xt = torch.tensor(x, requires_grad=True)
        p = poles(xt)
        e = obj.errors(p, obj.residues(p)).sum() * unit
        (g,) = torch.autograd.grad(e, xt)
        return e.item(), g.numpy()

    x0 = np.concatenate([rho.ravel(), w.ravel()])
    res = minimize(fun, x0, jac=True, method="L-BFGS-B",
                   options=dict(maxiter=max_iter, ftol=1e-15, gtol=1e-12)) if max_iter > 0 else None
    with torch.no_grad():
        if res is None:      # no iterations: the start itself
            p1, r1, e_end = p0, r0, e_start
        else:
            p1 = poles(res.x)
            r1 = obj.residues(p1)
            e_end = obj.errors(p1, r1).numpy()
            p1, r1 = p1.resolve_conj().numpy(), r1.resolve_conj().numpy()
    better = e_end < e_start
    # reported relative to ||G||_2 as h2_norm gives it (discrete: with K[0] = d, which both share)
    to_norm = (obj.gg / torch.clamp(obj.gg + torch.as_tensor(sf.d.reshape(-1)) ** 2, min=1e-300)).numpy() \
        if sys.discrete else 1.0
    e_start, e_end = e_start * to_norm, e_end * to_norm
    pieces = []
    ranks = np.broadcast_to(start_ranks, sys.batch_shape).reshape(-1)
    for i in range(p0.shape[0]):
        p, r = (p1[i], r1[i]) if better[i] else (p0[i], r0[i])
        e = min(e_end[i], e_start[i])
        pieces.append(Piece(p, r, int(ranks[i]), dict(h2_error_init=np.sqrt(max(e_start[i], 0)),
                                                      h2_error=np.sqrt(max(e, 0)), improved=bool(better[i]))))
    info = ReductionInfo("h2", dict(rank=rank, init=init if isinstance(init, str) else "given", horizon=horizon,
                                    max_modes=max_modes, max_iter=max_iter), None, 0,
                         hankel_singular_values(sys, horizon))
    out, info = assemble(who, sys, pieces, info, min_modes=p0.shape[1])
    info.extra["iterations"] = 0 if res is None else int(res.nit)
    return out, info


def _start(who, sys, rank, init, horizon, max_modes):
    """(the starting reduced system, its real order per system)."""
    if isinstance(init, DiagonalSystem):
        if init.batch_shape != sys.batch_shape or (init.dt is None) != (sys.dt is None) or init.disc != sys.disc:
            raise ValueError(f"{who}: init must match sys's batch shape {sys.batch_shape}, dt and disc")
        real = init.std.real_modes()
        return init, np.sum(np.where(real, 1, 2) * (np.abs(init.std.r) > 0), -1)
    if init not in INITS:
        raise ValueError(f"{who}: init must be one of {INITS} or a DiagonalSystem, got {init!r}")
    if init == "modal":
        out, info = modal_truncation(sys, rank, horizon=horizon, max_modes=max_modes)
    else:
        pieces = []
        for one in sys.flat():
            bal = Balancer(one.std, horizon, who)
            pieces.append(bal.piece(bal.rank_for(rank, None), False, max_modes))
        out, info = assemble(who, sys, pieces, ReductionInfo("bt", {}, None, 0, None))
    return out, info.rank


def stabilized(sys: DiagonalSystem, red: DiagonalSystem, horizon=None) -> tuple[DiagonalSystem, int]:
    """(red with every unstable mode mirrored into Re lam < 0 and all residues re-solved h2-optimally
    against sys over `horizon`, the number of modes mirrored). Time-limited reductions do not
    preserve stability; layers such as S4D need it."""
    bad = red.lam.real >= 0
    if not bad.any():
        return red, 0
    lam = np.where(bad, -np.maximum(np.abs(red.lam.real), 1e-3 * np.abs(red.lam)) + 1j * red.lam.imag, red.lam)
    moved = DiagonalSystem(lam, red.B, red.C, red.D, red.dt, red.disc)
    s, sf = moved.std, sys.std
    shape = (-1, s.p.shape[-1])
    obj = _Objective(sf.p.reshape(-1, sf.p.shape[-1]), sf.r.reshape(-1, sf.p.shape[-1]), np.abs(s.r.reshape(shape)) > 0,
                     sys.discrete, horizon)
    with torch.no_grad():
        r = obj.residues(torch.as_tensor(s.p.reshape(shape))).resolve_conj().numpy().reshape(s.p.shape)
    return DiagonalSystem.from_std(s.p, r, sf.d, dt=sys.dt, disc=sys.disc), int(bad.sum())
