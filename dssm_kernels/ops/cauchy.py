"""cauchy: the S4 Cauchy kernel, a sum of simple poles and their conjugates evaluated at points z.

    k[..., j] = sum_n  v[..., n] / (z[j] - w[..., n])  +  conj(v[..., n]) / (z[j] - conj(w[..., n]))

v, w: complex64/complex128, broadcastable to (..., N); z: complex (L,), shared by the whole batch;
returns complex (..., L). The conjugate pair is summed explicitly, so N counts the modes of one half
of a conjugate-symmetric state. S4 evaluates its generating function this way at the bilinear
transform of roots of unity, z_j = 2 (1 - omega_j) / (1 + omega_j), with w = dt * A.
"""
from __future__ import annotations

import torch

from dssm_kernels.ops import _common as common
from dssm_kernels.ops._launch import grid, kernel, new_output, real_view, tile_blocks
from dssm_kernels.ops._primitives import declare, empty_unless, kernel_backends

OP = "cauchy"


def cauchy_ref(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Plain-torch oracle: materialises the (..., N, L) matrix of both pole terms."""
    v, w = v.unsqueeze(-1), w.unsqueeze(-1)
    return (v / (z - w) + v.conj() / (z - w.conj())).sum(-2)


def _rows_triton(v, z, w, square):
    R, N = w.shape
    L = z.shape[0]
    out = new_output((R, L), dtype=w.dtype, device=w.device)
    if R == 0:
        return out
    block_n, block_l = tile_blocks("rows", N, L, w.device)
    kernel("cauchy", "cauchy_rows_kernel")[grid("cauchy_rows", R * -(-L // block_l))](
        v_ptr=real_view(v), w_ptr=real_view(w), z_ptr=real_view(z), out_ptr=real_view(out), N=N, L=L,
        SQUARE=square, BLOCK_N=block_n, BLOCK_L=block_l)
    return out


CAUCHY_ROWS = declare(
    "cauchy_rows(Tensor v, Tensor z, Tensor w, bool square) -> Tensor",
    fake=lambda v, z, w, square: w.new_empty((w.shape[0], z.shape[0])),
    triton=_rows_triton, cpp=True,
    doc="""sum_n v[r, n] / (z_j - w[r, n])^p + conj(v[r, n]) / (z_j - conj(w[r, n]))^p, p = 2 if `square`
    else 1, for contiguous complex (R, N) v, w and (L,) z: complex (R, L).""")


def _modes_triton(g, v, z, w, need_v, need_w):
    R, N = w.shape
    L = z.shape[0]
    gv = new_output((R, N) if need_v else (0,), dtype=w.dtype, device=w.device)
    gw = new_output((R, N) if need_w else (0,), dtype=w.dtype, device=w.device)
    if R == 0 or not (need_v or need_w):
        return gv, gw
    block_n, block_l = tile_blocks("modes", N, L, w.device)
    kernel("cauchy", "cauchy_modes_kernel")[grid("cauchy_modes", R * -(-N // block_n))](
        g_ptr=real_view(g), v_ptr=real_view(v), w_ptr=real_view(w), z_ptr=real_view(z),
        gv_ptr=real_view(gv) if need_v else None, gw_ptr=real_view(gw) if need_w else None, N=N, L=L,
        NEED_V=need_v, NEED_W=need_w, BLOCK_N=block_n, BLOCK_L=block_l)
    return gv, gw


CAUCHY_MODES = declare(
    "cauchy_modes(Tensor g, Tensor v, Tensor z, Tensor w, bool need_v, bool need_w) -> (Tensor, Tensor)",
    fake=lambda g, v, z, w, need_v, need_w: (empty_unless(need_v, w, w.shape), empty_unless(need_w, w, w.shape)),
    triton=_modes_triton, cpp=True,
    doc="""(grad_v, grad_w) of CauchyFunction for contiguous complex (R, L) g, (R, N) v, w, (L,) z; each
    (0,) unless asked for.""")

KERNELS = kernel_backends(CAUCHY_ROWS, CAUCHY_MODES)


class CauchyFunction(torch.autograd.Function):
    """Forward and backward on the primitives, run by `backend` ("triton" or "cpp"). Backward
    (PyTorch's complex-gradient convention), g = grad of k:
        grad_v[n] = sum_j  g_j / (conj z_j - conj w_n)    + conj( g_j / (conj z_j - w_n) )
        grad_w[n] = conj(v_n) * sum_j  g_j / (conj z_j - conj w_n)^2  + conj(g_j) / (z_j - conj w_n)^2
        grad_z[j] = - sum_rows g_j * conj(D_j),   D_j = sum_n v_n / (z_j - w_n)^2 + conj(v_n) / (z_j - conj w_n)^2
    (d k_j / d z_j = -D_j; k is holomorphic in z, so conj-derivative terms vanish; z is shared, so
    its gradient sums over the batch). Each sum runs in a kernel: nothing of size (N, L) is stored.
    """

    @staticmethod
    def forward(ctx, v, z, w, backend):
        shape = torch.broadcast_shapes(v.shape, w.shape)
        N, L = shape[-1], z.shape[0]
        vs = v.expand(shape).contiguous().reshape(-1, N)
        ws = w.expand(shape).contiguous().reshape(-1, N)
        zs = z.contiguous()
        out = CAUCHY_ROWS(vs, zs, ws, False, backend=backend)
        ctx.backend = backend
        ctx.save_for_backward(vs, zs, ws)
        ctx.shapes = (v.shape, w.shape, shape)
        return out.reshape(*shape[:-1], L)

    @staticmethod
    def backward(ctx, g):
        common.refuse_double_backward(OP, ctx.backend)
        vs, zs, ws = ctx.saved_tensors
        v_shape, w_shape, shape = ctx.shapes
        need_v, need_z, need_w = ctx.needs_input_grad[:3]
        g = g.reshape(-1, zs.shape[0]).contiguous()
        gv, gw = CAUCHY_MODES(g, vs, zs, ws, need_v, need_w, backend=ctx.backend)
        grad_v = common.sum_to_shape(gv.reshape(shape), v_shape) if need_v else None
        grad_w = common.sum_to_shape(gw.reshape(shape), w_shape) if need_w else None
        grad_z = None
        if need_z:
            D = CAUCHY_ROWS(vs, zs, ws, True, backend=ctx.backend)
            grad_z = -(g * D.conj()).sum(0)
        return grad_v, grad_z, grad_w, None


def _validate(v, z, w):
    common.check_tensor(OP, "v", v, min_ndim=1)
    common.check_tensor(OP, "z", z, ndim=1)
    common.check_tensor(OP, "w", w, min_ndim=1)
    common.check_complex(OP, "v", v)
    common.check_complex(OP, "z", z)
    common.check_complex(OP, "w", w)
    common.check_same_dtype(OP, ("v", "z", "w"), (v, z, w))
    if z.shape[0] < 1:
        raise ValueError(f"{OP}: z must hold L >= 1 points, got shape {tuple(z.shape)}")
    common.check_modes(OP, "v", v)
    common.check_modes(OP, "w", w)
    common.broadcast_batch(OP, ("v", "w"), (v.shape, w.shape))
    return common.check_same_device(OP, ("v", "z", "w"), (v, z, w))


def _allocations(backend: str, v, z, w) -> list:
    shape = torch.broadcast_shapes(v.shape, w.shape)
    L = z.shape[0]
    if backend == "reference":
        return [common.Alloc("z - w, z - conj(w) and both quotients, (..., N, L) each", (*shape, L), w.dtype, 4)]
    return [common.Alloc("the output, its gradient and d output / d z", (*shape[:-1], L), w.dtype, 3),
            common.Alloc("v, w at their broadcast shape and their gradients", shape, w.dtype, 4)]


def cauchy(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """k[..., j] = sum_n v[..., n] / (z[j] - w[..., n]) + conj(v[..., n]) / (z[j] - conj(w[..., n])).

    Args:
        v, w: complex64/complex128, broadcastable to (..., N), N >= 1.
        z: complex (L,), L >= 1, the evaluation points shared by every batch row; same dtype. Finite
            points: at a point at infinity the kernels' scaled division gives NaN (inf / inf) where
            the reference gives the limit 0.
        backend: "auto" | "reference" | "triton" | "cpp" (see dssm_kernels._backend).
    Returns:
        complex tensor (..., L). Differentiable in v and w (and in z, whose gradient sums over the batch);
        first derivatives (backend="reference" also differentiates twice).

    Every finite result is computed: a pole far away (|z - w|^2 beyond the largest float) or a point
    next to a pole (|z - w|^2 below the smallest normal) is divided with scaled operands.
    Sizes: the call raises ValueError when what it allocates (the output, v and w at their broadcast
    shape, the gradients; for the reference four (..., N, L) complex tensors) exceeds the allocation
    limit (DSSM_MAX_ALLOC_BYTES, default 80% of the device's memory).

    Example (an S4D-Lin generating function at the bilinear transform of roots of unity):
        >>> import math, torch, dssm_kernels as dk
        >>> N, L, dt = 4, 9, 0.01
        >>> w = (dt * (-0.5 + 1j * math.pi * torch.arange(N))).to(torch.complex64)
        >>> v = dt * torch.ones(N, dtype=torch.complex64)
        >>> omega = torch.exp(-2j * math.pi * torch.arange(L // 2 + 1) / L)
        >>> z = (2 * (1 - omega) / (1 + omega)).to(torch.complex64)
        >>> dk.cauchy(v, z, w).shape
        torch.Size([5])
    """
    device = _validate(v, z, w)
    return common.dispatch(OP, backend, device, KERNELS, lambda b: _allocations(b, v, z, w),
                           cauchy_ref, CauchyFunction, v, z, w)
