"""DSS: the diagonal state space of Gupta, Gu and Berant, in its two variants.

Per channel h, with N = d_state / 2 complex modes lam_n, step dt_h and a complex output vector w
(DSS folds B and C into one vector), the kernel is K[l] = 2 Re( sum_n c_n exp(l dt lam_n) ) with
    DSS-exp:      c_n = w_n (exp(dt lam_n) - 1) / lam_n,      Re lam_n = -exp(.) < 0;
    DSS-softmax:  c_n = w_n / (lam_n Z_n),  Z_n = sum_{k < l_max} exp(k dt lam_n),   lam_n unconstrained
(the softmax over the positions k of each mode's row). (The paper writes Re(.) where we write 2 Re(.);
the factor is absorbed in w.) Both are the ZOH discretisation x_t = exp(dt lam) x_{t-1} + dB u_t of
x' = lam x + u, y = 2 Re(C x) + D u with C_n = w_n for DSS-exp and C_n = w_n / (exp(l_max dt lam_n) - 1)
for DSS-softmax (dB = (exp(dt lam) - 1) / lam): step() runs that recurrence.

DSS-softmax needs l_max (the softmax length); modes with Re(dt lam) > 0 are evaluated from the far end
of the window, exp((l - l_max) dt lam) / (1 - exp(-l_max dt lam)), so the kernel never overflows.
"""
from __future__ import annotations

import torch

from dssm_kernels import hippo
from dssm_kernels._validate import check_choice
from dssm_kernels.nn._base import (INERT_LAM, ChannelModes, DiagonalConvLayer, check_dt_range, crandn, log_uniform,
                                   seeded_generator, ssm_param)

VARIANTS = ("exp", "softmax")
INITS = ("skew-hippo", "s4d-lin", "s4d-inv")
_INIT_FNS = {"skew-hippo": hippo.skew_hippo, "s4d-lin": hippo.s4d_lin, "s4d-inv": hippo.s4d_inv}


class DSS(DiagonalConvLayer):
    """Drop-in layer: (B, L, H) -> (B, L, H), or (B, H, L) with transposed=True.

    Args:
        d_model: H.   d_state: the real state size per channel (even; N = d_state / 2 modes; every channel
            starts from the same modes and learns its own, as reduced models need).
        variant: "exp" | "softmax" (softmax needs l_max).   init: "skew-hippo" (default) | "s4d-lin" | "s4d-inv".
        dt_min, dt_max: range of the log-uniform initial step per channel.
        ssm_lr: learning rate of lam and dt (None: the optimizer's).   backend: passed to the ops.

    Example:
        >>> import torch
        >>> from dssm_kernels.nn import DSS
        >>> layer = DSS(d_model=4, d_state=16, variant="softmax", l_max=100, seed=0)
        >>> layer(torch.randn(2, 100, 4)).shape
        torch.Size([2, 100, 4])
    """

    _config_options = ("variant", "init", "ssm_lr", "transposed", "l_max", "channel_modes")

    def __init__(self, d_model: int, d_state: int = 64, *, variant: str = "exp", init: str = "skew-hippo",
                 l_max: int | None = None, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 ssm_lr: float | None = 1e-3, transposed: bool = False, backend: str = "auto",
                 dtype: torch.dtype = torch.float32, device=None, seed: int | None = None,
                 channel_modes: list | None = None):
        super().__init__(d_model, d_state, transposed=transposed, backend=backend, dtype=dtype, l_max=l_max)
        check_choice("DSS", "variant", variant, VARIANTS)
        check_choice("DSS", "init", init, INITS)
        check_dt_range("DSS", dt_min, dt_max)
        if variant == "softmax" and l_max is None:
            raise ValueError("DSS: variant='softmax' needs l_max (the length its softmax normalises over), got None")
        self._set_layout(channel_modes, d_state)
        self.variant, self.init, self.ssm_lr, self.disc = variant, init, ssm_lr, "zoh"
        H, N = d_model, (d_state // 2 if channel_modes is None else max(channel_modes))
        g = seeded_generator("DSS", seed)
        if self.layout is None:
            lam = torch.as_tensor(_INIT_FNS[init](d_state), dtype=torch.complex128).expand(H, N)
        else:   # each channel its own count's initialisation
            lam = torch.cat([torch.as_tensor(_INIT_FNS[init](2 * n), dtype=torch.complex128).expand(len(ch), n).flatten()
                             for n, ch, _ in self.layout.groups])
            lam = self.layout.to_padded(lam, INERT_LAM)
        self._set(lam, crandn(H, N, g=g), torch.randn(H, generator=g, dtype=torch.float64),
                  log_uniform(H, dt_min, dt_max, g).exp(), dtype=dtype, device=device)

    def _set(self, lam, W, D, dt, *, dtype, device):
        """(Re)register the parameters: lam, W (H, N) complex (a per-channel layout takes the first
        channel_modes[h] of row h), D, dt (H,) real."""
        if self.layout is not None:
            lam, W = (self.layout.to_flat(torch.as_tensor(x)) for x in (lam, W))
        kw = dict(dtype=dtype, device=device)
        if self.variant == "exp":
            if not bool((lam.real < 0).all()):
                raise ValueError("DSS: variant='exp' needs Re lam < 0 for every mode (it parameterises Re lam = -exp(.))")
            ssm_param(self, "log_lam_real", torch.log(-lam.real).to(**kw), self.ssm_lr)
        else:
            ssm_param(self, "lam_real", lam.real.clone().to(**kw), self.ssm_lr)
        ssm_param(self, "lam_imag", lam.imag.clone().to(**kw), self.ssm_lr)
        ssm_param(self, "log_dt", torch.as_tensor(dt, dtype=torch.float64).log().to(**kw), self.ssm_lr)
        self.W = torch.nn.Parameter(torch.view_as_real(W.to(torch.complex128)).to(**kw).contiguous())
        self.D = torch.nn.Parameter(torch.as_tensor(D, dtype=torch.float64).to(**kw))

    def _lam(self) -> torch.Tensor:
        re = -torch.exp(self.log_lam_real) if self.variant == "exp" else self.lam_real
        return torch.complex(re, self.lam_imag)

    def discrete(self):
        """(dA, dB, C, log dA), complex (H, N): the ZOH system the kernel is the impulse response of."""
        lam = self._lam()
        dtlam = self._mode_dt() * lam  # (H, N) or (M,)
        dA = torch.exp(dtlam)
        dB = torch.expm1(dtlam) / lam
        W = torch.view_as_complex(self.W)
        C = W if self.variant == "exp" else W / torch.expm1(self.l_max * dtlam)
        return dA, dB, C, dtlam

    def kernel(self, L: int) -> torch.Tensor:
        """The convolution kernel K (H, L)."""
        self._check_length(L)
        if self.variant == "exp":
            return super().kernel(L)
        lam = self._lam()
        dtlam = self._mode_dt() * lam
        W = torch.view_as_complex(self.W)
        coef = W * torch.expm1(dtlam) / lam  # C dB without the softmax normaliser
        # growing modes: exp(l x) / (exp(l_max x) - 1) = exp(-(l_max - 1 - l) x) exp(-x) / (1 - exp(-l_max x)),
        # a decaying kernel read backwards from l_max - 1; decaying ones as they are.
        grow = dtlam.real > 0
        x = torch.where(grow, -dtlam, dtlam)
        scale = torch.where(grow, torch.exp(-dtlam) / -torch.expm1(-self.l_max * dtlam), 1 / torch.expm1(self.l_max * dtlam))
        v = coef * scale
        Lk = max(L, self.l_max)
        K = self._vandermonde(torch.where(grow, 0, v), x, Lk)
        if bool(grow.any()):
            K_rev = self._vandermonde(torch.where(grow, v, 0), x, self.l_max)
            K_grow = torch.zeros_like(K)
            K_grow[:, : self.l_max] = K_rev.flip(-1)
            if Lk > self.l_max:  # past the softmax window: exp((l - l_max) x) keeps growing
                K_grow[:, self.l_max:] = self._vandermonde(torch.where(grow, v * torch.exp(-x), 0), -x, Lk - self.l_max)
            K = K + K_grow
        return K[:, :L]

    def modal_form(self) -> dict:
        """The layer as H continuous diagonal systems (float64): lam, B, C (H, N), D, dt (H,), disc="zoh"."""
        with torch.no_grad():
            dA, dB, C, _ = self.discrete()
            lam = self._padded(self._lam().to(torch.complex128), INERT_LAM)
            return dict(lam=lam, B=torch.ones_like(lam), C=self._padded(C.to(torch.complex128), 0.0),
                        D=self.D.double(), dt=self.log_dt.double().exp(), disc="zoh")

    def with_modal_form(self, lam, B, C, D=None, dt=None, *, channel_modes: list | None = None) -> "DSS":
        """A new DSS (same variant and options, d_state = 2 * lam.shape[-1]) realising the given ZOH
        systems: lam, B, C (H, N), D, dt (H,) or None (this layer's); all finite, dt > 0. B is folded
        into W. channel_modes: keep only the first channel_modes[h] modes of row h (a per-channel layout:
        d_state = 2 ceil(sum / H))."""
        lam, B, C, D, dt = self._modal_tensors(lam, B, C, D, dt)
        d_state = 2 * lam.shape[-1] if channel_modes is None else ChannelModes.d_state(channel_modes)
        new = DSS(self.d_model, d_state, variant=self.variant, init=self.init, l_max=self.l_max, ssm_lr=self.ssm_lr,
                  transposed=self.transposed, backend=self.backend, dtype=self._float, device=self._device,
                  channel_modes=channel_modes)
        W = C * B
        if self.variant == "softmax":
            W = W * torch.expm1(self.l_max * dt.unsqueeze(-1) * lam)
        with torch.no_grad():
            new._set(lam, W, D, dt, dtype=self._float, device=self._device)
        return new
