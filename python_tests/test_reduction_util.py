"""Shared generators and references for the reduction tests (no tests of its own)."""
from __future__ import annotations

import numpy as np
import scipy.linalg as sl

from dssm_kernels.reduction import DiagonalSystem


def random_system(rng: np.random.Generator, N: int, dt=None, disc: str = "zoh", decay=(0.02, 1.0),
                  freq: float = 3.0, n_real: int = 0, batch: tuple = ()) -> DiagonalSystem:
    """Stable modes Re lam ~ -U(decay), Im lam ~ N(0, freq^2) (the last n_real real), B, C ~ CN(0, 1), D ~ N(0, 1)."""
    shape = batch + (N,)
    im = rng.normal(0, freq, shape)
    if n_real:
        im[..., N - n_real:] = 0.0
    lam = -rng.uniform(*decay, shape) + 1j * im
    cn = lambda: rng.normal(size=shape) + 1j * rng.normal(size=shape)  # noqa: E731
    return DiagonalSystem(lam, cn(), cn(), rng.normal(size=batch), dt=dt, disc=disc)


def dense_gramians(sys: DiagonalSystem, horizon=None):
    """(P, Q) of sys.realization() (real) from scipy's Lyapunov solvers (finite horizon: the right-hand
    side B B* - F B B* F* with F = exp(A T) or A^L)."""
    A, B, C, _ = sys.realization()
    BB, CC = B @ B.T, C.T @ C
    if horizon is not None:
        F = np.linalg.matrix_power(A, horizon) if sys.discrete else sl.expm(A * horizon)
        BB, CC = BB - F @ BB @ F.T, CC - F.T @ CC @ F
    if sys.discrete:
        return sl.solve_discrete_lyapunov(A, BB), sl.solve_discrete_lyapunov(A.T, CC)
    return sl.solve_continuous_lyapunov(A, -BB), sl.solve_continuous_lyapunov(A.T, -CC)


def dense_hsv(sys: DiagonalSystem) -> np.ndarray:
    """The textbook route the closed form replaces: dense Lyapunov solves, then sqrt(eig(P Q))."""
    P, Q = dense_gramians(sys)
    return np.sort(np.sqrt(np.abs(np.linalg.eigvals(P @ Q).real)))[::-1]


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def random_mimo(rng: np.random.Generator, N: int, m: int, p: int, dt=None, disc: str = "zoh", decay=(0.02, 1.0),
                freq: float = 3.0, n_real: int = 0):
    """A MimoSystem like random_system: N stable modes (the last n_real real), B (N, m), C (p, N) ~ CN(0, 1),
    D (p, m) ~ N(0, 1)."""
    from dssm_kernels.reduction import MimoSystem
    im = rng.normal(0, freq, N)
    if n_real:
        im[N - n_real:] = 0.0
    lam = -rng.uniform(*decay, N) + 1j * im
    cn = lambda *s: rng.normal(size=s) + 1j * rng.normal(size=s)  # noqa: E731
    return MimoSystem(lam, cn(N, m), cn(p, N), rng.normal(size=(p, m)), dt=dt, disc=disc)


def dense_lyapunov_hsv(A, B, C, discrete: bool) -> np.ndarray:
    """sqrt(eig(P Q)) from scipy's dense Lyapunov solvers (the textbook route), descending."""
    if discrete:
        P, Q = sl.solve_discrete_lyapunov(A, B @ B.T), sl.solve_discrete_lyapunov(A.T, C.T @ C)
    else:
        P, Q = sl.solve_continuous_lyapunov(A, -B @ B.T), sl.solve_continuous_lyapunov(A.T, -C.T @ C)
    return np.sort(np.sqrt(np.abs(np.linalg.eigvals(P @ Q).real)))[::-1]
