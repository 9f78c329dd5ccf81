"""vandermonde_transpose: the state a diagonal SSM holds after reading a sequence.

    s[..., n] = v[..., n] * sum_l u[..., l] * exp(x[..., n] * (L-1-l)),   L = u.shape[-1]

u: real (..., L) of the precision of v, x; v, x: complex, broadcastable to (..., N). The batch
shapes of u and of v, x broadcast together; returns complex (..., N).
"""
from __future__ import annotations

import torch

from dssm_kernels.ops import _common as common
from dssm_kernels.ops.vandermonde import KERNELS, POWER_SUMS, VANDERMONDE_ROWS

OP = "vandermonde_transpose"


def vandermonde_transpose_ref(u: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Plain-torch oracle: materialises exp(x * (L-1-l)) as an (..., N, L) tensor."""
    L = u.shape[-1]
    power = torch.arange(L - 1, -1, -1, device=x.device, dtype=common.real_dtype_of(x.dtype))
    return v * (u.unsqueeze(-2) * torch.exp(x.unsqueeze(-1) * power)).sum(-1)


class VandermondeTransposeFunction(torch.autograd.Function):
    """Forward and backward on vandermonde's primitives, run by `backend` ("triton" or "cpp"). With
    S[n] = sum_l u[l] exp(x[n] (L-1-l)) and dS its l-weighted twin:
        grad_v = g * conj(S),   grad_x = g * conj(v * dS),
        grad_u[l] = Re( sum_n conj(g[n]) * v[n] * exp(x[n] (L-1-l)) )
    """

    @staticmethod
    def forward(ctx, u, v, x, backend):
        L = u.shape[-1]
        modes = torch.broadcast_shapes(v.shape, x.shape)
        batch = torch.broadcast_shapes(u.shape[:-1], modes[:-1])
        N = modes[-1]
        vs = v.expand(*batch, N).contiguous().reshape(-1, N)
        xs = x.expand(*batch, N).contiguous().reshape(-1, N)
        us = u.expand(*batch, L).contiguous().reshape(-1, L)
        S, dS = POWER_SUMS(us, xs, True, ctx.needs_input_grad[2], backend=backend)
        ctx.save_for_backward(vs, xs, S, dS)
        ctx.shapes = (u.shape, v.shape, x.shape, batch)
        ctx.backend = backend
        return (vs * S).reshape(*batch, N)

    @staticmethod
    def backward(ctx, g):
        common.refuse_double_backward(OP, ctx.backend)
        vs, xs, S, dS = ctx.saved_tensors
        u_shape, v_shape, x_shape, batch = ctx.shapes
        N = xs.shape[-1]
        g = g.reshape(-1, N)
        grad_u = grad_v = grad_x = None
        if ctx.needs_input_grad[0]:
            coef = (g.conj() * vs).contiguous()
            grad_u = VANDERMONDE_ROWS(coef, xs, u_shape[-1], 1.0, True, backend=ctx.backend)
            grad_u = common.sum_to_shape(grad_u.reshape(*batch, u_shape[-1]), u_shape)
        if ctx.needs_input_grad[1]:
            grad_v = common.sum_to_shape((g * S.conj()).reshape(*batch, N), v_shape)
        if ctx.needs_input_grad[2]:
            grad_x = common.sum_to_shape((g * (vs * dS).conj()).reshape(*batch, N), x_shape)
        return grad_u, grad_v, grad_x, None


def _validate(u, v, x):
    common.check_tensor(OP, "u", u, min_ndim=1)
    common.check_tensor(OP, "v", v, min_ndim=1)
    common.check_tensor(OP, "x", x, min_ndim=1)
    common.check_complex(OP, "v", v)
    common.check_complex(OP, "x", x)
    common.check_same_dtype(OP, ("v", "x"), (v, x))
    if u.is_complex():
        raise TypeError(f"{OP}: u must be real ({common.real_dtype_of(v.dtype)}), got {u.dtype}")
    common.check_precision_matches(OP, "u", u, "v", v)
    common.check_length(OP, "L = u.shape[-1]", u.shape[-1])
    common.check_modes(OP, "v", v)
    common.check_modes(OP, "x", x)
    modes = common.broadcast_batch(OP, ("v", "x"), (v.shape, x.shape))
    common.broadcast_batch(OP, ("u", "v/x"), (u.shape[:-1], modes[:-1]))
    return common.check_same_device(OP, ("u", "v", "x"), (u, v, x))


def _allocations(backend: str, u, v, x) -> list:
    modes = torch.broadcast_shapes(v.shape, x.shape)
    batch = torch.broadcast_shapes(u.shape[:-1], modes[:-1])
    L, N = u.shape[-1], modes[-1]
    if backend == "reference":
        return [common.Alloc("exp(x (L-1-l)) and u exp(x (L-1-l)), (..., N, L) each", (*batch, N, L), x.dtype, 2)]
    return [common.Alloc("u at the broadcast batch shape, and its gradient", (*batch, L), u.dtype, 2),
            common.Alloc("v, x at the broadcast shape, the power sums, the output, a gradient", (*batch, N),
                         x.dtype, 6)]


def vandermonde_transpose(u: torch.Tensor, v: torch.Tensor, x: torch.Tensor, *,
                          backend: str = "auto") -> torch.Tensor:
    """s[..., n] = v[..., n] * sum_l u[..., l] * exp(x[..., n] * (L-1-l)),  L = u.shape[-1].

    Args:
        u: real (..., L), float32 with complex64 v, x (float64 with complex128).
        v, x: complex, broadcastable to (..., N).
        backend: "auto" | "reference" | "triton" | "cpp".
    Returns:
        complex (..., N). Differentiable in u, v and x (first derivatives; backend="reference" also
        differentiates twice).

    Sizes: the call raises ValueError when what it allocates (u, v, x at their broadcast shapes, the
    outputs and gradients; for the reference two (..., N, L) complex tensors) exceeds the allocation
    limit (DSSM_MAX_ALLOC_BYTES, default 80% of the device's memory).

    Example (the state of x_t = exp(dtA) x_{t-1} + u_t after 16 steps):
        >>> import torch, dssm_kernels as dk
        >>> dtA = torch.tensor([-0.1 + 0.5j, -0.2 + 1.0j])
        >>> dk.vandermonde_transpose(torch.ones(16), torch.ones(2, dtype=torch.complex64), dtA).shape
        torch.Size([2])
    """
    device = _validate(u, v, x)
    return common.dispatch(OP, backend, device, KERNELS, lambda b: _allocations(b, u, v, x),
                           vandermonde_transpose_ref, VandermondeTransposeFunction, u, v, x)
