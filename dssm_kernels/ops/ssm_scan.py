"""ssm_scan: the recurrent view of a discretised diagonal SSM over a whole sequence.

    x_t = dA * x_{t-1} + dB * u_t   (x_{-1} = state, or 0),   y_t = 2 * Re( sum_n C * x_t ) + D * u_t

u: real (B, H, L);  dA, dB, C: complex (H, N);  D: real (H,) or None;  state: complex (B, H, N) or
None. Returns y real (B, H, L) and last_state = x_{L-1} complex (B, H, N), which a later call (or
ssm_step) continues from.
"""
from __future__ import annotations

import torch

from dssm_kernels.ops import _common as common
from dssm_kernels.ops._launch import grid, interpreted, kernel, new_output, pow2_block, real_view
from dssm_kernels.ops._primitives import declare, empty_unless, kernel_backends
from dssm_kernels.ops.ssm_step import ssm_step_ref

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
    """Triton kernel constants. BLOCK_N holds all N modes; BLOCK_T steps per chunk (the checkpoint
    interval). Compiled: the native tl.associative_scan, BLOCK_T keeping the (BLOCK_N, BLOCK_T) tiles
    within a register budget. Interpreted: the Hillis-Steele scan (associative_scan's combine runs
    once per element in Python there) and large chunks (each chunk is a Python-level step)."""
    if interpreted(device):
        block_n = pow2_block(N, 2, 1 << 30)
        return dict(NATIVE=False, BLOCK_N=block_n,
                    BLOCK_T=pow2_block(L, 16, max(16, min(1024, 32768 // block_n))))
    block_n = pow2_block(N, 16, 1 << 30)
    return dict(NATIVE=True, BLOCK_N=block_n, BLOCK_T=pow2_block(L, 16, max(16, min(64, 2048 // block_n))))


# Steps between the checkpointed states, per backend: Triton's chunk is its tile length (BLOCK_T);
# the C++ kernels take any. 256 for C++ rather than 64: the backward is ~10% faster and the
# checkpoints 4x smaller (8 MB instead of 34 MB at B=8, H=256, N=32, L=4096), which also spares the
# page faults a fresh allocation that size costs.
CHECKPOINT_CHUNK = {
    "triton": lambda N, L, device: _scan_config(N, L, device)["BLOCK_T"],
    "cpp": lambda N, L, device: 256,
}


def _triton_config(N: int, L: int, chunk: int, device: torch.device) -> dict:
    if chunk < 16 or chunk & (chunk - 1):
        raise ValueError(f"ssm_scan: the Triton kernels need a power-of-two chunk >= 16, got {chunk}")
    return {**_scan_config(N, L, device), "BLOCK_T": chunk}


def _fwd_triton(u, dA, dB, C, D, state, save_checkpoints, chunk):
    B, H, L = u.shape
    N = dA.shape[-1]
    cfg = _triton_config(N, L, chunk, u.device)
    n_chunks = -(-L // chunk)
    y = new_output((B, H, L), dtype=u.dtype, device=u.device)
    last = new_output((B, H, N), dtype=dA.dtype, device=u.device)
    ckpt = new_output((B, H, n_chunks, N) if save_checkpoints else (0,), dtype=dA.dtype, device=u.device)
    if B * H > 0:
        kernel("ssm_scan", "ssm_scan_fwd_kernel")[grid("ssm_scan_fwd", B * H)](
            u_ptr=u, dA_ptr=real_view(dA), dB_ptr=real_view(dB), C_ptr=real_view(C), D_ptr=D,
            state_ptr=real_view(state), y_ptr=y, last_ptr=real_view(last),
            ckpt_ptr=real_view(ckpt) if save_checkpoints else None, H=H, N=N, L=L, n_chunks=n_chunks,
            HAS_D=D is not None, HAS_STATE=state is not None, SAVE_CKPT=save_checkpoints, **cfg)
    return y, last, ckpt


def _fwd_fake(u, dA, dB, C, D, state, save_checkpoints, chunk):
    B, H, L = u.shape
    N = dA.shape[-1]
    ckpt = empty_unless(save_checkpoints, dA, (B, H, -(-L // chunk), N))
    return u.new_empty((B, H, L)), dA.new_empty((B, H, N)), ckpt


SSM_SCAN_FWD = declare(
    "ssm_scan_fwd(Tensor u, Tensor dA, Tensor dB, Tensor C, Tensor? D, Tensor? state, bool save_checkpoints, "
    "int chunk) -> (Tensor, Tensor, Tensor)",
    fake=_fwd_fake, triton=_fwd_triton, cpp=True,
    doc="""(y, last_state, checkpoints) for contiguous inputs; checkpoints (B, H, ceil(L / chunk), N)
    holds the state entering each chunk of `chunk` steps ((0,) unless `save_checkpoints`).""")


def _bwd_triton(u, dA, dB, C, D, ckpt, chunk, gy, g_last):
    B, H, L = u.shape
    N = dA.shape[-1]
    cfg = _triton_config(N, L, chunk, u.device)
    dev = u.device
    gu = new_output((B, H, L), dtype=u.dtype, device=dev)
    gstate, gdA, gdB, gC = (new_output((B, H, N), dtype=dA.dtype, device=dev) for _ in range(4))
    gD = new_output((B, H), dtype=u.dtype, device=dev)
    if B * H > 0:
        kernel("ssm_scan", "ssm_scan_bwd_kernel")[grid("ssm_scan_bwd", B * H)](
            u_ptr=u, dA_ptr=real_view(dA), dB_ptr=real_view(dB), C_ptr=real_view(C), D_ptr=D,
            ckpt_ptr=real_view(ckpt), gy_ptr=gy, glast_ptr=real_view(g_last), gu_ptr=gu,
            gstate_ptr=real_view(gstate), gdA_ptr=real_view(gdA), gdB_ptr=real_view(gdB), gC_ptr=real_view(gC),
            gD_ptr=gD, H=H, N=N, L=L, n_chunks=ckpt.shape[2],
            HAS_D=D is not None, HAS_GLAST=g_last is not None, **cfg)
    return gu, gstate, gdA, gdB, gC, gD


def _bwd_fake(u, dA, dB, C, D, ckpt, chunk, gy, g_last):
    B, H, _ = u.shape
    shape = (B, H, dA.shape[-1])
    return (u.new_empty(u.shape), *(dA.new_empty(shape) for _ in range(4)), u.new_empty((B, H)))


SSM_SCAN_BWD = declare(
    "ssm_scan_bwd(Tensor u, Tensor dA, Tensor dB, Tensor C, Tensor? D, Tensor ckpt, int chunk, Tensor gy, "
    "Tensor? g_last) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
    fake=_bwd_fake, triton=_bwd_triton, cpp=True,
    doc="""(grad_u, grad_state, grad_dA, grad_dB, grad_C, grad_D) from the checkpoints of
    ssm_scan_fwd with the same chunk: the mode gradients per row (B, H, N), grad_D per row (B, H),
    to be summed over the batch.""")

KERNELS = kernel_backends(SSM_SCAN_FWD, SSM_SCAN_BWD)


class SsmScanFunction(torch.autograd.Function):
    """Forward and backward on the primitives, run by `backend` ("triton" or "cpp"). With the adjoint
    (PyTorch's complex-gradient convention)
        lambda_t = 2 * gy_t * conj(C) + conj(dA) * lambda_{t+1},   lambda_{L-1} += g_last,
    and prev_t = x_{t-1} (prev_0 = state):
        grad_dA = sum_{b,t} lambda_t * conj(prev_t),   grad_dB = sum_{b,t} lambda_t * u_t,
        grad_C = sum_{b,t} 2 * gy_t * conj(x_t),        grad_D = sum_{b,t} gy_t * u_t (in the kernel),
        grad_u_t = Re( sum_n conj(dB) * lambda_t ) + D * gy_t,   grad_state = conj(dA) * lambda_0.
    The forward keeps the state entering every chunk of CHECKPOINT_CHUNK steps, (B, H, L / chunk, N); the
    backward rebuilds each chunk's states from it, so nothing of size (B, H, N, L) is stored.
    """

    @staticmethod
    def forward(ctx, u, dA, dB, C, D, state, backend):
        u, dA, dB, C, D, state = common.contiguous(u, dA, dB, C, D, state)
        chunk = CHECKPOINT_CHUNK[backend](dA.shape[-1], u.shape[-1], u.device)
        y, last, ckpt = SSM_SCAN_FWD(u, dA, dB, C, D, state, any(ctx.needs_input_grad), chunk, backend=backend)
        ctx.backend = backend
        ctx.save_for_backward(u, dA, dB, C, D, ckpt)
        ctx.chunk = chunk
        ctx.set_materialize_grads(False)
        return y, last

    @staticmethod
    def backward(ctx, gy, g_last):
        common.refuse_double_backward(OP, ctx.backend)
        u, dA, dB, C, D, ckpt = ctx.saved_tensors
        need_u, need_dA, need_dB, need_C, need_D, need_state = ctx.needs_input_grad[:6]
        if gy is None and g_last is None:
            return None, None, None, None, None, None, None
        gy, g_last = common.contiguous(torch.zeros_like(u) if gy is None else gy, g_last)
        gu, gstate, gdA, gdB, gC, gD = SSM_SCAN_BWD(u, dA, dB, C, D, ckpt, ctx.chunk, gy, g_last, backend=ctx.backend)
        return (gu if need_u else None,
                gdA.sum(0) if need_dA else None,
                gdB.sum(0) if need_dB else None,
                gC.sum(0) if need_C else None,
                gD.sum(0, dtype=torch.float64).to(u.dtype) if need_D else None,
                gstate if need_state else None,
                None)


def _validate(u, dA, dB, C, D, state):
    common.check_tensor(OP, "u", u, ndim=3)
    B, H, L = u.shape
    device = common.validate_ssm_params(OP, u, (B, H), dA, dB, C, D, state)
    common.check_length(OP, "L = u.shape[-1]", L)
    return device


def _allocations(backend: str, u, dA) -> list:
    B, H, L = u.shape
    N = dA.shape[-1]
    if backend == "reference":
        return [common.Alloc("the reference's state and products, (B, H, N) per step", (L, B, H, N), dA.dtype, 4),
                common.Alloc("the output", (B, H, L), u.dtype)]
    chunk = CHECKPOINT_CHUNK[backend](N, L, u.device)
    return [common.Alloc("u (contiguous), the output and their gradients", (B, H, L), u.dtype, 4),
            common.Alloc("the checkpointed states", (B, H, -(-L // chunk), N), dA.dtype),
            common.Alloc("the last state and the per-row gradients", (B, H, N), dA.dtype, 5)]


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
    return common.dispatch(OP, backend, device, KERNELS, lambda b: _allocations(b, u, dA),
                           ssm_scan_ref, SsmScanFunction, u, dA, dB, C, D, state)
