"""Triton kernels for cauchy (forward and backward).

Complex tensors arrive as their real views (..., 2): element n of row r is at (r * N + n) * 2 (+1);
z (L,) is shared by every row. No kernel writes an (N, L) intermediate: each tile of
1 / (z_j - w_n) lives in registers only. With a = z_j - w_n and b = z_j - conj(w_n):

  cauchy_rows:  out[r, j] = sum_n v[r, n] / a^P + conj(v[r, n]) / b^P,      P = 1 (forward) or 2
                (P = 2 is d out / d z, for the gradient of z)
  cauchy_modes: gv[r, n]  = sum_j g[r, j] * conj(1 / a) + conj(g[r, j]) / b
                gw[r, n]  = conj(v[r, n]) * sum_j g[r, j] * conj(1 / a)^2 + conj(g[r, j]) / b^2

Re(a) = Re(b), so one real part serves both reciprocals.
"""
import triton
import triton.language as tl


@triton.jit
def _reciprocals(zr, zi, wr, wi, mask):
    """1 / (z - w) and 1 / (z - conj(w)) on a [modes, points] tile, as (ar, ai, br, bi).

    Masked entries get a finite value (the caller zeroes their weight): with the padding z = w = 0
    the division would give inf, and 0 * inf = nan would poison the sums.
    """
    dr = zr[None, :] - wr[:, None]
    ai = zi[None, :] - wi[:, None]
    bi = zi[None, :] + wi[:, None]
    inv_a = 1.0 / tl.where(mask, dr * dr + ai * ai, 1.0)
    inv_b = 1.0 / tl.where(mask, dr * dr + bi * bi, 1.0)
    return dr * inv_a, -ai * inv_a, dr * inv_b, -bi * inv_b


@triton.jit
def cauchy_rows_kernel(v_ptr, w_ptr, z_ptr, out_ptr, N, L,
                       SQUARE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    row = tl.program_id(0)
    j = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)
    j_mask = j < L
    zr = tl.load(z_ptr + j * 2, mask=j_mask, other=0.0)
    zi = tl.load(z_ptr + j * 2 + 1, mask=j_mask, other=0.0)
    acc_r = tl.zeros([BLOCK_L], dtype=zr.dtype)
    acc_i = tl.zeros([BLOCK_L], dtype=zr.dtype)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_mask = n < N
        off = (row * N + n) * 2
        vr = tl.load(v_ptr + off, mask=n_mask, other=0.0)[:, None]
        vi = tl.load(v_ptr + off + 1, mask=n_mask, other=0.0)[:, None]
        wr = tl.load(w_ptr + off, mask=n_mask, other=0.0)
        wi = tl.load(w_ptr + off + 1, mask=n_mask, other=0.0)
        ar, ai, br, bi = _reciprocals(zr, zi, wr, wi, n_mask[:, None] & j_mask[None, :])
        if SQUARE:
            ar, ai = ar * ar - ai * ai, 2.0 * ar * ai
            br, bi = br * br - bi * bi, 2.0 * br * bi
        # v * a + conj(v) * b, with a, b the (powers of the) reciprocals
        acc_r += tl.sum(vr * (ar + br) - vi * (ai - bi), axis=0)
        acc_i += tl.sum(vr * (ai + bi) + vi * (ar - br), axis=0)
    out = (row * L + j) * 2
    tl.store(out_ptr + out, acc_r, mask=j_mask)
    tl.store(out_ptr + out + 1, acc_i, mask=j_mask)


@triton.jit
def cauchy_modes_kernel(g_ptr, v_ptr, w_ptr, z_ptr, gv_ptr, gw_ptr, N, L,
                        NEED_V: tl.constexpr, NEED_W: tl.constexpr,
                        BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    row = tl.program_id(0)
    n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = n < N
    off = (row * N + n) * 2
    wr = tl.load(w_ptr + off, mask=n_mask, other=0.0)
    wi = tl.load(w_ptr + off + 1, mask=n_mask, other=0.0)
    sv_r = tl.zeros([BLOCK_N], dtype=wr.dtype)
    sv_i = tl.zeros([BLOCK_N], dtype=wr.dtype)
    sw_r = tl.zeros([BLOCK_N], dtype=wr.dtype)
    sw_i = tl.zeros([BLOCK_N], dtype=wr.dtype)
    for j0 in range(0, L, BLOCK_L):
        j = j0 + tl.arange(0, BLOCK_L)
        j_mask = j < L
        zr = tl.load(z_ptr + j * 2, mask=j_mask, other=0.0)
        zi = tl.load(z_ptr + j * 2 + 1, mask=j_mask, other=0.0)
        gr = tl.load(g_ptr + (row * L + j) * 2, mask=j_mask, other=0.0)[None, :]
        gi = tl.load(g_ptr + (row * L + j) * 2 + 1, mask=j_mask, other=0.0)[None, :]
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
        tl.store(gv_ptr + off, sv_r, mask=n_mask)
        tl.store(gv_ptr + off + 1, sv_i, mask=n_mask)
    if NEED_W:
        vr = tl.load(v_ptr + off, mask=n_mask, other=0.0)
        vi = tl.load(v_ptr + off + 1, mask=n_mask, other=0.0)
        tl.store(gw_ptr + off, vr * sw_r + vi * sw_i, mask=n_mask)
        tl.store(gw_ptr + off + 1, vr * sw_i - vi * sw_r, mask=n_mask)
