"""Sizes are checked before anything is allocated: every op, every backend, raises a ValueError naming
what it would allocate and the limit (DSSM_MAX_ALLOC_BYTES, default 80% of the device's memory),
for a huge L and for stride-0 (expanded) inputs whose contiguous copies would be huge, instead of
trying to allocate tens of GiB or failing inside torch."""
import pytest
import torch

import dssm_kernels as dk
from dssm_kernels.ops import _common
from dssm_kernels.ops.vandermonde import _allocations as vandermonde_allocations
from testing import backends_under_test

C64 = torch.complex64
BIG = 2**31
LIMIT = 2**30  # 1 GiB: every case below needs more, whatever the machine


def _cases():
    """(op, has C++ kernels, call(backend)) with inputs that are small in memory (stride 0) but whose
    contiguous copies, outputs or intermediates are not."""
    N, H = 4, 2
    modes = torch.full((N,), -0.1 + 0.5j, dtype=C64)
    modes_hn = modes.expand(H, N)
    return [
        ("vandermonde", True, lambda b: dk.vandermonde(modes, modes, BIG, backend=b)),
        ("vandermonde_transpose", True,
         lambda b: dk.vandermonde_transpose(torch.zeros(1).expand(BIG), modes, modes, backend=b)),
        ("cauchy", True, lambda b: dk.cauchy(modes, torch.zeros(1, dtype=C64).expand(BIG), modes, backend=b)),
        ("fftconv", False, lambda b: dk.fftconv(torch.zeros(1).expand(1, 1, BIG), torch.ones(1, 3), backend=b)),
        ("ssm_scan", True,
         lambda b: dk.ssm_scan(torch.zeros(1).expand(1, H, BIG), modes_hn, modes_hn, modes_hn, backend=b)),
        ("ssm_step", True,
         lambda b: dk.ssm_step(torch.zeros(1).expand(BIG, H), None, modes_hn, modes_hn, modes_hn, backend=b)),
        ("diag_scan", True, lambda b: dk.diag_scan(torch.zeros(1, dtype=C64).expand(1, BIG, N), modes, backend=b)),
    ]


@pytest.mark.parametrize("backend", ["reference", *backends_under_test()])
@pytest.mark.parametrize("case", _cases(), ids=[c[0] for c in _cases()])
def test_huge_sizes_raise_before_allocating(case, backend, monkeypatch):
    op, has_cpp, call = case
    if backend == "cpp" and not has_cpp:
        pytest.skip(f"{op} has no C++ kernels")
    monkeypatch.setenv("DSSM_MAX_ALLOC_BYTES", str(LIMIT))
    with pytest.raises(ValueError, match=rf"{op}: this call would allocate [0-9.]+ GiB \([0-9]+ bytes\), more than "
                                         r"the limit of 1 GiB \(DSSM_MAX_ALLOC_BYTES\): .* x \("):
        call(backend)


@pytest.mark.parametrize("backend", ["reference", *backends_under_test()])
def test_length_beyond_int64(backend, monkeypatch):
    """L = 2**63 with the default limit: a ValueError, not an OverflowError from inside torch."""
    monkeypatch.delenv("DSSM_MAX_ALLOC_BYTES", raising=False)   # conftest caps the suite at 4 GiB
    x = torch.full((3,), -0.1 + 0.5j, dtype=C64)
    with pytest.raises(ValueError, match=r"vandermonde: this call would allocate .* more than the limit of .* GiB "
                                         r"\(80% of the CPU memory of .* GiB; DSSM_MAX_ALLOC_BYTES overrides it\)"):
        dk.vandermonde(x, x, 2**63, backend=backend)


@pytest.mark.skipif("cpp" not in backends_under_test(), reason="needs the C++ extension")
def test_the_issue_example_with_the_default_limit(monkeypatch):
    """dk.vandermonde(v, x, 2**31): the output and its gradient alone are 16 GiB; with a limit set
    just below what the call needs, it raises; just above, the check lets it through (to the kernel,
    which is not run here: the limit is computed, not probed)."""
    x = torch.full((3,), -0.1 + 0.5j, dtype=C64)
    need = sum(a.bytes() for a in vandermonde_allocations("cpp", x, x, BIG))
    assert need >= 2 * 4 * BIG
    monkeypatch.setenv("DSSM_MAX_ALLOC_BYTES", str(need - 1))
    with pytest.raises(ValueError, match=r"the output and its gradient: 2 x \(2147483648,\) float32 = 16 GiB"):
        dk.vandermonde(x, x, BIG, backend="cpp")
    monkeypatch.setenv("DSSM_MAX_ALLOC_BYTES", str(need))
    _common.check_allocations("vandermonde", torch.device("cpu"), vandermonde_allocations("cpp", x, x, BIG))


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1.5e9"])
def test_bad_limit_setting(value, monkeypatch):
    monkeypatch.setenv("DSSM_MAX_ALLOC_BYTES", value)
    x = torch.ones(3, dtype=C64)
    with pytest.raises(ValueError, match=rf"vandermonde: environment variable DSSM_MAX_ALLOC_BYTES must be a whole "
                                         rf"number of bytes >= 1, got '{value}'"):
        dk.vandermonde(x, x, 4)
