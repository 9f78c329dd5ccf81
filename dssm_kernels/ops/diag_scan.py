"""diag_scan: the states of a diagonal linear recurrence driven by a complex input (the S5 scan).

    x_t = dA * x_{t-1} + v_t   (x_{-1} = state, or 0),   t = 0 .. L-1

v: complex (B, L, N), modes innermost;  dA: complex (N,) or (B, N) (broadcast over the batch);
state: complex (B, N) or None. Returns xs complex (B, L, N) (every state) and last_state = x_{L-1}
complex (B, N) (state, or zeros, when L = 0). An S5 layer computes v = u @ dB^T from u (B, L, H) and
then y = 2 * Re(xs @ C^T) + D * u.
"""
from __future__ import annotations

import torch

from dssm_kernels.ops import _common as common
from dssm_kernels.ops._launch import grid, interpreted, kernel, new_output, pow2_block, real_view
from dssm_kernels.ops._primitives import declare, empty_unless, kernel_backends

OP = "diag_scan"


def diag_scan_ref(v: torch.Tensor, dA: torch.Tensor, state: torch.Tensor | None = None):
    """Plain-torch oracle: a Python loop over t (slow, but autograd through it is exact)."""
    B, L, N = v.shape
    if state is None:  # a zero start state keeps dA in the graph: its gradient is 0, not None
        state = torch.zeros(B, N, dtype=v.dtype, device=v.device)
    x, xs = state, []
    for v_t in v.unbind(1):  # one backward node for all steps (v[:, t] would add a zero (B, L, N) per step)
        x = dA * x + v_t
        xs.append(x)
    if not xs:  # L = 0: no step; the state passes through
        return v.clone(), state.clone()
    return torch.stack(xs, dim=1), x


def _config(N: int, L: int, device: torch.device) -> dict:
    """Kernel constants. Interpreted: every mode in one program and long chunks (each program and
    each chunk is a Python-level step), the Hillis-Steele scan. Compiled: tl.associative_scan on
    (BLOCK_N, BLOCK_T) tiles of at most 2048 elements, and mode blocks of at most 32 so that
    B * N / 32 programs share the GPU (untuned: no GPU has run this yet)."""
    if interpreted(device):
        block_n = pow2_block(N, 2, 1 << 30)
        return dict(NATIVE=False, BLOCK_N=block_n,
                    BLOCK_T=pow2_block(L, 16, max(16, min(1024, 32768 // block_n))))
    block_n = pow2_block(N, 16, 32)
    return dict(NATIVE=True, BLOCK_N=block_n, BLOCK_T=pow2_block(L, 16, 2048 // block_n))


def _grid(B: int, N: int, L: int, device: torch.device, name: str):
    cfg = _config(N, L, device)
    return grid(name, B * -(-N // cfg["BLOCK_N"])), -(-L // cfg["BLOCK_T"]), cfg


def _fwd_triton(v, dA, state):
    B, L, N = v.shape
    xs = new_output((B, L, N), dtype=v.dtype, device=v.device)
    last = new_output((B, N), dtype=v.dtype, device=v.device)
    if B > 0:
        programs, n_chunks, cfg = _grid(B, N, L, v.device, "diag_scan_fwd")
        kernel("diag_scan", "diag_scan_fwd_kernel")[programs](
            v_ptr=real_view(v), dA_ptr=real_view(dA), state_ptr=real_view(state), xs_ptr=real_view(xs),
            last_ptr=real_view(last), L=L, N=N, n_chunks=n_chunks, dA_stride=N if dA.dim() == 2 else 0,
            HAS_STATE=state is not None, **cfg)
    return xs, last


DIAG_SCAN_FWD = declare(
    "diag_scan_fwd(Tensor v, Tensor dA, Tensor? state) -> (Tensor, Tensor)",
    fake=lambda v, dA, state: (v.new_empty(v.shape), v.new_empty((v.shape[0], v.shape[2]))),
    triton=_fwd_triton, cpp=True,
    doc="""(xs, last) for contiguous v (B, L, N), dA (N,) or (B, N), state (B, N) or None.""")


def _bwd_triton(dA, state, xs, g_xs, g_last, need_gv, need_gdA):
    B, L, N = xs.shape
    dev, dt = xs.device, xs.dtype
    gv = new_output((B, L, N) if need_gv else (0,), dtype=dt, device=dev)
    gdA = new_output((B, N) if need_gdA else (0,), dtype=dt, device=dev)
    gstate = new_output((B, N), dtype=dt, device=dev)
    if B > 0:
        programs, n_chunks, cfg = _grid(B, N, L, dev, "diag_scan_bwd")
        kernel("diag_scan", "diag_scan_bwd_kernel")[programs](
            dA_ptr=real_view(dA), state_ptr=real_view(state), xs_ptr=real_view(xs), gxs_ptr=real_view(g_xs),
            glast_ptr=real_view(g_last), gv_ptr=real_view(gv) if need_gv else None,
            gdA_ptr=real_view(gdA) if need_gdA else None, gstate_ptr=real_view(gstate),
            L=L, N=N, n_chunks=n_chunks, dA_stride=N if dA.dim() == 2 else 0,
            HAS_STATE=state is not None, HAS_GXS=g_xs is not None, HAS_GLAST=g_last is not None,
            NEED_GV=need_gv, NEED_GDA=need_gdA, **cfg)
    return gv, gdA, gstate


def _bwd_fake(dA, state, xs, g_xs, g_last, need_gv, need_gdA):
    rows = (xs.shape[0], xs.shape[2])
    return empty_unless(need_gv, xs, xs.shape), empty_unless(need_gdA, xs, rows), xs.new_empty(rows)


DIAG_SCAN_BWD = declare(
    "diag_scan_bwd(Tensor dA, Tensor? state, Tensor xs, Tensor? g_xs, Tensor? g_last, bool need_gv, "
    "bool need_gdA) -> (Tensor, Tensor, Tensor)",
    fake=_bwd_fake, triton=_bwd_triton, cpp=True,
    doc="""(grad_v (B, L, N), per-row grad_dA (B, N), grad_state (B, N)) from the gradients g_xs
    (B, L, N) and g_last (B, N), either of them None (zero); grad_v and grad_dA are (0,) unless
    asked for.""")

KERNELS = kernel_backends(DIAG_SCAN_FWD, DIAG_SCAN_BWD)


class DiagScanFunction(torch.autograd.Function):
    """Forward and backward on the primitives, run by `backend` ("triton" or "cpp"). With the adjoint
    (PyTorch's complex-gradient convention)
        lambda_t = g_xs_t + conj(dA) * lambda_{t+1},   lambda_{L-1} += g_last,
        grad_v = lambda,   grad_dA = sum_{b,t} lambda_t * conj(x_{t-1}) (x_{-1} = state; summed over
        b only when dA is (N,)),   grad_state = conj(dA) * lambda_0.
    Memory: the backward reads x_{t-1} back from xs, the forward's own output, which autograd keeps
    alive anyway; it stores nothing else of size (B, L, N) (no checkpoints, no recomputation).
    """

    @staticmethod
    def forward(ctx, v, dA, state, backend):
        v, dA, state = common.contiguous(v, dA, state)
        xs, last = DIAG_SCAN_FWD(v, dA, state, backend=backend)
        ctx.backend = backend
        ctx.save_for_backward(dA, state, xs)
        ctx.set_materialize_grads(False)
        return xs, last

    @staticmethod
    def backward(ctx, g_xs, g_last):
        common.refuse_double_backward(OP, ctx.backend)
        dA, state, xs = ctx.saved_tensors
        need_v, need_dA, need_state = ctx.needs_input_grad[:3]
        if g_xs is None and g_last is None:
            return None, None, None, None
        g_xs, g_last = common.contiguous(g_xs, g_last)
        gv, gdA, gstate = DIAG_SCAN_BWD(dA, state, xs, g_xs, g_last, need_v, need_dA, backend=ctx.backend)
        if need_dA and dA.dim() == 1:
            gdA = gdA.sum(0)
        return (gv if need_v else None), (gdA if need_dA else None), (gstate if need_state else None), None


def _validate(v, dA, state) -> torch.device:
    common.check_tensor(OP, "v", v, ndim=3)
    common.check_complex(OP, "v", v)
    common.check_modes(OP, "v", v)
    B, _, N = v.shape
    common.check_tensor(OP, "dA", dA)
    common.check_complex(OP, "dA", dA)
    common.check_same_dtype(OP, ("v", "dA"), (v, dA))
    if tuple(dA.shape) not in ((N,), (B, N)):
        raise ValueError(f"{OP}: dA must have shape (N,) = ({N},) or (B, N) = ({B}, {N}) with (B, L, N) = "
                         f"v.shape, got {tuple(dA.shape)}")
    names, tensors = ["v", "dA"], [v, dA]
    if state is not None:
        common.check_tensor(OP, "state", state, ndim=2)
        common.check_complex(OP, "state", state)
        common.check_same_dtype(OP, ("v", "state"), (v, state))
        common.check_shape(OP, "state (B, N)", state, (B, N))
        names.append("state")
        tensors.append(state)
    return common.check_same_device(OP, names, tensors)


def _allocations(backend: str, v) -> list:
    what = ("the states, the products behind them and their gradients" if backend == "reference"
            else "v (contiguous), xs and their gradients")
    return [common.Alloc(what, tuple(v.shape), v.dtype, 4)]


def diag_scan(v: torch.Tensor, dA: torch.Tensor, state: torch.Tensor | None = None, *, backend: str = "auto"):
    """x_t = dA * x_{t-1} + v_t  (x_{-1} = state, or 0),  t = 0 .. L-1: every state of the recurrence.

    Args:
        v: complex64 or complex128 (B, L, N), the input per step and mode (modes innermost).
        dA: complex (N,), shared by the batch, or (B, N), one per row; dtype of v.
        state: complex (B, N) state before the first step, or None for zero.
        backend: "auto" | "reference" | "triton" | "cpp" (see dssm_kernels._backend).
    Returns:
        (xs complex (B, L, N) with xs[:, t] = x_t, last_state complex (B, N) = x_{L-1}; for L = 0,
        state or zeros). Differentiable in v, dA and state (first derivatives; backend="reference"
        also differentiates twice). The backward reads the states back from xs (the output itself,
        which autograd keeps), so it needs no extra (B, L, N) memory.

    Sizes: the call raises ValueError when v (made contiguous), xs and their gradients, four
    (B, L, N) tensors, exceed the allocation limit (DSSM_MAX_ALLOC_BYTES, default 80% of the
    device's memory).

    Example (the scan of an S5 layer, run over a sequence in two halves):
        >>> import torch, dssm_kernels as dk
        >>> B, L, H, N, dt = 2, 10, 3, 4, 0.05
        >>> A = (-0.5 + 1j * torch.pi * torch.arange(N)).to(torch.complex64)
        >>> dA = torch.exp(dt * A)
        >>> dB = ((dA - 1) / A)[:, None] * torch.ones(N, H, dtype=torch.complex64)
        >>> C = torch.ones(H, N, dtype=torch.complex64)
        >>> u = torch.randn(B, L, H)
        >>> xs, last = dk.diag_scan(u.to(torch.complex64) @ dB.T, dA)
        >>> y = 2 * (xs @ C.T).real
        >>> xs1, s = dk.diag_scan(u[:, :6].to(torch.complex64) @ dB.T, dA)
        >>> xs2, _ = dk.diag_scan(u[:, 6:].to(torch.complex64) @ dB.T, dA, s)
        >>> torch.allclose(torch.cat([xs1, xs2], 1), xs, atol=1e-6), y.shape, last.shape
        (True, torch.Size([2, 10, 3]), torch.Size([2, 4]))
    """
    device = _validate(v, dA, state)
    return common.dispatch(OP, backend, device, KERNELS, lambda b: _allocations(b, v),
                           diag_scan_ref, DiagScanFunction, v, dA, state)
