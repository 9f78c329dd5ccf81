"""Backend selection shared by every op.

Rules (DESIGN.md): each op takes ``backend="auto" | "reference" | "triton" | "cpp"``; the environment
variable ``DSSM_BACKEND`` overrides "auto" (read at call time). "auto" picks Triton for CUDA tensors
and the fastest working path for CPU tensors: the C++ kernels of dssm_kernels._C where the op has
one and the extension is built (otherwise the reference, with a one-time warning saying why); the
Triton interpreter is correct but far slower and never chosen by "auto". A backend named
explicitly that cannot run raises RuntimeError with the reason: there is no silent fallback.

Triton kernels are imported lazily, on first use, because ``triton.jit`` reads ``TRITON_INTERPRET``
when a kernel is defined: setting it before the first Triton call is enough to run them on the CPU.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from typing import Collection

import torch

BACKENDS = ("auto", "reference", "triton", "cpp")
_ENV = "DSSM_BACKEND"


# The availability probes import modules and read files; torch.compile must not trace into them.
# assume_constant_result makes dynamo call them once while tracing and bake in the answer (it is
# ignored through functools.lru_cache, hence the explicit caches).
_UNPROBED = object()
_probed: dict = {}


def _cached(key, probe):
    value = _probed.get(key, _UNPROBED)
    if value is _UNPROBED:
        value = _probed[key] = probe()
    return value


def _probe_triton() -> str | None:
    try:
        import triton  # noqa: F401
    except Exception as exc:  # any failure to import means the backend cannot run; say which
        return f"triton cannot be imported ({type(exc).__name__}: {exc})"
    return None


@torch.compiler.assume_constant_result
def _triton_import_error() -> str | None:
    return _cached("triton", _probe_triton)


@torch.compiler.assume_constant_result
def triton_interpreted() -> bool:
    """Whether Triton kernels run under the interpreter (TRITON_INTERPRET=1 when they were defined)."""
    if _triton_import_error() is not None:
        return False
    try:
        from triton import knobs
        return bool(knobs.runtime.interpret)
    except ImportError:  # older triton: the env var itself
        return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_unavailable_reason(device: torch.device) -> str | None:
    """None if Triton kernels can run on tensors of `device`, else why not."""
    err = _triton_import_error()
    if err is not None:
        return err
    if device.type == "cuda":
        return None
    if device.type == "cpu":
        if triton_interpreted():
            return None
        return ("Triton kernels need CUDA tensors; for CPU tensors set TRITON_INTERPRET=1 before the "
                "first Triton call (the interpreter is slow: for tests, not for speed)")
    return f"Triton kernels do not run on device type {device.type!r}"


def _stale_extension() -> str | None:
    """Why the built dssm_kernels._C is from older sources, or None. Builds before the op schemas
    moved to Python (dssm_kernels/ops/_primitives.py) register schemas of their own when loaded,
    which clash with those and abort the process, so the file is checked before it is loaded."""
    spec = importlib.util.find_spec("dssm_kernels._C")
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return None
    with open(spec.origin, "rb") as f:
        if b"TorchLibraryInit" in f.read():
            return (f"{spec.origin} was built from older sources (it registers op schemas of its own); "
                    "rebuild it with `bash scripts/setup.sh` (README)")
    return None


def _probe_cpp() -> str | None:
    stale = _stale_extension()
    if stale is not None:
        return f"the C++ extension dssm_kernels._C cannot be loaded: {stale}"
    try:
        importlib.import_module("dssm_kernels._C")
    except ImportError as exc:
        status = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_C_status.txt")
        if os.path.exists(status):
            with open(status) as f:
                why = f.read().strip()
        else:
            why = f"it does not import ({exc})"
        return (f"the C++ extension dssm_kernels._C is not built: {why}. Reinstall with "
                "`bash scripts/setup.sh` (README) to build it")
    return None


@torch.compiler.assume_constant_result
def cpp_unavailable_reason() -> str | None:
    """None if the compiled extension dssm_kernels._C loads, else why not (setup.py records why it
    skipped or failed the build in dssm_kernels/_C_status.txt)."""
    return _cached("cpp", _probe_cpp)


_warned_cpp = False


def _warn_cpp_unavailable_once(reason: str) -> None:
    """"auto" falls back to the reference on CPU without the extension: say so once, not per call."""
    global _warned_cpp
    if not _warned_cpp:
        _warned_cpp = True
        warnings.warn(f"dssm_kernels: the fast CPU backend 'cpp' is unavailable, so CPU tensors run the "
                      f"plain-torch reference: {reason}", RuntimeWarning, stacklevel=3)


def resolve_backend(op: str, backend: str, device: torch.device, kernels: Collection[str] = ()) -> str:
    """The concrete backend ("reference" | "triton" | "cpp") to run `op` with on `device`.

    `kernels`: the kernel backends that implement every primitive of `op`
    (dssm_kernels.ops._primitives.kernel_backends). Raises ValueError for an unknown name and
    RuntimeError for an explicit backend that cannot run here.
    """
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        env = os.environ.get(_ENV, "").strip()
        if env and env != "auto":
            if env not in BACKENDS:
                raise ValueError(f"{op}: environment variable {_ENV} must be one of {BACKENDS}, got {env!r}")
            return resolve_backend(op, env, device, kernels)
        if device.type == "cuda" and "triton" in kernels and triton_unavailable_reason(device) is None:
            return "triton"
        if device.type == "cpu" and "cpp" in kernels:
            reason = cpp_unavailable_reason()
            if reason is None:
                return "cpp"
            _warn_cpp_unavailable_once(reason)
        return "reference"
    if backend == "triton":
        reason = triton_unavailable_reason(device) if "triton" in kernels else f"{op} has no Triton kernels"
        if reason is not None:
            raise RuntimeError(f"{op}: backend 'triton' is unavailable: {reason}")
    elif backend == "cpp":
        reason = cpp_unavailable_reason() if "cpp" in kernels else f"the C++ extension has no kernel for {op}"
        if reason is None and device.type != "cpu":
            reason = f"the C++ kernels run on CPU tensors, got tensors on {device}"
        if reason is not None:
            raise RuntimeError(f"{op}: backend 'cpp' is unavailable: {reason}")
    return backend


def cpp_extension():
    """The pybind11 module dssm_kernels._C (its kernels, build information, the tests' NaN switch)."""
    reason = cpp_unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    return importlib.import_module("dssm_kernels._C")


def triton_module(name: str):
    """Import dssm_kernels.triton.<name> on first use (see module docstring for why lazily)."""
    return importlib.import_module(f"dssm_kernels.triton.{name}")
