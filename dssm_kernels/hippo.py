"""HiPPO transition matrices and the diagonal / DPLR initialisations the seed papers compare.

All arithmetic is float64 numpy; callers cast. N is the real state size; conjugate-pair
initialisations return N // 2 modes, the half with Im >= 0 (a layer's 2 Re(...) adds the other).

    A, B = transition("legs", N)                  # HiPPO-LegS / LegT / FouT (continuous time)
    P = rank_correction("legs", N)                # A + P^T P is normal
    Lambda, P, B, V = dplr("legs", N)             # S4: A = V diag(Lambda) V^* - P P^* on the pair half
    skew_hippo(N)                                 # DSS: eigenvalues of LegS's normal part (= S4D-LegS)
    s4d_lin(N), s4d_inv(N), s4d_real(N), s4d_legs(N)
    ptd(N, eps)                                   # perturb-then-diagonalise HiPPO-LegS (S4-PTD, S5-PTD)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dssm_kernels._validate import check_int, check_number, check_seed

MEASURES = ("legs", "legt", "fout")
MAX_DENSE_N = 1 << 13     # the dense (N, N) float64 matrices and their eigensolvers: 512 MiB at most
MAX_N = 1 << 24           # the diagonal initialisations' mode vectors


def _check_n(name: str, N, even: bool = False, limit: int = MAX_DENSE_N) -> int:
    """N: an int in [1, limit] (sizes are checked before the N x N allocations), even if asked."""
    N = check_int(name, "N", N, 1, limit)
    if even and N % 2:
        raise ValueError(f"{name}: N must be even (the state is conjugate pairs), got {N}")
    return N


def _check_measure(name: str, measure: str) -> str:
    if measure not in MEASURES:
        raise ValueError(f"{name}: measure must be one of {MEASURES}, got {measure!r}")
    return measure


def transition(measure: str, N: int) -> tuple[np.ndarray, np.ndarray]:
    """(A (N, N), B (N,)) of the HiPPO operator for `measure`, x' = A x + B u.

    legs: A_nk = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) for n = k, 0 above; B_n = sqrt(2n+1).
    legt: A_nk = -sqrt(2n+1) sqrt(2k+1) * (1 if n >= k else (-1)^(n-k)); B_n = sqrt(2n+1).
    fout: the Fourier basis with the rank-1 boundary term (S4's "fout").
    """
    _check_measure("transition", measure)
    N = _check_n("transition", N)
    n = np.arange(N, dtype=np.float64)
    r = np.sqrt(2 * n + 1)
    if measure == "legs":
        A = -np.tril(np.outer(r, r), -1) - np.diag(n + 1)
        B = r.copy()
    elif measure == "legt":
        i, k = np.meshgrid(n, n, indexing="ij")
        sign = np.where(i >= k, 1.0, (-1.0) ** (i - k))
        A = -np.outer(r, r) * sign
        B = r.copy()
    else:  # fout
        freqs = np.arange(N // 2, dtype=np.float64)
        d = np.stack([np.zeros(N // 2), freqs], axis=-1).reshape(-1)[1:]
        A = np.pi * (-np.diag(d, 1) + np.diag(d, -1))
        A = A[:N, :N] if A.shape[0] >= N else np.pad(A, ((0, N - A.shape[0]), (0, N - A.shape[0])))
        B = np.zeros(N)
        B[0::2] = np.sqrt(2)
        B[0] = 1.0
        A = A - np.outer(B, B)
    return A, B


def rank_correction(measure: str, N: int) -> np.ndarray:
    """P (rank, N) with A + P^T P normal: rank 1 for legs and fout, rank 2 for legt."""
    _check_measure("rank_correction", measure)
    N = _check_n("rank_correction", N)
    n = np.arange(N, dtype=np.float64)
    if measure == "legs":
        return np.sqrt(n + 0.5)[None, :]
    if measure == "legt":
        r = np.sqrt(2 * n + 1)
        P = np.zeros((2, N))
        P[0, 0::2] = r[0::2]
        P[1, 1::2] = r[1::2]
        return P
    P = np.zeros(N)
    P[0::2] = np.sqrt(2)
    P[0] = 1.0
    return P[None, :]


def _normal_eig(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a normal real matrix S = c I + K (K skew-symmetric, c constant) through
    the Hermitian matrix -i K, so V is unitary to machine precision (numpy's general eig on a
    normal matrix need not return orthogonal eigenvectors for clustered eigenvalues)."""
    c = float(np.mean(np.diag(S)))
    K = S - c * np.eye(S.shape[0])
    w, V = np.linalg.eigh(-1j * K)
    return c + 1j * w, V


def dplr(measure: str, N: int):
    """S4's diagonal-plus-low-rank form of HiPPO `measure` on the conjugate-pair half.

    With (A, B) = transition(measure, N) and P = rank_correction(measure, N), A + P^T P = V Lambda V^*
    is normal; in the eigenbasis A = V (diag(Lambda) - P~ P~^*) V^* with P~ = V^* P^T. Returns
    (Lambda (N/2,), P~ (rank, N/2), B~ = V^* B (N/2,), V (N, N/2)), complex128, keeping the
    eigenvalues with Im > 0 in increasing order (conjugate pairs: the other half is their conjugate).
    """
    _check_measure("dplr", measure)
    N = _check_n("dplr", N, even=True)
    A, B = transition(measure, N)
    P = rank_correction(measure, N)
    S = A + P.T @ P
    if not np.allclose(S @ S.T, S.T @ S, atol=1e-8 * max(1.0, np.abs(S).max() ** 2)):
        raise ValueError(f"dplr: {measure!r} with N={N} has no normal-plus-low-rank form (internal error)")
    Lam, V = _normal_eig(S)
    order = np.argsort(Lam.imag)
    Lam, V = Lam[order][N // 2:], V[:, order][:, N // 2:]
    Vh = V.conj().T
    return Lam, (Vh @ P.T).T, Vh @ B, V


def skew_hippo(N: int) -> np.ndarray:
    """The DSS initialisation: eigenvalues of HiPPO-LegS's normal part (real part -1/2), the N/2 with
    Im > 0."""
    N = _check_n("skew_hippo", N, even=True)
    return dplr("legs", N)[0]


def s4d_legs(N: int) -> np.ndarray:
    """S4D-LegS: the diagonal of S4's DPLR LegS, i.e. the Skew-HiPPO eigenvalues."""
    return skew_hippo(N)


def s4d_lin(N: int) -> np.ndarray:
    """S4D-Lin: A_n = -1/2 + i pi n, n < N/2."""
    N = _check_n("s4d_lin", N, even=True, limit=MAX_N)
    return -0.5 + 1j * np.pi * np.arange(N // 2)


def s4d_inv(N: int) -> np.ndarray:
    """S4D-Inv: A_n = -1/2 + i (N/pi) (N / (2n+1) - 1), n < N/2."""
    N = _check_n("s4d_inv", N, even=True, limit=MAX_N)
    n = np.arange(N // 2)
    return -0.5 + 1j * (N / np.pi) * (N / (2 * n + 1) - 1)


def s4d_real(N: int) -> np.ndarray:
    """S4D-Real: A_n = -(n+1), n < N/2, as complex modes with zero imaginary part."""
    N = _check_n("s4d_real", N, even=True, limit=MAX_N)
    return -(np.arange(N // 2) + 1.0) + 0j


@dataclass
class PTDResult:
    """Eigenvalues Lambda (N,) and eigenvectors V (N, N) of A + E; kappa = cond(V); rel_perturbation =
    ||E||_2 / ||A||_2; kappa_unperturbed = cond(V) of the plain diagonalisation of A (for comparison)."""
    Lambda: np.ndarray
    V: np.ndarray
    B: np.ndarray
    E: np.ndarray
    kappa: float
    rel_perturbation: float
    kappa_unperturbed: float


def ptd(N: int, eps: float = 1e-2, trials: int = 8, seed: int = 0, measure: str = "legs") -> PTDResult:
    """Perturb-then-diagonalise (PTD): diagonalise A + E for HiPPO `measure`, with E a real Gaussian
    perturbation of spectral norm eps * ||A||_2, the best of `trials` draws by cond(V).

    HiPPO-LegS is far from normal: its exact eigenvectors have condition numbers growing
    exponentially with N, so diagonalising it directly is ill-posed. A small perturbation makes
    the eigenproblem well conditioned at a cost of order eps in the transfer function.
    B is transformed too: B~ = V^{-1} B.
    """
    N = _check_n("ptd", N)
    _check_measure("ptd", measure)
    check_number("ptd", "eps", eps, positive=True)
    check_int("ptd", "trials", trials)
    check_seed("ptd", seed)
    A, B = transition(measure, N)
    normA = np.linalg.norm(A, 2)
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(trials):
        G = rng.standard_normal((N, N))
        E = eps * normA * G / np.linalg.norm(G, 2)
        Lam, V = np.linalg.eig(A + E)
        kappa = np.linalg.cond(V)
        if best is None or kappa < best[2]:
            best = (Lam, V, kappa, E)
    Lam, V, kappa, E = best
    _, V0 = np.linalg.eig(A)
    return PTDResult(Lambda=Lam, V=V, B=np.linalg.solve(V, B.astype(np.complex128)), E=E, kappa=float(kappa),
                     rel_perturbation=float(np.linalg.norm(E, 2) / normA),
                     kappa_unperturbed=float(np.linalg.cond(V0)))
