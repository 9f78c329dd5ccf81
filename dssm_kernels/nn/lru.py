"""LRU: the Linear Recurrent Unit of Orvieto et al. (2023), one MIMO diagonal state run by a diagonal scan.

N = d_state / 2 complex modes with eigenvalues in exponential form and a normalisation gamma:

    lambda = exp(-exp(nu_log) + i exp(theta_log))          (|lambda| < 1 and a positive phase, always)
    x_t = lambda * x_{t-1} + gamma * (B u_t),   gamma = exp(gamma_log), initially sqrt(1 - |lambda|^2),
    y_t = Re(C x_t) + D * u_t,                   u_t, y_t real (H,), B (N, H), C (H, N) complex, D (H,)

(gamma keeps the state's variance near the input's however close |lambda| is to 1). Initialisation: |lambda|
uniform on the ring r_min <= |lambda| <= r_max (its density), phase uniform in [0, max_phase], B and C
complex normal scaled by 1 / sqrt(2H) and 1 / sqrt(N). forward() forms v_t = gamma B u_t for the whole
sequence and runs dk.diag_scan; step() is one update of the same recurrence; they agree.

As a system (modal_form, for reduction) it is the ZOH discretisation with dt = 1 of x' = lam x + B_c u,
y = 2 Re(C_c x) + D u: lam = log(lambda) = -exp(nu_log) + i exp(theta_log), B_c = gamma B lam / expm1(lam),
C_c = C / 2. with_modal_form maps any stable modes back (a mode of negative phase is conjugated with its
vectors, which leaves 2 Re(C x) unchanged; a real one takes the phase REAL_PHASE, see there).
"""
from __future__ import annotations

import math

import torch

import dssm_kernels as dk
from dssm_kernels._validate import check_number, complex_dtype_of
from dssm_kernels.nn._base import SSMLayer, crandn, mimo_modal_tensors, seeded_generator, ssm_param

# A real eigenvalue (phase 0) has no exp-parameterised phase: it gets this one instead, which moves the
# pole by |lambda| * 1e-12 (a relative change of the mode's response below 1e-12 / (1 - |lambda|)).
REAL_PHASE = 1e-12


class LRU(SSMLayer):
    """Drop-in layer: (B, L, H) -> (B, L, H), or (B, H, L) with transposed=True.

    Args:
        d_model: H.   d_state: the real size of the shared state (even; N = d_state / 2 complex modes).
        r_min, r_max: the ring |lambda| is drawn from (0 <= r_min < r_max < 1).   max_phase: phases in
            [0, max_phase] (> 0).   ssm_lr: learning rate of nu, theta, gamma, B (None: the optimizer's).

    Example:
        >>> import torch
        >>> from dssm_kernels.nn import LRU
        >>> layer = LRU(d_model=4, d_state=16, seed=0)
        >>> layer(torch.randn(2, 100, 4)).shape
        torch.Size([2, 100, 4])
    """

    _config_options = ("r_min", "r_max", "max_phase", "ssm_lr", "transposed", "l_max")

    def __init__(self, d_model: int, d_state: int = 64, *, r_min: float = 0.4, r_max: float = 0.99,
                 max_phase: float = 2 * math.pi, ssm_lr: float | None = 1e-3, transposed: bool = False,
                 backend: str = "auto", dtype: torch.dtype = torch.float32, device=None, seed: int | None = None,
                 l_max: int | None = None):
        super().__init__(d_model, d_state, transposed=transposed, backend=backend, dtype=dtype, l_max=l_max)
        for name, v in (("r_min", r_min), ("r_max", r_max)):
            if not 0 <= check_number("LRU", name, v) < 1:
                raise ValueError(f"LRU: {name} must be a number in [0, 1), got {v!r}")
        if not r_min < r_max:
            raise ValueError(f"LRU: need r_min < r_max, got r_min={r_min}, r_max={r_max}")
        check_number("LRU", "max_phase", max_phase, positive=True)
        self.r_min, self.r_max, self.max_phase, self.ssm_lr = r_min, r_max, max_phase, ssm_lr
        N, H = d_state // 2, d_model
        g = seeded_generator("LRU", seed)
        u1 = torch.rand(N, generator=g, dtype=torch.float64)
        u2 = torch.rand(N, generator=g, dtype=torch.float64)
        # |lambda|^2 uniform on [r_min^2, r_max^2]: the ring's area density
        modulus = torch.sqrt(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2)
        phase = (u2 * max_phase).clamp(min=REAL_PHASE)
        lam = torch.complex(torch.log(modulus), phase)                      # log(lambda)
        B = crandn(N, H, g=g) / math.sqrt(H)       # complex normal with E|b|^2 = 1 / H (the paper's 1 / sqrt(2H) per part)
        C = crandn(H, N, g=g) / math.sqrt(N / 2)
        D = torch.randn(H, generator=g, dtype=torch.float64)
        self._set(lam, torch.sqrt(1 - modulus ** 2), B, C, D, dtype=dtype, device=device)

    def _set(self, log_lambda, gamma, B, C, D, *, dtype, device):
        """(Re)register the parameters from log(lambda) (N,) (Re < 0, Im > 0), gamma (N,), B (N, H), C (H, N),
        D (H,)."""
        kw = dict(dtype=dtype, device=device)
        ckw = dict(dtype=complex_dtype_of(dtype), device=device)
        ssm_param(self, "nu_log", torch.log(-log_lambda.real).to(**kw), self.ssm_lr)
        ssm_param(self, "theta_log", torch.log(log_lambda.imag).to(**kw), self.ssm_lr)
        ssm_param(self, "gamma_log", torch.log(gamma).to(**kw), self.ssm_lr)
        ssm_param(self, "B", B.to(**ckw), self.ssm_lr)
        self.C = torch.nn.Parameter(torch.view_as_real(C.to(**ckw)).contiguous())
        self.D = torch.nn.Parameter(torch.as_tensor(D, dtype=torch.float64).to(**kw))

    def discrete(self):
        """(lambda (N,), gamma B (N, H), C (H, N)) complex: the recurrence step() and the scan run."""
        log_lambda = torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log))
        B = torch.exp(self.gamma_log).unsqueeze(-1) * torch.view_as_complex(self.B)
        return torch.exp(log_lambda), B, torch.view_as_complex(self.C)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self._scan(u, None, "LRU")[0]

    def scan(self, u: torch.Tensor, state: torch.Tensor | None = None):
        """(y like forward(u), last state (B, N)) from `state` ((B, N) as default_state(B) gives, or None)."""
        return self._scan(u, state, "LRU.scan")

    def _scan(self, u: torch.Tensor, state, who: str):
        x = self._channels_first(u, who).transpose(1, 2)  # (B, L, H)
        self._check_state(state, x.shape[0], who)
        lam, B, C = self.discrete()
        xs, last = dk.diag_scan(x.to(B.dtype) @ B.transpose(0, 1), lam, state, backend=self.backend)
        y = (xs @ C.transpose(0, 1)).real + self.D * x
        return self._restore(y.transpose(1, 2).to(u.dtype)), last

    def _state_shape(self, batch: int) -> tuple:
        """(batch, N): one state shared by all channels."""
        return (batch, self.d_state // 2)

    def step(self, u_t: torch.Tensor, state: torch.Tensor | None):
        """One recurrent step: u_t (B, H) -> (y_t (B, H), new state (B, N)). Equals forward() step by step.
        state: what default_state(B) or the previous step gave; None is the zero state."""
        state = self._check_step(u_t, state)
        lam, B, C = self._cached("discrete", self.discrete)
        new = lam * state + u_t.to(B.dtype) @ B.transpose(0, 1)
        return ((new @ C.transpose(0, 1)).real + self.D * u_t).to(u_t.dtype), new

    # --- reduction hooks (dssm_kernels.reduction.layers) ----------------------------------------------
    def modal_form(self) -> dict:
        """The layer as one MIMO system (float64; module docstring): lam (N,), B (N, H), C (H, N), D (H,),
        dt = 1, disc "zoh", mimo=True."""
        with torch.no_grad():
            lam = torch.complex(-torch.exp(self.nu_log.double()), torch.exp(self.theta_log.double()))
            B = torch.exp(self.gamma_log.double()).unsqueeze(-1) * torch.view_as_complex(self.B).to(torch.complex128)
            B = B * (lam / torch.expm1(lam)).unsqueeze(-1)
            C = torch.view_as_complex(self.C).to(torch.complex128) / 2
            return dict(lam=lam, B=B, C=C, D=self.D.double(), dt=torch.tensor(1.0, dtype=torch.float64), disc="zoh",
                        mimo=True)

    def with_modal_form(self, lam, B, C, D=None, dt=None) -> "LRU":
        """A new LRU with this one's options holding the given ZOH system (modal_form's conventions): lam (N,)
        with Re lam < 0, B (N, H), C (H, N), D (H,) (None: this layer's), dt a positive scalar (None: 1)."""
        who = "LRU.with_modal_form"
        lam, B, C, D, dt = mimo_modal_tensors(who, self, lam, B, C, D, dt)
        if not bool((lam.real < 0).all()):
            raise ValueError(f"{who}: every mode needs Re lam < 0 (|lambda| < 1), got max Re lam {lam.real.max().item()}")
        z = lam * dt
        dB = torch.expm1(z).unsqueeze(-1) / lam.unsqueeze(-1) * B
        flip = z.imag < 0                     # conjugate the mode with its vectors: 2 Re(C x) is unchanged
        z = torch.where(flip, z.conj(), z)
        dB = torch.where(flip.unsqueeze(-1), dB.conj(), dB)
        C = torch.where(flip.unsqueeze(0), C.conj(), C)
        z = torch.complex(z.real, z.imag.clamp(min=REAL_PHASE))
        gamma = torch.sqrt(-torch.expm1(2 * z.real))                       # sqrt(1 - |lambda|^2)
        new = LRU(self.d_model, 2 * lam.shape[0], r_min=self.r_min, r_max=self.r_max, max_phase=self.max_phase,
                  ssm_lr=self.ssm_lr, transposed=self.transposed, backend=self.backend, dtype=self._float,
                  device=self._device, l_max=self.l_max)
        with torch.no_grad():
            new._set(z, gamma, dB / gamma.unsqueeze(-1), 2 * C, D, dtype=self._float, device=self._device)
        return new

    def extra_repr(self) -> str:
        return super().extra_repr() + f", r_min={self.r_min}, r_max={self.r_max}"

