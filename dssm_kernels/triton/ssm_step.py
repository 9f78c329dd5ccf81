"""Triton kernels for ssm_step (forward and backward): one time step of a diagonal SSM.

    new_state = dA * state + dB * u,   y = 2 * Re( sum_n C * new_state ) + D * u

A program takes BLOCK_R rows r = b * H + h and loops over the N modes in BLOCK_N slices, summing y
as it goes. Complex tensors arrive as their real views: element n of row r is at (r * N + n) * 2 (+1);
dA, dB, C are (H, N), read at row h = r % H.
"""
import triton
import triton.language as tl

from dssm_kernels.triton._common import load_complex, load_modes, store_complex


@triton.jit
def _tile_offsets(r, h, r_mask, n0, N, BLOCK_N: tl.constexpr):
    """(mask, mode offsets, state offsets) of the (BLOCK_R, BLOCK_N) tile of rows r (channels h) and
    modes n0 .. n0 + BLOCK_N - 1."""
    n = n0 + tl.arange(0, BLOCK_N)
    mask = r_mask[:, None] & (n < N)[None, :]
    return mask, (h[:, None] * N + n[None, :]) * 2, (r[:, None] * N + n[None, :]) * 2


@triton.jit
def _advance(u, dar, dai, dbr, dbi, state_ptr, state_off, mask, HAS_STATE: tl.constexpr):
    """new_state = dA * state + dB * u over a tile: (new_r, new_i, state_r, state_i), the state 0 when
    absent (then dA is not multiplied at all: a non-finite dA times a zero state must not give NaN)."""
    xr = dbr * u[:, None]
    xi = dbi * u[:, None]
    if HAS_STATE:
        sr, si = load_complex(state_ptr, state_off, mask)
        xr += dar * sr - dai * si
        xi += dar * si + dai * sr
    else:
        sr = tl.zeros_like(xr)
        si = tl.zeros_like(xi)
    return xr, xi, sr, si


@triton.jit
def ssm_step_fwd_kernel(u_ptr, state_ptr, dA_ptr, dB_ptr, C_ptr, D_ptr, y_ptr, new_ptr, R, H, N,
                        HAS_D: tl.constexpr, HAS_STATE: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    r_mask = r < R
    h = r % H
    u = tl.load(u_ptr + r, mask=r_mask, other=0.0)
    acc = tl.zeros([BLOCK_R], dtype=u.dtype)
    for n0 in range(0, N, BLOCK_N):
        mask, mode_off, state_off = _tile_offsets(r, h, r_mask, n0, N, BLOCK_N)
        dar, dai, dbr, dbi, cr, ci = load_modes(dA_ptr, dB_ptr, C_ptr, mode_off, mask)
        xr, xi, _, _ = _advance(u, dar, dai, dbr, dbi, state_ptr, state_off, mask, HAS_STATE)
        store_complex(new_ptr, state_off, xr, xi, mask)
        acc += tl.sum(cr * xr - ci * xi, axis=1)
    y = 2.0 * acc
    if HAS_D:
        y += tl.load(D_ptr + h, mask=r_mask, other=0.0) * u
    tl.store(y_ptr + r, y, mask=r_mask)


@triton.jit
def ssm_step_bwd_kernel(u_ptr, state_ptr, dA_ptr, dB_ptr, C_ptr, D_ptr, gy_ptr, gnew_ptr,
                        gu_ptr, gstate_ptr, gdA_ptr, gdB_ptr, gC_ptr, R, H, N,
                        HAS_D: tl.constexpr, HAS_STATE: tl.constexpr, HAS_GNEW: tl.constexpr,
                        BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    """With lambda = g_new + 2 * gy * conj(C) (the gradient reaching new_state):
        grad_state = conj(dA) * lambda,  grad_u = Re( sum_n conj(dB) * lambda ) + D * gy,
    and per row (summed over the batch by the caller) lambda * conj(state), lambda * u and
    2 * gy * conj(new_state) for dA, dB and C.
    """
    r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    r_mask = r < R
    h = r % H
    u = tl.load(u_ptr + r, mask=r_mask, other=0.0)
    gy = tl.load(gy_ptr + r, mask=r_mask, other=0.0)
    acc = tl.zeros([BLOCK_R], dtype=u.dtype)
    for n0 in range(0, N, BLOCK_N):
        mask, mode_off, state_off = _tile_offsets(r, h, r_mask, n0, N, BLOCK_N)
        dar, dai, dbr, dbi, cr, ci = load_modes(dA_ptr, dB_ptr, C_ptr, mode_off, mask)
        lam_r = 2.0 * gy[:, None] * cr
        lam_i = -2.0 * gy[:, None] * ci
        if HAS_GNEW:
            gr, gi = load_complex(gnew_ptr, state_off, mask)
            lam_r += gr
            lam_i += gi
        xr, xi, sr, si = _advance(u, dar, dai, dbr, dbi, state_ptr, state_off, mask, HAS_STATE)
        if HAS_STATE:
            store_complex(gstate_ptr, state_off, dar * lam_r + dai * lam_i, dar * lam_i - dai * lam_r, mask)
            store_complex(gdA_ptr, state_off, lam_r * sr + lam_i * si, lam_i * sr - lam_r * si, mask)
        store_complex(gdB_ptr, state_off, lam_r * u[:, None], lam_i * u[:, None], mask)
        store_complex(gC_ptr, state_off, 2.0 * gy[:, None] * xr, -2.0 * gy[:, None] * xi, mask)
        acc += tl.sum(dbr * lam_r + dbi * lam_i, axis=1)
    if HAS_D:
        acc += tl.load(D_ptr + h, mask=r_mask, other=0.0) * gy
    tl.store(gu_ptr + r, acc, mask=r_mask)
