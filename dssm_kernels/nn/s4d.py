"""S4D: a diagonal state-space layer, trained in convolution mode, decoded step by step.

Per channel h, with N = d_state / 2 complex modes A (Re A < 0), step dt_h and input/output vectors
B, C, the continuous system x' = A x + B u, y = 2 Re(C x) + D u is discretised (ZOH or bilinear) to
    x_t = dA x_{t-1} + dB u_t,   y_t = 2 Re(C x_t) + D u_t,
whose convolution kernel is K[l] = 2 Re( sum_n C_n dB_n dA_n^l ) = dk.vandermonde(C dB, log dA, L).
forward() convolves with K (dk.fftconv); step() runs the recurrence (dk.ssm_step): the two agree.
"""
from __future__ import annotations

import torch

from dssm_kernels import hippo
from dssm_kernels._validate import check_choice
from dssm_kernels.nn._base import (INERT_LAM, ChannelModes, DiagonalConvLayer, check_dt_range, crandn, log_uniform,
                                   seeded_generator, ssm_param)

INITS = {"s4d-lin": hippo.s4d_lin, "s4d-inv": hippo.s4d_inv, "s4d-real": hippo.s4d_real, "s4d-legs": hippo.s4d_legs}
DISCRETISATIONS = ("zoh", "bilinear")


def discretise(A: torch.Tensor, B: torch.Tensor, dt: torch.Tensor, disc: str):
    """(dA, dB, log dA) of x' = A x + B u with step dt (broadcast against A): ZOH dA = exp(dt A),
    dB = (dA - 1) / A * B;  bilinear dA = (1 + dt A / 2) / (1 - dt A / 2), dB = dt B / (1 - dt A / 2)."""
    dtA = dt * A
    if disc == "zoh":
        dA = torch.exp(dtA)
        return dA, (dA - 1) / A * B, dtA
    dA = (1 + dtA / 2) / (1 - dtA / 2)
    return dA, dt * B / (1 - dtA / 2), torch.log(dA)


class S4D(DiagonalConvLayer):
    """Drop-in layer: (B, L, H) -> (B, L, H), or (B, H, L) with transposed=True.

    Args:
        d_model: H, the channels.   d_state: the real state size per channel (even; N = d_state / 2 modes).
        init: "s4d-lin" | "s4d-inv" | "s4d-real" | "s4d-legs".   disc: "zoh" | "bilinear".
        dt_min, dt_max: range of the log-uniform initial step per channel.
        ssm_lr: learning rate of A, dt and B (None: the optimizer's).   backend: passed to the ops.
        l_max: accepted for a uniform layer signature; S4D runs at any length.

    Example:
        >>> import torch
        >>> from dssm_kernels.nn import S4D
        >>> layer = S4D(d_model=4, d_state=16, seed=0)
        >>> layer(torch.randn(2, 100, 4)).shape
        torch.Size([2, 100, 4])
    """

    _config_options = ("init", "disc", "ssm_lr", "transposed", "l_max", "channel_modes")

    def __init__(self, d_model: int, d_state: int = 64, *, init: str = "s4d-lin", disc: str = "zoh",
                 dt_min: float = 1e-3, dt_max: float = 1e-1, ssm_lr: float | None = 1e-3,
                 transposed: bool = False, backend: str = "auto", dtype: torch.dtype = torch.float32,
                 device=None, seed: int | None = None, l_max: int | None = None, channel_modes: list | None = None):
        super().__init__(d_model, d_state, transposed=transposed, backend=backend, dtype=dtype, l_max=l_max)
        check_choice("S4D", "init", init, INITS)
        check_choice("S4D", "disc", disc, DISCRETISATIONS)
        check_dt_range("S4D", dt_min, dt_max)
        self._set_layout(channel_modes, d_state)
        self.disc, self.init, self.ssm_lr = disc, init, ssm_lr
        H, N = d_model, (d_state // 2 if channel_modes is None else max(channel_modes))
        g = seeded_generator("S4D", seed)
        if self.layout is None:
            A = torch.as_tensor(INITS[init](d_state), dtype=torch.complex128).expand(H, N)
        else:   # each channel its own count's initialisation
            A = torch.cat([torch.as_tensor(INITS[init](2 * n), dtype=torch.complex128).expand(len(ch), n).flatten()
                           for n, ch, _ in self.layout.groups])
            A = self.layout.to_padded(A, INERT_LAM)
        self._set(A, torch.ones(H, N, dtype=torch.complex128), crandn(H, N, g=g),
                  torch.randn(H, generator=g, dtype=torch.float64), log_uniform(H, dt_min, dt_max, g).exp(),
                  dtype=dtype, device=device)

    def _set(self, A, B, C, D, dt, *, dtype, device):
        """(Re)register the parameters from a continuous system, A, B, C (H, N) complex (a per-channel layout
        takes the first channel_modes[h] of row h), D, dt (H,) real."""
        if self.layout is not None:
            A, B, C = (self.layout.to_flat(torch.as_tensor(x)) for x in (A, B, C))
        if not bool((A.real < 0).all()):
            raise ValueError("S4D: every mode needs Re A < 0 (the layer parameterises Re A = -exp(log_A_real))")
        kw = dict(dtype=dtype, device=device)
        ckw = dict(dtype=torch.complex64 if dtype == torch.float32 else torch.complex128, device=device)
        # A = -exp(log_A_real) + i A_imag keeps Re A < 0 whatever the optimizer does
        ssm_param(self, "log_A_real", torch.log(-A.real).to(**kw), self.ssm_lr)
        ssm_param(self, "A_imag", A.imag.clone().to(**kw), self.ssm_lr)
        ssm_param(self, "log_dt", torch.as_tensor(dt, dtype=torch.float64).log().to(**kw), self.ssm_lr)
        ssm_param(self, "B", B.to(**ckw), self.ssm_lr)
        self.C = torch.nn.Parameter(torch.view_as_real(C.to(**ckw)).contiguous())
        self.D = torch.nn.Parameter(torch.as_tensor(D, dtype=torch.float64).to(**kw))

    def discrete(self):
        """(dA, dB, C, log dA): the discretised system, complex (H, N) each (or (M,): per-channel layout)."""
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)
        dA, dB, log_dA = discretise(A, torch.view_as_complex(self.B), self._mode_dt(), self.disc)
        return dA, dB, torch.view_as_complex(self.C), log_dA

    def modal_form(self) -> dict:
        """The layer as H continuous diagonal systems (float64): lam, B, C (H, N), D, dt (H,), disc. A
        per-channel layout is padded to its largest count with inert modes (lam -0.5, B 1, C 0)."""
        with torch.no_grad():
            c = lambda p: torch.view_as_complex(p).to(torch.complex128)  # noqa: E731
            lam = torch.complex(-torch.exp(self.log_A_real.double()), self.A_imag.double())
            return dict(lam=self._padded(lam, INERT_LAM), B=self._padded(c(self.B), 1.0),
                        C=self._padded(c(self.C), 0.0), D=self.D.double(), dt=self.log_dt.double().exp(),
                        disc=self.disc)

    def with_modal_form(self, lam, B, C, D=None, dt=None, *, channel_modes: list | None = None) -> "S4D":
        """A new S4D with this one's options and the given system: lam, B, C (H, N) (d_state = 2 N),
        D, dt (H,) or None (this layer's); all finite, dt > 0, Re lam < 0. channel_modes: keep only the
        first channel_modes[h] modes of row h (a per-channel layout: d_state = 2 ceil(sum / H))."""
        lam, B, C, D, dt = self._modal_tensors(lam, B, C, D, dt)
        d_state = 2 * lam.shape[1] if channel_modes is None else ChannelModes.d_state(channel_modes)
        new = S4D(self.d_model, d_state, init=self.init, disc=self.disc, ssm_lr=self.ssm_lr,
                  transposed=self.transposed, backend=self.backend, dtype=self._float, device=self._device,
                  l_max=self.l_max, channel_modes=channel_modes)
        with torch.no_grad():
            new._set(lam, B, C, D, dt, dtype=self._float, device=self._device)
        return new
