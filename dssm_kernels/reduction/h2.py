"""h2-optimal reduction by gradient descent on the closed-form h2 error (the h2-MOR seed's method).

For the full system G and a reduced G_r, both in pole / vector form over the augmented poles x, input
rows g and output vectors k (norms.py), the squared error is in closed form (norms.h2_inner_factored):

    E = ||G - G_r||^2 = <G, G> - 2 Re <G, G_r> + <G_r, G_r>       (infinite horizon, or over [0, T] /
                                                                  the first L samples: "time-limited h2")

For fixed reduced poles and output vectors E is a quadratic in the reduced input rows, minimised by a
linear solve per input column a: M conj(g_r[:, a]) = conj(q_a), with M_ij = (k_i . conj k_j) W(x_i, x_j)
over the reduced modes and q_ja = sum_i G_ia (K_i . conj k_j) W(X_i, x_j) over the full ones. So E is
minimised over the poles (and, for several outputs, the unit output vectors) alone (variable
projection) with L-BFGS-B (scipy, gradients from torch autograd through the solve, float64), all
systems of a batch at once (their errors relative to ||G||^2 summed: the problems are independent).
A SISO system has one output: k = 1, and the solve gives the residues. The poles keep a stable
parameterisation,

    continuous  p = -exp(rho) + i w,        discrete  p = exp(-exp(rho) + i w),  |p| >= P_MIN,

so every iterate is stable; real poles stay real (w fixed at 0, or pi for a negative discrete pole,
and real output vectors), so the reduced real order never changes. A discrete pole is kept off 0
(|p| >= P_MIN): a layer holds C = c / p, which for the pole the optimiser once drove to 1e-200 overflowed
(the h2 error of the realised system was inf while the optimiser's own was 0.99). The start is balanced
truncation at the same rank (or modal truncation, or a given system); each system keeps the better of
start and end measured on the realised systems (h2_norm of sys - reduced), so the result is never
worse than its start.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize

from dssm_kernels.reduction._common import check_max_iter, single_threaded
from dssm_kernels.reduction.bt import BT
from dssm_kernels.reduction.gramians import weight
from dssm_kernels.reduction.modal import MT
from dssm_kernels.reduction.norms import h2_inner_factored, h2_norm_unthreaded
from dssm_kernels.reduction.reductor import Fitted, Method, SystemContext, check_common, run
from dssm_kernels.reduction.system import DiagonalSystem, StdForm, _ModalSystem, pad_std

INITS = ("bt", "modal")
P_MIN = 1e-4          # smallest modulus of a discrete reduced pole (module docstring)
_WHO = "h2_reduction"


def _aug_rows(a: torch.Tensor) -> torch.Tensor:
    """[a; conj a] along the mode axis (-2) of (batch, n, .) rows."""
    return torch.cat([a, a.conj()], -2)


def _full_forms(ctxs: list) -> StdForm:
    """The systems' modal forms as one batch, padded with zero-residue modes to a common size."""
    forms = [ctx.std for ctx in ctxs]
    N = max(1, max(f.n_modes for f in forms))
    pad = 0.5 if forms[0].discrete else -1.0
    forms = [pad_std(f, N, pad) for f in forms]
    st = lambda name: np.stack([getattr(f, name) for f in forms])  # noqa: E731
    return StdForm(st("p"), st("b"), st("c"), st("d"), forms[0].discrete)


class Objective:
    """Relative squared h2 errors of reduced systems (batch, n modes) against full ones (batch, N)."""

    def __init__(self, full: StdForm, live: np.ndarray, horizon):
        self.discrete = full.discrete
        self.h = horizon - 1 if self.discrete and horizon is not None else horizon
        x, g, h = full.augmented()
        self.xf, self.gf, self.kf = torch.as_tensor(x), torch.as_tensor(g), torch.as_tensor(np.conj(h))
        self.gg = h2_inner_factored(self.xf, self.gf, self.kf, self.xf, self.gf, self.kf, self.discrete, self.h,
                                    _WHO).real
        self.scale = 1 / torch.clamp(self.gg, min=1e-300)
        self.live = torch.as_tensor(np.concatenate([live, live], -1))   # False for padding: inputs 0

    def poles(self, rho, w):
        z = torch.complex(-torch.exp(rho), w)
        return torch.exp(z) if self.discrete else z

    def inputs(self, p, c):
        """The h2-optimal input rows (batch, 2n, m) (augmented) for poles p (batch, n) and output vectors
        c (batch, n, outputs) (module docstring); padding gets 0."""
        x, k = torch.cat([p, p.conj()], -1), _aug_rows(c)
        W = weight(x[..., :, None], x[..., None, :], self.discrete, self.h, _WHO)
        M = W * torch.einsum("...ia,...ja->...ij", k, k.conj())
        Wf = weight(self.xf[..., :, None], x[..., None, :], self.discrete, self.h, _WHO)
        S = Wf * torch.einsum("...ia,...ja->...ij", self.kf, k.conj())
        q = torch.einsum("...ij,...ia->...ja", S, self.gf)                   # (batch, 2n, m)
        live = self.live
        eye = torch.eye(x.shape[-1], dtype=M.dtype)
        M = torch.where(live[:, :, None] & live[:, None, :], M, eye)
        # a real pole appears twice (x = conj x, equal output vectors): M is singular there; the tiny
        # ridge splits its input evenly between the twins, which is the conjugate-symmetric solution
        ridge = 1e-13 * torch.diagonal(M, dim1=-2, dim2=-1).abs().amax(-1)[:, None, None] * eye
        a = torch.linalg.solve(M + ridge, torch.where(live[..., None], q.conj(), 0))
        return a.conj(), x, k

    def errors(self, x, g, k):
        """Relative squared errors (batch,) of the reduced systems (augmented x, g, k)."""
        e = (self.gg - 2 * h2_inner_factored(self.xf, self.gf, self.kf, x, g, k, self.discrete, self.h, _WHO).real
             + h2_inner_factored(x, g, k, x, g, k, self.discrete, self.h, _WHO).real)
        return e * self.scale


def _to_params(p: np.ndarray, discrete: bool):
    """(rho, w) with p = poles(rho, w); unstable start poles are mirrored to stable ones."""
    z = np.log(p) if discrete else p
    return np.log(np.maximum(np.abs(z.real), 1e-12)), z.imag


class H2(Method):
    name = "h2"

    def __init__(self, who, horizon, max_modes, *, init, max_iter, **options):
        super().__init__(who, horizon, max_modes, init=init if isinstance(init, str) else "given",
                         max_iter=max_iter, **options)
        self.init, self.max_iter = init, max_iter

    def _start(self, ctxs, ranks) -> list:
        if isinstance(self.init, _ModalSystem):
            out = []
            for one, r in zip(self.init.flat(), ranks):
                s = one.std
                out.append(Fitted(s.p, s.b, s.c, s.d, int(np.sum(s.mode_orders())), 0.0, np.nan, {}, {}))
            return out
        start = (BT if self.init == "bt" else MT)(self.who, self.horizon, self.max_modes)
        fits = [start.fit(ctx, r) for ctx, r in zip(ctxs, ranks)]
        if self.horizon is None:
            return fits
        # time-limited BT keeps no stability guarantee (the horizon's Gramians are not Lyapunov solutions):
        # a channel whose start has an unstable pole, which the stable parameterisation cannot hold, starts
        # from infinite-horizon BT instead, stable by construction
        stable = BT(self.who, None, self.max_modes)
        for i, (f, ctx, r) in enumerate(zip(fits, ctxs, ranks)):
            if not (np.all(np.abs(f.p) < 1) if ctx.discrete else np.all(f.p.real < 0)):
                fits[i] = stable.fit(SystemContext(ctx.system, None, self.who, ctx.max_modes), r)
        return fits

    def reduce_batch(self, ctxs, ranks):
        starts = self._start(ctxs, ranks)
        n = max(1, max(len(f.p) for f in starts))
        full = _full_forms(ctxs)
        discrete, n_out = full.discrete, full.c.shape[-2]
        pad = 0.5 if discrete else -1.0
        s0 = [pad_std(StdForm(f.p, f.b, f.c, f.d, discrete), n, pad) for f in starts]
        p0 = np.stack([s.p for s in s0])
        c0 = np.stack([np.swapaxes(s.c, -1, -2) for s in s0])                  # (batch, n, outputs)
        b0 = np.stack([s.b for s in s0])
        live = np.stack([np.concatenate([np.abs(f.c).sum(0) * np.abs(f.b).sum(1) > 0,
                                         np.zeros(n - len(f.p), bool)]) for f in starts])
        real = np.abs(p0.imag) <= 64 * np.finfo(float).eps * np.abs(p0)
        obj = Objective(full, live, self.horizon)
        rho, w = _to_params(p0, discrete)
        free_c = n_out > 1
        # unit output vectors (their scale is the inputs'); real poles keep real ones
        cn = np.linalg.norm(c0, axis=-1, keepdims=True)
        c_unit = np.where(cn > 0, c0 / np.where(cn > 0, cn, 1), 1 / math.sqrt(n_out))
        c_unit = np.where(real[..., None], c_unit.real + 0j, c_unit)
        shapes = [rho.shape, w.shape] + ([c_unit.shape, c_unit.shape] if free_c else [])
        sizes = [int(np.prod(s)) for s in shapes]
        fixed_w, real_t = torch.as_tensor(w), torch.as_tensor(real)

        def unpack(xv):
            parts = torch.split(torch.as_tensor(xv), sizes)
            r_, w_ = parts[0].reshape(shapes[0]), torch.where(real_t, fixed_w, parts[1].reshape(shapes[1]))
            p = obj.poles(r_, w_)
            if free_c:
                v = torch.complex(parts[2].reshape(shapes[2]), torch.where(real_t[..., None], 0.0,
                                                                            parts[3].reshape(shapes[3])))
                c = v / torch.clamp(torch.linalg.vector_norm(v, dim=-1, keepdim=True), min=1e-300)
            else:
                c = torch.ones(p.shape + (1,), dtype=p.dtype)
            return p, c

        with torch.no_grad():
            x_s, g_s, k_s = (torch.cat([torch.as_tensor(p0), torch.as_tensor(p0).conj()], -1),
                             _aug_rows(torch.as_tensor(b0)), _aug_rows(torch.as_tensor(c0)))
            e_start = obj.errors(x_s, g_s, k_s).numpy()
        unit = 1 / max(float(e_start.sum()), 1e-300)     # L-BFGS-B's stopping tests are absolute: start near 1

        def fun(xv):
            xt = torch.tensor(xv, requires_grad=True)
            p, c = unpack(xt)
            g, x, k = obj.inputs(p, c)
            e = obj.errors(x, g, k).sum() * unit
            (grad,) = torch.autograd.grad(e, xt)
            return e.item(), grad.numpy()

        rho_max = math.log(-math.log(P_MIN)) if discrete else np.inf
        x0 = np.concatenate([np.minimum(rho, rho_max).ravel(), w.ravel()]
                            + ([c_unit.real.ravel(), c_unit.imag.ravel()] if free_c else []))
        bounds = [(None, rho_max if discrete else None)] * sizes[0] + [(None, None)] * (len(x0) - sizes[0])
        res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options=dict(maxiter=self.max_iter, ftol=1e-15, gtol=1e-12)) if self.max_iter > 0 else None
        ends = [None] * len(ctxs)
        if res is not None:
            with torch.no_grad():
                p1, c1 = unpack(res.x)
                g1, _, _ = obj.inputs(p1, c1)
            p1, c1, g1 = (t.resolve_conj().numpy() for t in (p1, c1, g1))
            for i, f in enumerate(starts):
                k = len(f.p)
                ends[i] = Fitted(p1[i, :k], g1[i, :k], np.swapaxes(c1[i, :k], 0, 1), f.d, f.rank, 0.0, np.nan, {}, {})
        e0s, e1s = _measured(ctxs, starts, self.horizon), _measured(ctxs, ends, self.horizon)
        out = []
        for f0, f1, e0, e1 in zip(starts, ends, e0s, e1s):
            better = bool(e1 < e0)
            best = f1 if better else f0
            best.extra = dict(h2_error_init=e0, h2_error=min(e0, e1), improved=better,
                              iterations=0 if res is None else int(res.nit))
            best.per_mode, best.bound, best.modes = {}, np.nan, f0.modes if not better else None
            out.append(best)
        return out


def _measured(ctxs: list, fitted: list, horizon) -> list:
    """||G - G_r||_2 / ||G||_2 over the horizon of each system realised from its modal form (inf where it
    does not realise: a non-finite layer parameter, or no candidate). SISO systems of one size are
    measured as one batch (one kernel head for all)."""
    out = [np.inf] * len(ctxs)
    todo = [i for i, f in enumerate(fitted) if f is not None]
    systems = [ctxs[i].system for i in todo]
    if todo and all(isinstance(s, DiagonalSystem) for s in systems) and len({s.n_modes for s in systems}) == 1:
        full = DiagonalSystem.stack(systems)
        n = max(len(fitted[i].p) for i in todo)
        pieces = [pad_std(StdForm(fitted[i].p, fitted[i].b, fitted[i].c, fitted[i].d, full.discrete), n,
                          0.5 if full.discrete else -1.0) for i in todo]
        try:
            with np.errstate(all="ignore"):
                red = DiagonalSystem.from_modal(np.stack([q.p for q in pieces]), np.stack([q.b for q in pieces]),
                                                np.stack([q.c for q in pieces]), np.stack([q.d for q in pieces]),
                                                full.dt, full.disc)
        except ValueError:                   # some candidate does not realise: measure one by one below
            pass
        else:
            ref = np.atleast_1d(h2_norm_unthreaded(full, horizon))
            err = np.atleast_1d(h2_norm_unthreaded(full - red, horizon))
            for j, i in enumerate(todo):
                out[i] = float(err[j] / ref[j]) if ref[j] > 0 else float(err[j])
            return out
    for i in todo:
        sys, f = ctxs[i].system, fitted[i]
        try:
            with np.errstate(all="ignore"):
                red = sys.modal_class.from_modal(f.p, f.b, f.c, f.d, sys.dt, sys.disc)
        except ValueError:
            continue
        ref = h2_norm_unthreaded(sys, horizon)
        err = h2_norm_unthreaded(sys - red, horizon)
        out[i] = float(err / ref) if ref > 0 else float(err)
    return out


@single_threaded
def h2_reduction(sys, rank: int, init="bt", horizon=None, *, max_modes: int | None = None, max_iter: int = 500):
    """h2-optimal reduction (module docstring) of each system of the batch.

    Args:
        sys: DiagonalSystem (..., N), MimoSystem or DenseSystem.   rank: the real state size
            (1 <= rank < the real order).
        init: "bt" (balanced truncation at the same rank and horizon), "modal", or a reduced system of
            sys's kind (modal_class), batch shape, dt and disc to start from.
        horizon: None (h2 over all time) or an int L / float T: the time-limited h2 error over the first
            L samples / [0, T] (systems with unstable modes use a finite horizon, with a warning).
        max_modes: (with init "bt"/"modal") fit the modal form in this many complex modes.
        max_iter: L-BFGS iterations (0: return the start).
    Returns:
        (reduced system, ReductionInfo); info.extra: "h2_error_init" and "h2_error" (relative h2 errors
        over the horizon of the realised start and result: result <= start), "improved", "iterations"
        (the joint L-BFGS run's). No error bound.
    """
    who = _WHO
    rank, _, horizon, max_modes = check_common(who, sys, rank, None, horizon, max_modes, rank_required=True)
    max_iter = check_max_iter(who, max_iter)
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"{who}: init must be one of {INITS} or a DiagonalSystem / MimoSystem of sys's kind, "
                             f"got {init!r}")
    elif not isinstance(init, sys.modal_class):
        raise ValueError(f"{who}: init must be one of {INITS} or a DiagonalSystem / MimoSystem of sys's kind "
                         f"({sys.modal_class.__name__}), got {type(init).__name__}")
    elif init.batch_shape != sys.batch_shape or init.discrete != sys.discrete or init.disc != sys.disc \
            or init.io_shape != sys.io_shape:
        raise ValueError(f"{who}: init must match sys's batch shape {sys.batch_shape}, dt and disc")
    method = H2(who, horizon, max_modes, init=init, max_iter=max_iter, rank=rank)
    out, info = run(method, sys, rank, None)
    info.extra["iterations"] = int(np.max(info.extra["iterations"]))
    return out, info


def stabilized(sys, red, horizon=None):
    """(red with every unstable mode mirrored into Re lam < 0 and all input vectors re-solved
    h2-optimally against sys over `horizon`, the number of modes mirrored). Time-limited reductions do
    not preserve stability; layers such as S4D need it. sys, red: of one kind (red: sys.modal_class)."""
    bad = red.lam.real >= 0
    if not bad.any():
        return red, 0
    lam = np.where(bad, -np.maximum(np.abs(red.lam.real), 1e-3 * np.abs(red.lam)) + 1j * red.lam.imag, red.lam)
    B, C, D = red._mimo_arrays()
    moved = red._from_mimo(lam, B, C, D, red.dt, red.disc)
    s = moved.std
    shape = (-1, s.n_modes)
    ctxs = [SystemContext(one, horizon, "stabilized") for one in sys.flat()]
    live = (np.abs(s.c).sum(-2) * np.abs(s.b).sum(-1) > 0).reshape(shape)
    obj = Objective(_full_forms(ctxs), live, horizon)
    with torch.no_grad():
        g, _, _ = obj.inputs(torch.as_tensor(s.p.reshape(shape)),
                             torch.as_tensor(np.swapaxes(s.c, -1, -2).reshape(shape + (s.c.shape[-2],))))
    b = g.resolve_conj().numpy()[:, :s.n_modes].reshape(s.b.shape)
    return sys.modal_class.from_modal(s.p, b, s.c, s.d, sys.dt, sys.disc), int(bad.sum())
