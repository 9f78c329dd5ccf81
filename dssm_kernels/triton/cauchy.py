"""Triton kernels for cauchy (forward and backward).

Complex tensors arrive as their real views (..., 2): element n of row r is at (r * N + n) * 2 (+1);
z (L,) is shared by every row. The grid is one-dimensional, program = row * blocks + block (a CUDA
grid's second dimension stops at 65535 blocks), and offsets are 64-bit. No kernel writes an (N, L) intermediate: each tile of
1 / (z_j - w_n) lives in registers only. With a = z_j - w_n and b = z_j - conj(w_n):

  cauchy_rows:  out[r, j] = sum_n v[r, n] / a^P + conj(v[r, n]) / b^P,      P = 1 (forward) or 2
                (P = 2 is d out / d z, for the gradient of z)
  cauchy_modes: gv[r, n]  = sum_j g[r, j] * conj(1 / a) + conj(g[r, j]) / b
                gw[r, n]  = conj(v[r, n]) * sum_j g[r, j] * conj(1 / a)^2 + conj(g[r, j]) / b^2

Re(a) = Re(b), so one real part serves both reciprocals.
"""
import triton
import triton.language as tl

from dssm_kernels.triton._common import load_complex, program_block, store_complex


@triton.jit
def _scaled_reciprocal(x, y, SMALL, BIG, UP, DOWN):
    """1 / (x + i y) for any operand whose reciprocal is representable: the larger component is
    brought into [SMALL, BIG] by an exact power-of-two scale k, so |k a|^2 is a normal number; the
    final product by k comes last (it overflows only when 1/a does)."""
    s = tl.maximum(tl.abs(x), tl.abs(y))
    k = tl.where(s > BIG, DOWN, tl.where(s < SMALL, UP, 1.0))
    xs = x * k
    ys = y * k
    inv = 1.0 / (xs * xs + ys * ys)
    return (xs * inv) * k, -(ys * inv) * k


@triton.jit
def _reciprocals(zr, zi, wr, wi, mask):
    """1 / (z - w) and 1 / (z - conj(w)) on a [modes, points] tile, as (ar, ai, br, bi).

    The plain 1/a = conj(a) / |a|^2 is accurate while |a|^2 stays within [LO, HI]; beyond, it gives
    0 (a far pole: |a|^2 overflows) or inf/NaN (z next to a pole: |a|^2 underflows) where the true
    value is finite. A tile with any such term takes the scaled reciprocal instead (one reduction
    and a branch per tile on the common path). Masked entries get a finite value (the caller zeroes
    their weight): with the padding z = w = 0 the division would give inf, and 0 * inf = nan would
    poison the sums.
    """
    if zr.dtype == tl.float64:
        LO: tl.constexpr = 2.0 ** -900
        HI: tl.constexpr = 2.0 ** 900
        SMALL: tl.constexpr = 2.0 ** -500
        BIG: tl.constexpr = 2.0 ** 500
        UP: tl.constexpr = 2.0 ** 1000
        DOWN: tl.constexpr = 2.0 ** -1000
    else:
        LO: tl.constexpr = 2.0 ** -100
        HI: tl.constexpr = 2.0 ** 100
        SMALL: tl.constexpr = 2.0 ** -50
        BIG: tl.constexpr = 2.0 ** 50
        UP: tl.constexpr = 2.0 ** 100
        DOWN: tl.constexpr = 2.0 ** -100
    dr = tl.where(mask, zr[None, :] - wr[:, None], 1.0)
    ai = tl.where(mask, zi[None, :] - wi[:, None], 0.0)
    bi = tl.where(mask, zi[None, :] + wi[:, None], 0.0)
    dr2 = dr * dr
    da = dr2 + ai * ai
    db = dr2 + bi * bi
    unsafe = (da < LO) | (da > HI) | (db < LO) | (db > HI)
    if tl.max(unsafe.to(tl.int32)) == 0:
        inv_a = 1.0 / da
        inv_b = 1.0 / db
        ar = dr * inv_a
        ai_ = -ai * inv_a
        br = dr * inv_b
        bi_ = -bi * inv_b
    else:
        ar, ai_ = _scaled_reciprocal(dr, ai, SMALL, BIG, UP, DOWN)
        br, bi_ = _scaled_reciprocal(dr, bi, SMALL, BIG, UP, DOWN)
    return ar, ai_, br, bi_


@triton.jit
def cauchy_rows_kernel(v_ptr, w_ptr, z_ptr, out_ptr, N, L,
                       SQUARE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    row, j, j_mask = program_block(L, BLOCK_L)
    zr, zi = load_complex(z_ptr, j * 2, j_mask)
    acc_r = tl.zeros([BLOCK_L], dtype=zr.dtype)
    acc_i = tl.zeros([BLOCK_L], dtype=zr.dtype)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_mask = n < N
        off = (row * N + n) * 2
        vr, vi = load_complex(v_ptr, off, n_mask)
        wr, wi = load_complex(w_ptr, off, n_mask)
        vr, vi = vr[:, None], vi[:, None]
        ar, ai, br, bi = _reciprocals(zr, zi, wr, wi, n_mask[:, None] & j_mask[None, :])
        if SQUARE:
            ar, ai = ar * ar - ai * ai, 2.0 * ar * ai
            br, bi = br * br - bi * bi, 2.0 * br * bi
        # v * a + conj(v) * b, with a, b the (powers of the) reciprocals
        acc_r += tl.sum(vr * (ar + br) - vi * (ai - bi), axis=0)
        acc_i += tl.sum(vr * (ai + bi) + vi * (ar - br), axis=0)
    store_complex(out_ptr, (row * L + j) * 2, acc_r, acc_i, j_mask)


@triton.jit
def cauchy_modes_kernel(g_ptr, v_ptr, w_ptr, z_ptr, gv_ptr, gw_ptr, N, L,
                        NEED_V: tl.constexpr, NEED_W: tl.constexpr,
                        BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    row, n, n_mask = program_block(N, BLOCK_N)
    off = (row * N + n) * 2
    wr, wi = load_complex(w_ptr, off, n_mask)
    sv_r = tl.zeros([BLOCK_N], dtype=wr.dtype)
    sv_i = tl.zeros([BLOCK_N], dtype=wr.dtype)
    sw_r = tl.zeros([BLOCK_N], dtype=wr.dtype)
    sw_i = tl.zeros([BLOCK_N], dtype=wr.dtype)
    for j0 in range(0, L, BLOCK_L):
        j = j0 + tl.arange(0, BLOCK_L)
        j_mask = j < L
        zr, zi = load_complex(z_ptr, j * 2, j_mask)
        gr, gi = load_complex(g_ptr, (row * L + j) * 2, j_mask)
        gr, gi = gr[None, :], gi[None, :]
        ar, ai, br, bi = _reciprocals(zr, zi, wr, wi, n_mask[:, None] & j_mask[None, :])
        # conj(1/a) = ar - i ai: g * conj(1/a) + conj(g) * (1/b), and the same with squares
        if NEED_V:
            sv_r += tl.sum(gr * (ar + br) + gi * (ai + bi), axis=1)
            sv_i += tl.sum(gi * (ar - br) - gr * (ai - bi), axis=1)
        if NEED_W:
            a2r, a2i = ar * ar - ai * ai, 2.0 * ar * ai
            b2r, b2i = br * br - bi * bi, 2.0 * br * bi
            sw_r += tl.sum(gr * (a2r + b2r) + gi * (a2i + b2i), axis=1)
            sw_i += tl.sum(gi * (a2r - b2r) - gr * (a2i - b2i), axis=1)
    if NEED_V:
        store_complex(gv_ptr, off, sv_r, sv_i, n_mask)
    if NEED_W:
        vr, vi = load_complex(v_ptr, off, n_mask)
        store_complex(gw_ptr, off, vr * sw_r + vi * sw_i, vr * sw_i - vi * sw_r, n_mask)
