"""ssm_scan: the recurrent view of a discretised diagonal SSM over a whole sequence.

    x_t = dA * x_{t-1} + dB * u_t   (x_{-1} = state, or 0),   y_t = 2 * Re( sum_n C * x_t ) + D * u_t

u: real (B, H, L);  dA, dB, C: complex (H, N);  D: real (H,) or None;  state: complex (B, H, N) or
None. Returns y real (B, H, L) and last_state = x_{L-1} complex (B, H, N), which a later call (or
ssm_step) continues from.
"""
from __future__ import annotations

import torch

from dssm_kernels._backend import resolve_backend, triton_module
from dssm_kernels.ops import _checks as ck
from dssm_kernels.ops import _cpp
from dssm_kernels.ops._launch import grid, interpreted, new_output, pow2_block, real_view
from dssm_kernels.ops.ssm_step import _real_view, ssm_step_ref, validate_params

OP = "ssm_scan"


def ssm_scan_ref(u: torch.Tensor, dA: torch.Tensor, dB: torch.Tensor, C: torch.Tensor,
                 D: torch.Tensor | None = None, state: torch.Tensor | None = None):
    """Plain-torch oracle: a Python loop of ssm_step_ref over t (slow, but autograd through it is exact)."""
    ys = []
    for t in range(u.shape[-1]):
        y, state = ssm_step_ref(u[..., t], state, dA, dB, C, D)
        ys.append(y)
    return torch.stack(ys, dim=-1), state


def _scan_config(N: int, L: int, device: torch.device) -> dict:
    """Kernel constants. BLOCK_N holds all N modes. Compiled: the native tl.associative_scan, BLOCK_T
    keeping the (BLOCK_N, BLOCK_T) tiles within a register budget. Interpreted: the Hillis-Steele
    scan (associative_scan's combine runs once per element in Python there) and large chunks
    (each chunk is a Python-level step)."""
    if interpreted(device):
        block_n = pow2_block(N, 2, 1 << 30)
        return dict(NATIVE=False, BLOCK_N=block_n,
                    BLOCK_T=pow2_block(L, 16, max(16, min(1024, 32768 // block_n))))
    block_n = pow2_block(N, 16, 1 << 30)
    return dict(NATIVE=True, BLOCK_N=block_n, BLOCK_T=pow2_block(L, 16, max(16, min(64, 2048 // block_n))))


# Steps per checkpoint of the C++ backward. 256 rather than 64: the backward is ~10% faster and the
# checkpoints 4x smaller (8 MB instead of 34 MB at B=8, H=256, N=32, L=4096), which also spares
# the page faults a fresh allocation that size costs.
CPP_CHUNK = 256


def launch_scan_fwd(u, dA, dB, C, D, state, save_checkpoints: bool, backend: str = "triton"):
    """(y, last_state, checkpoints, config) for contiguous inputs. checkpoints (B, H, n_chunks, N) holds
    the state entering each chunk of BLOCK_T steps (None unless `save_checkpoints`); the backward
    must run with the same config."""
    if backend == "cpp":
        y, last, ckpt = _cpp.ops().ssm_scan_fwd(u, dA, dB, C, D, state, save_checkpoints, CPP_CHUNK)
        return y, last, (ckpt if save_checkpoints else None), {"BLOCK_T": CPP_CHUNK}
    B, H, L = u.shape
    N = dA.shape[-1]
    cfg = _scan_config(N, L, u.device)
    n_chunks = -(-L // cfg["BLOCK_T"])
    y = new_output((B, H, L), dtype=u.dtype, device=u.device)
    last = new_output((B, H, N), dtype=dA.dtype, device=u.device)
    ckpt = new_output((B, H, n_chunks, N), dtype=dA.dtype, device=u.device) if save_checkpoints else None
    if B * H > 0:
        last_r = real_view(last)
        triton_module("ssm_scan").ssm_scan_fwd_kernel[grid(OP, B * H)](
            u, real_view(dA), real_view(dB), real_view(C),
            u if D is None else D, _real_view(state, last_r), y, last_r, _real_view(ckpt, last_r),
            H, N, L, n_chunks, HAS_D=D is not None, HAS_STATE=state is not None,
            SAVE_CKPT=save_checkpoints, **cfg)
    return y, last, ckpt, cfg


def launch_scan_bwd(u, dA, dB, C, D, ckpt, cfg, gy, g_last, backend: str = "triton"):
    """(grad_u, grad_state, grad_dA, grad_dB, grad_C, grad_D): the mode gradients per row (B, H, N),
    grad_D per row (B, H), to be summed over the batch."""
    if backend == "cpp":
        return _cpp.ops().ssm_scan_bwd(u, dA, dB, C, D, ckpt, cfg["BLOCK_T"], gy, g_last)
    B, H, L = u.shape
    N = dA.shape[-1]
    dev = u.device
    gu = new_output((B, H, L), dtype=u.dtype, device=dev)
    gstate, gdA, gdB, gC = (new_output((B, H, N), dtype=dA.dtype, device=dev) for _ in range(4))
    gD = new_output((B, H), dtype=u.dtype, device=dev)
    if B * H > 0:
        views = [real_view(t) for t in (gstate, gdA, gdB, gC)]
        triton_module("ssm_scan").ssm_scan_bwd_kernel[grid(OP, B * H)](
            u, real_view(dA), real_view(dB), real_view(C),
            u if D is None else D, real_view(ckpt), gy, _real_view(g_last, views[0]),
            gu, *views, gD, H, N, L, ckpt.shape[2],
            HAS_D=D is not None, HAS_GLAST=g_last is not None, **cfg)
    return gu, gstate, gdA, gdB, gC, gD


class SsmScanFunction(torch.autograd.Function):
    """Forward and backward on the kernels of `backend` ("triton" or "cpp"). With the adjoint
    (PyTorch's complex-gradient convention)
        lambda_t = 2 * gy_t * conj(C) + conj(dA) * lambda_{t+1},   lambda_{L-1} += g_last,
    and prev_t = x_{t-1} (prev_0 = state):
        grad_dA = sum_{b,t} lambda_t * conj(prev_t),   grad_dB = sum_{b,t} lambda_t * u_t,
        grad_C = sum_{b,t} 2 * gy_t * conj(x_t),        grad_D = sum_{b,t} gy_t * u_t (in the kernel),
        grad_u_t = Re( sum_n conj(dB) * lambda_t ) + D * gy_t,   grad_state = conj(dA) * lambda_0.
    The forward keeps the state entering every chunk of BLOCK_T steps, (B, H, L / BLOCK_T, N); the
    backward rebuilds each chunk's states from it, so nothing of size (B, H, N, L) is stored.
    """

    @staticmethod
    def forward(ctx, u, dA, dB, C, D, state, backend):
        u, dA, dB, C = (t.contiguous() for t in (u, dA, dB, C))
        D = None if D is None else D.contiguous()
        state = None if state is None else state.contiguous()
        y, last, ckpt, cfg = launch_scan_fwd(u, dA, dB, C, D, state, any(ctx.needs_input_grad), backend)
        ctx.backend = backend
        ctx.save_for_backward(u, dA, dB, C, D, ckpt)
        ctx.cfg = cfg
        ctx.set_materialize_grads(False)
        return y, last

    @staticmethod
    def backward(ctx, gy, g_last):
        ck.refuse_double_backward(OP, ctx.backend)
        u, dA, dB, C, D, ckpt = ctx.saved_tensors
        need_u, need_dA, need_dB, need_C, need_D, need_state = ctx.needs_input_grad[:6]
        if gy is None and g_last is None:
            return None, None, None, None, None, None, None
        gy = torch.zeros_like(u) if gy is None else gy.contiguous()
        g_last = None if g_last is None else g_last.contiguous()
        gu, gstate, gdA, gdB, gC, gD = launch_scan_bwd(u, dA, dB, C, D, ckpt, ctx.cfg, gy, g_last, ctx.backend)
        return (gu if need_u else None,
                gdA.sum(0) if need_dA else None,
                gdB.sum(0) if need_dB else None,
                gC.sum(0) if need_C else None,
                gD.sum(0, dtype=torch.float64).to(u.dtype) if need_D else None,
                gstate if need_state else None,
                None)


def _validate(u, dA, dB, C, D, state):
    ck.check_tensor(OP, "u", u, ndim=3)
    B, H, L = u.shape
    device = validate_params(OP, u, (B, H), dA, dB, C, D, state)
    ck.check_length(OP, "L = u.shape[-1]", L)
    return device


def _allocations(backend: str, u, dA) -> list:
    B, H, L = u.shape
    N = dA.shape[-1]
    if backend == "reference":
        return [ck.Alloc("the reference's state and products, (B, H, N) per step", (L, B, H, N), dA.dtype, 4),
                ck.Alloc("the output", (B, H, L), u.dtype)]
    # the state entering every chunk: CPP_CHUNK steps in C++, at least 16 in Triton
    chunk = CPP_CHUNK if backend == "cpp" else 16
    return [ck.Alloc("u (contiguous), the output and their gradients", (B, H, L), u.dtype, 4),
            ck.Alloc("the checkpointed states", (B, H, -(-L // chunk), N), dA.dtype),
            ck.Alloc("the last state and the per-row gradients", (B, H, N), dA.dtype, 5)]


def ssm_scan(u: torch.Tensor, dA: torch.Tensor, dB: torch.Tensor, C: torch.Tensor,
             D: torch.Tensor | None = None, state: torch.Tensor | None = None, *, backend: str = "auto"):
    """x_t = dA * x_{t-1} + dB * u_t  (x_{-1} = state, or 0),  y_t = 2 * Re( sum_n C * x_t ) + D * u_t.

    Args:
        u: real (B, H, L), float32 with complex64 parameters (float64 with complex128).
        dA, dB, C: complex (H, N), the discretised modes, input and output vectors.
        D: real (H,) feedthrough, or None.
        state: complex (B, H, N) state before the first step, or None for zero.
        backend: "auto" | "reference" | "triton" | "cpp" (see dssm_kernels._backend).
    Returns:
        (y real (B, H, L), last_state complex (B, H, N)). Differentiable in u, dA, dB, C, D, state
        (first derivatives; backend="reference" also differentiates twice).

    Sizes: the call raises ValueError when what it allocates (u, y and their gradients, one state per
    chunk of the sequence, the per-row gradients; for the reference four (B, H, N) states per step)
    exceeds the allocation limit (DSSM_MAX_ALLOC_BYTES, default 80% of the device's memory).

    Example (an S4D-Lin layer, ZOH with B = 1, run over a sequence in two halves):
        >>> import torch, dssm_kernels as dk
        >>> H, N, dt = 2, 4, 0.05
        >>> A = (-0.5 + 1j * torch.pi * torch.arange(N)).expand(H, N).to(torch.complex64)
        >>> dA = torch.exp(dt * A)
        >>> dB = (dA - 1) / A
        >>> C = torch.ones(H, N, dtype=torch.complex64)
        >>> u = torch.randn(1, H, 10)
        >>> y, last = dk.ssm_scan(u, dA, dB, C)
        >>> y1, s = dk.ssm_scan(u[..., :6], dA, dB, C)
        >>> y2, _ = dk.ssm_scan(u[..., 6:], dA, dB, C, state=s)
        >>> torch.allclose(torch.cat([y1, y2], -1), y, atol=1e-5), last.shape
        (True, torch.Size([1, 2, 4]))
    """
    device = _validate(u, dA, dB, C, D, state)
    backend = resolve_backend(OP, backend, device, has_cpp=True)
    ck.check_allocations(OP, device, _allocations(backend, u, dA))
    if backend == "reference":
        return ssm_scan_ref(u, dA, dB, C, D, state)
    return SsmScanFunction.apply(u, dA, dB, C, D, state, backend)
