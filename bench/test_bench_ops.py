"""pytest-benchmark suite: every op, forward and forward+backward, on each backend that runs natively.

    .venv/bin/python -m pytest bench --benchmark-json=bench/results/<machine>.json

Ratios between backends are read from one run (same machine, same inputs). On CUDA every timed
call ends with torch.cuda.synchronize().
"""
import math

import pytest
import torch

import dssm_kernels as dk
from conftest import s4d_params, timed_backends

H, N, L, B = 64, 32, 1024, 4


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _s4d(device, grad):
    u = torch.randn(B, H, L, generator=torch.Generator().manual_seed(1))
    return [t.to(device).requires_grad_(grad) for t in (*s4d_params(H, N), u)]


def _cases(device, grad):
    """Inputs are leaves, so repeated backward passes never walk a shared graph twice."""
    dtA, dB, C, u = _s4d(device, grad)

    def leaf(t):
        return t.detach().requires_grad_(grad)
    omega = torch.exp(-2j * math.pi * torch.arange(L // 2 + 1) / (L + 1))
    z = (2 / 0.01 * (1 - omega) / (1 + omega)).to(torch.complex64).to(device)
    k = torch.randn(H, L, device=device, requires_grad=grad)
    D = torch.randn(H, device=device, requires_grad=grad)
    state = torch.zeros(B, H, N, dtype=torch.complex64, device=device)
    return {
        "vandermonde": (dk.vandermonde, (leaf(C * dB), dtA, L)),
        "vandermonde_transpose": (dk.vandermonde_transpose, (leaf(u[0]), dB, dtA)),
        "cauchy": (dk.cauchy, (C, z, leaf(dtA / 0.01))),
        "fftconv": (dk.fftconv, (u, k, D)),
        "ssm_scan": (dk.ssm_scan, (u, leaf(torch.exp(dtA)), dB, C, D)),
        "ssm_step": (dk.ssm_step, (leaf(u[..., 0]), state, leaf(torch.exp(dtA)), dB, C, D)),
        "diag_scan": (dk.diag_scan, (leaf(u.transpose(1, 2).to(dB.dtype) @ dB), leaf(torch.exp(dtA[0])))),
    }


def _loss(out):
    outs = out if isinstance(out, tuple) else (out,)
    return sum((o.real if o.is_complex() else o).float().sum() for o in outs)


OPS = ["vandermonde", "vandermonde_transpose", "cauchy", "fftconv", "ssm_scan", "ssm_step", "diag_scan"]


@pytest.mark.parametrize("backend", timed_backends())
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("direction", ["forward", "forward+backward"])
def test_bench_op(benchmark, op, backend, direction, device):
    if op == "fftconv" and backend == "cpp":
        pytest.skip("fftconv has no C++ kernels: torch's FFTs already run natively (backend 'auto')")
    grad = direction != "forward"
    fn, args = _cases(device, grad)[op]
    benchmark.group = f"{op} {direction}"
    benchmark.extra_info.update(op=op, backend=backend, direction=direction, H=H, N=N, L=L, B=B)

    def run():
        out = fn(*args, backend=backend)
        if grad:
            _loss(out).backward()
        _sync(device)

    with torch.set_grad_enabled(grad):
        benchmark.pedantic(run, rounds=5, warmup_rounds=1)
