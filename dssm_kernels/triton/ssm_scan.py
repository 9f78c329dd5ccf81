"""Triton kernels for ssm_scan (forward and backward).

    x_t = dA * x_{t-1} + dB * u_t   (x_{-1} = state, or 0),   y_t = 2 * Re( sum_n C * x_t ) + D * u_t

One program per (b, h) row holds all N modes (BLOCK_N >= N) and walks the sequence in chunks of
BLOCK_T steps. Inside a chunk the recurrence v_j = a v_{j-1} + b_j (a the same at every step) is a
scan along the time axis of (BLOCK_N, BLOCK_T) tiles, complex numbers held as (real, imag) pairs;
the state carried in from the previous chunk enters through b at the chunk's first step (last step
for the backward's reverse recurrence), so the scan's outputs are the states themselves. The scan
itself (and why its powers are double words) is in _scan.py, shared with diag_scan.

Complex tensors arrive as their real views: element n of row r is at (r * N + n) * 2 (+1). No (N, L)
tile ever leaves registers: only y, the last state, one checkpoint state per chunk (for the
backward) and per-row gradient partials are written.
"""
import triton
import triton.language as tl

from dssm_kernels.triton._common import load_complex, load_complex_if, load_modes, store_complex
from dssm_kernels.triton._scan import carry_back, last_state, level_powers, linrec


@triton.jit
def _row_modes(dA_ptr, dB_ptr, C_ptr, H, N, BLOCK_N: tl.constexpr):
    """This program's row = b * H + h (64-bit: row * L can pass 2^31), its channel h, the modes n with
    their mask, and the channel's dA, dB, C as six real vectors."""
    row = tl.program_id(0).to(tl.int64)
    h = row % H
    n = tl.arange(0, BLOCK_N)
    n_mask = n < N
    dar, dai, dbr, dbi, cr, ci = load_modes(dA_ptr, dB_ptr, C_ptr, (h * N + n) * 2, n_mask)
    return row, h, n, n_mask, dar, dai, dbr, dbi, cr, ci


@triton.jit
def _chunk_states(u_ptr, row, L, t, j, dar, dai, dbr, dbi, sr, si, pw_r, pw_i, pw_r_lo, pw_i_lo,
                  NATIVE: tl.constexpr, BLOCK_T: tl.constexpr):
    """prev_t = x_{t-1} and x_t for the BLOCK_T steps t = t0 + j of one chunk, given s = x_{t0-1}.

    Scans the input shifted by one step, with the incoming state as its first element
    (b'_0 = s, b'_j = dB * u_{t-1}): the scan yields x_{t-1} directly, and x_t = dA x_{t-1} + dB u_t
    needs no second scan. Past the end b' = 0. Returns (prev_r, prev_i, x_r, x_i, u), tiles
    (BLOCK_N, BLOCK_T) and u (BLOCK_T,).
    """
    u = tl.load(u_ptr + row * L + t, mask=t < L, other=0.0)
    shifted = (j > 0) & (t <= L)
    u_prev = tl.load(u_ptr + row * L + t - 1, mask=shifted, other=0.0)
    first = (j == 0)[None, :]
    br = tl.where(first, sr[:, None], dbr[:, None] * u_prev[None, :])
    bi = tl.where(first, si[:, None], dbi[:, None] * u_prev[None, :])
    prev_r, prev_i = linrec(br, bi, dar, dai, pw_r, pw_i, pw_r_lo, pw_i_lo, j, False, NATIVE, BLOCK_T)
    xr = dar[:, None] * prev_r - dai[:, None] * prev_i + dbr[:, None] * u[None, :]
    xi = dar[:, None] * prev_i + dai[:, None] * prev_r + dbi[:, None] * u[None, :]
    return prev_r, prev_i, xr, xi, u


@triton.jit
def ssm_scan_fwd_kernel(u_ptr, dA_ptr, dB_ptr, C_ptr, D_ptr, state_ptr, y_ptr, last_ptr, ckpt_ptr,
                        H, N, L, n_chunks,
                        HAS_D: tl.constexpr, HAS_STATE: tl.constexpr, SAVE_CKPT: tl.constexpr,
                        NATIVE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    row, h, n, n_mask, dar, dai, dbr, dbi, cr, ci = _row_modes(dA_ptr, dB_ptr, C_ptr, H, N, BLOCK_N)
    j = tl.arange(0, BLOCK_T)
    if HAS_D:
        d = tl.load(D_ptr + h)
    state_off = (row * N + n) * 2
    sr, si = load_complex_if(state_ptr, state_off, n_mask, tl.zeros([BLOCK_N], dtype=dar.dtype), HAS_STATE)
    pw_r, pw_i, pw_r_lo, pw_i_lo = level_powers(dar, dai, BLOCK_N, BLOCK_T, NATIVE)
    for c in range(0, n_chunks):
        t0 = c * BLOCK_T
        if SAVE_CKPT:
            store_complex(ckpt_ptr, ((row * n_chunks + c) * N + n) * 2, sr, si, n_mask)
        t = t0 + j
        _, _, xr, xi, u = _chunk_states(u_ptr, row, L, t, j, dar, dai, dbr, dbi, sr, si,
                                        pw_r, pw_i, pw_r_lo, pw_i_lo, NATIVE, BLOCK_T)
        y = 2.0 * tl.sum(cr[:, None] * xr - ci[:, None] * xi, axis=0)
        if HAS_D:
            y += d * u
        tl.store(y_ptr + row * L + t, y, mask=t < L)
        sr, si = last_state(xr, xi, j, L, t0, BLOCK_T)
    store_complex(last_ptr, state_off, sr, si, n_mask)


@triton.jit
def ssm_scan_bwd_kernel(u_ptr, dA_ptr, dB_ptr, C_ptr, D_ptr, ckpt_ptr, gy_ptr, glast_ptr,
                        gu_ptr, gstate_ptr, gdA_ptr, gdB_ptr, gC_ptr, gD_ptr,
                        H, N, L, n_chunks,
                        HAS_D: tl.constexpr, HAS_GLAST: tl.constexpr,
                        NATIVE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    """Adjoint lambda_t = dLoss/dx_t (PyTorch convention), from t = L-1 down to 0:
        lambda_t = 2 * gy_t * conj(C) + conj(dA) * lambda_{t+1},   lambda_{L-1} = 2 gy conj(C) + g_last
    a reverse recurrence whose carry mu (g_last, then conj(dA) * lambda at the start of the later
    chunk) enters b at the chunk's last step. Writes grad_u per step and, per row, grad_state = the
    final mu and the partial sums of grad_dA, grad_dB, grad_C, and sum_t gy_t u_t (D's gradient).
    """
    row, h, n, n_mask, dar, dai, dbr, dbi, cr, ci = _row_modes(dA_ptr, dB_ptr, C_ptr, H, N, BLOCK_N)
    j = tl.arange(0, BLOCK_T)
    if HAS_D:
        d = tl.load(D_ptr + h)
    state_off = (row * N + n) * 2
    zero = tl.zeros([BLOCK_N], dtype=dar.dtype)
    mr, mi = load_complex_if(glast_ptr, state_off, n_mask, zero, HAS_GLAST)
    g_dAr, g_dAi, g_dBr, g_dBi, g_Cr, g_Ci = zero, zero, zero, zero, zero, zero
    # sum_t gy u over up to B*L terms per channel: float64, one add per step (float32 came within 0.9x
    # of the parity tolerance)
    g_D = tl.zeros([BLOCK_T], dtype=tl.float64)
    pw_r, pw_i, pw_r_lo, pw_i_lo = level_powers(dar, dai, BLOCK_N, BLOCK_T, NATIVE)
    # powers of conj(dA) are the conjugates of those of dA
    pwc_i = -pw_i
    pwc_i_lo = -pw_i_lo
    for k in range(0, n_chunks):
        c = n_chunks - 1 - k
        t0 = c * BLOCK_T
        t = t0 + j
        t_mask = t < L
        ck_off = ((row * n_chunks + c) * N + n) * 2
        sr, si = load_complex(ckpt_ptr, ck_off, n_mask)
        prev_r, prev_i, xr, xi, u = _chunk_states(u_ptr, row, L, t, j, dar, dai, dbr, dbi, sr, si,
                                                  pw_r, pw_i, pw_r_lo, pw_i_lo, NATIVE, BLOCK_T)
        gy = tl.load(gy_ptr + row * L + t, mask=t_mask, other=0.0)
        last = (j == tl.minimum(L - t0, BLOCK_T) - 1)[None, :]
        br = 2.0 * cr[:, None] * gy[None, :] + tl.where(last, mr[:, None], 0.0)
        bi = -2.0 * ci[:, None] * gy[None, :] + tl.where(last, mi[:, None], 0.0)
        lam_r, lam_i = linrec(br, bi, dar, -dai, pw_r, pwc_i, pw_r_lo, pwc_i_lo, j, True, NATIVE, BLOCK_T)
        # past the end b = 0 and so is lambda, unless |dA| > 1 overflowed a power there: keep it out
        lam_r = tl.where(t_mask[None, :], lam_r, 0.0)
        lam_i = tl.where(t_mask[None, :], lam_i, 0.0)
        # lambda * conj(prev), lambda * u, 2 gy conj(x), summed over the chunk's steps
        g_dAr += tl.sum(lam_r * prev_r + lam_i * prev_i, axis=1)
        g_dAi += tl.sum(lam_i * prev_r - lam_r * prev_i, axis=1)
        g_dBr += tl.sum(lam_r * u[None, :], axis=1)
        g_dBi += tl.sum(lam_i * u[None, :], axis=1)
        g_Cr += tl.sum(2.0 * gy[None, :] * xr, axis=1)
        g_Ci -= tl.sum(2.0 * gy[None, :] * xi, axis=1)
        g_D += (gy * u).to(tl.float64)
        gu = tl.sum(dbr[:, None] * lam_r + dbi[:, None] * lam_i, axis=0)
        if HAS_D:
            gu += d * gy
        tl.store(gu_ptr + row * L + t, gu, mask=t_mask)
        mr, mi = carry_back(lam_r, lam_i, dar, dai, j)
    store_complex(gstate_ptr, state_off, mr, mi, n_mask)
    store_complex(gdA_ptr, state_off, g_dAr, g_dAi, n_mask)
    store_complex(gdB_ptr, state_off, g_dBr, g_dBi, n_mask)
    store_complex(gC_ptr, state_off, g_Cr, g_Ci, n_mask)
    tl.store(gD_ptr + row, tl.sum(g_D, axis=0).to(gD_ptr.dtype.element_ty))
