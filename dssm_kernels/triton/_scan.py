"""The in-chunk linear recurrence both scan kernels use (ssm_scan.py, diag_scan.py).

    v_j = a v_{j-1} + b_j  along axis 1 of (BLOCK_N, BLOCK_T) tiles, a the same at every step

linrec runs it forward or in reverse, as tl.associative_scan (compiled) or as a Hillis-Steele scan
(interpreted), from the powers a^(2^k) of level_powers; column reads one column of a tile.

Accuracy: a scan multiplies by powers a^d built from equal halves, and such a power repeats its
halves' rounding error, which grows like d and enters every state coherently: several times the
error of the step-by-step recurrence when |dA| is near 1. So the powers are kept as double words
(hi + lo, exact products through fma); the b parts are rounded normally, their errors differ from
step to step. The result is more accurate than the sequential recurrence.
"""
import triton
import triton.language as tl

MAX_LEVELS = tl.constexpr(16)  # log2 of the largest BLOCK_T; compiled globals must be tl.constexpr


@triton.jit
def column(tile, j, col):
    """tile[:, col] as a vector (a masked reduction: Triton has no dynamic column index)."""
    return tl.sum(tl.where((j == col)[None, :], tile, 0.0), axis=1)


@triton.jit
def last_state(xr, xi, j, L, t0, BLOCK_T: tl.constexpr):
    """The states at the last step of the chunk starting at t0 (t0 + BLOCK_T - 1, or L - 1 in the last
    chunk): the carry a forward scan passes to the next chunk."""
    last = tl.minimum(L - t0, BLOCK_T) - 1
    return column(xr, j, last), column(xi, j, last)


@triton.jit
def carry_back(lam_r, lam_i, ar, ai, j):
    """mu = conj(a) * lambda at the chunk's first step: the carry a reverse (adjoint) scan passes to the
    chunk before."""
    l0r = column(lam_r, j, 0)
    l0i = column(lam_i, j, 0)
    return ar * l0r + ai * l0i, ar * l0i - ai * l0r


@triton.jit
def _dd_dot2(xh, xl, yh, yl, zh, zl, wh, wl, sign: tl.constexpr):
    """x*y + sign*z*w for double words (h + l), as a renormalised double word (hi, lo).

    Exact products through fma, exact sums through Knuth's two-sum, written out inline: under the
    interpreter every call of a jit helper costs about a millisecond.
    """
    p1 = xh * yh
    e1 = tl.fma(xh, yh, -p1)
    p2 = sign * (zh * wh)
    e2 = sign * tl.fma(zh, wh, -(zh * wh))
    s = p1 + p2
    v = s - p1
    t = (p1 - (s - v)) + (p2 - v)
    low = t + e1 + e2 + (xh * yl + xl * yh) + sign * (zh * wl + zl * wh)
    hi = s + low
    v = hi - s
    return hi, (s - (hi - v)) + (low - v)


@triton.jit
def _dd_cmul(ar, ai, ar_lo, ai_lo, br, bi, br_lo, bi_lo):
    """Complex product of double words: (real hi, imag hi, real lo, imag lo)."""
    pr, pr_lo = _dd_dot2(ar, ar_lo, br, br_lo, ai, ai_lo, bi, bi_lo, -1.0)
    pi, pi_lo = _dd_dot2(ar, ar_lo, bi, bi_lo, ai, ai_lo, br, br_lo, 1.0)
    return pr, pi, pr_lo, pi_lo


@triton.jit
def _linrec_combine(a1r, a1i, a1r_lo, a1i_lo, b1r, b1i, a2r, a2i, a2r_lo, a2i_lo, b2r, b2i):
    """Compose v -> a1 v + b1 then v -> a2 v + b2: (a2 a1, a2 b1 + b2), with a as a double word."""
    ar, ai, ar_lo, ai_lo = _dd_cmul(a2r, a2i, a2r_lo, a2i_lo, a1r, a1i, a1r_lo, a1i_lo)
    br = a2r * b1r - a2i * b1i + (a2r_lo * b1r - a2i_lo * b1i + b2r)
    bi = a2r * b1i + a2i * b1r + (a2r_lo * b1i + a2i_lo * b1r + b2i)
    return ar, ai, ar_lo, ai_lo, br, bi


@triton.jit
def level_powers(ar, ai, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr, NATIVE: tl.constexpr):
    """a^(2^k) for k < log2(BLOCK_T) as double words, column k of four (BLOCK_N, MAX_LEVELS) tiles
    (real hi, imag hi, real lo, imag lo), by squaring. Only the Hillis-Steele scan needs them:
    zeros when NATIVE."""
    lev = tl.arange(0, MAX_LEVELS)
    pr = tl.zeros([BLOCK_N, MAX_LEVELS], dtype=ar.dtype)
    pi = tl.zeros([BLOCK_N, MAX_LEVELS], dtype=ar.dtype)
    pr_lo = tl.zeros([BLOCK_N, MAX_LEVELS], dtype=ar.dtype)
    pi_lo = tl.zeros([BLOCK_N, MAX_LEVELS], dtype=ar.dtype)
    hr, hi = ar, ai
    lr = tl.zeros_like(ar)
    li = tl.zeros_like(ai)
    for level in tl.static_range(0, MAX_LEVELS):
        if (1 << level) < BLOCK_T and not NATIVE:
            col = (lev == level)[None, :]
            pr = tl.where(col, hr[:, None], pr)
            pi = tl.where(col, hi[:, None], pi)
            pr_lo = tl.where(col, lr[:, None], pr_lo)
            pi_lo = tl.where(col, li[:, None], pi_lo)
            hr, hi, lr, li = _dd_cmul(hr, hi, lr, li, hr, hi, lr, li)
    return pr, pi, pr_lo, pi_lo


@triton.jit
def linrec(br, bi, ar, ai, pw_r, pw_i, pw_r_lo, pw_i_lo, j,
            REVERSE: tl.constexpr, NATIVE: tl.constexpr, BLOCK_T: tl.constexpr):
    """v_j = a v_{j-1} + b_j from v_{-1} = 0 along axis 1 of (BLOCK_N, BLOCK_T) tiles b; with REVERSE
    v_j = a v_{j+1} + b_j from v_{BLOCK_T} = 0. a: (BLOCK_N,), the same at every step; pw_*: its
    level_powers. Returns (v_r, v_i).

    NATIVE: tl.associative_scan of (a, b) pairs with _linrec_combine, the compiled path. Otherwise a
    Hillis-Steele scan: level k adds a^(2^k) times the partial sum 2^k steps back (tl.gather), a
    dozen whole-tile operations per level, where the interpreter runs associative_scan's combine
    once per element in Python (about a millisecond each).
    """
    if NATIVE:
        a_r = tl.broadcast_to(ar[:, None], br.shape)
        a_i = tl.broadcast_to(ai[:, None], br.shape)
        zero = tl.zeros_like(br)
        _, _, _, _, br, bi = tl.associative_scan((a_r, a_i, zero, zero, br, bi), axis=1,
                                                 combine_fn=_linrec_combine, reverse=REVERSE)
    else:
        for level in tl.static_range(0, MAX_LEVELS):
            if (1 << level) < BLOCK_T:
                if REVERSE:
                    src = j + (1 << level)
                    ok = src < BLOCK_T
                else:
                    src = j - (1 << level)
                    ok = src >= 0
                idx = tl.broadcast_to(tl.where(ok, src, j)[None, :], br.shape)
                qr = tl.gather(br, idx, 1)
                qi = tl.gather(bi, idx, 1)
                # column `level` of the power tiles, spread over the chunk (tl.sum is a jit helper: slow)
                col = idx * 0 + level
                hr = tl.gather(pw_r, col, 1)
                hi = tl.gather(pw_i, col, 1)
                lr = tl.gather(pw_r_lo, col, 1)
                li = tl.gather(pw_i_lo, col, 1)
                nr = hr * qr - hi * qi + (lr * qr - li * qi + br)
                ni = hr * qi + hi * qr + (lr * qi + li * qr + bi)
                ok = ok[None, :]
                br = tl.where(ok, nr, br)
                bi = tl.where(ok, ni, bi)
    return br, bi
