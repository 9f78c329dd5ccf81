"""Benchmarks time only backends that run natively here: the Triton interpreter is a test tool, not a backend to time."""
import math
import platform

import pytest
import torch

from dssm_kernels._backend import cpp_unavailable_reason, triton_unavailable_reason
from dssm_kernels.workflows.reporting import cpu_model


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


_PEAK = {}


def fma_peak() -> dict:
    """The float32 FMA peak of one core, measured (dssm_kernels._C: a vector FMA microbenchmark and a
    dependent-add clock), with its factors: lanes (the extension's vector width), clock (cycles/s),
    fma_units (measured FMA rate / (lanes x clock), rounded), flops_per_core (2 x lanes x units x clock,
    from the factors; flops_measured is the microbenchmark's own). Empty without the extension."""
    if not _PEAK and cpp_unavailable_reason() is None:
        from dssm_kernels import _C
        measured = _C.fma_peak_flops(300.0)
        clock = _C.clock_hz(200.0)
        lanes = _C.simd_lanes()
        units = max(1, round(measured / (2 * lanes * clock))) if clock > 0 else None
        _PEAK.update(lanes=lanes, clock_hz=clock, fma_units=units, flops_measured=measured,
                     flops_per_core=2 * lanes * units * clock if units else measured)
    return dict(_PEAK)


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["torch"] = torch.__version__
    machine_info["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    machine_info["cpu_model"] = cpu_model()
    machine_info["fma_peak"] = fma_peak()
    if cpp_unavailable_reason() is None:
        from dssm_kernels import _C
        machine_info["extension"] = _C.build_info()
