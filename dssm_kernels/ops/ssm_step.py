"""ssm_step: one time step of a discretised diagonal SSM (recurrent decoding).

    new_state = dA * state + dB * u,   y = 2 * Re( sum_n C * new_state ) + D * u

u: real (B, H);  state: complex (B, H, N) (None: zero);  dA, dB, C: complex (H, N);  D: real (H,)
or None. Returns y real (B, H) and new_state complex (B, H, N). Run over a sequence, it gives what
ssm_scan gives for the whole sequence at once.
"""
from __future__ import annotations

import torch

from dssm_kernels._backend import resolve_backend
from dssm_kernels.ops import _common as common
from dssm_kernels.ops._launch import grid, interpreted, kernel, new_output, pow2_block, real_view
from dssm_kernels.ops._primitives import declare, empty_unless, kernel_backends

OP = "ssm_step"


def ssm_step_ref(u: torch.Tensor, state: torch.Tensor | None, dA: torch.Tensor, dB: torch.Tensor,
                 C: torch.Tensor, D: torch.Tensor | None = None):
    """Plain-torch oracle: the formula as written (state None: the zero state)."""
    if state is None:  # a real zero state keeps dA in the graph: its gradient is 0, not None
        state = torch.zeros(*u.shape, dA.shape[-1], dtype=dA.dtype, device=dA.device)
    new_state = dA * state + dB * u.unsqueeze(-1)
    y = 2 * (C * new_state).sum(-1).real
    if D is not None:
        y = y + D * u
    return y, new_state


def _step_blocks(N: int, device: torch.device):
    """(BLOCK_R, BLOCK_N): rows per program and the mode slice looped over; bigger under the interpreter."""
    interp = interpreted(device)
    block_n = pow2_block(N, 2 if interp else 16, 64)
    block_r = max(1, (4096 if interp else 1024) // block_n)
    return block_r, block_n


def _fwd_triton(u, state, dA, dB, C, D):
    B, H = u.shape
    N = dA.shape[-1]
    y = new_output((B, H), dtype=u.dtype, device=u.device)
    new = new_output((B, H, N), dtype=dA.dtype, device=u.device)
    R = B * H
    if R == 0:
        return y, new
    block_r, block_n = _step_blocks(N, u.device)
    kernel("ssm_step", "ssm_step_fwd_kernel")[grid("ssm_step_fwd", -(-R // block_r))](
        u_ptr=u, state_ptr=real_view(state), dA_ptr=real_view(dA), dB_ptr=real_view(dB), C_ptr=real_view(C),
        D_ptr=D, y_ptr=y, new_ptr=real_view(new), R=R, H=H, N=N,
        HAS_D=D is not None, HAS_STATE=state is not None, BLOCK_R=block_r, BLOCK_N=block_n)
    return y, new


SSM_STEP_FWD = declare(
    "ssm_step_fwd(Tensor u, Tensor? state, Tensor dA, Tensor dB, Tensor C, Tensor? D) -> (Tensor, Tensor)",
    fake=lambda u, state, dA, dB, C, D: (u.new_empty(u.shape), dA.new_empty((*u.shape, dA.shape[-1]))),
    triton=_fwd_triton, cpp=True,
    doc="""(y, new_state) for contiguous u (B, H), state (B, H, N) or None, dA/dB/C (H, N), D (H,) or None.""")


def _bwd_triton(u, state, dA, dB, C, D, gy, g_new):
    B, H = u.shape
    N = dA.shape[-1]
    dev = u.device
    gu = new_output((B, H), dtype=u.dtype, device=dev)
    gdB, gC = (new_output((B, H, N), dtype=dA.dtype, device=dev) for _ in range(2))
    with_state = (B, H, N) if state is not None else (0,)
    gstate, gdA = (new_output(with_state, dtype=dA.dtype, device=dev) for _ in range(2))
    R = B * H
    if R > 0:
        block_r, block_n = _step_blocks(N, dev)
        kernel("ssm_step", "ssm_step_bwd_kernel")[grid("ssm_step_bwd", -(-R // block_r))](
            u_ptr=u, state_ptr=real_view(state), dA_ptr=real_view(dA), dB_ptr=real_view(dB), C_ptr=real_view(C),
            D_ptr=D, gy_ptr=gy, gnew_ptr=real_view(g_new), gu_ptr=gu,
            gstate_ptr=real_view(gstate) if state is not None else None,
            gdA_ptr=real_view(gdA) if state is not None else None, gdB_ptr=real_view(gdB), gC_ptr=real_view(gC),
            R=R, H=H, N=N, HAS_D=D is not None, HAS_STATE=state is not None, HAS_GNEW=g_new is not None,
            BLOCK_R=block_r, BLOCK_N=block_n)
    return gu, gstate, gdA, gdB, gC


def _bwd_fake(u, state, dA, dB, C, D, gy, g_new):
    shape = (*u.shape, dA.shape[-1])
    with_state = state is not None
    return (u.new_empty(u.shape), empty_unless(with_state, dA, shape), empty_unless(with_state, dA, shape),
            dA.new_empty(shape), dA.new_empty(shape))


SSM_STEP_BWD = declare(
    "ssm_step_bwd(Tensor u, Tensor? state, Tensor dA, Tensor dB, Tensor C, Tensor? D, Tensor gy, Tensor? g_new) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    fake=_bwd_fake, triton=_bwd_triton, cpp=True,
    doc="""(grad_u, grad_state, grad_dA, grad_dB, grad_C): grad_state and grad_dA are (0,) without a
    state; the three mode gradients are per row (B, H, N), to be summed over the batch.""")

KERNELS = kernel_backends(SSM_STEP_FWD, SSM_STEP_BWD)


class SsmStepFunction(torch.autograd.Function):
    """Forward and backward on the primitives, run by `backend` ("triton" or "cpp"). With
    lambda = g_new + 2 * gy * conj(C) (PyTorch's convention):
        grad_state = conj(dA) * lambda,           grad_u = Re( sum_n conj(dB) * lambda ) + D * gy,
        grad_dA = sum_b lambda * conj(state),     grad_dB = sum_b lambda * u,
        grad_C = sum_b 2 * gy * conj(new_state),  grad_D = sum_b gy * u.
    """

    @staticmethod
    def forward(ctx, u, state, dA, dB, C, D, backend):
        u, state, dA, dB, C, D = common.contiguous(u, state, dA, dB, C, D)
        y, new = SSM_STEP_FWD(u, state, dA, dB, C, D, backend=backend)
        ctx.backend = backend
        ctx.save_for_backward(u, state, dA, dB, C, D)
        ctx.set_materialize_grads(False)
        return y, new

    @staticmethod
    def backward(ctx, gy, g_new):
        common.refuse_double_backward(OP, ctx.backend)
        u, state, dA, dB, C, D = ctx.saved_tensors
        need_u, need_state, need_dA, need_dB, need_C, need_D = ctx.needs_input_grad[:6]
        if gy is None and g_new is None:
            return None, None, None, None, None, None, None
        gy, g_new = common.contiguous(torch.zeros_like(u) if gy is None else gy, g_new)
        gu, gstate, gdA, gdB, gC = SSM_STEP_BWD(u, state, dA, dB, C, D, gy, g_new, backend=ctx.backend)
        if need_dA:  # without a state dA multiplies zero
            gdA = torch.zeros_like(dA) if state is None else gdA.sum(0)
        return (gu if need_u else None,
                gstate if need_state else None,  # need_state implies a state
                gdA if need_dA else None,
                gdB.sum(0) if need_dB else None,
                gC.sum(0) if need_C else None,
                (gy * u).sum(0) if need_D else None,
                None)


def _validate(u, state, dA, dB, C, D):
    common.check_tensor(OP, "u", u, ndim=2)
    return common.validate_ssm_params(OP, u, tuple(u.shape), dA, dB, C, D, state)


def _allocations(u, dA) -> list:
    """Kernels and reference alike: the new state, the products behind it and the gradients."""
    return [common.Alloc("the new state and (B, H, N) products or gradients", (*u.shape, dA.shape[-1]), dA.dtype, 5)]


def ssm_step(u: torch.Tensor, state: torch.Tensor | None, dA: torch.Tensor, dB: torch.Tensor,
             C: torch.Tensor, D: torch.Tensor | None = None, *, backend: str = "auto"):
    """One step: new_state = dA * state + dB * u,  y = 2 * Re( sum_n C * new_state ) + D * u.

    Args:
        u: real (B, H), float32 with complex64 parameters (float64 with complex128).
        state: complex (B, H, N), or None for the zero state.
        dA, dB, C: complex (H, N), the discretised modes, input and output vectors.
        D: real (H,) feedthrough, or None.
        backend: "auto" | "reference" | "triton" | "cpp" (see dssm_kernels._backend).
    Returns:
        (y real (B, H), new_state complex (B, H, N)). Differentiable in u, state, dA, dB, C, D
        (first derivatives; backend="reference" also differentiates twice).

    Sizes: the call raises ValueError when the new state and its gradients (B, H, N) exceed the
    allocation limit (DSSM_MAX_ALLOC_BYTES, default 80% of the device's memory).

    Example (decode a sequence one step at a time):
        >>> import torch, dssm_kernels as dk
        >>> H, N = 2, 4
        >>> dA = torch.full((H, N), 0.9 + 0.1j, dtype=torch.complex64)
        >>> dB = torch.ones(H, N, dtype=torch.complex64)
        >>> C = torch.ones(H, N, dtype=torch.complex64)
        >>> state = torch.zeros(1, H, N, dtype=torch.complex64)
        >>> for u_t in torch.randn(3, 1, H):
        ...     y_t, state = dk.ssm_step(u_t, state, dA, dB, C)
        >>> y_t.shape, state.shape
        (torch.Size([1, 2]), torch.Size([1, 2, 4]))
    """
    device = _validate(u, state, dA, dB, C, D)
    backend = resolve_backend(OP, backend, device, KERNELS)
    common.check_allocations(OP, device, _allocations(u, dA))
    if backend == "reference":
        return ssm_step_ref(u, state, dA, dB, C, D)
    if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (u, state, dA, dB, C, D))):
        # recurrent decoding: the autograd wrapper would cost about as much as the step itself
        return SSM_STEP_FWD(*common.contiguous(u, state, dA, dB, C, D), backend=backend)
    return SsmStepFunction.apply(u, state, dA, dB, C, D, backend)
