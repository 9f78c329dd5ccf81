"""Shared input generators for the op tests: odd sizes and realistic S4D-Lin parameters."""
from __future__ import annotations

import math

import torch

import dssm_kernels as dk
from dssm_kernels._backend import cpp_unavailable_reason

NS = (1, 3, 32, 33)
LS = (1, 7, 129, 1000)
BATCHES = ((), (2,), (2, 3))
GRID = [(n, l, b) for n in NS for l in LS for b in BATCHES]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def crandn(*shape, g: torch.Generator) -> torch.Tensor:
    return torch.complex(torch.randn(shape, dtype=torch.float64, generator=g),
                         torch.randn(shape, dtype=torch.float64, generator=g)) / math.sqrt(2)


def stable_modes(*shape, g: torch.Generator, decay=(0.0, 0.05), freq=1.0) -> torch.Tensor:
    """Discrete-time exponents x = dt*A with Re x in -[decay range], Im x ~ N(0, freq^2)."""
    re = -(decay[0] + (decay[1] - decay[0]) * torch.rand(shape, dtype=torch.float64, generator=g))
    return torch.complex(re, freq * torch.randn(shape, dtype=torch.float64, generator=g))


def s4d_lin(H: int, N: int, g: torch.Generator, dt_min=1e-3, dt_max=1e-1):
    """S4D-Lin modes A_n = -1/2 + i pi n with per-channel dt log-uniform in [dt_min, dt_max].

    Returns (A (H, N) continuous modes, dt (H, 1), dtA (H, N), dB (H, N) ZOH with B = 1,
    C (H, N) random), all complex128.
    """
    n = torch.arange(N, dtype=torch.float64)
    A = torch.complex(torch.full((H, N), -0.5, dtype=torch.float64), math.pi * n.expand(H, N))
    log_dt = math.log(dt_min) + (math.log(dt_max) - math.log(dt_min)) * torch.rand(H, 1, dtype=torch.float64, generator=g)
    dt = log_dt.exp()
    dtA = dt * A
    dB = (torch.exp(dtA) - 1) / A
    C = crandn(H, N, g=g)
    return A, dt, dtA, dB, C


def backends_under_test(has_cpp: bool = True) -> list[str]:
    """Triton always (compiled on a GPU, interpreted on a CPU); "cpp" where the op has C++ kernels and
    the extension is built (test_extension.py fails CI if it should have been and was not)."""
    return ["triton"] + (["cpp"] if has_cpp and cpp_unavailable_reason() is None else [])


OPS = ("vandermonde", "vandermonde_transpose", "cauchy", "fftconv", "ssm_scan", "ssm_step", "diag_scan")


def tiny_call(op: str, seed: int = 3):
    """(call, args) for one small call of `op`: args are float64 / complex128 tensors, all of them
    differentiable, and call(backend, *args) runs the op on `backend` (sizes the Triton interpreter
    runs in a blink)."""
    g = gen(seed)
    H, N, L, B = 3, 4, 9, 2
    real = lambda *shape: torch.randn(shape, dtype=torch.float64, generator=g)  # noqa: E731
    dA = torch.exp(stable_modes(H, N, g=g))
    args = {
        "vandermonde": lambda: (crandn(H, N, g=g), stable_modes(H, N, g=g)),
        "vandermonde_transpose": lambda: (real(H, L), crandn(H, N, g=g), stable_modes(H, N, g=g)),
        "cauchy": lambda: (crandn(H, N, g=g), crandn(L, g=g), stable_modes(H, N, g=g, decay=(0.1, 1.0))),
        "fftconv": lambda: (real(B, H, L), real(H, L), real(H)),
        "ssm_scan": lambda: (real(B, H, L), dA, crandn(H, N, g=g), crandn(H, N, g=g), real(H), crandn(B, H, N, g=g)),
        "ssm_step": lambda: (real(B, H), crandn(B, H, N, g=g), dA, crandn(H, N, g=g), crandn(H, N, g=g), real(H)),
        "diag_scan": lambda: (crandn(B, L, N, g=g), dA[0], crandn(B, N, g=g)),
    }[op]()
    if op == "vandermonde":
        return (lambda backend, v, x: dk.vandermonde(v, x, L, backend=backend)), args
    return (lambda backend, *a: getattr(dk, op)(*a, backend=backend)), args
