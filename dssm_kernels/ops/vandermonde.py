"""vandermonde: the convolution kernel of a diagonal SSM from its modes.

    K[..., l] = 2 * Re( sum_n v[..., n] * exp(x[..., n] * l) ),   l = 0 .. L-1

v, x: complex64/complex128, broadcastable to (..., N); returns the real (..., L) tensor. For a
discretised diagonal SSM, x = dt * A and v = C * dB gives its impulse response.
"""
from __future__ import annotations

import torch

from dssm_kernels.ops import _common as common
from dssm_kernels.ops._launch import grid, kernel, new_output, real_view, tile_blocks
from dssm_kernels.ops._primitives import declare, empty_unless, kernel_backends

OP = "vandermonde"


def vandermonde_ref(v: torch.Tensor, x: torch.Tensor, L: int) -> torch.Tensor:
    """Plain-torch oracle: materialises exp(x * l) as an (..., N, L) tensor."""
    l = torch.arange(L, device=x.device, dtype=common.real_dtype_of(x.dtype))
    return 2 * (v.unsqueeze(-1) * torch.exp(x.unsqueeze(-1) * l)).sum(-2).real


def _rows_triton(c, x, L, scale, reverse):
    R, N = x.shape
    out = new_output((R, L), dtype=common.real_dtype_of(x.dtype), device=x.device)
    if R == 0:
        return out
    block_n, block_l = tile_blocks("rows", N, L, x.device)
    kernel("vandermonde", "vandermonde_rows_kernel")[grid("vandermonde_rows", R * -(-L // block_l))](
        c_ptr=real_view(c), x_ptr=real_view(x), out_ptr=out, N=N, L=L, scale=scale,
        REVERSE=reverse, BLOCK_N=block_n, BLOCK_L=block_l)
    return out


VANDERMONDE_ROWS = declare(
    "vandermonde_rows(Tensor c, Tensor x, int L, float scale, bool reverse) -> Tensor",
    fake=lambda c, x, L, scale, reverse: x.new_empty((x.shape[0], L), dtype=common.real_dtype_of(x.dtype)),
    triton=_rows_triton, cpp=True,
    doc="""scale * Re(sum_n c[r, n] exp(x[r, n] p(l))) for contiguous complex (R, N) c, x: real (R, L);
    p(l) = l, or L-1-l when `reverse`.""")


def _power_sums_triton(w, x, reverse, with_deriv):
    R, N = x.shape
    L = w.shape[-1]
    s = new_output((R, N), dtype=x.dtype, device=x.device)
    ds = new_output((R, N) if with_deriv else (0,), dtype=x.dtype, device=x.device)
    if R == 0:
        return s, ds
    block_n, block_l = tile_blocks("modes", N, L, x.device)
    kernel("vandermonde", "power_sums_kernel")[grid("power_sums", R * -(-N // block_n))](
        w_ptr=w, x_ptr=real_view(x), s_ptr=real_view(s), ds_ptr=real_view(ds) if with_deriv else None, N=N, L=L,
        REVERSE=reverse, WITH_DERIV=with_deriv, BLOCK_N=block_n, BLOCK_L=block_l)
    return s, ds


POWER_SUMS = declare(
    "power_sums(Tensor w, Tensor x, bool reverse, bool with_deriv) -> (Tensor, Tensor)",
    fake=lambda w, x, reverse, with_deriv: (x.new_empty(x.shape), empty_unless(with_deriv, x, x.shape)),
    triton=_power_sums_triton, cpp=True,
    doc="""(s, ds): s[r, n] = sum_l w[r, l] exp(x[r, n] p(l)) and ds the same weighted by p(l) ((0,) unless
    `with_deriv`); w contiguous real (R, L), x contiguous complex (R, N); p as in vandermonde_rows.""")

KERNELS = kernel_backends(VANDERMONDE_ROWS, POWER_SUMS)


class VandermondeFunction(torch.autograd.Function):
    """Forward and backward on the primitives, run by `backend` ("triton" or "cpp"). Backward
    (PyTorch's complex-gradient convention):
        grad_v[n] = 2 * conj( sum_l g[l] exp(x[n] l) )
        grad_x[n] = 2 * conj( v[n] * sum_l g[l] * l * exp(x[n] l) )
    """

    @staticmethod
    def forward(ctx, v, x, L, backend):
        shape = torch.broadcast_shapes(v.shape, x.shape)
        c = v.expand(shape).contiguous()
        xs = x.expand(shape).contiguous()
        out = VANDERMONDE_ROWS(c.reshape(-1, shape[-1]), xs.reshape(-1, shape[-1]), L, 2.0, False, backend=backend)
        ctx.save_for_backward(c, xs)
        ctx.shapes = (v.shape, x.shape)
        ctx.backend = backend
        return out.reshape(*shape[:-1], L)

    @staticmethod
    def backward(ctx, g):
        common.refuse_double_backward(OP, ctx.backend)
        c, xs = ctx.saved_tensors
        v_shape, x_shape = ctx.shapes
        N = xs.shape[-1]
        need_v, need_x = ctx.needs_input_grad[:2]
        g = g.to(common.real_dtype_of(xs.dtype)).reshape(-1, g.shape[-1]).contiguous()
        s, ds = POWER_SUMS(g, xs.reshape(-1, N), False, need_x, backend=ctx.backend)
        grad_v = grad_x = None
        if need_v:
            grad_v = common.sum_to_shape((2 * s.conj()).reshape(xs.shape), v_shape)
        if need_x:
            grad_x = common.sum_to_shape((2 * (c.reshape(-1, N) * ds).conj()).reshape(xs.shape), x_shape)
        return grad_v, grad_x, None, None


def _validate(v, x, L):
    common.check_tensor(OP, "v", v, min_ndim=1)
    common.check_tensor(OP, "x", x, min_ndim=1)
    common.check_complex(OP, "v", v)
    common.check_complex(OP, "x", x)
    common.check_same_dtype(OP, ("v", "x"), (v, x))
    common.check_modes(OP, "v", v)
    common.check_modes(OP, "x", x)
    common.broadcast_batch(OP, ("v", "x"), (v.shape, x.shape))
    common.check_length(OP, "L", L)
    return common.check_same_device(OP, ("v", "x"), (v, x))


def _allocations(backend: str, v, x, L) -> list:
    shape = torch.broadcast_shapes(v.shape, x.shape)
    real = common.real_dtype_of(x.dtype)
    if backend == "reference":
        return [common.Alloc("exp(x l) and v exp(x l), (..., N, L) each", (*shape, L), x.dtype, 2),
                common.Alloc("the output", (*shape[:-1], L), real)]
    return [common.Alloc("the output and its gradient", (*shape[:-1], L), real, 2),
            common.Alloc("v, x at their broadcast shape, and two power sums", shape, x.dtype, 4)]


def vandermonde(v: torch.Tensor, x: torch.Tensor, L: int, *, backend: str = "auto") -> torch.Tensor:
    """K[..., l] = 2 * Re( sum_n v[..., n] * exp(x[..., n] * l) ),  l = 0 .. L-1.

    Args:
        v, x: complex64/complex128, broadcastable to (..., N).
        L: number of output steps, >= 1.
        backend: "auto" | "reference" | "triton" | "cpp" (see dssm_kernels._backend).
    Returns:
        real tensor (..., L) of the matching precision. Differentiable in v and x (first derivatives;
        backend="reference" also differentiates twice).

    A mode with Re x = -inf (dA = 0) contributes exp(x l) = 0 at l >= 1 and NaN at l = 0 (IEEE
    -inf * 0, as plain torch gives): pass a large negative finite Re x for a mode that dies at once.
    Sizes: the call raises ValueError when what it allocates (the output, v and x at their broadcast
    shape, the backward's buffers; for the reference two (..., N, L) complex tensors) exceeds the
    allocation limit (DSSM_MAX_ALLOC_BYTES, default 80% of the device's memory).

    Example (an S4D-Lin kernel):
        >>> import torch, dssm_kernels as dk
        >>> N, dt = 4, 0.01
        >>> A = -0.5 + 1j * torch.pi * torch.arange(N)
        >>> dtA = (dt * A).to(torch.complex64)
        >>> v = (torch.exp(dtA) - 1) / A.to(torch.complex64)   # C = B = 1, ZOH
        >>> dk.vandermonde(v, dtA, 8).shape
        torch.Size([8])
    """
    device = _validate(v, x, L)
    return common.dispatch(OP, backend, device, KERNELS, lambda b: _allocations(b, v, x, L),
                           vandermonde_ref, VandermondeFunction, v, x, L)
