"""What the ops share around their kernels: the op-specific input checks (on top of the package-wide
ones of dssm_kernels._validate, re-exported here for the op modules), the SSM parameters' checks, the
allocation limit, and gradient helpers."""
from __future__ import annotations

import math
import os
from typing import NamedTuple, Sequence

import torch

from dssm_kernels._backend import resolve_backend
from dssm_kernels._validate import (COMPLEX_DTYPES, check_complex, check_dtype_in, check_int, check_same_device,  # noqa: F401
                                    check_same_dtype, check_shape, check_tensor, real_dtype_of)


def check_precision_matches(op: str, real_name: str, real: torch.Tensor, complex_name: str,
                            cplx: torch.Tensor) -> None:
    """A real input must have the precision of the complex ones (float32 with complex64, ...)."""
    want = real_dtype_of(cplx.dtype)
    if real.dtype != want:
        raise TypeError(f"{op}: {real_name} must be {want} to match {complex_name} ({cplx.dtype}), got {real.dtype}")


def broadcast_batch(op: str, names: Sequence[str], shapes: Sequence[Sequence[int]]) -> torch.Size:
    """Broadcast the given batch shapes, or raise ValueError naming the arguments."""
    try:
        return torch.broadcast_shapes(*shapes)
    except RuntimeError:
        got = ", ".join(f"{n}: {tuple(s)}" for n, s in zip(names, shapes))
        raise ValueError(f"{op}: batch shapes of {', '.join(names)} are not broadcastable, got {got}") from None


def check_length(op: str, name: str, L) -> int:
    """A sequence length: an int >= 1."""
    return check_int(op, name, L, 1)


def check_modes(op: str, name: str, t: torch.Tensor) -> None:
    if t.dim() < 1 or t.shape[-1] < 1:
        raise ValueError(f"{op}: {name} must have a last (mode) dimension N >= 1, got shape {tuple(t.shape)}")


def validate_ssm_params(op: str, u: torch.Tensor, batch, dA, dB, C, D, state) -> torch.device:
    """Checks shared by ssm_step and ssm_scan: u real of the precision of dA, dB and C (H, N) with
    H = batch[1], D (H,) real, state (*batch, N) complex; all on one device."""
    B, H = batch
    for name, t in (("dA", dA), ("dB", dB), ("C", C)):
        check_tensor(op, name, t, ndim=2)
        check_complex(op, name, t)
    check_same_dtype(op, ("dA", "dB", "C"), (dA, dB, C))
    if u.is_complex():
        raise TypeError(f"{op}: u must be real ({real_dtype_of(dA.dtype)}), got {u.dtype}")
    check_modes(op, "dA", dA)
    N = dA.shape[-1]
    for name, t in (("dA", dA), ("dB", dB), ("C", C)):
        check_shape(op, f"{name} (H = u.shape[1], N)", t, (H, N))
    check_precision_matches(op, "u", u, "dA", dA)
    names, tensors = ["u", "dA", "dB", "C"], [u, dA, dB, C]
    if D is not None:
        check_tensor(op, "D", D, ndim=1)
        check_precision_matches(op, "D", D, "dA", dA)
        check_shape(op, "D (H,)", D, (H,))
        names.append("D")
        tensors.append(D)
    if state is not None:
        check_tensor(op, "state", state, ndim=3)
        check_complex(op, "state", state)
        check_same_dtype(op, ("dA", "state"), (dA, state))
        check_shape(op, "state (B, H, N)", state, (B, H, N))
        names.append("state")
        tensors.append(state)
    return check_same_device(op, names, tensors)


def contiguous(*tensors):
    """Each tensor made contiguous; None stays None."""
    return tuple(None if t is None else t.contiguous() for t in tensors)


def sum_to_shape(grad: torch.Tensor | None, shape: Sequence[int]) -> torch.Tensor | None:
    """Reduce a gradient computed at a broadcast shape back to an input's own shape."""
    if grad is None:
        return None
    shape = tuple(shape)
    extra = grad.dim() - len(shape)
    if extra > 0:
        grad = grad.sum(dim=tuple(range(extra)))
    dims = tuple(i for i, s in enumerate(shape) if s == 1 and grad.shape[i] != 1)
    if dims:
        grad = grad.sum(dim=dims, keepdim=True)
    return grad.reshape(shape)


def refuse_double_backward(op: str, backend: str) -> None:
    """Raise in a kernel backward that runs with grad mode on, i.e. with create_graph=True for a
    second derivative: the Triton and C++ backward kernels are not differentiable, so their result
    would carry none or only part of the second derivative without a word."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{op}: backend {backend!r} computes first derivatives only, and its backward ran with "
            f"create_graph=True (a second derivative through it); use backend='reference' (plain torch "
            f"ops, differentiable any number of times) for double backward")


# The allocation limit: what one op call may allocate (outputs, saved tensors, contiguous copies of
# broadcast or strided inputs, the reference's (..., N, L) intermediates), checked before anything is
# allocated, so an impossible size fails with a ValueError rather than an out-of-memory kill (Linux
# overcommits: a huge torch.empty "succeeds" and the first write kills the process) or an
# OverflowError from inside torch. The kernels index with 64-bit offsets and launch one-dimensional
# Triton grids, so memory is the only limit on a size.
ALLOC_ENV = "DSSM_MAX_ALLOC_BYTES"
ALLOC_FRACTION = 0.8  # of the physical memory (CPU) or of the device's memory (CUDA)


class Alloc(NamedTuple):
    """`copies` tensors of `shape` and `dtype` that an op call allocates, described by `what`."""
    what: str
    shape: tuple
    dtype: torch.dtype
    copies: int = 1

    def bytes(self) -> int:
        return self.copies * math.prod(self.shape) * self.dtype.itemsize


_memory_bytes: dict = {}


@torch.compiler.assume_constant_result
def _physical_memory() -> int:
    if "cpu" not in _memory_bytes:  # probed once: the op calls on the decoding path pay a dict lookup
        _memory_bytes["cpu"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return _memory_bytes["cpu"]


def allocation_limit(op: str, device: torch.device) -> int | None:
    """The allocation limit in bytes on `device`; None for devices without a known memory size."""
    env = os.environ.get(ALLOC_ENV)
    if env:
        try:
            limit = int(env.strip())
        except ValueError:
            limit = -1
        if limit < 1:
            raise ValueError(f"{op}: environment variable {ALLOC_ENV} must be a whole number of bytes >= 1, "
                             f"got {env!r}")
        return limit
    if device.type == "cpu":
        return int(ALLOC_FRACTION * _physical_memory())
    if device.type == "cuda":
        return int(ALLOC_FRACTION * torch.cuda.get_device_properties(device).total_memory)
    return None


def _limit_source(device: torch.device) -> str:
    if os.environ.get(ALLOC_ENV):
        return ALLOC_ENV
    total = _physical_memory() if device.type == "cpu" else torch.cuda.get_device_properties(device).total_memory
    return (f"{ALLOC_FRACTION:.0%} of the {device.type.upper()} memory of {total / 2**30:.1f} GiB; "
            f"{ALLOC_ENV} overrides it")


def check_allocations(op: str, device: torch.device, allocs: Sequence[Alloc]) -> None:
    """Raise ValueError, before anything is allocated, if `allocs` add up to more than the limit."""
    total = sum(a.bytes() for a in allocs)
    limit = allocation_limit(op, device)
    if limit is not None and total > limit:
        parts = "; ".join(f"{a.what}: {a.copies} x {tuple(a.shape)} {str(a.dtype).replace('torch.', '')} = "
                          f"{a.bytes() / 2**30:.3g} GiB" for a in sorted(allocs, key=Alloc.bytes, reverse=True))
        raise ValueError(f"{op}: this call would allocate {total / 2**30:.3g} GiB ({total} bytes), more than the "
                         f"limit of {limit / 2**30:.3g} GiB ({_limit_source(device)}): {parts}")


def dispatch(op: str, backend: str, device: torch.device, kernels, allocations, reference, function, *args):
    """An op's last step once its inputs are validated: resolve the backend (resolve_backend, over the op's
    `kernels`), check what it would allocate (`allocations(backend)`: a list of Alloc) against the limit,
    then run `reference(*args)` (plain torch, its own autograd) or `function.apply(*args, backend)`."""
    backend = resolve_backend(op, backend, device, kernels)
    check_allocations(op, device, allocations(backend))
    if backend == "reference":
        return reference(*args)
    return function.apply(*args, backend)
