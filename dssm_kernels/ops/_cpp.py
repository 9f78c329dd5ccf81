"""The C++ kernels of dssm_kernels._C as torch.library ops (namespace "dssm"), with fake kernels.

Loading the extension registers the ops (csrc/cpu/<family>.cpp); the fake (meta) kernels below give
torch.compile their output shapes, so a compiled model sees one op per call, not a graph break.
Both happen when this module is imported (with dssm_kernels), so the launchers only look up
torch.ops.dssm, which dynamo traces.
Each op mirrors a Triton launcher of the op modules exactly (same arguments, same outputs), so one
autograd.Function per op serves both backends.
"""
from __future__ import annotations

import torch

from dssm_kernels._backend import cpp_unavailable_reason

_EMPTY = (0,)


def _maybe(flag: bool, like: torch.Tensor, shape, dtype=None) -> torch.Tensor:
    return like.new_empty(shape if flag else _EMPTY, dtype=dtype)


def _register_fakes() -> None:
    lib = torch.library

    @lib.register_fake("dssm::vandermonde_rows")
    def _(c, x, L, scale, reverse):
        return x.new_empty((x.shape[0], L), dtype=x.real.dtype)

    @lib.register_fake("dssm::power_sums")
    def _(w, x, reverse, with_deriv):
        return x.new_empty(x.shape), _maybe(with_deriv, x, x.shape)

    @lib.register_fake("dssm::cauchy_rows")
    def _(v, z, w, square):
        return w.new_empty((w.shape[0], z.shape[0]))

    @lib.register_fake("dssm::cauchy_modes")
    def _(g, v, z, w, need_v, need_w):
        return _maybe(need_v, w, w.shape), _maybe(need_w, w, w.shape)

    @lib.register_fake("dssm::ssm_scan_fwd")
    def _(u, dA, dB, C, D, state, save_checkpoints, chunk):
        B, H, L = u.shape
        N = dA.shape[-1]
        return (u.new_empty((B, H, L)), dA.new_empty((B, H, N)),
                _maybe(save_checkpoints, dA, (B, H, -(-L // chunk), N)))

    @lib.register_fake("dssm::ssm_scan_bwd")
    def _(u, dA, dB, C, D, ckpt, chunk, gy, g_last):
        B, H, _ = u.shape
        shape = (B, H, dA.shape[-1])
        return (u.new_empty(u.shape), *(dA.new_empty(shape) for _ in range(4)), u.new_empty((B, H)))

    @lib.register_fake("dssm::ssm_step_fwd")
    def _(u, state, dA, dB, C, D):
        return u.new_empty(u.shape), dA.new_empty((*u.shape, dA.shape[-1]))

    @lib.register_fake("dssm::ssm_step_bwd")
    def _(u, state, dA, dB, C, D, gy, g_new):
        shape = (*u.shape, dA.shape[-1])
        has_state = state is not None
        return (u.new_empty(u.shape), _maybe(has_state, dA, shape), _maybe(has_state, dA, shape),
                dA.new_empty(shape), dA.new_empty(shape))

    @lib.register_fake("dssm::diag_scan_fwd")
    def _(v, dA, state):
        return v.new_empty(v.shape), v.new_empty((v.shape[0], v.shape[2]))

    @lib.register_fake("dssm::diag_scan_bwd")
    def _(dA, state, xs, g_xs, g_last, need_gv, need_gdA):
        rows = (xs.shape[0], xs.shape[2])
        return _maybe(need_gv, xs, xs.shape), _maybe(need_gdA, xs, rows), xs.new_empty(rows)


if cpp_unavailable_reason() is None:  # loads dssm_kernels._C, which registers the ops
    _register_fakes()


def ops():
    """torch.ops.dssm. Callers have checked availability through dssm_kernels._backend.resolve_backend."""
    return torch.ops.dssm


def extension():
    """The pybind11 module dssm_kernels._C (build information, the tests' NaN-fill switch)."""
    reason = cpp_unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    import dssm_kernels._C as C
    return C
