"""Benchmarks time only backends that run natively here: the Triton interpreter is a test tool, not a backend to time."""
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


@pytest.fixture
def device():
    return _device()


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["torch"] = torch.__version__
    machine_info["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
