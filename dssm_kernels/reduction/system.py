"""DiagonalSystem: one SISO channel of a diagonal SSM (or a batch of them), in float64.

A system is N complex modes lam (continuous-time, as layers store them), input and output vectors
B, C and a feedthrough D. It stands for the real system of size 2N (the conjugate-augmented one):

    continuous (dt None):  x' = diag(lam) x + B u,   y = 2 Re(C x) + D u,
        G(s) = D + sum_n C_n B_n / (s - lam_n) + conj(C_n B_n) / (s - conj(lam_n));
    discrete (dt > 0):     x_t = dA x_{t-1} + dB u_t,   y_t = 2 Re(C x_t) + D u_t,
        dA = exp(dt lam), dB = (dA - 1) / lam * B                      (disc="zoh")
        dA = (1 + dt lam/2) / (1 - dt lam/2), dB = dt B / (1 - dt lam/2)   (disc="bilinear"),
        kernel K[l] = 2 Re(sum_n C_n dB_n dA_n^l) + D [l = 0],   G(z) = sum_l K[l] z^-l.

Everything downstream (Gramians, norms, reductors) works on the *standard pole-residue form*
(`std`): poles p, residues r = c b and feedthrough d with G = d + sum_n r_n/(x - p_n) + conj(r_n)/(x - conj p_n),
x = s or z. For a discrete system the layer's y_t reads x_t after the update, so its standard
realisation is s_{t+1} = dA s_t + dB u_t, y_t = (C dA) s_t + (D + 2 Re sum C dB) u_t: poles dA,
b = dB, c = C dA, d = K[0]. Keeping d fixed keeps K[0] exact in every reduction.

A mode with real standard pole (Im lam = 0, or dt Im lam = pi) is a real pole: its conjugate twin
is itself, and it contributes 2 Re(r) / (x - p), one real state.
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
KERNEL_CHUNK = 512                 # lags of DiagonalSystem.kernel computed at once ...
KERNEL_CHUNK_ELEMENTS = 1 << 22    # ... or fewer, so that the powers dA^l held at once stay <= 64 MiB
MAX_KERNEL_SAMPLES = 1 << 28       # DiagonalSystem.kernel's output limit (float64: 2 GiB)


def _as_array(name: str, x, *, complex_: bool) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().resolve_conj().numpy()
    if isinstance(x, numbers.Number):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"DiagonalSystem: {name} must be a torch.Tensor, numpy array or number, got {type(x).__name__}")
    if x.dtype.kind not in "iufc":    # bools too: True is not a mode, a gain or a step
        raise TypeError(f"DiagonalSystem: {name} must be numeric, got dtype {x.dtype}")
    if not complex_ and x.dtype.kind == "c":
        raise TypeError(f"DiagonalSystem: {name} must be real, got dtype {x.dtype}")
    x = x.astype(np.complex128 if complex_ else np.float64)
    if not np.all(np.isfinite(x)):
        n_bad = int(np.sum(~np.isfinite(x)))
        raise ValueError(f"DiagonalSystem: {name} must be finite, got {n_bad} non-finite value(s)")
    return x


def phi1(x):
    """expm1(x) / x, exactly 1 at x = 0 (the ZOH input factor: dB = dt phi1(dt lam) B)."""
    x = np.asarray(x, dtype=np.complex128)
    zero = x == 0
    safe = np.where(zero, 1.0, x)
    return np.where(zero, 1.0, np.expm1(safe) / safe)   # complex expm1 is accurate to ulps near 0


@dataclass(frozen=True)
class StdForm:
    """G(x) = d + sum_n r_n / (x - p_n) + conj(r_n) / (x - conj p_n), with a factorisation r = c b.

    p, b, c: complex (..., N);  d: float (...,);  discrete: x = z (poles dA) or x = s.
    """
    p: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray
    discrete: bool

    @property
    def r(self) -> np.ndarray:
        return self.c * self.b

    def real_modes(self) -> np.ndarray:
        """Boolean (..., N): the modes whose pole is real (one real state, not two)."""
        return np.abs(self.p.imag) <= REAL_POLE_RTOL * np.abs(self.p)

    def stable(self) -> np.ndarray:
        """Boolean (..., N): Re p < 0 (continuous) or |p| < 1 (discrete)."""
        return np.abs(self.p) < 1 if self.discrete else self.p.real < 0

    def realization(self, real: bool = True):
        """Dense (A, B, C, D) with 2N states, of one (unbatched) system.

        real=False: the conjugate-augmented complex one, A = diag(p, conj p), B = [b; conj b],
        C = [c, conj c]. real=True: the real one, T x_aug with the unitary
        T = [[I, I], [-iI, iI]] / sqrt(2), states sqrt(2) [Re x; Im x].
        """
        A = np.diag(np.concatenate([self.p, self.p.conj()]))
        B = np.concatenate([self.b, self.b.conj()])[:, None]
        C = np.concatenate([self.c, self.c.conj()])[None, :]
        D = np.array([[float(self.d)]])
        if not real:
            return A, B, C, D
        T = augmented_to_real(self.p.shape[-1])
        return (T @ A @ T.conj().T).real, (T @ B).real, (C @ T.conj().T).real, D


class DiagonalSystem:
    """A (batch of) SISO diagonal system(s); see the module docstring for the conventions.

    Args:
        lam, B, C: complex (..., N), torch or numpy (broadcast together; lam continuous-time modes).
        D: real (...,) or None (0).   dt: None (continuous) or > 0, a number or real (...,) per system.
        disc: "zoh" | "bilinear" (used only when dt is given).
    All arrays are held as numpy float64 / complex128.
    """

    def __init__(self, lam, B, C, D=None, dt=None, disc: str = "zoh"):
        lam = _as_array("lam", lam, complex_=True)
        B = _as_array("B", B, complex_=True)
        C = _as_array("C", C, complex_=True)
        if lam.ndim < 1 or lam.shape[-1] < 1:
            raise ValueError(f"DiagonalSystem: lam must have a last (mode) dimension N >= 1, got shape {lam.shape}")
        try:
            shape = np.broadcast_shapes(lam.shape, B.shape, C.shape)
        except ValueError:
            raise ValueError(f"DiagonalSystem: lam, B, C must broadcast to one shape (..., N), got "
                             f"{lam.shape}, {B.shape}, {C.shape}") from None
        batch = shape[:-1]
        D = np.zeros(batch) if D is None else _as_array("D", D, complex_=False)
        if disc not in DISCRETISATIONS:
            raise ValueError(f"DiagonalSystem: disc must be one of {DISCRETISATIONS}, got {disc!r}")
        if dt is not None:
            dt = _as_array("dt", dt, complex_=False)
            if np.any(dt <= 0):
                raise ValueError(f"DiagonalSystem: dt must be > 0 (or None for continuous time), got min {dt.min()}")
        try:
            batch = np.broadcast_shapes(batch, D.shape, () if dt is None else dt.shape)
        except ValueError:
            raise ValueError(f"DiagonalSystem: D {D.shape} and dt {None if dt is None else dt.shape} must broadcast "
                             f"to the batch shape {batch} of lam, B, C") from None
        shape = batch + shape[-1:]
        self.lam, self.B, self.C = (np.broadcast_to(x, shape).copy() for x in (lam, B, C))
        self.D = np.broadcast_to(D, batch).copy()
        self.dt = None if dt is None else np.broadcast_to(dt, batch).copy()
        self.disc = disc

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

    def __repr__(self) -> str:
        kind = "continuous" if self.dt is None else f"discrete ({self.disc})"
        return (f"DiagonalSystem({kind}, batch={self.batch_shape}, N={self.n_modes} modes, "
                f"real order {2 * self.n_modes})")

    def __getitem__(self, idx) -> "DiagonalSystem":
        """Index the batch dimensions (never the modes)."""
        if not isinstance(idx, tuple):
            idx = (idx,)
        if len(idx) > len(self.batch_shape):
            raise IndexError(f"DiagonalSystem: {len(idx)} indices for batch shape {self.batch_shape}")
        m = idx + (slice(None),)
        return DiagonalSystem(self.lam[m], self.B[m], self.C[m], self.D[idx],
                              None if self.dt is None else self.dt[idx], self.disc)

    def flat(self) -> list["DiagonalSystem"]:
        """The unbatched systems in C order of the batch."""
        return [self[np.unravel_index(i, self.batch_shape)] for i in range(int(np.prod(self.batch_shape)))]

    @staticmethod
    def stack(systems: list["DiagonalSystem"], batch_shape: tuple | None = None) -> "DiagonalSystem":
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

    def __sub__(self, other: "DiagonalSystem") -> "DiagonalSystem":
        """G - G_other as one system (modes concatenated, other's C negated): for error norms."""
        if not isinstance(other, DiagonalSystem):
            return NotImplemented
        if (self.dt is None) != (other.dt is None) or (self.dt is not None and (
                self.disc != other.disc or not np.array_equal(*np.broadcast_arrays(self.dt, other.dt)))):
            raise ValueError("DiagonalSystem: subtraction needs both systems continuous, "
                             "or discrete with one dt and disc")
        try:
            batch = np.broadcast_shapes(self.batch_shape, other.batch_shape)
        except ValueError:
            raise ValueError(f"DiagonalSystem: subtraction needs broadcastable batch shapes, got {self.batch_shape} "
                             f"and {other.batch_shape}") from None
        cat = lambda a, b: np.concatenate([np.broadcast_to(a, batch + a.shape[-1:]),  # noqa: E731
                                           np.broadcast_to(b, batch + b.shape[-1:])], -1)
        return DiagonalSystem(cat(self.lam, other.lam), cat(self.B, other.B), cat(self.C, -other.C),
                              self.D - other.D, self.dt, self.disc)

    # ------------------------------------------------------------------------- discretisation
    def discretized(self):
        """(dA, dB): complex (..., N) of the discrete system. ValueError for a continuous one."""
        if self.dt is None:
            raise ValueError("DiagonalSystem: a continuous-time system has no (dA, dB); give dt")
        dtl = self.dt[..., None] * self.lam
        if self.disc == "zoh":
            return np.exp(dtl), self.dt[..., None] * phi1(dtl) * self.B
        den = 1 - dtl / 2
        return (1 + dtl / 2) / den, self.dt[..., None] * self.B / den

    @property
    def std(self) -> StdForm:
        if self.dt is None:
            return StdForm(self.lam, self.B, self.C, self.D, False)
        dA, dB = self.discretized()
        return StdForm(dA, dB, self.C * dA, self.D + 2 * np.sum(self.C * dB, -1).real, True)

    @classmethod
    def from_std(cls, p, r, d, dt=None, disc: str = "zoh") -> "DiagonalSystem":
        """The system whose standard form has poles p, residues r (complex (..., N)) and feedthrough d.

        Continuous: lam = p. Discrete: lam from dA = p (ZOH: log(p)/dt, bilinear: (2/dt)(p-1)/(p+1)),
        C dB = r / p, D = d - 2 Re sum r / p. C B is split with |B| = |C| (B = 1, C = 0 where it is 0).
        A real pole p with real-system term rho / (x - p) is passed as r = rho / 2 (its twin adds the rest).
        """
        p = _as_array("from_std: p", p, complex_=True)
        r = _as_array("from_std: r", r, complex_=True)
        d = _as_array("from_std: d", d, complex_=False)
        try:
            np.broadcast_shapes(p.shape, r.shape)
        except ValueError:
            raise ValueError(f"DiagonalSystem.from_std: p and r must broadcast to one shape (..., N), got {p.shape} "
                             f"and {r.shape}") from None
        if dt is not None:
            dt = _as_array("from_std: dt", dt, complex_=False)
            if np.any(dt <= 0):
                raise ValueError(f"DiagonalSystem.from_std: dt must be > 0 (or None for continuous time), got min "
                                 f"{dt.min()}")
        if disc not in DISCRETISATIONS:
            raise ValueError(f"DiagonalSystem.from_std: disc must be one of {DISCRETISATIONS}, got {disc!r}")
        if dt is None:
            lam, cb, D = p, r, d
        else:
            dt = np.asarray(dt, dtype=np.float64)
            dte = dt[..., None]
            tiny = np.abs(p) < 1e-200
            if np.any(tiny):
                warnings.warn("DiagonalSystem.from_std: a discrete pole at 0 has no continuous mode; moved to 1e-200",
                              RuntimeWarning, stacklevel=2)
                p = np.where(tiny, 1e-200, p)
            cdB = r / p
            D = d - 2 * np.sum(cdB, -1).real
            if disc == "zoh":
                lam = np.log(p) / dte
                cb = cdB / (dte * phi1(lam * dte))
            else:
                lam = (2 / dte) * (p - 1) / (p + 1)
                cb = cdB * (1 - dte * lam / 2) / dte
        mag = np.sqrt(np.abs(cb))
        B = np.where(mag > 0, mag, 1.0).astype(np.complex128)
        C = np.where(mag > 0, cb / np.where(mag > 0, mag, 1.0), 0.0)
        return cls(lam, B, C, D, dt, disc)

    # ----------------------------------------------------------------------------- responses
    def kernel(self, L: int) -> np.ndarray:
        """Discrete impulse response K (..., L): K[l] = 2 Re(sum_n C dB dA^l) + D [l = 0].

        Built a chunk of lags at a time (no (..., N, L) intermediate); at most MAX_KERNEL_SAMPLES
        samples in all (norms over longer horizons: reduction.h2_norm, in closed form)."""
        L = check_int("DiagonalSystem.kernel", "L", L)
        n_sys = int(np.prod(self.batch_shape))
        if n_sys * L > MAX_KERNEL_SAMPLES:
            raise ValueError(f"DiagonalSystem.kernel: L={L} for {n_sys} system(s) is {n_sys * L:.3g} samples, more "
                             f"than {MAX_KERNEL_SAMPLES:.3g} (2 GiB); for the norm of a long kernel use "
                             "reduction.h2_norm(sys, horizon=L)")
        dA, dB = self.discretized()
        cb = self.C * dB
        K = np.empty(self.batch_shape + (int(L),))
        chunk = max(16, min(KERNEL_CHUNK, KERNEL_CHUNK_ELEMENTS // max(1, n_sys * self.n_modes)))
        for l0 in range(0, L, chunk):
            pw = dA[..., None] ** np.arange(l0, min(L, l0 + chunk))
            K[..., l0:l0 + pw.shape[-1]] = 2 * np.einsum("...n,...nl->...l", cb, pw).real
        K[..., 0] += self.D
        return K

    def impulse_response(self, t) -> np.ndarray:
        """Continuous impulse response without the D delta: h(t) = 2 Re sum C B exp(lam t), (..., len(t))."""
        t = np.asarray(t, dtype=np.float64)
        return 2 * np.einsum("...n,...nt->...t", self.C * self.B, np.exp(self.lam[..., None] * t)).real

    def frequency_response(self, w) -> np.ndarray:
        """G on the imaginary axis (s = i w) or the unit circle (z = exp(i w)): complex (..., len(w))."""
        s = self.std
        w = np.asarray(w, dtype=np.float64)
        x = np.exp(1j * w) if s.discrete else 1j * w
        r, p = s.r[..., None], s.p[..., None]
        return s.d[..., None] + np.sum(r / (x - p) + np.conj(r) / (x - np.conj(p)), -2)

    def realization(self, real: bool = True):
        """Dense (A, B, C, D) of the standard form, 2N states (one system only); see StdForm.realization."""
        if self.batch_shape:
            raise ValueError(f"DiagonalSystem.realization: needs one system, got batch shape {self.batch_shape}")
        return self.std.realization(real)


def augmented_to_real(N: int) -> np.ndarray:
    """The unitary T (2N, 2N) with T [x; conj x] = sqrt(2) [Re x; Im x]."""
    eye = np.eye(N)
    return np.block([[eye, eye], [-1j * eye, 1j * eye]]) / np.sqrt(2)


def pad_modes(lam, B, C, n: int):
    """Append inert modes (lam = PAD_LAM, B = 1, C = 0) along the last axis up to n modes."""
    extra = n - lam.shape[-1]
    if extra <= 0:
        return lam, B, C
    shp = lam.shape[:-1] + (extra,)
    return (np.concatenate([lam, np.full(shp, PAD_LAM)], -1), np.concatenate([B, np.ones(shp, complex)], -1),
            np.concatenate([C, np.zeros(shp, complex)], -1))


# ------------------------------------------------------------------------------ layer protocol
def from_layer(layer) -> DiagonalSystem:
    """The layer's H channels as a DiagonalSystem of batch shape (H,), through layer.modal_form()."""
    mf = _modal_form(layer)
    return DiagonalSystem(mf["lam"], mf["B"], mf["C"], mf["D"], mf["dt"], mf["disc"])


def to_layer(layer, sys: DiagonalSystem):
    """A new layer like `layer` holding `sys` (batch shape (H,)), through layer.with_modal_form()."""
    if not hasattr(layer, "with_modal_form"):
        raise TypeError(f"to_layer: {type(layer).__name__} has no with_modal_form(); cannot hold a reduced system")
    mf = _modal_form(layer)
    if sys.disc != mf["disc"] or sys.dt is None:
        raise ValueError(f"to_layer: the system must be discrete with disc={mf['disc']!r} like the layer, "
                         f"got {'continuous' if sys.dt is None else sys.disc}")
    c = lambda x: torch.as_tensor(x, dtype=torch.complex128)  # noqa: E731
    r = lambda x: torch.as_tensor(x, dtype=torch.float64)  # noqa: E731
    return layer.with_modal_form(c(sys.lam), c(sys.B), c(sys.C), D=r(sys.D), dt=r(sys.dt))


def _modal_form(layer) -> dict:
    if not callable(getattr(layer, "modal_form", None)):
        raise TypeError(f"{type(layer).__name__} has no modal_form(): only layers with a diagonal SISO-per-channel "
                        "form (S4D, DSS) can be reduced")
    with torch.no_grad():
        mf = layer.modal_form()
    missing = {"lam", "B", "C", "D", "dt", "disc"} - set(mf)
    if missing:
        raise TypeError(f"{type(layer).__name__}.modal_form() lacks {sorted(missing)}")
    return mf
