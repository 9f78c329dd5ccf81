"""DenseSystem: real state-space systems held as dense matrices, the channels of an S4 layer.

S4's state matrix A = diag(lam) - P P^* (DPLR) is not diagonal, and diagonalising it is no way in:
HiPPO-LegS's eigenvectors have condition numbers that grow exponentially with N, so a modal form of
the full system would carry errors of cond * eps. Instead the system is reduced by balancing, whose
Gramian factors are computed to backward stability from the dense matrices, and only the reduced
system (a balanced one, far better conditioned) is diagonalised.

A DenseSystem is the standard realisation of each system of a batch,
    discrete:   s_{t+1} = A s_t + B u_t,   y_t = C s_t + D u_t,        continuous: s' = A s + B u, y = C s + D u,
A (..., n, n), B (..., n, m), C (..., p, n), D (..., p, m), all real; for a discrete system, dt (...) and disc
say how a reduced modal form maps back to a layer's continuous modes (system.continuous_modes).

Gramian factors, by square-root doubling (the squared Smith iteration): with P_k = sum_{j<k} A^j B B^T A^jT,
    P_2k = P_k + A^k P_k A^kT,  so  F_2k = [F_k, A^k F_k]  (compressed to n columns by a QR of its
transpose: F = R^T, backward stable), and A^2k = A^k A^k. The infinite-horizon factor is reached when
||A^k F_k|| <= eps ||F_k||: about log2(36 / (1 - rho)) doublings for spectral radius rho (25 for
rho = 1 - 1e-6); a finite horizon L takes the bits of L from the top (P_2k, then P_(2k+1) = P_2k +
A^2k B B^T A^2kT). A continuous system is first mapped by the Cayley transform A_d = (a I - A)^-1 (a I + A),
B_d = sqrt(2a) (a I - A)^-1 B, C_d = sqrt(2a) C (a I - A)^-1, which leaves both Gramians unchanged.
The factors are accurate to eps ||A^k|| ||F|| per step, normwise: Hankel singular values to
~eps ||Lp|| ||Lq|| log(1 / (1 - rho)), the accuracy class of the closed form (gramians.py).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg

from dssm_kernels.reduction.gramians import check_horizon
from dssm_kernels.reduction.system import DISCRETISATIONS, DiagonalSystem, MimoSystem, _ModalSystem, as_array

_EPS = np.finfo(np.float64).eps
MAX_DOUBLINGS = 80            # A^(2^80): a spectral radius within 2^-75 of 1 has no infinite-horizon Gramian here


class DenseSystem:
    """A batch of real dense state-space systems (module docstring).

    Args:
        A: real (..., n, n).   B: real (..., n, m).   C: real (..., p, n).   D: real (..., p, m) or None (0).
        discrete: True for x_{t+1} = A x_t + B u_t (then dt (...) > 0 and disc are required: how reduced
            modal forms map back to continuous modes), False for x' = A x + B u.
    """

    _reducible = True

    def __init__(self, A, B, C, D=None, *, discrete: bool, dt=None, disc: str = "zoh"):
        who = "DenseSystem"
        A, B, C = (as_array(who, k, v, complex_=False) for k, v in (("A", A), ("B", B), ("C", C)))
        if A.ndim < 2 or A.shape[-1] != A.shape[-2] or A.shape[-1] < 1:
            raise ValueError(f"{who}: A must be (..., n, n) with n >= 1, got shape {A.shape}")
        n = A.shape[-1]
        if B.ndim < 2 or B.shape[-2] != n:
            raise ValueError(f"{who}: B must be (..., n={n}, m), got shape {B.shape}")
        if C.ndim < 2 or C.shape[-1] != n:
            raise ValueError(f"{who}: C must be (..., p, n={n}), got shape {C.shape}")
        p, m = C.shape[-2], B.shape[-1]
        D = np.zeros((p, m)) if D is None else as_array(who, "D", D, complex_=False)
        if D.ndim < 2 or D.shape[-2:] != (p, m):
            raise ValueError(f"{who}: D must be (..., p={p}, m={m}), got shape {D.shape}")
        if not isinstance(discrete, bool):
            raise TypeError(f"{who}: discrete must be True or False, got {discrete!r}")
        if disc not in DISCRETISATIONS:
            raise ValueError(f"{who}: disc must be one of {DISCRETISATIONS}, got {disc!r}")
        if discrete:
            if dt is None:
                raise ValueError(f"{who}: a discrete system needs dt (the step its reduced modes are continuous in)")
            dt = as_array(who, "dt", dt, complex_=False)
            if np.any(dt <= 0):
                raise ValueError(f"{who}: dt must be > 0, got min {dt.min()}")
        elif dt is not None:
            raise ValueError(f"{who}: a continuous system takes no dt, got {dt!r}")
        try:
            batch = np.broadcast_shapes(A.shape[:-2], B.shape[:-2], C.shape[:-2], D.shape[:-2],
                                        () if dt is None else dt.shape)
        except ValueError:
            raise ValueError(f"{who}: the batch shapes of A {A.shape}, B {B.shape}, C {C.shape}, D {D.shape} must "
                             "broadcast") from None
        self.A = np.broadcast_to(A, batch + (n, n)).copy()
        self.B = np.broadcast_to(B, batch + (n, m)).copy()
        self.C = np.broadcast_to(C, batch + (p, n)).copy()
        self.D = np.broadcast_to(D, batch + (p, m)).copy()
        self.dt = None if dt is None else np.broadcast_to(dt, batch).copy()
        self.disc = disc
        self._discrete = discrete

    # ----------------------------------------------------------------------------------- basics
    @property
    def discrete(self) -> bool:
        return self._discrete

    @property
    def batch_shape(self) -> tuple:
        return self.A.shape[:-2]

    @property
    def n_states(self) -> int:
        return self.A.shape[-1]

    @property
    def io_shape(self) -> tuple:
        return self.C.shape[-2], self.B.shape[-1]

    @property
    def modal_class(self):
        """Reduced systems come back diagonal: a DiagonalSystem for SISO systems, else a MimoSystem."""
        return DiagonalSystem if self.io_shape == (1, 1) else MimoSystem

    def __repr__(self) -> str:
        kind = f"discrete ({self.disc})" if self.discrete else "continuous"
        p, m = self.io_shape
        return f"DenseSystem({kind}, batch={self.batch_shape}, n={self.n_states} states, {m} inputs, {p} outputs)"

    def __getitem__(self, idx) -> "DenseSystem":
        if not isinstance(idx, tuple):
            idx = (idx,)
        if len(idx) > len(self.batch_shape):
            raise IndexError(f"DenseSystem: {len(idx)} indices for batch shape {self.batch_shape}")
        return DenseSystem(self.A[idx], self.B[idx], self.C[idx], self.D[idx], discrete=self.discrete,
                           dt=None if self.dt is None else self.dt[idx], disc=self.disc)

    def flat(self) -> list:
        return [self[np.unravel_index(i, self.batch_shape)] for i in range(int(np.prod(self.batch_shape)))]

    def spectral_abscissa(self) -> np.ndarray:
        """(...): max |eig A| (discrete) or max Re eig A (continuous)."""
        ev = np.linalg.eigvals(self.A)
        return np.abs(ev).max(-1) if self.discrete else ev.real.max(-1)

    def unstable_count(self) -> int:
        """Systems of the batch with an eigenvalue on or outside the stability boundary."""
        rho = self.spectral_abscissa()
        return int(np.sum(rho >= 1 if self.discrete else rho >= 0))

    def realization(self):
        """(A, B, C, D) of one (unbatched) system."""
        if self.batch_shape:
            raise ValueError(f"DenseSystem.realization: needs one system, got batch shape {self.batch_shape}")
        return self.A, self.B, self.C, self.D

    @classmethod
    def from_modal_system(cls, sys: _ModalSystem) -> "DenseSystem":
        """The real standard realisation (StdForm.realization) of each system of a diagonal one."""
        reals = [one.realization(real=True) for one in sys.flat()]
        batch = sys.batch_shape
        st = lambda i: np.stack([r[i] for r in reals]).reshape(batch + reals[0][i].shape)  # noqa: E731
        return cls(st(0), st(1), st(2), st(3), discrete=sys.discrete, dt=sys.dt, disc=sys.disc)

    def __sub__(self, other) -> "DenseSystem":
        """G - G_other as one dense system (block-diagonal A): for error norms. other: a DenseSystem or a
        diagonal system of the same batch shape, dt and disc."""
        if isinstance(other, _ModalSystem):
            other = DenseSystem.from_modal_system(other)
        if not isinstance(other, DenseSystem):
            return NotImplemented
        if self.discrete != other.discrete or self.io_shape != other.io_shape or self.batch_shape != other.batch_shape \
                or (self.discrete and (self.disc != other.disc or not np.array_equal(self.dt, other.dt))):
            raise ValueError("DenseSystem: subtraction needs systems of one batch shape, inputs and outputs, both "
                             "continuous or discrete with one dt and disc")
        n1, n2 = self.n_states, other.n_states
        A = np.zeros(self.batch_shape + (n1 + n2, n1 + n2))
        A[..., :n1, :n1], A[..., n1:, n1:] = self.A, other.A
        return DenseSystem(A, np.concatenate([self.B, other.B], -2), np.concatenate([self.C, -other.C], -1),
                           self.D - other.D, discrete=self.discrete, dt=self.dt, disc=self.disc)

    # ----------------------------------------------------------------------------- responses
    def response(self, x) -> np.ndarray:
        """G at the points x (complex (K,)): complex (..., K, p, m). Through each system's complex Schur form
        A = Z T Z* (computed once, backward stable): G(x) = C Z (x I - T)^-1 Z* B + D, the triangular solves
        vectorised over the points, O(K n^2) per system instead of K dense solves."""
        x = np.asarray(x, dtype=np.complex128)
        if len(x) <= 4:            # a few points (a peak being polished): dense solves cost less than the loop
            M = x[:, None, None] * np.eye(self.n_states) - self.A[..., None, :, :]
            X = np.linalg.solve(M, np.broadcast_to(self.B[..., None, :, :], M.shape[:-1] + self.B.shape[-1:]))
            return self.C[..., None, :, :] @ X + self.D[..., None, :, :]
        out = np.empty(self.batch_shape + (len(x),) + self.io_shape, np.complex128)
        flat = out.reshape((-1,) + out.shape[-3:])
        schur = self.__dict__.setdefault("_schur", {})
        for i in range(flat.shape[0]):
            idx = np.unravel_index(i, self.batch_shape)
            if i not in schur:
                T, Z = scipy.linalg.schur(self.A[idx], output="complex")
                schur[i] = (T, Z.conj().T @ self.B[idx], self.C[idx] @ Z)
            T, Bz, Cz = schur[i]
            X = np.empty((len(x),) + Bz.shape, np.complex128)          # (K, n, m)
            for r in range(T.shape[0] - 1, -1, -1):                     # back substitution, all points at once
                acc = Bz[r] + np.einsum("j,kjm->km", T[r, r + 1:], X[:, r + 1:])   # (x I - T) is -T off the diagonal
                X[:, r] = acc / (x - T[r, r])[:, None]
            flat[i] = Cz @ X + self.D[idx]
        return out

    def frequency_response(self, w) -> np.ndarray:
        """G on the imaginary axis or the unit circle: (..., len(w)) for SISO systems, else (..., p, m, len(w))."""
        w = np.asarray(w, dtype=np.float64)
        G = np.moveaxis(self.response(np.exp(1j * w) if self.discrete else 1j * w), -3, -1)
        return G[..., 0, 0, :] if self.io_shape == (1, 1) else G

    def kernel(self, L: int) -> np.ndarray:
        """K[0] = D, K[l] = C A^(l-1) B: (..., L) for SISO systems, else (..., p, m, L) (discrete only)."""
        if not self.discrete:
            raise ValueError("DenseSystem.kernel: a continuous-time system has no kernel")
        if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
            raise ValueError(f"DenseSystem.kernel: L must be an int >= 1, got {L!r}")
        p, m = self.io_shape
        K = np.empty(self.batch_shape + (p, m, int(L)))
        K[..., 0] = self.D
        X = self.B
        for l in range(1, L):
            K[..., l] = self.C @ X
            X = self.A @ X
        return K[..., 0, 0, :] if (p, m) == (1, 1) else K

    # ------------------------------------------------------------------------------- Gramians
    def gramian_factors(self, horizon=None, who: str = "gramians"):
        """(Lp, Lq), real (n, <= n), with P = Lp Lp^T, Q = Lq Lq^T the Gramians of one (unbatched) system
        (module docstring). horizon: None, or an int L (discrete: the first L steps)."""
        if self.batch_shape:
            raise ValueError(f"{who}: DenseSystem.gramian_factors needs one system, got batch shape {self.batch_shape}")
        A, B, C = self.A, self.B, self.C
        if not self.discrete:
            if horizon is not None:
                raise ValueError(f"{who}: a finite horizon needs a discrete DenseSystem, got a continuous one")
            A, B, C = _cayley(A, B, C)
        else:
            horizon = check_horizon(who, True, horizon)
        return square_root_doubling(A, B, horizon, who), square_root_doubling(A.T, C.T, horizon, who)


def _cayley(A, B, C):
    """The Cayley transform (module docstring) with a = the geometric mean of |eig A| (clamped away
    from 0): a discrete system with the same Gramians."""
    ev = np.abs(np.linalg.eigvals(A))
    a = float(np.exp(np.mean(np.log(np.maximum(ev, 1e-300))))) if ev.size else 1.0
    a = max(a, 1e-12 * max(float(ev.max(initial=0.0)), 1.0))
    M = a * np.eye(A.shape[-1]) - A
    Ad = np.linalg.solve(M, a * np.eye(A.shape[-1]) + A)
    s = math.sqrt(2 * a)
    return Ad, s * np.linalg.solve(M, B), s * np.linalg.solve(M.T, C.T).T


def _compress(F: np.ndarray) -> np.ndarray:
    """A factor of F F^T with at most n = F.shape[0] columns: R^T from the QR of F^T (backward stable)."""
    if F.shape[1] <= F.shape[0]:
        return F
    return np.linalg.qr(F.T, mode="r").T


def square_root_doubling(A: np.ndarray, B: np.ndarray, horizon, who: str) -> np.ndarray:
    """A factor F (n, <= n) of sum_{k < L} A^k B B^T A^kT (L = horizon, or infinity: until the added
    terms fall below eps of what is there), by doubling (module docstring)."""
    F, Ak = B.astype(np.float64), A.astype(np.float64)
    if horizon is not None:
        k = 1
        for bit in bin(int(horizon))[3:]:
            F, Ak, k = _compress(np.concatenate([F, Ak @ F], 1)), Ak @ Ak, 2 * k
            if bit == "1":
                F, k = _compress(np.concatenate([F, Ak @ B], 1)), k + 1
                Ak = Ak @ A
            _finite(who, F, horizon)
        return F
    for _ in range(MAX_DOUBLINGS):
        AF = Ak @ F
        _finite(who, AF, None)
        if np.linalg.norm(AF) <= _EPS * np.linalg.norm(F):
            return F
        F, Ak = _compress(np.concatenate([F, AF], 1)), Ak @ Ak
    raise ValueError(f"{who}: the Gramian did not converge in 2^{MAX_DOUBLINGS} steps: the system is unstable or "
                     "marginally stable; give a finite horizon")


def _finite(who: str, F: np.ndarray, horizon) -> None:
    if not np.all(np.isfinite(F)):
        raise ValueError(f"{who}: the Gramian overflows float64 (horizon={horizon}): the system grows too fast; "
                         "give a shorter horizon")
