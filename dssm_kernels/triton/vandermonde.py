"""Triton kernels for vandermonde and vandermonde_transpose (forward and backward).

Complex tensors arrive as their real views (..., 2): element n of row r is at (r * N + n) * 2 (+1).
No kernel writes an (N, L) intermediate: each tile of exp(x * l) lives in registers only. The grid is
one-dimensional, program = row * blocks + block (a CUDA grid's second dimension stops at 65535
blocks), and offsets are 64-bit (R * L and R * N pass 2^31 at sizes a large GPU holds).

Two kernels cover both ops and their backward passes:
  vandermonde_rows:  out[r, l]  = scale * Re( sum_n c[r, n] * exp(x[r, n] * p(l)) )      (fwd; bwd of transpose wrt u)
  power_sums:        s[r, n]   = sum_l w[r, l] * exp(x[r, n] * p(l)),                  (fwd of transpose; bwd of vandermonde)
                     ds[r, n]  = sum_l w[r, l] * p(l) * exp(x[r, n] * p(l))
with p(l) = l, or L - 1 - l when REVERSE.
"""
import triton
import triton.language as tl

from dssm_kernels.triton._common import cexp, load_complex, program_block, store_complex


@triton.jit
def vandermonde_rows_kernel(c_ptr, x_ptr, out_ptr, N, L, scale,
                            REVERSE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    row, l, l_mask = program_block(L, BLOCK_L)
    dtype = out_ptr.dtype.element_ty
    if REVERSE:
        power = (L - 1 - l).to(dtype)
    else:
        power = l.to(dtype)
    power = tl.where(l_mask, power, 0.0)
    acc = tl.zeros([BLOCK_L], dtype=dtype)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_mask = n < N
        off = (row * N + n) * 2
        cr, ci = load_complex(c_ptr, off, n_mask)
        xr, xi = load_complex(x_ptr, off, n_mask)
        er, ei = cexp(xr[:, None] * power[None, :], xi[:, None] * power[None, :])
        acc += tl.sum(cr[:, None] * er - ci[:, None] * ei, axis=0)
    tl.store(out_ptr + row * L + l, scale * acc, mask=l_mask)


@triton.jit
def power_sums_kernel(w_ptr, x_ptr, s_ptr, ds_ptr, N, L,
                      REVERSE: tl.constexpr, WITH_DERIV: tl.constexpr,
                      BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    row, n, n_mask = program_block(N, BLOCK_N)
    off = (row * N + n) * 2
    xr, xi = load_complex(x_ptr, off, n_mask)
    dtype = s_ptr.dtype.element_ty
    sr = tl.zeros([BLOCK_N], dtype=dtype)
    si = tl.zeros([BLOCK_N], dtype=dtype)
    dr = tl.zeros([BLOCK_N], dtype=dtype)
    di = tl.zeros([BLOCK_N], dtype=dtype)
    for l0 in range(0, L, BLOCK_L):
        l = l0 + tl.arange(0, BLOCK_L)
        l_mask = l < L
        w = tl.load(w_ptr + row * L + l, mask=l_mask, other=0.0).to(dtype)
        if REVERSE:
            power = (L - 1 - l).to(dtype)
        else:
            power = l.to(dtype)
        # past the end the power would be negative and exp(Re(x) * power) could overflow: 0 * inf = nan
        power = tl.where(l_mask, power, 0.0)
        er, ei = cexp(xr[:, None] * power[None, :], xi[:, None] * power[None, :])
        wer = w[None, :] * er
        wei = w[None, :] * ei
        sr += tl.sum(wer, axis=1)
        si += tl.sum(wei, axis=1)
        if WITH_DERIV:
            dr += tl.sum(wer * power[None, :], axis=1)
            di += tl.sum(wei * power[None, :], axis=1)
    store_complex(s_ptr, off, sr, si, n_mask)
    if WITH_DERIV:
        store_complex(ds_ptr, off, dr, di, n_mask)
