"""Test set-up: Triton runs compiled on a GPU, interpreted on a CPU (set before any kernel is defined)."""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# No op call in the tests may allocate more than 4 GiB (the ops check before allocating): a drawn or
# mistaken size fails the test instead of swapping out a shared CI machine.
os.environ.setdefault("DSSM_MAX_ALLOC_BYTES", str(4 * 2**30))

import pytest  # noqa: E402

from dssm_kernels.ops import _primitives  # noqa: E402

import testing  # noqa: E402  (python_tests/ is on sys.path through rootdir conftest discovery)


@pytest.fixture(autouse=True)
def _nan_filled_outputs():
    """Kernel outputs start as NaN (Triton and C++), so an element a kernel forgets to write fails its test."""
    _primitives.fill_outputs_with_nan(True)
    yield
    _primitives.fill_outputs_with_nan(False)


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch):
    """A DSSM_BACKEND in the caller's environment must not change which backend a test runs."""
    monkeypatch.delenv("DSSM_BACKEND", raising=False)


@pytest.fixture
def device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("DSSM_SLOW_TESTS", "0") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set DSSM_SLOW_TESTS=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    """Worst relative RMS error per op, backend and quantity, with the tolerance it had to meet."""
    rows = testing.worst_errors()
    if not rows:
        return
    tr = terminalreporter
    tr.section("parity: worst relative RMS error against the float64 reference")
    tr.write_line(f"{'op':<24}{'backend':<12}{'dtype':<19}{'quantity':<14}{'error':>11}{'tolerance':>12}{'ratio':>8}")
    for (op, backend, dtype, what), (err, tol) in sorted(rows.items()):
        tr.write_line(f"{op:<24}{backend:<12}{dtype:<19}{what:<14}{err:>11.3e}{tol:>12.3e}{err / tol:>8.3f}")
