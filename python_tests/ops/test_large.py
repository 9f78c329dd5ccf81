"""Production-sized parity cases, one per op: for compiled Triton on a GPU (DSSM_SLOW_TESTS=1).

CI skips them: under the interpreter they take minutes and the float64 references need GBs.
Same rule as the odd-size grid: error <= 2 * error(reference in float32) + 1e-6.
"""
import math

import pytest
import torch

import dssm_kernels as dk
from testing import check_parity, gen, s4d_lin

pytestmark = pytest.mark.slow
H, N, L, B = 64, 64, 8192, 4


def _run(op, inputs, grads, device, **kw):
    inputs = {k: (t.to(device) if isinstance(t, torch.Tensor) else t) for k, t in inputs.items()}
    fn = getattr(dk, op)
    check_parity(op, "triton", lambda **a: fn(**a, backend="triton"), getattr(dk, f"{op}_ref"), inputs, grads, **kw)


def test_large_vandermonde(device):
    _, _, dtA, dB, C = s4d_lin(H, N, gen(1))
    _run("vandermonde", {"v": C * dB, "x": dtA, "L": L}, ["v", "x"], device)


def test_large_vandermonde_transpose(device):
    g = gen(2)
    _, _, dtA, dB, _ = s4d_lin(H, N, g)
    _run("vandermonde_transpose", {"u": torch.randn(H, L, dtype=torch.float64, generator=g), "v": dB, "x": dtA},
         ["u", "v", "x"], device)


def test_large_cauchy(device):
    g = gen(3)
    A, dt, _, _, C = s4d_lin(H, N, g)
    omega = torch.exp(-2j * math.pi * torch.arange(L // 2 + 1, dtype=torch.float64) / (L + 1))
    _run("cauchy", {"v": C * dt, "z": 2 * (1 - omega) / (1 + omega), "w": dt * A}, ["v", "w"], device)


@pytest.mark.parametrize("u_dtype", [torch.float32, torch.bfloat16])
def test_large_fftconv(device, u_dtype):
    g = gen(4)
    _, _, dtA, dB, C = s4d_lin(H, N, g)
    k = dk.vandermonde_ref(C * dB, dtA, L)
    _run("fftconv", {"u": torch.randn(B, H, L, dtype=torch.float64, generator=g), "k": k,
                     "D": torch.randn(H, dtype=torch.float64, generator=g)}, ["u", "k", "D"], device,
         low_dtypes={"u": u_dtype})


def test_large_ssm_scan(device):
    g = gen(5)
    _, _, dtA, dB, C = s4d_lin(H, N, g)
    _run("ssm_scan", {"u": torch.randn(B, H, L, dtype=torch.float64, generator=g), "dA": dtA.exp(), "dB": dB,
                      "C": C, "D": torch.randn(H, dtype=torch.float64, generator=g)},
         ["u", "dA", "dB", "C", "D"], device)


def test_large_ssm_step(device):
    g = gen(6)
    _, _, dtA, dB, C = s4d_lin(768, 32, g)
    state = torch.complex(torch.randn(64, 768, 32, dtype=torch.float64, generator=g),
                          torch.randn(64, 768, 32, dtype=torch.float64, generator=g))
    _run("ssm_step", {"u": torch.randn(64, 768, dtype=torch.float64, generator=g), "state": state,
                      "dA": dtA.exp(), "dB": dB, "C": C, "D": torch.randn(768, dtype=torch.float64, generator=g)},
         ["u", "state", "dA", "dB", "C", "D"], device)
