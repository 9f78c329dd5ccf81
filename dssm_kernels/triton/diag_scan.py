"""Triton kernels for diag_scan (forward and backward).

    x_t = dA * x_{t-1} + v_t   (x_{-1} = state, or 0),   xs[b, t, n] = x_t[b, n]

v, xs: complex (B, L, N), modes innermost (the S5 layout); dA: complex (N,) or (B, N), read at
row b * dA_stride (dA_stride = 0 broadcasts it over the batch); state, last, grad_state and the
per-row dA gradient: complex (B, N). Complex tensors arrive as their real views: element (b, t, n)
is at ((b * L + t) * N + n) * 2 (+1).

One program per (batch row, block of BLOCK_N modes), program = b * blocks + block (a one-dimensional
grid), walks the sequence in chunks of BLOCK_T steps.
Why chunks and a scan rather than a plain loop over t: a step-by-step loop issues one BLOCK_N-wide
load per step and waits on it, while a chunk loads a whole (BLOCK_N, BLOCK_T) tile of v at once
(many loads in flight: the op is memory-bound) and resolves the recurrence inside registers; under
the interpreter a chunk is a few dozen whole-tile steps instead of BLOCK_T Python-level ones. The
in-chunk scan is ssm_scan's (_scan.linrec: tl.associative_scan compiled, Hillis-Steele interpreted, the
powers of dA kept as double words), reused as is: the recurrence is the same with dB * u replaced
by v. The state carried in from the previous chunk enters through the chunk's first element.
"""
import triton
import triton.language as tl

from dssm_kernels.triton._common import load_complex, load_complex_if, program_block, store_complex
from dssm_kernels.triton._scan import carry_back, last_state, level_powers, linrec


@triton.jit
def _tile_offsets(b, t, n, L, N):
    """Real-view offsets ((b * L + t) * N + n) * 2 of a (BLOCK_N, BLOCK_T) tile, 64-bit."""
    return ((b * L + t)[None, :] * N + n[:, None]) * 2


@triton.jit
def diag_scan_fwd_kernel(v_ptr, dA_ptr, state_ptr, xs_ptr, last_ptr, L, N, n_chunks, dA_stride,
                         HAS_STATE: tl.constexpr, NATIVE: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    b, n, n_mask = program_block(N, BLOCK_N)  # b 64-bit: (b * L + t) * N can pass 2^31
    j = tl.arange(0, BLOCK_T)
    dar, dai = load_complex(dA_ptr, (b * dA_stride + n) * 2, n_mask)
    row_off = (b * N + n) * 2
    sr, si = load_complex_if(state_ptr, row_off, n_mask, tl.zeros([BLOCK_N], dtype=dar.dtype), HAS_STATE)
    pw_r, pw_i, pw_r_lo, pw_i_lo = level_powers(dar, dai, BLOCK_N, BLOCK_T, NATIVE)
    first = (j == 0)[None, :]
    for c in range(0, n_chunks):
        t0 = c * BLOCK_T
        t = t0 + j
        mask = n_mask[:, None] & (t < L)[None, :]
        off = _tile_offsets(b, t, n, L, N)
        vr, vi = load_complex(v_ptr, off, mask)
        # x_{t0} = dA * s + v_{t0}: the carried state enters at the chunk's first step
        br = tl.where(first, vr + (dar * sr - dai * si)[:, None], vr)
        bi = tl.where(first, vi + (dar * si + dai * sr)[:, None], vi)
        xr, xi = linrec(br, bi, dar, dai, pw_r, pw_i, pw_r_lo, pw_i_lo, j, False, NATIVE, BLOCK_T)
        store_complex(xs_ptr, off, xr, xi, mask)
        sr, si = last_state(xr, xi, j, L, t0, BLOCK_T)
    store_complex(last_ptr, row_off, sr, si, n_mask)


@triton.jit
def diag_scan_bwd_kernel(dA_ptr, state_ptr, xs_ptr, gxs_ptr, glast_ptr, gv_ptr, gdA_ptr, gstate_ptr,
                         L, N, n_chunks, dA_stride,
                         HAS_STATE: tl.constexpr, HAS_GXS: tl.constexpr, HAS_GLAST: tl.constexpr,
                         NEED_GV: tl.constexpr, NEED_GDA: tl.constexpr, NATIVE: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    """Adjoint lambda_t = dLoss/dx_t (PyTorch's convention), from t = L-1 down to 0:
        lambda_t = g_xs_t + conj(dA) * lambda_{t+1},   lambda_{L-1} = g_xs_{L-1} + g_last,
    a reverse recurrence whose carry mu (g_last, then conj(dA) * lambda at the start of the later
    chunk) enters at the chunk's last step. Writes grad_v = lambda (NEED_GV), the per-row
    sum_t lambda_t * conj(x_{t-1}) (NEED_GDA; x_{t-1} read back from xs, x_{-1} = state) and
    grad_state = the final mu = conj(dA) * lambda_0.
    """
    b, n, n_mask = program_block(N, BLOCK_N)
    j = tl.arange(0, BLOCK_T)
    dar, dai = load_complex(dA_ptr, (b * dA_stride + n) * 2, n_mask)
    row_off = (b * N + n) * 2
    zero = tl.zeros([BLOCK_N], dtype=dar.dtype)
    mr, mi = load_complex_if(glast_ptr, row_off, n_mask, zero, HAS_GLAST)
    sr, si = load_complex_if(state_ptr, row_off, n_mask, zero, HAS_STATE)
    g_dAr, g_dAi = zero, zero
    pw_r, pw_i, pw_r_lo, pw_i_lo = level_powers(dar, dai, BLOCK_N, BLOCK_T, NATIVE)
    for k in range(0, n_chunks):
        t0 = (n_chunks - 1 - k) * BLOCK_T
        t = t0 + j
        t_ok = (t < L)[None, :]
        mask = n_mask[:, None] & t_ok
        off = _tile_offsets(b, t, n, L, N)
        gr, gi = load_complex_if(gxs_ptr, off, mask, tl.zeros([BLOCK_N, BLOCK_T], dtype=dar.dtype), HAS_GXS)
        last = (j == tl.minimum(L - t0, BLOCK_T) - 1)[None, :]
        br = gr + tl.where(last, mr[:, None], 0.0)
        bi = gi + tl.where(last, mi[:, None], 0.0)
        # powers of conj(dA) are the conjugates of those of dA
        lam_r, lam_i = linrec(br, bi, dar, -dai, pw_r, -pw_i, pw_r_lo, -pw_i_lo, j, True, NATIVE, BLOCK_T)
        # past the end b = 0 and so is lambda, unless |dA| > 1 overflowed a power there: keep it out
        lam_r = tl.where(t_ok, lam_r, 0.0)
        lam_i = tl.where(t_ok, lam_i, 0.0)
        if NEED_GV:
            store_complex(gv_ptr, off, lam_r, lam_i, mask)
        if NEED_GDA:
            # x_{t-1}: xs one step back; the start state at t = 0
            pr, pi = load_complex(xs_ptr, off - 2 * N, mask & (t >= 1)[None, :])
            at_start = (t == 0)[None, :]
            pr = tl.where(at_start, sr[:, None], pr)
            pi = tl.where(at_start, si[:, None], pi)
            g_dAr += tl.sum(lam_r * pr + lam_i * pi, axis=1)
            g_dAi += tl.sum(lam_i * pr - lam_r * pi, axis=1)
        mr, mi = carry_back(lam_r, lam_i, dar, dai, j)
    store_complex(gstate_ptr, row_off, mr, mi, n_mask)
    if NEED_GDA:
        store_complex(gdA_ptr, row_off, g_dAr, g_dAi, n_mask)
