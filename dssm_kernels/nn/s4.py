"""S4: the diagonal-plus-low-rank (DPLR) state-space layer, its kernel by the Cauchy kernel.

Per channel, N = d_state / 2 complex modes lam, a rank-r correction P (r, N) and B, C (N,) stand for
the real system of size d_state in conjugate-pair form (subscript f: both halves stacked, lam_f =
[lam, conj lam], P_f = [P, conj P], ...):
    A_f = diag(lam_f) - P_f^T conj(P_f),   x' = A_f x + B_f u,   y = C_f x + D u = 2 Re(C x_half) + D u,
discretised by the bilinear transform with step dt (per channel). NPLR-LegS initialisation: (lam, P, B)
from hippo.dplr, i.e. A_f is HiPPO-LegS in the unitary eigenbasis of its normal part.

Kernel (the S4 algorithm). The generating function of K over L steps at omega_k = exp(-2 pi i k / L) is
    K^(omega) = sum_l K_l omega^l = C~ (I - dA omega)^{-1} dB,      C~ = C (I - dA^L),
and with g(omega) = (2 / dt) (1 - omega) / (1 + omega), R(g) = (g - lam)^{-1} and Woodbury,
    K^(omega) = 2 / (1 + omega) * [ r_CB - r_CP (I + r_PP)^{-1} r_PB ],   r_ab = sum_f a_f b_f / (g - lam_f),
each r a dk.cauchy call (with z = 2 (1 - omega) / (1 + omega), w = dt lam, times dt). K = irfft(K^).
The Nyquist node omega = -1 (L even) has g = inf: there K^(-1) = dt / 2 * sum_f C~_f B_f exactly (the
r_CP r_PB term vanishes as 1/g^2), which we set instead of evaluating 0 * inf.

C~ trick: with l_max set the layer learns C~ for l_max directly (no matrix power in training); the
true C (for step) is C~ (I - dA^l_max)^{-1}, and a run-time L > l_max recomputes C~ for L from it.
With l_max=None the layer learns C and forms C~ = C (I - dA^L) for each L (a dense power, O(N^3 log L)).

step(): bilinear recurrence on the half state in O(N r) per step (Woodbury for (I - dt/2 A)^{-1}).
"""
from __future__ import annotations

import copy
import math

import torch

import dssm_kernels as dk
from dssm_kernels import hippo
from dssm_kernels._validate import check_choice
from dssm_kernels.nn._base import (ChannelModes, ConvSSMLayer, check_dt_range, crandn, log_uniform, modal_tensors,
                                   seeded_generator, ssm_param)

INITS = {"legs": "legs", "legt": "legt", "fout": "fout"}
MIN_DECAY = 1e-3


def _full(half: torch.Tensor) -> torch.Tensor:
    """[x, conj x] along the last dimension: the conjugate-pair half to the whole real system's vector."""
    return torch.cat([half, half.conj()], dim=-1)


class S4(ConvSSMLayer):
    """Drop-in layer: (B, L, H) -> (B, L, H), or (B, H, L) with transposed=True.

    Args:
        d_model: H.   d_state: the real state size (even; N = d_state / 2 modes).
        init: HiPPO measure of the NPLR initialisation, "legs" (default) | "legt" | "fout"; rank 1 for
            legs and fout, 2 for legt.
        l_max: learn C~ for this length (the S4 C~ trick), or None to learn C (slower kernels).
        dt_min, dt_max: range of the log-uniform initial step per channel.   ssm_lr: lr of lam, P, B, dt.

    Example:
        >>> import torch
        >>> from dssm_kernels.nn import S4
        >>> layer = S4(d_model=4, d_state=16, l_max=100, seed=0)
        >>> layer(torch.randn(2, 100, 4)).shape
        torch.Size([2, 100, 4])
    """

    _config_options = ("init", "ssm_lr", "transposed", "l_max")

    def __init__(self, d_model: int, d_state: int = 64, *, init: str = "legs", l_max: int | None = None,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, ssm_lr: float | None = 1e-3,
                 transposed: bool = False, backend: str = "auto", dtype: torch.dtype = torch.float32,
                 device=None, seed: int | None = None):
        super().__init__(d_model, d_state, transposed=transposed, backend=backend, dtype=dtype, l_max=l_max)
        check_choice("S4", "init", init, INITS)
        check_dt_range("S4", dt_min, dt_max)
        self.init, self.disc, self.ssm_lr = init, "bilinear", ssm_lr
        H, N = d_model, d_state // 2
        g = seeded_generator("S4", seed)
        lam, P, B, _ = (torch.as_tensor(a, dtype=torch.complex128) for a in hippo.dplr(INITS[init], d_state))
        # LegT's and FouT's normal parts are skew (Re lam = 0, FouT with lam = 0 itself): start those modes
        # just inside the left half-plane, which the exp parameterisation needs and which keeps the
        # Cauchy nodes (g = 0 at omega = 1) off the poles.
        lam = torch.complex(lam.real.clamp(max=-MIN_DECAY), lam.imag)
        kw = dict(dtype=dtype, device=device)
        ckw = dict(dtype=torch.complex64 if dtype == torch.float32 else torch.complex128, device=device)
        ssm_param(self, "log_lam_real", torch.log(-lam.real).expand(H, N).to(**kw), ssm_lr)
        ssm_param(self, "lam_imag", lam.imag.expand(H, N).to(**kw), ssm_lr)
        ssm_param(self, "P", P.expand(H, *P.shape).to(**ckw), ssm_lr)
        ssm_param(self, "B", B.expand(H, N).to(**ckw), ssm_lr)
        ssm_param(self, "log_dt", log_uniform(H, dt_min, dt_max, g).to(**kw), ssm_lr)
        C = crandn(H, N, g=g)
        # Learned as C~ = C (I - dA^l_max) when l_max is set: the same initial system either way.
        self.C = torch.nn.Parameter(torch.view_as_real(C).to(**kw).contiguous())
        self.D = torch.nn.Parameter(torch.randn(H, generator=g, dtype=torch.float64).to(**kw))
        if l_max is not None:
            with torch.no_grad():
                self.C.copy_(torch.view_as_real(self._c_tilde_from_c(C.to(**ckw), l_max)))

    @property
    def rank(self) -> int:
        return self.P.shape[1]

    # --- the system -------------------------------------------------------------------------------
    def _modes(self):
        """lam (H, N), P (H, r, N), B (H, N), dt (H, 1)."""
        lam = torch.complex(-torch.exp(self.log_lam_real), self.lam_imag)
        return lam, torch.view_as_complex(self.P), torch.view_as_complex(self.B), torch.exp(self.log_dt).unsqueeze(-1)

    def dense(self):
        """(A_f, dA_f, dB_f): the whole system, materialised, (H, d_state, d_state) and (H, d_state).
        For the tests' reference and for C~ <-> C; O(N^3)."""
        lam, P, B, dt = self._modes()
        Pf = _full(P)  # (H, r, Nf)
        A = torch.diag_embed(_full(lam)) - Pf.transpose(-1, -2) @ Pf.conj()
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        left = eye - dt.unsqueeze(-1) / 2 * A
        dA = torch.linalg.solve(left, eye + dt.unsqueeze(-1) / 2 * A)
        dB = torch.linalg.solve(left, dt * _full(B))
        return A, dA, dB

    @staticmethod
    def _power_factor(dA: torch.Tensor, L: int) -> torch.Tensor:
        """I - dA_f^L, (H, d_state, d_state)."""
        return torch.eye(dA.shape[-1], dtype=dA.dtype, device=dA.device) - torch.linalg.matrix_power(dA, L)

    def _c_tilde_from_c(self, C: torch.Tensor, L: int, dA: torch.Tensor | None = None) -> torch.Tensor:
        """C~ = C (I - dA^L) on the half, C (H, N); dA_f from dense() unless the caller has it."""
        dA = self.dense()[1] if dA is None else dA
        return (_full(C).unsqueeze(-2) @ self._power_factor(dA, L)).squeeze(-2)[..., :C.shape[-1]]

    def _c_from_c_tilde(self, dA: torch.Tensor) -> torch.Tensor:
        """The true C (H, N) from the learned C~ of l_max: C~_f = C_f M  ->  M^T C_f^T = C~_f^T."""
        Ct = torch.view_as_complex(self.C)
        M = self._power_factor(dA, self.l_max)
        return torch.linalg.solve(M.transpose(-1, -2), _full(Ct).unsqueeze(-1)).squeeze(-1)[..., :Ct.shape[-1]]

    def output_vector(self) -> torch.Tensor:
        """The true C (H, N) of the recurrence (solving out the C~ of l_max when the layer learns C~)."""
        if self.l_max is None:
            return torch.view_as_complex(self.C)
        return self._c_from_c_tilde(self.dense()[1])

    def _c_tilde(self, L: int) -> torch.Tensor:
        if self.l_max == L:
            return torch.view_as_complex(self.C)
        dA = self.dense()[1]  # once for both C~ of l_max -> C and C -> C~ of L
        C = torch.view_as_complex(self.C) if self.l_max is None else self._c_from_c_tilde(dA)
        return self._c_tilde_from_c(C, L, dA)

    # --- convolution view -------------------------------------------------------------------------
    def kernel(self, L: int) -> torch.Tensor:
        """The convolution kernel K (H, L), from the generating function at the L roots of unity."""
        self._check_length(L)
        Lk = L if self.l_max is None or L > self.l_max else self.l_max
        lam, P, B, dt = self._modes()
        Ct = self._c_tilde(Lk)
        k = torch.arange(Lk // 2 + 1, device=lam.device, dtype=torch.float64)
        omega = torch.exp(-2j * math.pi * k / Lk).to(lam.dtype)
        nyquist = Lk % 2 == 0
        if nyquist:
            omega = omega[:-1]
        z = 2 * (1 - omega) / (1 + omega)
        w = (dt * lam).unsqueeze(-2)  # (H, 1, N)
        dt3 = dt.unsqueeze(-1)
        Pc = P.conj()
        # rows: C~ B | C~ P_j | conj(P_i) B | conj(P_i) P_j, one batched Cauchy call
        r = self.rank
        v = torch.cat([(Ct * B).unsqueeze(-2), Ct.unsqueeze(-2) * P, Pc * B.unsqueeze(-2),
                       (Pc.unsqueeze(-2) * P.unsqueeze(-3)).flatten(-3, -2)], dim=-2)  # (H, 1 + 2r + r^2, N)
        rr = dt3 * dk.cauchy(v, z, w, backend=self.backend)  # (H, rows, K)
        r_cb, r_cp, r_pb, r_pp = rr[:, 0], rr[:, 1:1 + r], rr[:, 1 + r:1 + 2 * r], rr[:, 1 + 2 * r:]
        r_pp = r_pp.unflatten(1, (r, r)).permute(0, 3, 1, 2)  # (H, K, r, r)
        eye = torch.eye(r, dtype=r_pp.dtype, device=r_pp.device)
        corr = torch.linalg.solve(eye + r_pp, r_pb.transpose(1, 2).unsqueeze(-1)).squeeze(-1)  # (H, K, r)
        Khat = 2 / (1 + omega) * (r_cb - (r_cp.transpose(1, 2) * corr).sum(-1))
        if nyquist:
            Khat = torch.cat([Khat, (dt * (Ct * B).real.sum(-1, keepdim=True)).to(Khat.dtype)], dim=-1)
        return torch.fft.irfft(Khat, n=Lk)[..., :L]

    # --- reduction hooks (dssm_kernels.reduction.layers) ----------------------------------------------
    def dense_form(self) -> dict:
        """The layer as H dense continuous systems in float64, in conjugate-pair coordinates [x; conj x]:
        A (H, d_state, d_state) = diag(lam_f) - P_f^T conj(P_f), B and C (H, d_state) = [B, conj B] and
        [C, conj C] with C the true output vector (C~ of l_max solved out), D, dt (H,), disc "bilinear"."""
        with torch.no_grad():
            double = copy.deepcopy(self).to(torch.float64)
            A, _, _ = double.dense()
            _, _, B, dt = double._modes()
            return dict(A=A, B=_full(B), C=_full(double.output_vector()), D=double.D.clone(), dt=dt[:, 0].clone(),
                        disc=self.disc)

    def with_modal_form(self, lam, B, C, D=None, dt=None, *, channel_modes: list | None = None):
        """The reduction of an S4 is diagonal: an S4D layer (bilinear, like S4) with this layer's options
        holding the given continuous modes lam, B, C (H, N) (d_state = 2 N) and D, dt (H,) (None: this
        layer's); Re lam < 0. channel_modes: as S4D.with_modal_form."""
        from dssm_kernels.nn.s4d import S4D
        with torch.no_grad():
            D = self.D.double() if D is None else D
            dt = self.log_dt.double().exp() if dt is None else dt
        lam, B, C, D, dt = modal_tensors("S4.with_modal_form", self.d_model, lam, B, C, D, dt)
        d_state = 2 * lam.shape[1] if channel_modes is None else ChannelModes.d_state(channel_modes)
        new = S4D(self.d_model, d_state, disc="bilinear", ssm_lr=self.ssm_lr, transposed=self.transposed,
                  backend=self.backend, dtype=self._float, device=self._device, l_max=self.l_max,
                  channel_modes=channel_modes)
        with torch.no_grad():
            new._set(lam, B, C, D, dt, dtype=self._float, device=self._device)
        return new

    # --- recurrent view ---------------------------------------------------------------------------
    def _step_system(self):
        """What step() needs, computed once per parameter version: lam, P, B, the true C, h = dt / 2,
        Dinv = (1 - h lam)^{-1} and (I + h M)^{-1} with M = conj(P_f) Dinv P_f^T (real r x r), so that
        (I - h A)^{-1} = Dinv - Dinv P_f^T (I + h M)^{-1} h conj(P_f) Dinv (Woodbury)."""
        lam, P, B, dt = self._modes()
        h = dt / 2  # (H, 1)
        Dinv = 1 / (1 - h * lam)
        M = 2 * torch.einsum("hin,hn,hjn->hij", P.conj(), Dinv, P).real
        eye = torch.eye(self.rank, dtype=M.dtype, device=M.device)
        return lam, P, B, self.output_vector(), h, Dinv, torch.linalg.inv(eye + h.unsqueeze(-1) * M)

    def step(self, u_t: torch.Tensor, state: torch.Tensor | None):
        """One bilinear step on the half state (B, H, N): O(N r) with Woodbury. Equals forward().
        state: what default_state(B) or the previous step gave; None is the zero state."""
        state = self._check_step(u_t, state)
        lam, P, B, C, h, Dinv, Minv = self._cached("step", self._step_system)
        u = u_t.to(lam.dtype).unsqueeze(-1)  # (B, H, 1)
        # P_f^T conj(P_f) x_f = P^T (2 Re(conj(P) x)) on the half: the low-rank term is real-linear
        proj = lambda x: 2 * torch.einsum("hrn,bhn->bhr", P.conj(), x).real  # noqa: E731
        y = state + h * (lam * state - torch.einsum("hrn,bhr->bhn", P, proj(state).to(lam.dtype))) + 2 * h * B * u
        t = (Minv @ proj(Dinv * y).unsqueeze(-1)).squeeze(-1)  # (B, H, r)
        new = Dinv * (y - h * torch.einsum("hrn,bhr->bhn", P, t.to(lam.dtype)))
        out = 2 * (C * new).sum(-1).real + self.D * u_t
        return out.to(u_t.dtype), new
