"""Triton kernels for fftconv (forward and backward); the FFTs themselves stay in torch.fft (cuFFT).

Complex spectra arrive as their real views (..., 2): frequency f of row r is at (r * F + f) * 2 (+1).
Offsets are computed in int64: B * H * F * 2 passes 2**31 at sizes people train with. The grids are
one-dimensional, program = row * blocks + block (a CUDA grid's second dimension stops at 65535).

Two kernels cover both directions:
  spectral_products:  out[b, h, f] = a[b, h, f] * K[h, f]       (or * conj(K[h, f]) when CONJ)
                      acc[h, f]    = sum_b a[b, h, f] * conj(u[b, h, f])
      forward: a = rfft(u), out = Y (no sum);  backward: a = G = rfft(g), out = dU, acc = dK.
      Each program owns one (h, frequency block) and loops over b: K is read once and the sum over b
      needs no atomics (deterministic).
  epilogue:           out[r, t] = z[r, t] * [t < n_valid]  +  D[r % H] * x[r, t],   t < L_out
      z is an irfft output row (length Z_STRIDE = n); slicing, the skip term and the cast to the
      output dtype happen in the one pass that writes the output.
      forward: z = irfft(Y), x = u;  backward: z = irfft(dU), x = g (grad_u), and z = irfft(dK)
      with no D, L_out = Lk, n_valid = L (grad_k: zero where k was cut off).
      A bfloat16 output is rounded by _common.round_to_bf16 (see there why).
"""
import triton
import triton.language as tl

from dssm_kernels.triton._common import load_complex, program_block, round_to_bf16, store_complex


@triton.jit
def spectral_products_kernel(a_ptr, k_ptr, u_ptr, out_ptr, acc_ptr, B, H, F,
                             CONJ: tl.constexpr, WITH_OUT: tl.constexpr, WITH_SUM: tl.constexpr,
                             BLOCK_F: tl.constexpr):
    h, f, mask = program_block(F, BLOCK_F)
    k_off = (h * F + f) * 2
    dtype = a_ptr.dtype.element_ty
    if WITH_OUT:
        kr, ki = load_complex(k_ptr, k_off, mask)
        if CONJ:
            ki = -ki
    sr = tl.zeros([BLOCK_F], dtype=dtype)
    si = tl.zeros([BLOCK_F], dtype=dtype)
    for b in range(0, B):
        off = ((b * H + h) * F + f) * 2
        ar, ai = load_complex(a_ptr, off, mask)
        if WITH_OUT:
            store_complex(out_ptr, off, ar * kr - ai * ki, ar * ki + ai * kr, mask)
        if WITH_SUM:
            ur, ui = load_complex(u_ptr, off, mask)
            sr += ar * ur + ai * ui
            si += ai * ur - ar * ui
    if WITH_SUM:
        store_complex(acc_ptr, k_off, sr, si, mask)


@triton.jit
def epilogue_kernel(z_ptr, x_ptr, d_ptr, out_ptr, H, Z_STRIDE, N_VALID, L_OUT,
                    HAS_D: tl.constexpr, BLOCK_L: tl.constexpr):
    blocks = tl.cdiv(L_OUT, BLOCK_L)
    row = (tl.program_id(0) // blocks).to(tl.int64)
    t = (tl.program_id(0) % blocks) * BLOCK_L + tl.arange(0, BLOCK_L)
    mask = t < L_OUT
    acc = tl.load(z_ptr + row * Z_STRIDE + t, mask=mask & (t < N_VALID), other=0.0)
    if HAS_D:
        d = tl.load(d_ptr + row % H).to(acc.dtype)
        x = tl.load(x_ptr + row * L_OUT + t, mask=mask, other=0.0).to(acc.dtype)
        acc += d * x
    if out_ptr.dtype.element_ty == tl.bfloat16:
        res = round_to_bf16(acc.to(tl.float32))
    else:
        res = acc.to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + row * L_OUT + t, res, mask=mask)
