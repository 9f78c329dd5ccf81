"""Benchmarks time only backends that run natively here: the Triton interpreter is a test tool, not a backend to time."""
import math
import platform

import pytest
import torch

from dssm_kernels._backend import cpp_unavailable_reason, triton_unavailable_reason


def _device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def timed_backends():
    dev = _device()
    names = ["reference"]
    if dev.type == "cuda" and triton_unavailable_reason(dev) is None:
        names.append("triton")
    if dev.type == "cpu" and cpp_unavailable_reason() is None:
        names.append("cpp")
    return names


def s4d_params(H: int, N: int, seed: int = 0):
    """S4D-Lin modes with log-uniform dt in [1e-3, 1e-1], ZOH with B = 1: (dtA, dB, C), complex64 (H, N)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.complex(torch.full((N,), -0.5), math.pi * torch.arange(N, dtype=torch.float32))
    dt = torch.exp(torch.empty(H, 1).uniform_(math.log(1e-3), math.log(1e-1), generator=g))
    dtA = dt * A
    dB = (torch.exp(dtA) - 1) / A
    C = torch.complex(torch.randn(H, N, generator=g), torch.randn(H, N, generator=g))
    return dtA, dB, C


@pytest.fixture
def device():
    return _device()


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["torch"] = torch.__version__
    machine_info["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
