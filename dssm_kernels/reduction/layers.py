"""The layer protocol: a layer's systems as reduction sees them, and a new layer holding reduced ones.

    layer.modal_form() -> dict(lam, B, C, D, dt, disc)       S4D, DSS: H SISO channels, (H, N) arrays
                          dict(..., mimo=True)                S5, LRU: lam (N,), B (N, H), C (H, N), D (H,), dt ()
    layer.dense_form() -> dict(A, B, C, D, dt, disc)         S4: H dense channels (DPLR), real standard form
    layer.with_modal_form(lam, B, C, D=None, dt=None)        a new layer of the library holding the given
                                                              continuous modes (an S4 gives an S4D)

from_layer gives a DiagonalSystem (batch (H,)), a MimoSystem or a DenseSystem (batch (H,)); to_layer
builds the new layer from a reduced DiagonalSystem / MimoSystem. A MIMO layer's feedthrough is diagonal
(D * u): its transfer function at z = 0 is D, so it is diagonal too, and a reduced system whose
G_r(0) has an off-diagonal part cannot be held exactly. to_layer drops that part (feedthrough_shift:
its spectral norm, a constant error added to the reduced system's, which reduce_model adds to the
layer's bound).
"""
from __future__ import annotations

import numpy as np
import torch

from dssm_kernels.reduction.dense import DenseSystem
from dssm_kernels.reduction.system import DiagonalSystem, MimoSystem, augmented_to_real

_MODAL_KEYS = {"lam", "B", "C", "D", "dt", "disc"}


def reducible(layer) -> bool:
    """Whether reduce_model can read `layer` and hold its reduction."""
    return (callable(getattr(layer, "modal_form", None)) or callable(getattr(layer, "dense_form", None))) \
        and callable(getattr(layer, "with_modal_form", None))


def from_layer(layer):
    """The layer's systems: a DiagonalSystem of batch (H,) (S4D, DSS), a MimoSystem (S5, LRU) or a
    DenseSystem of batch (H,) (S4), through the protocol of the module docstring."""
    if callable(getattr(layer, "dense_form", None)):
        with torch.no_grad():
            f = layer.dense_form()
        _require(layer, f, {"A", "B", "C", "D", "dt", "disc"}, "dense_form")
        return dense_system(f)
    if not callable(getattr(layer, "modal_form", None)):
        raise TypeError(f"{type(layer).__name__} has no modal_form() or dense_form(): only the library's SSM layers "
                        "(S4D, DSS, S4, S5, LRU) can be reduced")
    with torch.no_grad():
        mf = layer.modal_form()
    _require(layer, mf, _MODAL_KEYS, "modal_form")
    if mf.get("mimo", False):
        D = np.diag(_np(mf["D"]))
        return MimoSystem(mf["lam"], mf["B"], mf["C"], D, mf["dt"], mf["disc"])
    return DiagonalSystem(mf["lam"], mf["B"], mf["C"], mf["D"], mf["dt"], mf["disc"])


def dense_system(f: dict) -> DenseSystem:
    """A DenseSystem from a dense_form dict: A (H, n, n), B (H, n), C (H, n) complex in conjugate-pair
    coordinates [x; conj x] (continuous), D, dt (H,), disc "bilinear". The discrete standard
    realisation (y_t reads the state after the update: output C dA, feedthrough D + C dB) in the real
    coordinates T x (T = augmented_to_real), where every matrix is real."""
    A, B, C = (_np(f[k]).astype(np.complex128) for k in ("A", "B", "C"))
    D, dt = _np(f["D"]).astype(np.float64), _np(f["dt"]).astype(np.float64)
    n = A.shape[-1]
    eye = np.eye(n)
    h = dt[:, None, None]
    if f["disc"] != "bilinear":
        raise ValueError(f"dense_system: only the bilinear discretisation (S4's) is supported, got {f['disc']!r}")
    left = eye - h / 2 * A
    dA = np.linalg.solve(left, eye + h / 2 * A)
    dB = np.linalg.solve(left, h * B[..., None])
    T = augmented_to_real(n // 2)
    Ti = T.conj().T
    Ar, Br = (T @ dA @ Ti).real, (T @ dB).real
    Cstd = C[:, None, :] @ dA                                              # (H, 1, n): reads after the update
    Cr = (Cstd @ Ti).real
    Dr = (D + (C[:, None, :] @ dB)[..., 0, 0].real)[:, None, None]
    return DenseSystem(Ar, Br, Cr, Dr, discrete=True, dt=dt, disc=f["disc"])


def to_layer(layer, sys, channel_modes: list | None = None):
    """A new layer like `layer` holding `sys` (a reduced DiagonalSystem of batch (H,), or MimoSystem),
    through layer.with_modal_form(); a MIMO system's D enters as its diagonal (module docstring).
    channel_modes: a SISO layer keeps only the first channel_modes[h] modes of channel h (S4D, DSS and
    an S4's S4D: their per-channel layout)."""
    if not callable(getattr(layer, "with_modal_form", None)):
        raise TypeError(f"to_layer: {type(layer).__name__} has no with_modal_form(); cannot hold a reduced system")
    c = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.complex128)  # noqa: E731
    r = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float64)  # noqa: E731
    if sys.dt is None:
        raise ValueError("to_layer: the system must be discrete (a layer's step), got a continuous one")
    if isinstance(sys, MimoSystem):
        return layer.with_modal_form(c(sys.lam), c(sys.B), c(sys.C), D=r(np.diagonal(sys.D, axis1=-2, axis2=-1).copy()),
                                     dt=r(sys.dt))
    if channel_modes is not None:
        return layer.with_modal_form(c(sys.lam), c(sys.B), c(sys.C), D=r(sys.D), dt=r(sys.dt), channel_modes=channel_modes)
    return layer.with_modal_form(c(sys.lam), c(sys.B), c(sys.C), D=r(sys.D), dt=r(sys.dt))


def feedthrough_shift(sys) -> float:
    """||offdiag(D)||_2 of a MimoSystem (what to_layer drops), 0 for a SISO one."""
    if not isinstance(sys, MimoSystem):
        return 0.0
    off = sys.D - np.diag(np.diagonal(sys.D))
    return float(np.linalg.norm(off, 2))


def modal_feedthrough_shift(p, b, c, d, discrete: bool) -> float:
    """feedthrough_shift of the MIMO system with standard form (p (k,), b (k, m), c (p_out, k), d): its
    layer-form D = d - 2 Re(C dB) with C = c / p, dB = b (discrete; d itself when continuous)."""
    D = np.asarray(d, float)
    if discrete and len(p):
        D = D - 2 * ((c / p) @ b).real
    if D.shape[-1] == 1 and D.shape[-2] == 1:
        return 0.0
    return float(np.linalg.norm(D - np.diag(np.diagonal(D)), 2))


def _np(x) -> np.ndarray:
    return x.detach().cpu().resolve_conj().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _require(layer, form: dict, keys: set, what: str) -> None:
    if not isinstance(form, dict):
        raise TypeError(f"{type(layer).__name__}.{what}() must return a dict, got {type(form).__name__}")
    missing = keys - set(form)
    if missing:
        raise TypeError(f"{type(layer).__name__}.{what}() lacks {sorted(missing)}")
