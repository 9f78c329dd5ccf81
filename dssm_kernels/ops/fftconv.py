"""fftconv: causal convolution of a sequence with a per-channel kernel, through the FFT.

    y[b, h, t] = sum_{s <= t} k[h, s] * u[b, h, t - s]  +  D[h] * u[b, h, t]

u: real (B, H, L); k: real (H, Lk), zero-padded or cut to L; D: real (H,) or None. The convolution
is computed as a circular one of length n >= 2L - 1 (then no wrapped term reaches t < L), with n the
smallest 2^a 3^b 5^c that fits: cuFFT and pocketfft are fast at such sizes, and padding to a power
of two instead would cost up to twice the work. Internally float32, or float64 if u or k is.
"""
from __future__ import annotations

import torch

from dssm_kernels.ops import _common as common
from dssm_kernels.ops._launch import grid, interpreted, kernel, new_output, pow2_block, real_view
from dssm_kernels.ops._primitives import declare, empty_unless, kernel_backends

OP = "fftconv"
U_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
K_DTYPES = (torch.float32, torch.float64)
D_DTYPES = U_DTYPES


def fft_length(L: int) -> int:
    """The smallest n = 2^a 3^b 5^c with n >= 2L - 1: the shortest fast FFT a causal length-L
    convolution can use without wrap-around."""
    target = max(1, 2 * L - 1)
    best = 1 << (target - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < target:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def compute_dtype(u: torch.Tensor, k: torch.Tensor) -> torch.dtype:
    return torch.float64 if torch.float64 in (u.dtype, k.dtype) else torch.float32


def fftconv_ref(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """Plain-torch oracle: rfft, product, irfft, first L samples, skip term, cast bacommon."""
    cd = compute_dtype(u, k)
    L = u.shape[-1]
    n = fft_length(L)
    U = torch.fft.rfft(u.to(cd), n=n)
    K = torch.fft.rfft(k[..., :L].to(cd), n=n)
    y = torch.fft.irfft(U * K, n=n)[..., :L]
    if D is not None:
        y = y + D.to(cd).unsqueeze(-1) * u.to(cd)
    return y.to(u.dtype)


def _products_triton(a, K, u_hat, conj):
    B, H, F = a.shape
    out = new_output((B, H, F) if K is not None else (0,), dtype=a.dtype, device=a.device)
    acc = new_output((H, F) if u_hat is not None else (0,), dtype=a.dtype, device=a.device)
    if B == 0 or H == 0:
        return out, (acc.zero_() if u_hat is not None else acc)
    block_f = pow2_block(F, 16, 4096 if interpreted(a.device) else 256)
    kernel("fftconv", "spectral_products_kernel")[grid("fftconv_products", H * -(-F // block_f))](
        a_ptr=real_view(a), k_ptr=real_view(K), u_ptr=real_view(u_hat),
        out_ptr=real_view(out) if K is not None else None, acc_ptr=real_view(acc) if u_hat is not None else None,
        B=B, H=H, F=F, CONJ=conj, WITH_OUT=K is not None, WITH_SUM=u_hat is not None, BLOCK_F=block_f)
    return out, acc


FFTCONV_PRODUCTS = declare(
    "fftconv_products(Tensor a, Tensor? K, Tensor? u_hat, bool conj) -> (Tensor, Tensor)",
    fake=lambda a, K, u_hat, conj: (empty_unless(K is not None, a, a.shape),
                                    empty_unless(u_hat is not None, a, a.shape[1:])),
    triton=_products_triton,
    doc="""(out, acc) with out[b, h] = a[b, h] * K[h] (conj(K[h]) if `conj`) and
    acc[h] = sum_b a[b, h] * conj(u_hat[b, h]); out is (0,) when K is None, acc when u_hat is None.
    a, u_hat: contiguous complex (B, H, F); K: contiguous complex (H, F).""")


def _epilogue_triton(z, n_valid, L_out, out_dtype, x, D):
    *lead, H, n = z.shape
    out = new_output((*lead, H, L_out), dtype=out_dtype, device=z.device)
    R = out.numel() // L_out
    if R == 0:
        return out
    block_l = pow2_block(L_out, 16, 4096 if interpreted(z.device) else 512)
    kernel("fftconv", "epilogue_kernel")[grid("fftconv_epilogue", R * -(-L_out // block_l))](
        z_ptr=z, x_ptr=x if D is not None else None, d_ptr=D, out_ptr=out, H=H, Z_STRIDE=n, N_VALID=n_valid,
        L_OUT=L_out, HAS_D=D is not None, BLOCK_L=block_l)
    return out


FFTCONV_EPILOGUE = declare(
    "fftconv_epilogue(Tensor z, int n_valid, int L_out, ScalarType out_dtype, Tensor? x, Tensor? D) -> Tensor",
    fake=lambda z, n_valid, L_out, out_dtype, x, D: z.new_empty((*z.shape[:-1], L_out), dtype=out_dtype),
    triton=_epilogue_triton,
    doc="""out[..., t] = z[..., t] * [t < n_valid] + D[h] * x[..., t] for t < L_out, cast to out_dtype.
    z: contiguous real (..., H, n), an irfft output; x: contiguous (..., H, L_out), read only with D
    (H,) (no skip term when D is None).""")

KERNELS = kernel_backends(FFTCONV_PRODUCTS, FFTCONV_EPILOGUE)


class FFTConvFunction(torch.autograd.Function):
    """The primitives (Triton) around torch.fft. With U, K, G the length-n rffts of u, k[:, :L] and the output
    gradient g (all zero-padded), the circular correlations give, exactly since n >= 2L - 1:
        grad_u = irfft(G * conj(K))[..., :L] + D * g
        grad_k = irfft(sum_b G * conj(U))[:, :Lk]     (zero beyond L when Lk > L: k was cut there)
        grad_D = sum_{b, t} g * u                     (a torch reduction)
    U and K are recomputed in the backward rather than saved: only u, k and D are kept.
    """

    @staticmethod
    def forward(ctx, u, k, D, backend):
        cd = compute_dtype(u, k)
        L = u.shape[-1]
        n = fft_length(L)
        u = u.contiguous()
        D = D.contiguous() if D is not None else None
        U = torch.fft.rfft(u.to(cd), n=n).contiguous()
        K = torch.fft.rfft(k[:, :L].to(cd), n=n).contiguous()
        Y, _ = FFTCONV_PRODUCTS(U, K, None, False, backend=backend)
        y = FFTCONV_EPILOGUE(torch.fft.irfft(Y, n=n), L, L, u.dtype, u, D, backend=backend)
        ctx.save_for_backward(u, k, D)
        ctx.backend = backend
        return y

    @staticmethod
    def backward(ctx, g):
        common.refuse_double_backward(OP, ctx.backend)
        u, k, D = ctx.saved_tensors
        need_u, need_k, need_D = ctx.needs_input_grad[:3]
        cd = compute_dtype(u, k)
        L, Lk = u.shape[-1], k.shape[-1]
        n = fft_length(L)
        g = g.contiguous()
        grad_u = grad_k = grad_D = None
        if need_u or need_k:
            G = torch.fft.rfft(g.to(cd), n=n).contiguous()
            K = torch.fft.rfft(k[:, :L].to(cd), n=n).contiguous() if need_u else None
            U = torch.fft.rfft(u.to(cd), n=n).contiguous() if need_k else None
            dU, dK = FFTCONV_PRODUCTS(G, K, U, True, backend=ctx.backend)
            if need_u:
                grad_u = FFTCONV_EPILOGUE(torch.fft.irfft(dU, n=n), L, L, u.dtype, g, D, backend=ctx.backend)
            if need_k:
                grad_k = FFTCONV_EPILOGUE(torch.fft.irfft(dK, n=n), L, Lk, k.dtype, None, None, backend=ctx.backend)
        if need_D:
            grad_D = (g.to(cd) * u.to(cd)).sum(dim=(0, 2)).to(D.dtype)
        return grad_u, grad_k, grad_D, None


def _validate(u, k, D):
    common.check_tensor(OP, "u", u, ndim=3)
    common.check_dtype_in(OP, "u", u, U_DTYPES)
    if u.shape[0] < 1 or u.shape[1] < 1:  # torch.fft rejects empty batches with an opaque MKL error
        raise ValueError(f"{OP}: u must have shape (B, H, L) with B >= 1 and H >= 1, got {tuple(u.shape)}")
    common.check_length(OP, "L = u.shape[-1]", u.shape[-1])
    common.check_tensor(OP, "k", k, ndim=2)
    common.check_dtype_in(OP, "k", k, K_DTYPES)
    H = u.shape[1]
    if k.shape[0] != H:
        raise ValueError(f"{OP}: k must have shape (H, Lk) with H = u.shape[1] = {H}, "
                         f"got k: {tuple(k.shape)}, u: {tuple(u.shape)}")
    common.check_length(OP, "Lk = k.shape[-1]", k.shape[-1])
    names, tensors = ["u", "k"], [u, k]
    if D is not None:
        common.check_tensor(OP, "D", D)
        common.check_dtype_in(OP, "D", D, D_DTYPES)
        common.check_shape(OP, "D", D, (H,))
        names.append("D")
        tensors.append(D)
    return common.check_same_device(OP, names, tensors)


def _allocations(u, k) -> list:
    """The same for both backends: the FFTs and spectral products are torch's or Triton's alike."""
    cd = compute_dtype(u, k)
    B, H, L = u.shape
    n = fft_length(L)
    spectrum = (torch.complex128 if cd == torch.float64 else torch.complex64)
    F = n // 2 + 1
    return [common.Alloc("the spectra of u and of the output gradient, and their products", (B, H, F), spectrum, 3),
            common.Alloc("the spectrum of k and its gradient", (H, F), spectrum, 2),
            common.Alloc("the inverse FFTs", (B, H, n), cd, 2),
            common.Alloc("u in the compute dtype, the output and its gradient", (B, H, L), cd, 3)]


def fftconv(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor | None = None, *,
            backend: str = "auto") -> torch.Tensor:
    """y[b, h, t] = sum_{s <= t} k[h, s] * u[b, h, t - s]  +  D[h] * u[b, h, t].

    Args:
        u: (B, H, L) float32, float16, bfloat16 or float64.
        k: (H, Lk) float32 or float64; zero-padded (Lk < L) or cut (Lk > L) to length L.
        D: (H,) real, or None for no skip term.
        backend: "auto" | "reference" | "triton" | "cpp" (see dssm_kernels._backend).
    Returns:
        (B, H, L) in the dtype of u, computed in float32 (float64 if u or k is float64).
        Differentiable in u, k and D (first derivatives; backend="reference" also differentiates twice).

    Sizes: the call raises ValueError when what it allocates (spectra of length n // 2 + 1 and inverse
    FFTs of length n = fft_length(L) per row, the output and gradients) exceeds the allocation limit
    (DSSM_MAX_ALLOC_BYTES, default 80% of the device's memory).

    Example (an impulse returns the kernel, plus D at t = 0):
        >>> import torch, dssm_kernels as dk
        >>> u = torch.zeros(1, 1, 5); u[..., 0] = 1
        >>> y = dk.fftconv(u, torch.tensor([[1.0, 0.5, 0.25]]), torch.tensor([2.0]))
        >>> torch.allclose(y, torch.tensor([[[3.0, 0.5, 0.25, 0.0, 0.0]]]), atol=1e-6)
        True
    """
    device = _validate(u, k, D)
    return common.dispatch(OP, backend, device, KERNELS, lambda b: _allocations(u, k),
                           fftconv_ref, FFTConvFunction, u, k, D)
