"""The one reductor loop every method runs through, with small hooks per method (after pyMOR's
GenericBTReductor: reduce(r=None, tol=None) and error_bounds(), here for batches of diagonal or dense
systems).

For each system of the batch the loop builds a SystemContext, which computes on demand, once, what
the methods share: the Gramian factors and Hankel singular values, the balancing (SVD of the factors'
product, balanced truncations and singular perturbations of every order), and the modal form (the
system's own for a diagonal system; for a dense one, that of its minimal balanced realisation). The
method's hooks then say

    bounds(ctx)        the guaranteed error bound of each reduced order r = 0 .. n (for tol), or None;
    max_rank(ctx)      the largest order worth keeping (BT: the numerical rank);
    reduce(ctx, r)     the reduced system of real order r: a real realisation (A, B, C, d), which the
                       loop re-diagonalises, or a modal form (p, b, c, d);
    bound(ctx, r, red) its guaranteed bound on ||G - G_r||_inf (nan: none);
    reduce_batch(...)  all systems at once (h2 optimises them jointly), by default one by one;

and the loop lowers r until the modal form fits in max_modes complex modes (a real pole takes a whole
mode), pads every system to one number of modes with inert ones (residue 0), builds the batched
result (DiagonalSystem / MimoSystem, as the input's modal_class) and one complete ReductionInfo.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import numpy as np

from dssm_kernels.reduction._common import (REDIAG_WARN, ReductionInfo, check_max_modes, check_rank, check_system,
                                            check_tol, modal_from_real)
from dssm_kernels.reduction.gramians import hsv_from_factors, resolve_horizon, system_factors
from dssm_kernels.reduction.system import PAD_LAM, StdForm, _ModalSystem, augmented_to_real, discretize

_EPS = np.finfo(np.float64).eps


@dataclass
class Reduced:
    """A method's answer for one system: a real realisation (A, B, C) of order r to re-diagonalise, or a
    modal form (p (k,), b (k, m), c (p, k)); with the feedthrough d (p, m), fixed-shape per-system info
    `extra`, and per-mode info `per_mode` ((k,) arrays, padded with -1 / nan to the batch's modes).
    modes: when the modal form is modes of the input kept as they are (their indices), a diagonal input's
    reduced system keeps their lam, B and C exactly (only D absorbs what the others gave)."""
    d: np.ndarray
    A: np.ndarray | None = None
    B: np.ndarray | None = None
    C: np.ndarray | None = None
    p: np.ndarray | None = None
    b: np.ndarray | None = None
    c: np.ndarray | None = None
    rank: int | None = None
    modes: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    per_mode: dict = field(default_factory=dict)


@dataclass
class Fitted:
    """A reduced system in modal form, fitted into max_modes, with what the info records of it."""
    p: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray
    rank: int
    rediag_error: float
    bound: float
    extra: dict
    per_mode: dict
    modes: np.ndarray | None = None      # the input's own modes kept as they are (modal methods)


class Balancing:
    """The balancing of one system from real Gramian factors P = Zp Zp^T, Q = Zq Zq^T of its real
    realisation (A, B, C, d): Zq^T Zp = U diag(sv) V^T, and for order r the projections
        V_r = Zp V[:, :r] sv_r^(-1/2),   W_r = Zq U[:, :r] sv_r^(-1/2)     (W_r^T V_r = I_r).
    hsv: the reported Hankel singular values (n,); tails[r] = 2 sum_{i >= r} hsv_i."""

    def __init__(self, A, B, C, d, Zp, Zq, hsv):
        self.A, self.B, self.C, self.d = A, B, C, d
        self.Zp, self.Zq = Zp, Zq
        n = A.shape[0]
        if Zp.size and Zq.size:
            U, sv, Vt = np.linalg.svd(Zq.T @ Zp, full_matrices=False)
        else:
            U, sv, Vt = None, np.zeros(0), None
        k = min(n, sv.size)
        self.U, self.V, self.sv = (U[:, :k], Vt[:k].T, sv[:k]) if k else (None, None, sv)
        self.hsv = hsv
        # beyond this the projection would divide by noise: sigma_i <= n eps sigma_1; truncating there is
        # exact to rounding
        self.numerical_rank = min(k, int(np.sum(hsv > n * _EPS * max(hsv[0] if hsv.size else 0.0, 1e-300))))
        self.tails = 2 * np.concatenate([np.cumsum(hsv[::-1])[::-1], [0.0]])

    def projections(self, r: int):
        s = 1 / np.sqrt(self.sv[:r])
        return self.Zp @ (self.V[:, :r] * s), self.Zq @ (self.U[:, :r] * s)

    def truncation(self, r: int):
        """The balanced rank-r truncation (A_r, B_r, C_r), real (r, r), (r, m), (p, r); d unchanged."""
        Vr, Wr = self.projections(r)
        return Wr.T @ self.A @ Vr, Wr.T @ self.B, self.C @ Vr


class SystemContext:
    """One unbatched system and what the methods share about it, each computed once on first use."""

    def __init__(self, system, horizon, who: str, max_modes: int | None = None):
        self.system, self.horizon, self.who = system, horizon, who
        self.discrete = system.discrete
        self.n = system.n_states
        self.max_modes = max_modes          # this system's own limit (a budget's allocation), else the method's

    @functools.cached_property
    def factors(self):
        """(Lp, Lq): complex augmented-coordinate factors (diagonal systems) or real ones (dense)."""
        return system_factors(self.system, self.horizon, self.who)

    @functools.cached_property
    def hsv(self) -> np.ndarray:
        return hsv_from_factors(*self.factors, self.n)

    @functools.cached_property
    def balancing(self) -> Balancing:
        Lp, Lq = self.factors
        if isinstance(self.system, _ModalSystem):
            T = augmented_to_real(self.n // 2)
            real = lambda M: np.concatenate([M.real, M.imag], 1)  # noqa: E731  (M M* real => [Re M, Im M] factors it)
            A, B, C, d = self.system.realization(real=True)
            return Balancing(A, B, C, d, real(T @ Lp), real(T @ Lq), self.hsv)
        A, B, C, d = self.system.realization()
        return Balancing(A, B, C, d, Lp, Lq, self.hsv)

    @functools.cached_property
    def std(self) -> StdForm:
        """The modal form: a diagonal system's own; a dense system's from its minimal balanced realisation
        (balanced truncation at the numerical rank, exact to rounding), diagonalised (modal_error: the
        relative difference the diagonalisation made, which warns above REDIAG_WARN)."""
        if isinstance(self.system, _ModalSystem):
            self.modal_error = 0.0
            return self.system.std
        bal = self.balancing
        k = bal.numerical_rank
        p_out, m = self.system.io_shape
        p, b, c, err = modal_from_real(*bal.truncation(k)) if k else (np.zeros(0), np.zeros((0, m)), np.zeros((p_out, 0)),
                                                                      0.0)
        self.modal_error = err
        if err > REDIAG_WARN:
            warnings.warn(f"{self.who}: the modal form of the dense system (its minimal balanced realisation, order {k}, "
                          f"diagonalised) differs from it by {err:.2e} (relative): a nearly defective A; the modal "
                          "methods' bounds are not guaranteed there", RuntimeWarning, stacklevel=4)
        return StdForm(*(np.asarray(a, np.complex128) for a in (p, b, c)), bal.d, self.discrete)


class Method:
    """A reduction method: the hooks of the module docstring. Subclasses set `name` and override what
    differs; an instance carries the call's options."""

    name = ""
    has_tails = False          # info.hsv_tail: 2 * the discarded HSVs (balancing methods)

    def __init__(self, who: str, horizon=None, max_modes=None, **options):
        self.who, self.horizon, self.max_modes, self.options = who, horizon, max_modes, options

    @property
    def guaranteed(self) -> bool:
        """Whether bound() is a guaranteed bound under this call's options (the infinite horizon)."""
        return self.horizon is None

    def bounds(self, ctx: SystemContext) -> np.ndarray | None:
        return None

    def max_rank(self, ctx: SystemContext) -> int:
        return ctx.n

    def reduce(self, ctx: SystemContext, r: int) -> Reduced:
        raise NotImplementedError

    def bound(self, ctx: SystemContext, r: int, red: Reduced) -> float:
        return float("nan")

    def rank_for(self, ctx: SystemContext, rank: int | None, tol: float | None) -> int:
        """min(rank, the smallest r whose bound is <= tol), capped at max_rank."""
        r = ctx.n if rank is None else rank
        if tol is not None:
            b = self.bounds(ctx)
            r = min(r, int(np.argmax(b <= tol)) if np.any(b <= tol) else ctx.n)
        return min(r, self.max_rank(ctx))

    def modes_limit(self, ctx: SystemContext) -> int | None:
        """The complex modes the system's reduction may use: its own limit, else the call's max_modes."""
        return ctx.max_modes if ctx.max_modes is not None else self.max_modes

    def fit(self, ctx: SystemContext, r: int) -> Fitted:
        """reduce(ctx, r) in modal form, r lowered one step at a time until it fits in max_modes."""
        max_modes = self.modes_limit(ctx)
        while True:
            red = self.reduce(ctx, r)
            if red.p is None:
                if red.A.shape[0] == 0:
                    m, p_out = red.B.shape[1], red.C.shape[0]
                    p, b, c, err = np.zeros(0, complex), np.zeros((0, m), complex), np.zeros((p_out, 0), complex), 0.0
                else:
                    p, b, c, err = modal_from_real(red.A, red.B, red.C)
            else:
                p, b, c, err = red.p, red.b, red.c, 0.0
            if max_modes is None or len(p) <= max_modes or r == 0:
                break
            r -= 1
        p, b, c = (np.asarray(a, np.complex128) for a in (p, b, c))   # eig gives a real array when all poles are
        rank = red.rank if red.rank is not None else int(np.sum(StdForm(p, b, c, red.d, ctx.discrete).mode_orders()))
        return Fitted(p, b, c, red.d, rank, err, self.bound(ctx, r, red), red.extra, red.per_mode, red.modes)

    def reduce_batch(self, ctxs: list, ranks: list) -> list:
        return [self.fit(ctx, r) for ctx, r in zip(ctxs, ranks)]


def check_common(who: str, sys, rank, tol, horizon, max_modes, *, rank_required: bool):
    """The checks every reductor makes: (rank, tol, horizon, max_modes) as the loop takes them."""
    check_system(who, sys)
    rank = check_rank(who, sys, rank, required=rank_required)
    tol = check_tol(who, tol)
    max_modes = check_max_modes(who, max_modes)
    horizon = resolve_horizon(who, sys, horizon)
    return rank, tol, horizon, max_modes


def pad_pole(sys) -> np.ndarray:
    """The standard pole of the inert padding mode PAD_LAM (per system for a discrete batch)."""
    if not sys.discrete:
        return np.broadcast_to(np.asarray(PAD_LAM, complex), sys.batch_shape)
    return discretize(np.full(sys.batch_shape + (1,), PAD_LAM), sys.dt, sys.disc)[0][..., 0]


def run(method: Method, sys, rank, tol: float | None, *, ctxs: list | None = None, min_modes: int = 1):
    """The loop of the module docstring: (reduced system, ReductionInfo). rank: an int, or one per system
    (flat batch order); ctxs: the systems' contexts when the caller has them (their max_modes too)."""
    ctxs = ctxs if ctxs is not None else [SystemContext(one, method.horizon, method.who) for one in sys.flat()]
    ranks = np.broadcast_to(np.asarray(rank if rank is not None else -1), (len(ctxs),))
    ranks = [method.rank_for(ctx, None if r < 0 else int(r), tol) for ctx, r in zip(ctxs, ranks)]
    fitted = method.reduce_batch(ctxs, ranks)
    return assemble(method, sys, ctxs, fitted, min_modes)


def _stack(vals: list, batch: tuple) -> np.ndarray:
    """Per-system values of one shape stacked to batch + shape; 1-D arrays of different lengths (a dense
    batch's modal forms differ in size) padded with nan / -1 to the longest."""
    vals = [np.asarray(v) for v in vals]
    if len({v.shape for v in vals}) > 1 and all(v.ndim == 1 for v in vals):
        fill = -1 if vals[0].dtype.kind in "iu" else np.nan
        out = np.full((len(vals), max(len(v) for v in vals)), fill, dtype=np.result_type(*vals, type(fill)))
        for i, v in enumerate(vals):
            out[i, :len(v)] = v
        return out.reshape(batch + out.shape[1:])
    return np.array(vals).reshape(batch + vals[0].shape)


def _from_modal_pieces(sys, fitted: list, n: int):
    """The modal forms (p, b, c, d), padded with inert modes, through sys.modal_class.from_modal."""
    batch = sys.batch_shape
    p_out, m = sys.io_shape
    pad = np.broadcast_to(pad_pole(sys), batch).reshape(-1)
    P = np.empty((len(fitted), n), complex)
    Bm = np.ones((len(fitted), n, m), complex)
    Cm = np.zeros((len(fitted), p_out, n), complex)
    Dm = np.empty((len(fitted), p_out, m))
    for i, f in enumerate(fitted):
        k = len(f.p)
        P[i], P[i, :k], Bm[i, :k], Cm[i, :, :k], Dm[i] = pad[i], f.p, f.b, f.c, f.d
    return sys.modal_class.from_modal(P.reshape(batch + (n,)), Bm.reshape(batch + (n, m)),
                                      Cm.reshape(batch + (p_out, n)), Dm.reshape(batch + (p_out, m)), sys.dt, sys.disc)


def _kept_modes(sys, fitted: list, n: int):
    """The input's own modes f.modes (lam, B, C exactly), padded with inert modes; D such that the
    standard form's feedthrough is f.d (discrete: D = d - 2 Re(C dB) over the kept modes)."""
    batch = sys.batch_shape
    lam = sys.lam.reshape(-1, sys.n_modes)
    B, C, _ = sys._mimo_arrays()
    B, C = B.reshape((-1,) + B.shape[-2:]), C.reshape((-1,) + C.shape[-2:])
    dt = None if sys.dt is None else np.broadcast_to(sys.dt, batch).reshape(-1)
    p_out, m = sys.io_shape
    L = np.full((len(fitted), n), PAD_LAM, complex)
    Bk = np.ones((len(fitted), n, m), complex) / np.sqrt(m)
    Ck = np.zeros((len(fitted), p_out, n), complex)
    Dk = np.empty((len(fitted), p_out, m))
    for i, f in enumerate(fitted):
        k = f.modes
        L[i, :len(k)], Bk[i, :len(k)], Ck[i, :, :len(k)] = lam[i, k], B[i, k], C[i][:, k]
        Dk[i] = f.d
        if dt is not None:
            _, fac = discretize(lam[i, k], dt[i], sys.disc)
            Dk[i] = f.d - 2 * (C[i][:, k] @ (fac[:, None] * B[i, k])).real
    return sys._from_mimo(L.reshape(batch + (n,)), Bk.reshape(batch + (n, m)), Ck.reshape(batch + (p_out, n)),
                          Dk.reshape(batch + (p_out, m)), sys.dt, sys.disc)


def assemble(method: Method, sys, ctxs: list, fitted: list, min_modes: int = 1):
    """One system of sys's batch shape from the fitted pieces, each padded with inert modes (residue 0)
    to a common number of modes, and the ReductionInfo, built once."""
    n = max(min_modes, max(len(f.p) for f in fitted))
    batch = sys.batch_shape
    if isinstance(sys, _ModalSystem) and all(f.modes is not None for f in fitted):
        out = _kept_modes(sys, fitted, n)
    else:
        out = _from_modal_pieces(sys, fitted, n)
    extra = {key: _stack([f.extra[key] for f in fitted], batch) for key in fitted[0].extra}
    for key in fitted[0].per_mode:
        vals = [np.asarray(f.per_mode[key]) for f in fitted]
        fill = -1 if vals[0].dtype.kind in "iu" else np.nan
        padded = np.full((len(vals), n), fill, dtype=vals[0].dtype)
        for i, v in enumerate(vals):
            padded[i, :len(v)] = v
        extra[key] = padded.reshape(batch + (n,))
    rediag = np.array([f.rediag_error for f in fitted]).reshape(batch)
    extra["rediag_error"] = rediag
    extra["modes"] = np.array([len(f.p) for f in fitted]).reshape(batch)     # before padding
    if np.max(rediag, initial=0.0) > REDIAG_WARN:
        warnings.warn(f"{method.who}: re-diagonalising the reduced system changed its transfer function by up to "
                      f"{np.max(rediag):.2e} (relative): a nearly defective reduced A", RuntimeWarning, stacklevel=3)
    hsv = np.stack([ctx.hsv for ctx in ctxs]).reshape(batch + (sys.n_states,))
    ranks = np.array([f.rank for f in fitted]).reshape(batch)
    bound = np.array([f.bound for f in fitted]).reshape(batch) if method.guaranteed else None
    if bound is not None and np.all(np.isnan(bound)):
        bound = None
    tails = np.array([ctx.balancing.tails[min(f.rank, ctx.n)] for ctx, f in zip(ctxs, fitted)]).reshape(batch) \
        if method.has_tails else None
    options = dict(method.options, horizon=method.horizon, max_modes=method.max_modes)
    info = ReductionInfo(method.name, options, ranks, n, hsv, error_bound=bound, hsv_tail=tails, extra=extra)
    return out, info
