"""What the reductors share: argument checks, the info record, single-threaded BLAS, and the way back
from a reduced real realisation to modal (conjugate-pair) form."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch

try:  # scikit-learn's dependency (requirements.txt); without it BLAS keeps its own thread count
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

from dssm_kernels._validate import check_int, check_number

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


def check_system(who: str, sys):
    """sys: a DiagonalSystem, MimoSystem or DenseSystem (anything with the reductor protocol)."""
    if not getattr(type(sys), "_reducible", False):
        raise TypeError(f"{who}: sys must be a DiagonalSystem, MimoSystem or DenseSystem, got {type(sys).__name__}")
    return sys


def check_rank(who: str, sys, rank, *, required: bool) -> int | None:
    """rank: an int with 1 <= rank < n (the real order of sys: 2N for a diagonal system), or None when
    not required."""
    if rank is None and required:
        raise ValueError(f"{who}: rank is required (the real state size to keep), got None")
    rank = check_int(who, "rank", rank, None, allow_none=not required)
    n = sys.n_states
    if rank is not None and not 1 <= rank < n:
        what = "2N" if hasattr(sys, "n_modes") else "n"
        raise ValueError(f"{who}: rank must satisfy 1 <= rank < {n} (the real order {what} of the system), got {rank}")
    return rank


def check_max_modes(who: str, max_modes) -> int | None:
    """None or an int >= 1: the complex modes a reduced system may use."""
    return check_int(who, "max_modes", max_modes, 1, allow_none=True)


def check_max_iter(who: str, max_iter) -> int:
    return check_int(who, "max_iter", max_iter, 0)


def check_tol(who: str, tol) -> float | None:
    return check_number(who, "tol", tol, positive=True, allow_none=True)


def modal_from_real(A: np.ndarray, B: np.ndarray, C: np.ndarray):
    """Diagonalise a real realisation (A (r, r), B (r, m), C (p, r)) into pole / input / output vectors.

    Returns (poles (k,), b (k, m), c (p, k), rediag_error): one mode per conjugate pair (Im p > 0) and
    one per real pole, whose output vector is halved (its conjugate twin, itself, adds the other half);
    rediag_error is the relative difference of the two transfer functions at points near every pole,
    where a bad eigenbasis shows most. LAPACK's real eig returns exactly real eigenvalues (with real
    eigenvectors) and exactly conjugate pairs, so the split is unambiguous."""
    lam, X = np.linalg.eig(A)
    b = np.linalg.solve(X, B.astype(np.complex128))
    c = C @ X
    real = lam.imag == 0
    keep = real | (lam.imag > 0)
    p, b, c = lam[keep], b[keep], np.where(real, c / 2, c)[:, keep]
    x = p + np.abs(p).max() * 1e-3 * (1 + 1j) + 1e-300
    x = np.concatenate([x, [1j * np.abs(lam).max() + 1]])
    eye = np.eye(len(lam))
    G_real = np.stack([C @ np.linalg.solve(xi * eye - A, B) for xi in x])
    w, wc = 1 / (x[:, None] - p), 1 / (x[:, None] - np.conj(p))
    G_modal = np.einsum("in,kn,nj->kij", c, w, b) + np.einsum("in,kn,nj->kij", np.conj(c), wc, np.conj(b))
    err = float(np.max(np.abs(G_modal - G_real)) / max(np.max(np.abs(G_real)), 1e-300))
    return p, b, c, err
