"""Backend dispatch: names, DSSM_BACKEND, explicit backends that cannot run, "auto" choices."""
import pytest
import torch

import dssm_kernels as dk
from dssm_kernels import _backend
from dssm_kernels.ops.vandermonde import KERNELS  # the backends implementing vandermonde's primitives

C64 = torch.complex64


def _args():
    return torch.ones(3, dtype=C64), torch.full((3,), -0.1 + 0.5j, dtype=C64), 8


def _ran_kernels(out: torch.Tensor) -> bool:
    """Triton and C++ run through the op's autograd.Function; the reference is plain torch ops."""
    return type(out.grad_fn).__name__.startswith("VandermondeFunction")


def _grad_args():
    v, x, L = _args()
    return v.requires_grad_(), x, L


def test_unknown_backend_name():
    with pytest.raises(ValueError, match=r"vandermonde: backend must be one of \('auto', 'reference', 'triton', 'cpp'\), got 'cuda'"):
        dk.vandermonde(*_args(), backend="cuda")


def test_unknown_env_backend(monkeypatch):
    monkeypatch.setenv("DSSM_BACKEND", "fast")
    with pytest.raises(ValueError, match=r"environment variable DSSM_BACKEND must be one of .* got 'fast'"):
        dk.vandermonde(*_args())


def test_env_overrides_auto_but_not_an_explicit_backend(monkeypatch):
    monkeypatch.setenv("DSSM_BACKEND", "triton")
    assert _ran_kernels(dk.vandermonde(*_grad_args()))
    assert not _ran_kernels(dk.vandermonde(*_grad_args(), backend="reference"))
    monkeypatch.setenv("DSSM_BACKEND", "reference")
    assert not _ran_kernels(dk.vandermonde(*_grad_args()))


def test_auto_on_cpu_is_the_fastest_cpu_path():
    """C++ where built, else the reference; never the (far slower) Triton interpreter."""
    cpu = torch.device("cpu")
    expected = "cpp" if _backend.cpp_unavailable_reason() is None else "reference"
    assert _backend.resolve_backend("vandermonde", "auto", cpu, KERNELS) == expected
    # an op without C++ kernels runs the reference
    assert _backend.resolve_backend("fftconv", "auto", cpu, ("triton",)) == "reference"


def test_cpp_unavailable_warns_once(monkeypatch):
    monkeypatch.setattr(_backend, "cpp_unavailable_reason", lambda: "it was switched off (test)")
    monkeypatch.setattr(_backend, "_warned_cpp", False)
    cpu = torch.device("cpu")
    with pytest.warns(RuntimeWarning, match=r"'cpp' is unavailable, so CPU tensors run the plain-torch reference: "
                                             r"it was switched off \(test\)"):
        assert _backend.resolve_backend("vandermonde", "auto", cpu, KERNELS) == "reference"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _backend.resolve_backend("cauchy", "auto", cpu, KERNELS) == "reference"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_on_cuda_is_triton():
    v, x, L = _grad_args()
    assert _ran_kernels(dk.vandermonde(v.detach().cuda().requires_grad_(), x.cuda(), L))


def test_cpp_says_why_it_is_unavailable(monkeypatch):
    monkeypatch.setattr(_backend, "cpp_unavailable_reason",
                        lambda: "the C++ extension dssm_kernels._C is not built: it was switched off (test)")
    with pytest.raises(RuntimeError, match=r"vandermonde: backend 'cpp' is unavailable: .*not built: it was switched off"):
        dk.vandermonde(*_args(), backend="cpp")
    monkeypatch.setenv("DSSM_BACKEND", "cpp")
    with pytest.raises(RuntimeError, match=r"backend 'cpp' is unavailable"):
        dk.vandermonde(*_args())


def test_cpp_for_an_op_without_cpp_kernels():
    with pytest.raises(RuntimeError, match=r"fftconv: backend 'cpp' is unavailable: the C\+\+ extension has no kernel for fftconv"):
        dk.fftconv(torch.ones(1, 1, 4), torch.ones(1, 4), backend="cpp")


def test_cpp_on_cuda_tensors_says_why(monkeypatch):
    monkeypatch.setattr(_backend, "cpp_unavailable_reason", lambda: None)
    with pytest.raises(RuntimeError, match=r"'cpp' is unavailable: the C\+\+ kernels run on CPU tensors, got tensors on meta"):
        _backend.resolve_backend("vandermonde", "cpp", torch.device("meta"), KERNELS)


def test_triton_on_cpu_without_interpreter_says_why(monkeypatch):
    monkeypatch.setattr(_backend, "triton_interpreted", lambda: False)
    with pytest.raises(RuntimeError, match=r"backend 'triton' is unavailable: Triton kernels need CUDA tensors; "
                                           r"for CPU tensors set TRITON_INTERPRET=1"):
        dk.vandermonde(*_args(), backend="triton")


def test_triton_import_failure_is_reported(monkeypatch):
    monkeypatch.setattr(_backend, "_triton_import_error", lambda: "triton cannot be imported (ImportError: x)")
    with pytest.raises(RuntimeError, match=r"backend 'triton' is unavailable: triton cannot be imported"):
        dk.vandermonde(*_args(), backend="triton")
    # "auto" does not pick an unavailable Triton, whatever the device
    for dev in ("cpu", "cuda"):
        assert _backend.resolve_backend("vandermonde", "auto", torch.device(dev), KERNELS) != "triton"
