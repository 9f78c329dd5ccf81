"""fftconv: causal convolution of a sequence with a per-channel kernel, through the FFT.

    y[b, h, t] = sum_{s <= t} k[h, s] * u[b, h, t - s]  +  D[h] * u[b, h, t]

u: real (B, H, L); k: real (H, Lk), zero-padded or cut to L; D: real (H,) or None. The convolution
is computed as a circular one of length n >= 2L - 1 (then no wrapped term reaches t < L), with n the
smallest 2^a 3^b 5^c that fits: cuFFT and pocketfft are fast at such sizes, and padding to a power
of two instead would cost up to twice the work. Internally float32, or float64 if u or k is.
"""
from __future__ import annotations

import torch

from dssm_kernels._backend import resolve_backend, triton_module
from dssm_kernels.ops import _checks as ck
from dssm_kernels.ops._launch import grid, interpreted, new_output, pow2_block, real_view

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
    """Plain-torch oracle: rfft, product, irfft, first L samples, skip term, cast back."""
    cd = compute_dtype(u, k)
    L = u.shape[-1]
    n = fft_length(L)
    U = torch.fft.rfft(u.to(cd), n=n)
    K = torch.fft.rfft(k[..., :L].to(cd), n=n)
    y = torch.fft.irfft(U * K, n=n)[..., :L]
    if D is not None:
        y = y + D.to(cd).unsqueeze(-1) * u.to(cd)
    return y.to(u.dtype)


def launch_spectral_products(a: torch.Tensor, K: torch.Tensor | None, u_hat: torch.Tensor | None,
                             conj: bool):
    """(out, acc) with out[b, h] = a[b, h] * K[h] (conj(K[h]) if `conj`) and
    acc[h] = sum_b a[b, h] * conj(u_hat[b, h]); out is None when K is None, acc when u_hat is None.
    a, u_hat: contiguous complex (B, H, F); K: contiguous complex (H, F)."""
    B, H, F = a.shape
    out = new_output((B, H, F), dtype=a.dtype, device=a.device) if K is not None else None
    acc = new_output((H, F), dtype=a.dtype, device=a.device) if u_hat is not None else None
    if B == 0 or H == 0:
        return out, (acc.zero_() if acc is not None else None)
    block_f = pow2_block(F, 16, 4096 if interpreted(a.device) else 256)
    ar = real_view(a)
    # absent operands get `a` as a stand-in pointer: their constexpr branch never touches it
    views = [real_view(t) if t is not None else ar for t in (K, u_hat, out, acc)]
    kern = triton_module("fftconv").spectral_products_kernel
    kern[grid(OP, H * -(-F // block_f))](ar, *views, B, H, F, CONJ=conj, WITH_OUT=K is not None,
                                WITH_SUM=u_hat is not None, BLOCK_F=block_f)
    return out, acc


def launch_epilogue(z: torch.Tensor, n_valid: int, L_out: int, out_dtype: torch.dtype,
                    x: torch.Tensor | None = None, D: torch.Tensor | None = None) -> torch.Tensor:
    """out[..., t] = z[..., t] * [t < n_valid] + D[h] * x[..., t] for t < L_out, cast to out_dtype.

    z: contiguous real (..., H, n), an irfft output; x: contiguous (..., H, L_out) or None (then no
    skip term); D: contiguous (H,)."""
    *lead, H, n = z.shape
    out = new_output((*lead, H, L_out), dtype=out_dtype, device=z.device)
    R = out.numel() // L_out
    if R == 0:
        return out
    has_d = D is not None
    block_l = pow2_block(L_out, 16, 4096 if interpreted(z.device) else 512)
    kern = triton_module("fftconv").epilogue_kernel
    kern[grid(OP, R * -(-L_out // block_l))](z, x if has_d else z, D if has_d else z, out, H, n, n_valid, L_out,
                                    HAS_D=has_d, BLOCK_L=block_l)
    return out


class FFTConvFunction(torch.autograd.Function):
    """Triton around torch.fft. With U, K, G the length-n rffts of u, k[:, :L] and the output
    gradient g (all zero-padded), the circular correlations give, exactly since n >= 2L - 1:
        grad_u = irfft(G * conj(K))[..., :L] + D * g
        grad_k = irfft(sum_b G * conj(U))[:, :Lk]     (zero beyond L when Lk > L: k was cut there)
        grad_D = sum_{b, t} g * u                     (a torch reduction)
    U and K are recomputed in the backward rather than saved: only u, k and D are kept.
    """

    @staticmethod
    def forward(ctx, u, k, D):
        cd = compute_dtype(u, k)
        L = u.shape[-1]
        n = fft_length(L)
        u = u.contiguous()
        D = D.contiguous() if D is not None else None
        U = torch.fft.rfft(u.to(cd), n=n).contiguous()
        K = torch.fft.rfft(k[:, :L].to(cd), n=n).contiguous()
        Y, _ = launch_spectral_products(U, K, None, conj=False)
        y = launch_epilogue(torch.fft.irfft(Y, n=n), L, L, u.dtype, x=u, D=D)
        ctx.save_for_backward(u, k, D)
        return y

    @staticmethod
    def backward(ctx, g):
        ck.refuse_double_backward(OP, "triton")
        u, k, D = ctx.saved_tensors
        need_u, need_k, need_D = ctx.needs_input_grad
        cd = compute_dtype(u, k)
        L, Lk = u.shape[-1], k.shape[-1]
        n = fft_length(L)
        g = g.contiguous()
        grad_u = grad_k = grad_D = None
        if need_u or need_k:
            G = torch.fft.rfft(g.to(cd), n=n).contiguous()
            K = torch.fft.rfft(k[:, :L].to(cd), n=n).contiguous() if need_u else None
            U = torch.fft.rfft(u.to(cd), n=n).contiguous() if need_k else None
            dU, dK = launch_spectral_products(G, K, U, conj=True)
            if need_u:
                grad_u = launch_epilogue(torch.fft.irfft(dU, n=n), L, L, u.dtype, x=g, D=D)
            if need_k:
                grad_k = launch_epilogue(torch.fft.irfft(dK, n=n), L, Lk, k.dtype)
        if need_D:
            grad_D = (g.to(cd) * u.to(cd)).sum(dim=(0, 2)).to(D.dtype)
        return grad_u, grad_k, grad_D


def _validate(u, k, D):
    ck.check_tensor(OP, "u", u, ndim=3)
    ck.check_real(OP, "u", u, U_DTYPES)
    if u.shape[0] < 1 or u.shape[1] < 1:  # torch.fft rejects empty batches with an opaque MKL error
        raise ValueError(f"{OP}: u must have shape (B, H, L) with B >= 1 and H >= 1, got {tuple(u.shape)}")
    ck.check_length(OP, "L = u.shape[-1]", u.shape[-1])
    ck.check_tensor(OP, "k", k, ndim=2)
    ck.check_real(OP, "k", k, K_DTYPES)
    H = u.shape[1]
    if k.shape[0] != H:
        raise ValueError(f"{OP}: k must have shape (H, Lk) with H = u.shape[1] = {H}, "
                         f"got k: {tuple(k.shape)}, u: {tuple(u.shape)}")
    ck.check_length(OP, "Lk = k.shape[-1]", k.shape[-1])
    names, tensors = ["u", "k"], [u, k]
    if D is not None:
        ck.check_tensor(OP, "D", D)
        ck.check_real(OP, "D", D, D_DTYPES)
        ck.check_shape(OP, "D", D, (H,))
        names.append("D")
        tensors.append(D)
    return ck.check_same_device(OP, names, tensors)


def _allocations(u, k) -> list:
    """The same for both backends: the FFTs and spectral products are torch's or Triton's alike."""
    cd = compute_dtype(u, k)
    B, H, L = u.shape
    n = fft_length(L)
    spectrum = (torch.complex128 if cd == torch.float64 else torch.complex64)
    return [ck.Alloc("the spectra of u and of the output gradient, and their products", (B, H, n // 2 + 1), spectrum, 3),
            ck.Alloc("the spectrum of k and its gradient", (H, n // 2 + 1), spectrum, 2),
            ck.Alloc("the inverse FFTs", (B, H, n), cd, 2),
            ck.Alloc("u in the compute dtype, the output and its gradient", (B, H, L), cd, 3)]


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
    backend = resolve_backend(OP, backend, device)
    ck.check_allocations(OP, device, _allocations(u, k))
    if backend == "reference":
        return fftconv_ref(u, k, D)
    return FFTConvFunction.apply(u, k, D)
