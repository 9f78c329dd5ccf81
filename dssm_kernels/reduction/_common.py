"""What the reductors share: argument checks, the info record, the way back from a reduced real
realisation to modal (conjugate-pair) form, and the assembly of per-system pieces into one batched,
padded DiagonalSystem."""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

try:  # scikit-learn's dependency (requirements.txt); without it BLAS keeps its own thread count
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

from dssm_kernels._validate import check_int, check_number
from dssm_kernels.reduction.system import PAD_LAM, DiagonalSystem

# The modal form's transfer function may differ from the real realisation's by this much (relative,
# on a test grid) before re-diagonalisation warns: eig of a nearly defective reduced A loses digits.
REDIAG_WARN = 1e-8


def single_threaded(fn):
    """Run fn with BLAS and torch on one thread. Reduction solves many tiny dense problems (SVDs and
    eigendecompositions of at most 4N x 4N), where thread hand-offs cost more than they save: a
    128 x 128 SVD took 19 ms on two OpenBLAS threads and 2.4 ms on one on the shared 2-core CI VM."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            if threadpool_limits is None:
                return fn(*args, **kwargs)
            with threadpool_limits(limits=1, user_api="blas"):
                return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)
    return wrapper


@dataclass
class ReductionInfo:
    """What a reductor did, per system of the batch (arrays have the batch shape).

    method: "bt" | "modal" | "h2".   options: the arguments it ran with (rank, tol, horizon, init, ...).
    rank: int array, the real (minimal) state size of each reduced system: a conjugate pair counts 2,
        a real pole 1.   n_modes: the complex modes of the returned DiagonalSystem (after padding; a
        real pole occupies one, so 2 * n_modes >= rank).
    hsv: (..., 2N) Hankel singular values of the full system (over `horizon` when given).
    error_bound: (...,) a guaranteed bound on ||G - G_r||_inf, or None where the method has none
        (h2; BT over a finite horizon).   hsv_tail: (...,) 2 * sum of the discarded HSVs (BT's bound
        for infinite horizon; the quantity `tol` is compared with otherwise).
    extra: method-specific arrays (bt: rediag_error; modal: kept, dominance; h2: h2 errors, iterations).
    """
    method: str
    options: dict
    rank: np.ndarray
    n_modes: int
    hsv: np.ndarray
    error_bound: np.ndarray | None = None
    hsv_tail: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Piece:
    """One reduced system in standard pole-residue form (poles p, residues r as in StdForm; a real
    pole carries half its real-system residue) plus its per-system info entries."""
    p: np.ndarray
    r: np.ndarray
    rank: int
    info: dict


def check_system(who: str, sys) -> DiagonalSystem:
    if not isinstance(sys, DiagonalSystem):
        raise TypeError(f"{who}: sys must be a DiagonalSystem, got {type(sys).__name__}")
    return sys


def check_rank(who: str, sys: DiagonalSystem, rank, *, required: bool) -> int | None:
    """rank: an int with 1 <= rank < 2N (the real order of sys), or None when not required."""
    if rank is None and required:
        raise ValueError(f"{who}: rank is required (the real state size to keep), got None")
    rank = check_int(who, "rank", rank, None, allow_none=not required)
    if rank is not None and not 1 <= rank < 2 * sys.n_modes:
        raise ValueError(f"{who}: rank must satisfy 1 <= rank < {2 * sys.n_modes} (the real order 2N of the "
                         f"system), got {rank}")
    return rank


def check_max_modes(who: str, max_modes) -> int | None:
    """None or an int >= 1: the complex modes a reduced system may use."""
    return check_int(who, "max_modes", max_modes, 1, allow_none=True)


def check_max_iter(who: str, max_iter) -> int:
    return check_int(who, "max_iter", max_iter, 0)


def check_tol(who: str, tol) -> float | None:
    return check_number(who, "tol", tol, positive=True, allow_none=True)


def modal_from_real(A: np.ndarray, B: np.ndarray, C: np.ndarray):
    """Diagonalise a real realisation (A (r, r), B (r, 1), C (1, r)) into pole-residue form.

    Returns (p, res, rediag_error): one pole per conjugate pair (Im p > 0) with its residue, and each
    real pole with half its residue (its conjugate twin, itself, adds the other half); rediag_error is
    the relative difference of the two transfer functions on a test grid. LAPACK's real eig returns
    exactly real eigenvalues and exactly conjugate pairs, so the split is unambiguous."""
    lam, X = np.linalg.eig(A)
    b = np.linalg.solve(X, B[:, 0].astype(np.complex128))
    c = C[0] @ X
    res = c * b
    real = lam.imag == 0
    keep = real | (lam.imag > 0)
    p, r = lam[keep], np.where(real, res.real / 2, res)[keep]
    # the two transfer functions at points near every pole (where a bad eigenbasis shows most)
    x = lam[keep] + np.abs(lam[keep]).max() * 1e-3 * (1 + 1j) + 1e-300
    x = np.concatenate([x, [1j * np.abs(lam).max() + 1]])
    G_real = np.array([(C @ np.linalg.solve(xi * np.eye(len(lam)) - A, B)).item() for xi in x])
    G_modal = np.sum(r / (x[:, None] - p) + np.conj(r) / (x[:, None] - np.conj(p)), -1)
    err = float(np.max(np.abs(G_modal - G_real)) / max(np.max(np.abs(G_real)), 1e-300))
    return p, r, err


def pad_pole(sys: DiagonalSystem) -> complex | np.ndarray:
    """The standard pole of the inert padding mode PAD_LAM (per system for a discrete batch)."""
    if sys.dt is None:
        return PAD_LAM
    return DiagonalSystem(np.full(sys.dt.shape + (1,), PAD_LAM), 1, 1, dt=sys.dt, disc=sys.disc).std.p[..., 0]


def assemble(who: str, sys: DiagonalSystem, pieces: list[Piece], info: ReductionInfo, min_modes: int = 1):
    """One DiagonalSystem of sys's batch shape from per-system pieces (flat batch order), each padded
    with inert modes (residue 0: from_std gives B = 1, C = 0) to a common number of modes."""
    n = max(min_modes, max(len(pc.p) for pc in pieces))
    batch = sys.batch_shape
    pad = np.broadcast_to(pad_pole(sys), batch).reshape(-1)
    P = np.empty((len(pieces), n), np.complex128)
    R = np.zeros((len(pieces), n), np.complex128)
    for i, pc in enumerate(pieces):
        P[i] = pad[i]
        P[i, :len(pc.p)], R[i, :len(pc.p)] = pc.p, pc.r
    d = sys.std.d
    out = DiagonalSystem.from_std(P.reshape(batch + (n,)), R.reshape(batch + (n,)), d, dt=sys.dt, disc=sys.disc)
    info.rank = np.array([pc.rank for pc in pieces]).reshape(batch)
    info.n_modes = n
    for key in pieces[0].info:
        info.extra[key] = np.array([pc.info[key] for pc in pieces]).reshape(batch + np.shape(pieces[0].info[key]))
    rediag = info.extra.get("rediag_error")
    if rediag is not None and np.max(rediag) > REDIAG_WARN:
        warnings.warn(f"{who}: re-diagonalising the reduced system changed its transfer function by up to "
                      f"{np.max(rediag):.2e} (relative): a nearly defective reduced A", RuntimeWarning, stacklevel=3)
    return out, info
