"""S5: one multi-input multi-output diagonal state shared by all H channels, run by a diagonal scan.

N = d_state / 2 complex modes lam (conjugate pairs), per-mode steps dt, B (N, H) and C (H, N) complex:
    x_t = dA x_{t-1} + dB u_t,   y_t = 2 Re(C x_t) + D * u_t,      x_t complex (N,), u_t, y_t real (H,)
with dA = exp(dt lam), dB = (dA - 1) / lam * B (ZOH) or the bilinear pair. forward() forms v_t = dB u_t
for the whole sequence and runs dk.diag_scan (the (B, L, N) states are materialised: S5's parallel-scan
view); step() is one update of the same recurrence.

Initialisations: "legs" (S5's default): eigenvalues and eigenvectors V of HiPPO-LegS's normal part, with
B = V^* B0, C = C0 V for random B0, C0; "ptd": perturb-then-diagonalise HiPPO-LegS itself (hippo.ptd,
perturbation size ptd_eps), B = V^{-1} B0, C = C0 V. Eigenvalues of A + E that are not in the open left
half-plane by MIN_DECAY are clipped to Re = -MIN_DECAY (as S5 clips): the exp parameterisation needs it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

import dssm_kernels as dk
from dssm_kernels import hippo
from dssm_kernels._validate import check_choice, check_number, complex_dtype_of
from dssm_kernels.nn._base import (SSMLayer, check_dt_range, log_uniform, mimo_modal_tensors, seeded_generator,
                                   ssm_param)
from dssm_kernels.nn.s4d import DISCRETISATIONS, discretise

INITS = ("legs", "ptd")
MIN_DECAY = 1e-4


def _init_modes(d_state: int, d_model: int, init: str, ptd_eps: float, g: torch.Generator | None):
    """(lam (N,), B (N, H), C (H, N)) complex128 for `init`, N = d_state / 2 (the half with Im >= 0)."""
    N = d_state // 2
    B0 = torch.randn(d_state, d_model, generator=g, dtype=torch.float64) / math.sqrt(d_state)
    C0 = torch.complex(torch.randn(d_model, d_state, generator=g, dtype=torch.float64),
                       torch.randn(d_model, d_state, generator=g, dtype=torch.float64)) / math.sqrt(2 * d_state)
    if init == "legs":
        lam, _, _, V = hippo.dplr("legs", d_state)  # the Im > 0 half of the normal part; V (d_state, N) orthonormal
        Vinv = V.conj().T
    else:
        r = hippo.ptd(d_state, eps=ptd_eps)
        keep = np.argsort(-r.Lambda.imag, kind="stable")[:N]  # the Im >= 0 half (real eigenvalues fill the rest)
        lam, V, Vinv = r.Lambda[keep], r.V[:, keep], np.linalg.inv(r.V)[keep]
    lam = torch.as_tensor(lam).to(torch.complex128)   # eig returns a real array when every eigenvalue is real (d_state 2)
    lam = torch.complex(lam.real.clamp(max=-MIN_DECAY), lam.imag)
    B = torch.as_tensor(Vinv).to(torch.complex128) @ B0.to(torch.complex128)
    C = C0 @ torch.as_tensor(V).to(torch.complex128)
    return lam, B, C


class S5(SSMLayer):
    """Drop-in layer: (B, L, H) -> (B, L, H), or (B, H, L) with transposed=True.

    Args:
        d_model: H.   d_state: the real size of the shared state (even; N = d_state / 2 complex modes).
        init: "legs" | "ptd".   ptd_eps: ||E|| / ||A|| for init="ptd".   disc: "zoh" | "bilinear".
        dt_min, dt_max: range of the log-uniform initial step per mode.   ssm_lr: lr of lam, dt, B.

    Example:
        >>> import torch
        >>> from dssm_kernels.nn import S5
        >>> layer = S5(d_model=4, d_state=16, seed=0)
        >>> layer(torch.randn(2, 100, 4)).shape
        torch.Size([2, 100, 4])
    """

    _config_options = ("init", "ptd_eps", "disc", "ssm_lr", "transposed", "l_max")

    def __init__(self, d_model: int, d_state: int = 64, *, init: str = "legs", ptd_eps: float = 1e-3,
                 disc: str = "zoh", dt_min: float = 1e-3, dt_max: float = 1e-1, ssm_lr: float | None = 1e-3,
                 transposed: bool = False, backend: str = "auto", dtype: torch.dtype = torch.float32,
                 device=None, seed: int | None = None, l_max: int | None = None):
        super().__init__(d_model, d_state, transposed=transposed, backend=backend, dtype=dtype, l_max=l_max)
        check_choice("S5", "init", init, INITS)
        check_choice("S5", "disc", disc, DISCRETISATIONS)
        check_dt_range("S5", dt_min, dt_max)
        check_number("S5", "ptd_eps", ptd_eps, positive=True)
        self.init, self.disc, self.ptd_eps, self.ssm_lr = init, disc, ptd_eps, ssm_lr
        N = d_state // 2
        g = seeded_generator("S5", seed)
        lam, B, C = _init_modes(d_state, d_model, init, ptd_eps, g)
        dt = log_uniform(N, dt_min, dt_max, g).exp()
        self._set(lam, B, C, torch.randn(d_model, generator=g, dtype=torch.float64), dt, dtype=dtype, device=device)

    def _set(self, lam, B, C, D, dt, *, dtype, device):
        """(Re)register the parameters: lam (N,) with Re lam < 0, B (N, H), C (H, N), D (H,), dt (N,) > 0."""
        kw = dict(dtype=dtype, device=device)
        ckw = dict(dtype=complex_dtype_of(dtype), device=device)
        ssm_param(self, "log_lam_real", torch.log(-lam.real).to(**kw), self.ssm_lr)
        ssm_param(self, "lam_imag", lam.imag.clone().to(**kw), self.ssm_lr)
        ssm_param(self, "log_dt", torch.as_tensor(dt, dtype=torch.float64).log().to(**kw), self.ssm_lr)
        ssm_param(self, "B", B.to(**ckw), self.ssm_lr)
        self.C = torch.nn.Parameter(torch.view_as_real(C.to(**ckw)).contiguous())
        self.D = torch.nn.Parameter(torch.as_tensor(D, dtype=torch.float64).to(**kw))

    def discrete(self):
        """(dA (N,), dB (N, H), C (H, N)) complex."""
        lam = torch.complex(-torch.exp(self.log_lam_real), self.lam_imag)
        dA, dB, _ = discretise(lam.unsqueeze(-1), torch.view_as_complex(self.B),
                               torch.exp(self.log_dt).unsqueeze(-1), self.disc)
        return dA.squeeze(-1), dB, torch.view_as_complex(self.C)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self._scan(u, None, "S5")[0]

    def scan(self, u: torch.Tensor, state: torch.Tensor | None = None):
        """(y like forward(u), last state (B, N)): S5's one view, the diagonal scan from `state` ((B, N) as
        default_state(B) gives, or None: zero)."""
        return self._scan(u, state, "S5.scan")

    def _scan(self, u: torch.Tensor, state: torch.Tensor | None, who: str):
        x = self._channels_first(u, who).transpose(1, 2)  # (B, L, H)
        self._check_state(state, x.shape[0], who)
        dA, dB, C = self.discrete()
        v = x.to(dB.dtype) @ dB.transpose(0, 1)  # (B, L, N)
        xs, last = dk.diag_scan(v, dA, state, backend=self.backend)
        y = 2 * (xs @ C.transpose(0, 1)).real + self.D * x
        return self._restore(y.transpose(1, 2).to(u.dtype)), last

    def _state_shape(self, batch: int) -> tuple:
        """(batch, N): one state shared by all channels."""
        return (batch, self.d_state // 2)

    # --- reduction hooks (dssm_kernels.reduction.layers) ----------------------------------------------
    def modal_form(self) -> dict:
        """The layer as one MIMO system in float64 with a common step dt = 1: each mode's own step folded
        into it, lam dt_n and B dt_n (the same dA and dB under ZOH and bilinear alike); C (H, N), D (H,),
        disc, mimo=True."""
        with torch.no_grad():
            dt = self.log_dt.double().exp()
            lam = torch.complex(-torch.exp(self.log_lam_real.double()), self.lam_imag.double())
            B = torch.view_as_complex(self.B).to(torch.complex128)
            return dict(lam=lam * dt, B=B * dt.unsqueeze(-1), C=torch.view_as_complex(self.C).to(torch.complex128),
                        D=self.D.double(), dt=torch.tensor(1.0, dtype=torch.float64), disc=self.disc, mimo=True)

    def with_modal_form(self, lam, B, C, D=None, dt=None) -> "S5":
        """A new S5 with this one's options holding the given system (modal_form's conventions): lam (N,)
        with Re lam < 0, B (N, H), C (H, N) at the common step dt (None: 1), D (H,) (None: this layer's).
        Every new mode gets the geometric mean of this layer's steps, dt0, and lam dt / dt0, B dt / dt0:
        the same discrete system, at the step scale the layer trained with."""
        lam, B, C, D, dt = mimo_modal_tensors("S5.with_modal_form", self, lam, B, C, D, dt)
        if not bool((lam.real < 0).all()):
            raise ValueError(f"S5.with_modal_form: every mode needs Re lam < 0, got max Re lam {lam.real.max().item()}")
        dt0 = float(self.log_dt.detach().double().mean().exp())
        N = lam.shape[0]
        new = S5(self.d_model, 2 * N, init=self.init, ptd_eps=self.ptd_eps, disc=self.disc, ssm_lr=self.ssm_lr,
                 transposed=self.transposed, backend=self.backend, dtype=self._float, device=self._device,
                 l_max=self.l_max)
        with torch.no_grad():
            new._set(lam * (dt / dt0), B * (dt / dt0), C, D, torch.full((N,), dt0, dtype=torch.float64),
                     dtype=self._float, device=self._device)
        return new

    def step(self, u_t: torch.Tensor, state: torch.Tensor | None):
        """One recurrent step: u_t (B, H) -> (y_t (B, H), new state (B, N)). Equals forward() step by step.
        state: what default_state(B) or the previous step gave; None is the zero state."""
        state = self._check_step(u_t, state)
        dA, dB, C = self._cached("discrete", self.discrete)
        new = dA * state + u_t.to(dB.dtype) @ dB.transpose(0, 1)
        return (2 * (new @ C.transpose(0, 1)).real + self.D * u_t).to(u_t.dtype), new
