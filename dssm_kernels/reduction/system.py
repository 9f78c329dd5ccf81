"""Diagonal systems in float64: SISO per channel (DiagonalSystem, S4D / DSS) and MIMO (MimoSystem, S5 / LRU).

A system is N complex modes lam (continuous-time, as layers store them), input and output vectors and a
feedthrough. It stands for the real system of size 2N (the conjugate-augmented one):

    continuous (dt None):  x' = diag(lam) x + B u,   y = 2 Re(C x) + D u,
        G(s) = D + sum_n C_n B_n^T / (s - lam_n) + conj(C_n B_n^T) / (s - conj(lam_n));
    discrete (dt > 0):     x_t = dA x_{t-1} + dB u_t,   y_t = 2 Re(C x_t) + D u_t,
        dA = exp(dt lam), dB = (dA - 1) / lam * B                      (disc="zoh")
        dA = (1 + dt lam/2) / (1 - dt lam/2), dB = dt B / (1 - dt lam/2)   (disc="bilinear"),
        kernel K[l] = 2 Re(sum_n C_n dB_n^T dA_n^l) + D [l = 0],   G(z) = sum_l K[l] z^-l,

where C_n is the output vector of mode n (a column of C (p, N)) and B_n its input vector (a row of
B (N, m)). DiagonalSystem is a batch of SISO systems (one per channel: B, C (..., N), D (...)); MimoSystem
has one shared state with B (..., N, m), C (..., p, N), D (..., p, m) (S5, LRU: m = p = H). Why two types:
an S4D layer's channels are independent systems, each reduced (and allocated states) on its own, while
an S5 layer is one system whose every mode feeds every channel; a generalised DiagonalSystem would make
B (H, N) ambiguous between the two. Everything downstream works on one representation that covers both:

The *standard pole-residue form* (`std`, StdForm): poles p (..., N), input vectors b (..., N, m), output
vectors c (..., p, N), feedthrough d (..., p, m), with
    G(x) = d + sum_n c_n b_n^T / (x - p_n) + conj(c_n b_n^T) / (x - conj p_n),   x = s or z
(a SISO system has m = p = 1). For a discrete system the layer's y_t reads x_t after the update, so its
standard realisation is s_{t+1} = dA s_t + dB u_t, y_t = (C dA) s_t + (D + 2 Re C dB) u_t: poles dA,
b = dB, c = C dA, d = K[0]. Keeping d fixed keeps K[0] exact in every truncation.

A mode whose standard pole is real (Im lam = 0, or dt Im lam = pi) is a real pole: its conjugate twin is
itself and it contributes 2 Re(c b^T) / (x - p): one real state (two for a MIMO mode whose residue
2 Re(c b^T) has rank 2).
"""
from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from dssm_kernels._validate import check_int

DISCRETISATIONS = ("zoh", "bilinear")
# Inert padding mode: Re lam < 0 as S4D requires, B = 1 and C = 0 so the mode adds nothing to the
# transfer function yet still receives gradient through C when the reduced layer is retrained.
PAD_LAM = -0.5 + 0.0j
# A standard pole counts as real when its imaginary part is below this fraction of its modulus
# (a discrete pole from lam with dt Im lam = pi is real only up to rounding).
REAL_POLE_RTOL = 64 * np.finfo(np.float64).eps
KERNEL_CHUNK = 512                 # lags of kernel() computed at once ...
KERNEL_CHUNK_ELEMENTS = 1 << 22    # ... or fewer, so that the powers dA^l held at once stay <= 64 MiB
MAX_KERNEL_SAMPLES = 1 << 28       # kernel()'s output limit (float64: 2 GiB)
TINY_POLE = 1e-200                 # from_modal: a discrete pole closer to 0 has no continuous mode


def as_array(who: str, name: str, x, *, complex_: bool) -> np.ndarray:
    """x (torch, numpy or a number) as a finite float64 / complex128 array; TypeError / ValueError naming it."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().resolve_conj().numpy()
    if isinstance(x, numbers.Number):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{who}: {name} must be a torch.Tensor, numpy array or number, got {type(x).__name__}")
    if x.dtype.kind not in "iufc":    # bools too: True is not a mode, a gain or a step
        raise TypeError(f"{who}: {name} must be numeric, got dtype {x.dtype}")
    if not complex_ and x.dtype.kind == "c":
        raise TypeError(f"{who}: {name} must be real, got dtype {x.dtype}")
    x = x.astype(np.complex128 if complex_ else np.float64)
    if not np.all(np.isfinite(x)):
        n_bad = int(np.sum(~np.isfinite(x)))
        raise ValueError(f"{who}: {name} must be finite, got {n_bad} non-finite value(s)")
    return x


def phi1(x):
    """expm1(x) / x, exactly 1 at x = 0 (the ZOH input factor: dB = dt phi1(dt lam) B)."""
    x = np.asarray(x, dtype=np.complex128)
    zero = x == 0
    safe = np.where(zero, 1.0, x)
    return np.where(zero, 1.0, np.expm1(safe) / safe)   # complex expm1 is accurate to ulps near 0


def discretize(lam, dt, disc: str):
    """(dA, input factor f) with dB = f B, per mode (..., N): ZOH f = dt phi1(dt lam), bilinear
    f = dt / (1 - dt lam / 2). dt: (...) per system."""
    dte = np.asarray(dt, dtype=np.float64)[..., None]
    dtl = dte * lam
    if disc == "zoh":
        return np.exp(dtl), dte * phi1(dtl)
    den = 1 - dtl / 2
    return (1 + dtl / 2) / den, dte / den


def continuous_modes(p, dt, disc: str):
    """(lam, f): the continuous modes whose discretisation has poles p (..., N), and the input factor f
    of discretize (dB = f B). Inverse of discretize: ZOH lam = log(p) / dt, bilinear (2/dt)(p-1)/(p+1)."""
    dte = np.asarray(dt, dtype=np.float64)[..., None]
    if disc == "zoh":
        lam = np.log(p) / dte
        return lam, dte * phi1(lam * dte)
    lam = (2 / dte) * (p - 1) / (p + 1)
    return lam, dte / (1 - dte * lam / 2)


@dataclass(frozen=True)
class StdForm:
    """G(x) = d + sum_n c_n b_n^T / (x - p_n) + conj(c_n b_n^T) / (x - conj p_n), one system or a batch.

    p: complex (..., N);  b: complex (..., N, m) (row n: mode n's input vector);  c: complex (..., p, N)
    (column n: its output vector);  d: real (..., p, m);  discrete: x = z (poles dA) or x = s.
    """
    p: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray
    discrete: bool

    @property
    def n_modes(self) -> int:
        return self.p.shape[-1]

    @property
    def r(self) -> np.ndarray:
        """The scalar residues c_n b_n (..., N) of a SISO form (ValueError for a MIMO one)."""
        if self.b.shape[-1] != 1 or self.c.shape[-2] != 1:
            raise ValueError(f"StdForm.r: scalar residues need one input and one output, got "
                             f"{self.c.shape[-2]} x {self.b.shape[-1]}: use residues()")
        return self.c[..., 0, :] * self.b[..., 0]

    def residues(self) -> np.ndarray:
        """c_n b_n^T per mode: complex (..., N, p, m)."""
        return np.einsum("...in,...nj->...nij", self.c, self.b)

    def real_modes(self) -> np.ndarray:
        """Boolean (..., N): the modes whose pole is real (its twin is itself)."""
        return np.abs(self.p.imag) <= REAL_POLE_RTOL * np.abs(self.p)

    def stable(self) -> np.ndarray:
        """Boolean (..., N): Re p < 0 (continuous) or |p| < 1 (discrete)."""
        return np.abs(self.p) < 1 if self.discrete else self.p.real < 0

    def mode_orders(self) -> np.ndarray:
        """int (..., N): the real states each mode stands for: 2 for a conjugate pair, the rank of the
        real residue 2 Re(c b^T) for a real pole (1 for a SISO one), 0 for a mode with residue 0."""
        R = self.residues()
        scale = np.abs(R).max(axis=(-2, -1))
        real = self.real_modes()
        rank_re = np.zeros(real.shape, int)
        if np.any(real):
            sv = np.linalg.svd(R.real, compute_uv=False)          # (..., N, min(p, m))
            tol = 1e3 * np.finfo(np.float64).eps * np.maximum(sv[..., :1], 1e-300)
            rank_re = np.sum(sv > tol, -1)
        return np.where(scale == 0, 0, np.where(real, rank_re, 2))

    def augmented(self):
        """(x, g, h): the conjugate-augmented poles x = [p, conj p] (..., 2N), input rows g = [b; conj b]
        (..., 2N, m) and conjugated output vectors h = conj([c, conj c])^T (..., 2N, p): the realisation
        A = diag(x), B = g, C = h^H, whose Gramians gramians.py builds from (x, g) and (conj x, h)."""
        x = np.concatenate([self.p, np.conj(self.p)], -1)
        g = np.concatenate([self.b, np.conj(self.b)], -2)
        ct = np.swapaxes(self.c, -1, -2)
        h = np.conj(np.concatenate([ct, np.conj(ct)], -2))
        return x, g, h

    def response(self, x) -> np.ndarray:
        """G at the points x (complex (K,)): complex (..., K, p, m)."""
        x = np.asarray(x, dtype=np.complex128)
        w = 1 / (x[:, None] - self.p[..., None, :])                 # (..., K, N)
        wc = 1 / (x[:, None] - np.conj(self.p)[..., None, :])
        # (C diag(w)) B per point as batched matrix products (BLAS), not one einsum
        G = (self.c[..., None, :, :] * w[..., :, None, :]) @ self.b[..., None, :, :]
        G = G + (np.conj(self.c)[..., None, :, :] * wc[..., :, None, :]) @ np.conj(self.b)[..., None, :, :]
        return G + self.d[..., None, :, :]

    def realization(self, real: bool = True):
        """Dense (A, B, C, D) with 2N states, of one (unbatched) system.

        real=False: the conjugate-augmented complex one, A = diag(p, conj p), B = [b; conj b],
        C = [c, conj c]. real=True: the real one, T x_aug with the unitary
        T = [[I, I], [-iI, iI]] / sqrt(2), states sqrt(2) [Re x; Im x].
        """
        if self.p.ndim != 1:
            raise ValueError(f"StdForm.realization: needs one system, got batch shape {self.p.shape[:-1]}")
        A = np.diag(np.concatenate([self.p, self.p.conj()]))
        B = np.concatenate([self.b, self.b.conj()], 0)
        C = np.concatenate([self.c, self.c.conj()], 1)
        D = np.array(self.d, dtype=np.float64)
        if not real:
            return A, B, C, D
        T = augmented_to_real(self.p.shape[-1])
        return (T @ A @ T.conj().T).real, (T @ B).real, (C @ T.conj().T).real, D

    def __getitem__(self, i) -> "StdForm":
        """One system (or sub-batch) of a batch: index the batch dimensions."""
        if not isinstance(i, tuple):
            i = (i,)
        return StdForm(self.p[i], self.b[i], self.c[i], self.d[i], self.discrete)


def augmented_to_real(N: int) -> np.ndarray:
    """The unitary T (2N, 2N) with T [x; conj x] = sqrt(2) [Re x; Im x]."""
    eye = np.eye(N)
    return np.block([[eye, eye], [-1j * eye, 1j * eye]]) / np.sqrt(2)


def pad_std(s: StdForm, n: int, pad_pole) -> StdForm:
    """s with inert modes appended up to n: pole pad_pole (broadcast over the batch), b = 1, c = 0."""
    extra = n - s.n_modes
    if extra <= 0:
        return s
    batch = s.p.shape[:-1]
    m, p = s.b.shape[-1], s.c.shape[-2]
    pp = np.broadcast_to(np.asarray(pad_pole, np.complex128)[..., None], batch + (extra,))
    return StdForm(np.concatenate([s.p, pp], -1), np.concatenate([s.b, np.ones(batch + (extra, m), complex)], -2),
                   np.concatenate([s.c, np.zeros(batch + (p, extra), complex)], -1), s.d, s.discrete)


class _ModalSystem:
    """What DiagonalSystem and MimoSystem share. Subclasses hold lam (..., N), B, C, D, dt, disc and give
    their arrays in MIMO shapes (_mimo_arrays) and build themselves from them (_from_mimo)."""

    _reducible = True          # the reductors' protocol: flat(), n_states, std, from_modal, unstable_count()
    lam: np.ndarray
    dt: np.ndarray | None
    disc: str

    # --------------------------------------------------------------------- subclass interface
    def _mimo_arrays(self):
        """(B (..., N, m), C (..., p, N), D (..., p, m))."""
        raise NotImplementedError

    @classmethod
    def _from_mimo(cls, lam, B, C, D, dt, disc):
        raise NotImplementedError

    def _squeeze_io(self, a: np.ndarray) -> np.ndarray:
        """An (..., p, m, K) array in this system's own shape (SISO: (..., K))."""
        return a

    # ----------------------------------------------------------------------------------- basics
    @property
    def batch_shape(self) -> tuple:
        return self.lam.shape[:-1]

    @property
    def n_modes(self) -> int:
        return self.lam.shape[-1]

    @property
    def discrete(self) -> bool:
        return self.dt is not None

    @property
    def n_states(self) -> int:
        """The real order 2N of each system."""
        return 2 * self.n_modes

    def __getitem__(self, idx):
        """Index the batch dimensions (never the modes, inputs or outputs): a system of the same class."""
        if not isinstance(idx, tuple):
            idx = (idx,)
        if len(idx) > len(self.batch_shape):
            raise IndexError(f"{type(self).__name__}: {len(idx)} indices for batch shape {self.batch_shape}")
        m = idx + (slice(None),)
        return type(self)(self.lam[m], self.B[m], self.C[m], self.D[idx], None if self.dt is None else self.dt[idx],
                          self.disc)

    @property
    def modal_class(self):
        """The class reduced systems of this one come back as."""
        return type(self)

    def unstable_count(self) -> int:
        """Modes with Re lam >= 0 (discrete: |dA| >= 1) over the batch."""
        return int(np.sum(~self.std.stable()))

    @property
    def io_shape(self) -> tuple:
        """(outputs p, inputs m)."""
        B, C, _ = self._mimo_arrays()
        return C.shape[-2], B.shape[-1]

    def flat(self) -> list:
        """The unbatched systems in C order of the batch."""
        return [self[np.unravel_index(i, self.batch_shape)] for i in range(int(np.prod(self.batch_shape)))]

    def _check_compatible(self, other, what: str):
        if type(other) is not type(self):
            raise TypeError(f"{type(self).__name__}: {what} needs another {type(self).__name__}, got "
                            f"{type(other).__name__}")
        if (self.dt is None) != (other.dt is None) or (self.dt is not None and (
                self.disc != other.disc or not np.array_equal(*np.broadcast_arrays(self.dt, other.dt)))):
            raise ValueError(f"{type(self).__name__}: {what} needs both systems continuous, "
                             "or discrete with one dt and disc")

    def __sub__(self, other):
        """G - G_other as one system (modes concatenated, other's C negated): for error norms."""
        if not isinstance(other, _ModalSystem):
            return NotImplemented
        self._check_compatible(other, "subtraction")
        if self.io_shape != other.io_shape:
            raise ValueError(f"{type(self).__name__}: subtraction needs equal (outputs, inputs), got {self.io_shape} "
                             f"and {other.io_shape}")
        try:
            batch = np.broadcast_shapes(self.batch_shape, other.batch_shape)
        except ValueError:
            raise ValueError(f"{type(self).__name__}: subtraction needs broadcastable batch shapes, got "
                             f"{self.batch_shape} and {other.batch_shape}") from None
        (B1, C1, D1), (B2, C2, D2) = self._mimo_arrays(), other._mimo_arrays()
        cat = lambda a, b, ax: np.concatenate([np.broadcast_to(a, batch + a.shape[-2:]),  # noqa: E731
                                               np.broadcast_to(b, batch + b.shape[-2:])], ax)
        lam = np.concatenate([np.broadcast_to(self.lam, batch + self.lam.shape[-1:]),
                              np.broadcast_to(other.lam, batch + other.lam.shape[-1:])], -1)
        return self._from_mimo(lam, cat(B1, B2, -2), cat(C1, -C2, -1), D1 - D2,
                               None if self.dt is None else np.broadcast_to(self.dt, batch), self.disc)

    # ------------------------------------------------------------------------- discretisation
    def discretized(self):
        """(dA (..., N), dB): dB in this system's shape of B. ValueError for a continuous system."""
        if self.dt is None:
            raise ValueError(f"{type(self).__name__}: a continuous-time system has no (dA, dB); give dt")
        dA, f = discretize(self.lam, self.dt, self.disc)
        B = self.B
        return dA, (f * B if B.ndim == self.lam.ndim else f[..., None] * B)

    @property
    def std(self) -> StdForm:
        B, C, D = self._mimo_arrays()
        if self.dt is None:
            return StdForm(self.lam, B, C, D, False)
        dA, f = discretize(self.lam, self.dt, self.disc)
        dB = f[..., None] * B
        return StdForm(dA, dB, C * dA[..., None, :], D + 2 * np.einsum("...in,...nj->...ij", C, dB).real, True)

    @classmethod
    def from_modal(cls, p, b, c, d, dt=None, disc: str = "zoh"):
        """The system whose standard form has poles p (..., N), input vectors b (..., N, m), output vectors
        c (..., p, N) and feedthrough d (..., p, m) (StdForm). Continuous: lam = p. Discrete: lam from
        dA = p (continuous_modes), dB = b, C = c / p, D = d - 2 Re(C dB). Each mode's input and output
        vectors are rescaled to equal norms (a diagonal similarity: the transfer function is unchanged);
        a mode with residue 0 gets B = 1, C = 0 (inert padding). A real pole with real-system residue
        R / (x - p) is passed with c b^T = R / 2 (its twin adds the rest)."""
        who = f"{cls.__name__}.from_modal"
        p = as_array(who, "p", p, complex_=True)
        b = as_array(who, "b", b, complex_=True)
        c = as_array(who, "c", c, complex_=True)
        d = as_array(who, "d", d, complex_=False)
        if b.shape[:-1] != p.shape or c.shape[:-2] != p.shape[:-1] or c.shape[-1] != p.shape[-1] \
                or d.shape != p.shape[:-1] + (c.shape[-2], b.shape[-1]):
            raise ValueError(f"{who}: need p (..., N), b (..., N, m), c (..., p, N), d (..., p, m), got {p.shape}, "
                             f"{b.shape}, {c.shape}, {d.shape}")
        if disc not in DISCRETISATIONS:
            raise ValueError(f"{who}: disc must be one of {DISCRETISATIONS}, got {disc!r}")
        if dt is None:
            lam, B, C, D = p, b, c, d
        else:
            dt = as_array(who, "dt", dt, complex_=False)
            if np.any(dt <= 0):
                raise ValueError(f"{who}: dt must be > 0 (or None for continuous time), got min {dt.min()}")
            tiny = np.abs(p) < TINY_POLE
            if np.any(tiny):
                warnings.warn(f"{who}: a discrete pole at 0 has no continuous mode; moved to {TINY_POLE}",
                              RuntimeWarning, stacklevel=2)
                p = np.where(tiny, TINY_POLE, p)
            C = c / p[..., None, :]
            D = d - 2 * np.einsum("...in,...nj->...ij", C, b).real
            lam, f = continuous_modes(p, dt, disc)
            B = b / f[..., None]
        nb, nc = np.linalg.norm(B, axis=-1), np.linalg.norm(C, axis=-2)
        live = (nb > 0) & (nc > 0)
        s = np.sqrt(np.where(live, nc, 1.0) / np.where(live, nb, 1.0))
        # and a unit phase per mode that makes the largest entry of B_n real positive (SISO: B > 0)
        big = np.take_along_axis(B, np.argmax(np.abs(B), -1)[..., None], -1)[..., 0]
        ph = np.where(np.abs(big) > 0, np.conj(big) / np.where(np.abs(big) > 0, np.abs(big), 1.0), 1.0)
        s = s * ph
        B = np.where(live[..., None], B * s[..., None], 1.0 / np.sqrt(B.shape[-1]))
        C = np.where(live[..., None, :], C / s[..., None, :], 0.0)
        return cls._from_mimo(lam, B, C, D, dt, disc)

    # ----------------------------------------------------------------------------- responses
    def kernel(self, L: int) -> np.ndarray:
        """Discrete impulse response K: K[l] = 2 Re(sum_n C_n dB_n^T dA_n^l) + D [l = 0]; (..., L) for a
        SISO system, (..., p, m, L) for a MIMO one. Built a chunk of lags at a time (no (..., N, L)
        intermediate); at most MAX_KERNEL_SAMPLES samples in all (norms over longer horizons:
        reduction.h2_norm, in closed form)."""
        name = type(self).__name__
        L = check_int(f"{name}.kernel", "L", L)
        B, C, D = self._mimo_arrays()
        p, m = C.shape[-2], B.shape[-1]
        n_sys = int(np.prod(self.batch_shape)) * p * m
        if n_sys * L > MAX_KERNEL_SAMPLES:
            raise ValueError(f"{name}.kernel: L={L} for {n_sys} system(s) is {n_sys * L:.3g} samples, more "
                             f"than {MAX_KERNEL_SAMPLES:.3g} (2 GiB); for the norm of a long kernel use "
                             "reduction.h2_norm(sys, horizon=L)")
        if self.dt is None:
            raise ValueError(f"{name}: a continuous-time system has no (dA, dB); give dt")
        dA, f = discretize(self.lam, self.dt, self.disc)
        dB = f[..., None] * B
        K = np.empty(self.batch_shape + (p, m, int(L)))
        chunk = max(16, min(KERNEL_CHUNK, KERNEL_CHUNK_ELEMENTS // max(1, n_sys * self.n_modes)))
        # dA^l as exp(l log dA): a complex power costs ~10x more, and its error is the same ~eps (1 + |l log dA|)
        zero = dA == 0
        with np.errstate(divide="ignore"):
            log_dA = np.log(np.where(zero, 1.0, dA))
        for l0 in range(0, L, chunk):
            ls = np.arange(l0, min(L, l0 + chunk))
            pw = np.where(zero[..., None], (ls == 0).astype(float), np.exp(log_dA[..., None] * ls))
            K[..., l0:l0 + pw.shape[-1]] = 2 * np.einsum("...in,...nl,...nj->...ijl", C, pw, dB).real
        K[..., 0] += D
        return self._squeeze_io(K)

    def impulse_response(self, t) -> np.ndarray:
        """Continuous impulse response without the D delta: h(t) = 2 Re sum_n C_n B_n^T exp(lam_n t);
        (..., len(t)) for a SISO system, (..., p, m, len(t)) for a MIMO one."""
        B, C, _ = self._mimo_arrays()
        t = np.asarray(t, dtype=np.float64)
        h = 2 * np.einsum("...in,...nt,...nj->...ijt", C, np.exp(self.lam[..., None] * t), B).real
        return self._squeeze_io(h)

    def frequency_response(self, w) -> np.ndarray:
        """G on the imaginary axis (s = i w) or the unit circle (z = exp(i w)): complex (..., len(w)) for a
        SISO system, (..., p, m, len(w)) for a MIMO one."""
        s = self.std
        w = np.asarray(w, dtype=np.float64)
        G = s.response(np.exp(1j * w) if s.discrete else 1j * w)      # (..., K, p, m)
        return self._squeeze_io(np.moveaxis(G, -3, -1))

    def realization(self, real: bool = True):
        """Dense (A, B, C, D) of the standard form, 2N states (one system only); see StdForm.realization."""
        if self.batch_shape:
            raise ValueError(f"{type(self).__name__}.realization: needs one system, got batch shape "
                             f"{self.batch_shape}")
        return self.std.realization(real)


class DiagonalSystem(_ModalSystem):
    """A (batch of) SISO diagonal system(s); see the module docstring for the conventions.

    Args:
        lam, B, C: complex (..., N), torch or numpy (broadcast together; lam continuous-time modes).
        D: real (...,) or None (0).   dt: None (continuous) or > 0, a number or real (...,) per system.
        disc: "zoh" | "bilinear" (used only when dt is given).
    All arrays are held as numpy float64 / complex128.
    """

    def __init__(self, lam, B, C, D=None, dt=None, disc: str = "zoh"):
        who = "DiagonalSystem"
        lam = as_array(who, "lam", lam, complex_=True)
        B = as_array(who, "B", B, complex_=True)
        C = as_array(who, "C", C, complex_=True)
        if lam.ndim < 1 or lam.shape[-1] < 1:
            raise ValueError(f"{who}: lam must have a last (mode) dimension N >= 1, got shape {lam.shape}")
        try:
            shape = np.broadcast_shapes(lam.shape, B.shape, C.shape)
        except ValueError:
            raise ValueError(f"{who}: lam, B, C must broadcast to one shape (..., N), got "
                             f"{lam.shape}, {B.shape}, {C.shape}") from None
        batch = shape[:-1]
        D = np.zeros(batch) if D is None else as_array(who, "D", D, complex_=False)
        dt = _check_dt_disc(who, dt, disc)
        try:
            batch = np.broadcast_shapes(batch, D.shape, () if dt is None else dt.shape)
        except ValueError:
            raise ValueError(f"{who}: D {D.shape} and dt {None if dt is None else dt.shape} must broadcast "
                             f"to the batch shape {batch} of lam, B, C") from None
        shape = batch + shape[-1:]
        self.lam, self.B, self.C = (np.broadcast_to(x, shape).copy() for x in (lam, B, C))
        self.D = np.broadcast_to(D, batch).copy()
        self.dt = None if dt is None else np.broadcast_to(dt, batch).copy()
        self.disc = disc

    def _mimo_arrays(self):
        return self.B[..., None], self.C[..., None, :], self.D[..., None, None]

    @classmethod
    def _from_mimo(cls, lam, B, C, D, dt, disc):
        return cls(lam, B[..., 0], C[..., 0, :], D[..., 0, 0], dt, disc)

    def _squeeze_io(self, a):
        return a[..., 0, 0, :]

    def __repr__(self) -> str:
        kind = "continuous" if self.dt is None else f"discrete ({self.disc})"
        return (f"DiagonalSystem({kind}, batch={self.batch_shape}, N={self.n_modes} modes, "
                f"real order {2 * self.n_modes})")

    @staticmethod
    def stack(systems: list, batch_shape: tuple | None = None) -> "DiagonalSystem":
        """Stack unbatched systems of equal N, dt-ness and disc into one of the given batch shape."""
        if not isinstance(systems, (list, tuple)) or not systems:
            raise ValueError("DiagonalSystem.stack: systems must be a non-empty list")
        others = sorted({type(s).__name__ for s in systems if not isinstance(s, DiagonalSystem)})
        if others:
            raise TypeError(f"DiagonalSystem.stack: systems must all be DiagonalSystems, got {others}")
        kinds = {(s.n_modes, s.dt is None, s.disc, s.batch_shape) for s in systems}
        if len(kinds) > 1:
            raise ValueError(f"DiagonalSystem.stack: systems differ in (N, continuous, disc, batch): {sorted(kinds)}")
        batch = tuple(batch_shape) if batch_shape is not None else (len(systems),)
        if int(np.prod(batch)) != len(systems):
            raise ValueError(f"DiagonalSystem.stack: batch_shape {batch} holds {int(np.prod(batch))} systems, "
                             f"got {len(systems)}")
        st = lambda xs: np.stack(xs).reshape(batch + xs[0].shape)  # noqa: E731
        s0 = systems[0]
        return DiagonalSystem(st([s.lam for s in systems]), st([s.B for s in systems]), st([s.C for s in systems]),
                              st([s.D for s in systems]), None if s0.dt is None else st([s.dt for s in systems]),
                              s0.disc)

    @classmethod
    def from_std(cls, p, r, d, dt=None, disc: str = "zoh") -> "DiagonalSystem":
        """The SISO system whose standard form has poles p, residues r = c b (complex (..., N)) and
        feedthrough d (...): from_modal with b = 1, c = r (then balanced: |B| = |C|). A real pole p with
        real-system term rho / (x - p) is passed as r = rho / 2 (its twin adds the rest)."""
        p = as_array("DiagonalSystem.from_std", "p", p, complex_=True)
        r = as_array("DiagonalSystem.from_std", "r", r, complex_=True)
        d = as_array("DiagonalSystem.from_std", "d", d, complex_=False)
        try:
            shape = np.broadcast_shapes(p.shape, r.shape)
        except ValueError:
            raise ValueError(f"DiagonalSystem.from_std: p and r must broadcast to one shape (..., N), got {p.shape} "
                             f"and {r.shape}") from None
        p, r = np.broadcast_to(p, shape), np.broadcast_to(r, shape)
        d = np.broadcast_to(d, shape[:-1])
        _check_dt_disc("DiagonalSystem.from_std", dt, disc)
        return cls.from_modal(p, np.ones(shape + (1,), complex), r[..., None, :], d[..., None, None], dt, disc)


class MimoSystem(_ModalSystem):
    """A diagonal system with one shared state of N complex modes, m inputs and p outputs (an S5 or LRU
    layer), or a batch of them; see the module docstring for the conventions.

    Args:
        lam: complex (..., N) continuous-time modes.   B: complex (..., N, m).   C: complex (..., p, N).
        D: real (..., p, m) or None (0).   dt: None (continuous) or > 0, a number or real (...) per system.
        disc: "zoh" | "bilinear" (used only when dt is given).
    """

    def __init__(self, lam, B, C, D=None, dt=None, disc: str = "zoh"):
        who = "MimoSystem"
        lam = as_array(who, "lam", lam, complex_=True)
        B = as_array(who, "B", B, complex_=True)
        C = as_array(who, "C", C, complex_=True)
        if lam.ndim < 1 or lam.shape[-1] < 1:
            raise ValueError(f"{who}: lam must have a last (mode) dimension N >= 1, got shape {lam.shape}")
        N = lam.shape[-1]
        if B.ndim < 2 or B.shape[-2] != N or B.shape[-1] < 1:
            raise ValueError(f"{who}: B must be (..., N={N}, m) with m >= 1 inputs, got shape {B.shape}")
        if C.ndim < 2 or C.shape[-1] != N or C.shape[-2] < 1:
            raise ValueError(f"{who}: C must be (..., p, N={N}) with p >= 1 outputs, got shape {C.shape}")
        p, m = C.shape[-2], B.shape[-1]
        D = np.zeros((p, m)) if D is None else as_array(who, "D", D, complex_=False)
        if D.ndim < 2 or D.shape[-2:] != (p, m):
            raise ValueError(f"{who}: D must be (..., p={p}, m={m}) (or None), got shape {D.shape}")
        dt = _check_dt_disc(who, dt, disc)
        try:
            batch = np.broadcast_shapes(lam.shape[:-1], B.shape[:-2], C.shape[:-2], D.shape[:-2],
                                        () if dt is None else dt.shape)
        except ValueError:
            raise ValueError(f"{who}: the batch shapes of lam {lam.shape}, B {B.shape}, C {C.shape}, D {D.shape} and "
                             f"dt {None if dt is None else dt.shape} must broadcast") from None
        self.lam = np.broadcast_to(lam, batch + (N,)).copy()
        self.B = np.broadcast_to(B, batch + (N, m)).copy()
        self.C = np.broadcast_to(C, batch + (p, N)).copy()
        self.D = np.broadcast_to(D, batch + (p, m)).copy()
        self.dt = None if dt is None else np.broadcast_to(dt, batch).copy()
        self.disc = disc

    def _mimo_arrays(self):
        return self.B, self.C, self.D

    @classmethod
    def _from_mimo(cls, lam, B, C, D, dt, disc):
        return cls(lam, B, C, D, dt, disc)

    def __repr__(self) -> str:
        kind = "continuous" if self.dt is None else f"discrete ({self.disc})"
        p, m = self.io_shape
        return (f"MimoSystem({kind}, batch={self.batch_shape}, N={self.n_modes} modes, {m} inputs, {p} outputs, "
                f"real order {2 * self.n_modes})")



def _check_dt_disc(who: str, dt, disc):
    if disc not in DISCRETISATIONS:
        raise ValueError(f"{who}: disc must be one of {DISCRETISATIONS}, got {disc!r}")
    if dt is None:
        return None
    dt = as_array(who, "dt", dt, complex_=False)
    if np.any(dt <= 0):
        raise ValueError(f"{who}: dt must be > 0 (or None for continuous time), got min {dt.min()}")
    return dt


def pad_modes(lam, B, C, n: int):
    """Append inert modes (lam = PAD_LAM, B = 1, C = 0) along the last axis up to n modes (SISO arrays)."""
    extra = n - lam.shape[-1]
    if extra <= 0:
        return lam, B, C
    shp = lam.shape[:-1] + (extra,)
    return (np.concatenate([lam, np.full(shp, PAD_LAM)], -1), np.concatenate([B, np.ones(shp, complex)], -1),
            np.concatenate([C, np.zeros(shp, complex)], -1))
