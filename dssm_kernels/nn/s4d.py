"""S4D: a diagonal state-space layer, trained in convolution mode, decoded step by step.

Per channel h, with N = d_state / 2 complex modes A (Re A < 0), step dt_h and input/output vectors
B, C, the continuous system x' = A x + B u, y = 2 Re(C x) + D u is discretised (ZOH or bilinear) to
    x_t = dA x_{t-1} + dB u_t,   y_t = 2 Re(C x_t) + D u_t,
whose convolution kernel is K[l] = 2 Re( sum_n C_n dB_n dA_n^l ) = dk.vandermonde(C dB, log dA, L).
forward() convolves with K (dk.fftconv); step() runs the recurrence (dk.ssm_step): the two agree.
"""
from __future__ import annotations

import math

import torch
from torch import nn

import dssm_kernels as dk
from dssm_kernels import hippo

INITS = {"s4d-lin": hippo.s4d_lin, "s4d-inv": hippo.s4d_inv, "s4d-real": hippo.s4d_real, "s4d-legs": hippo.s4d_legs}
DISCRETISATIONS = ("zoh", "bilinear")


def _ssm_param(module: nn.Module, name: str, value: torch.Tensor, lr: float | None) -> None:
    """Register an SSM parameter that carries its own learning rate and no weight decay
    (dssm_kernels.nn.param_groups reads the tag)."""
    p = nn.Parameter(value)
    p._dssm_optim = {"lr": lr, "weight_decay": 0.0}
    module.register_parameter(name, p)


class S4D(nn.Module):
    """Drop-in layer: (B, L, H) -> (B, L, H), or (B, H, L) with transposed=True.

    Args:
        d_model: H, the channels.   d_state: the real state size per channel (even; N = d_state / 2 modes).
        init: "s4d-lin" | "s4d-inv" | "s4d-real" | "s4d-legs".   disc: "zoh" | "bilinear".
        dt_min, dt_max: range of the log-uniform initial step per channel.
        ssm_lr: learning rate of A, dt and B (None: the optimizer's).   backend: passed to the ops.
    """

    def __init__(self, d_model: int, d_state: int = 64, *, init: str = "s4d-lin", disc: str = "zoh",
                 dt_min: float = 1e-3, dt_max: float = 1e-1, ssm_lr: float | None = 1e-3,
                 transposed: bool = False, backend: str = "auto", dtype: torch.dtype = torch.float32,
                 device=None, seed: int | None = None):
        super().__init__()
        for name, v in (("d_model", d_model), ("d_state", d_state)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"S4D: {name} must be an int >= 1, got {v!r}")
        if d_state % 2:
            raise ValueError(f"S4D: d_state must be even (conjugate pairs: N = d_state / 2 modes), got {d_state}")
        if init not in INITS:
            raise ValueError(f"S4D: init must be one of {tuple(INITS)}, got {init!r}")
        if disc not in DISCRETISATIONS:
            raise ValueError(f"S4D: disc must be one of {DISCRETISATIONS}, got {disc!r}")
        if not (0 < dt_min <= dt_max):
            raise ValueError(f"S4D: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"S4D: dtype must be torch.float32 or torch.float64, got {dtype}")
        self.d_model, self.d_state, self.transposed = d_model, d_state, transposed
        self.disc, self.backend, self.init = disc, backend, init
        H, N = d_model, d_state // 2
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        A = torch.as_tensor(INITS[init](d_state), dtype=torch.complex128).expand(H, N)
        log_dt = math.log(dt_min) + (math.log(dt_max) - math.log(dt_min)) * torch.rand(H, generator=g, dtype=torch.float64)
        C = torch.complex(torch.randn(H, N, generator=g, dtype=torch.float64),
                          torch.randn(H, N, generator=g, dtype=torch.float64)) / math.sqrt(2)
        kw = dict(dtype=dtype, device=device)
        # A = -exp(log_A_real) + i A_imag keeps Re A < 0 whatever the optimizer does
        _ssm_param(self, "log_A_real", torch.log(-A.real).to(**kw), ssm_lr)
        _ssm_param(self, "A_imag", A.imag.clone().to(**kw), ssm_lr)
        _ssm_param(self, "log_dt", log_dt.to(**kw), ssm_lr)
        _ssm_param(self, "B", torch.view_as_real(torch.ones(H, N, dtype=torch.complex128)).to(**kw), ssm_lr)
        self.C = nn.Parameter(torch.view_as_real(C).to(**kw))
        self.D = nn.Parameter(torch.randn(H, generator=g, dtype=torch.float64).to(**kw))

    def discrete(self):
        """(dA, dB, C, log dA): the discretised system, complex (H, N) each."""
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)
        dt = torch.exp(self.log_dt).unsqueeze(-1)
        B, C = torch.view_as_complex(self.B), torch.view_as_complex(self.C)
        dtA = dt * A
        if self.disc == "zoh":
            return torch.exp(dtA), (torch.exp(dtA) - 1) / A * B, C, dtA
        dA = (1 + dtA / 2) / (1 - dtA / 2)
        return dA, dt * B / (1 - dtA / 2), C, torch.log(dA)

    def kernel(self, L: int) -> torch.Tensor:
        """The convolution kernel K (H, L)."""
        _, dB, C, log_dA = self.discrete()
        return dk.vandermonde(C * dB, log_dA, L, backend=self.backend)

    @property
    def _conv_backend(self) -> str:
        """fftconv has no C++ kernels (torch's FFTs are native): a "cpp" layer convolves on "auto"."""
        return "auto" if self.backend == "cpp" else self.backend

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.dim() != 3:
            raise ValueError(f"S4D: input must be (B, L, H) (or (B, H, L) with transposed=True), got {tuple(u.shape)}")
        x = u if self.transposed else u.transpose(1, 2)
        if x.shape[1] != self.d_model:
            raise ValueError(f"S4D: input has {x.shape[1]} channels, the layer d_model={self.d_model} "
                             f"(shape {tuple(u.shape)}, transposed={self.transposed})")
        y = dk.fftconv(x, self.kernel(x.shape[-1]), self.D, backend=self._conv_backend)
        return y if self.transposed else y.transpose(1, 2)

    def default_state(self, batch: int) -> torch.Tensor:
        """The zero state, complex (batch, H, N)."""
        p = self.log_dt
        cdt = torch.complex64 if p.dtype == torch.float32 else torch.complex128
        return torch.zeros(batch, self.d_model, self.d_state // 2, dtype=cdt, device=p.device)

    def step(self, u_t: torch.Tensor, state: torch.Tensor):
        """One recurrent step: u_t (B, H) -> (y_t (B, H), new state). Equals forward() step by step."""
        dA, dB, C, _ = self.discrete()
        return dk.ssm_step(u_t, state, dA, dB, C, self.D, backend=self.backend)
