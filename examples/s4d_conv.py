"""The main job until the `dssm demo` command lands: build an S4D kernel with the ops and convolve.

An S4D-Lin layer (modes A_n = -1/2 + i pi n, per-channel step dt, ZOH) has the convolution kernel
    K[h, l] = 2 Re( sum_n C[h, n] dB[h, n] exp(dt_h A_n l) )          (dk.vandermonde)
and maps u to y = K * u + D u                                          (dk.fftconv)
which must equal running the recurrence x_t = dA x_{t-1} + dB u_t      (dk.ssm_scan)
and, at the end, the state the sequence leaves behind                  (dk.vandermonde_transpose).
This script builds the kernel, convolves a signal, and checks the three views agree.
"""
import argparse
import math
import time

import torch

import dssm_kernels as dk


def s4d_lin(H, N, dt_min=1e-3, dt_max=1e-1, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.complex(torch.full((N,), -0.5), math.pi * torch.arange(N, dtype=torch.float32))
    dt = torch.exp(torch.empty(H, 1).uniform_(math.log(dt_min), math.log(dt_max), generator=g))
    dtA = dt * A                                  # (H, N)
    dB = (torch.exp(dtA) - 1) / A                 # ZOH with B = 1
    C = torch.complex(torch.randn(H, N, generator=g), torch.randn(H, N, generator=g)) / math.sqrt(2)
    D = torch.randn(H, generator=g)
    return dtA, dB, C, D


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--d-state", type=int, default=64, help="real state size; the ops see d_state/2 complex modes")
    p.add_argument("--length", type=int, default=2048)
    p.add_argument("--backend", default="auto", choices=dk.BACKENDS)
    a = p.parse_args()
    B, H, N, L = a.batch, a.channels, a.d_state // 2, a.length

    dtA, dB, C, D = s4d_lin(H, N)
    u = torch.randn(B, H, L, generator=torch.Generator().manual_seed(1))
    print(f"S4D-Lin layer: H={H} channels, d_state={2 * N} ({N} conjugate-pair modes), L={L}, batch={B}, "
          f"backend={a.backend}, device=cpu")

    t0 = time.perf_counter()
    K = dk.vandermonde(C * dB, dtA, L, backend=a.backend)
    t1 = time.perf_counter()
    y_conv = dk.fftconv(u, K, D, backend=a.backend)
    t2 = time.perf_counter()
    y_rec, last = dk.ssm_scan(u, torch.exp(dtA), dB, C, D, backend=a.backend)
    t3 = time.perf_counter()
    last_from_kernel = dk.vandermonde_transpose(u, dB, dtA, backend=a.backend)

    rel = lambda x, y: ((x - y).norm() / y.norm()).item()  # noqa: E731
    print(f"  vandermonde      -> kernel K {tuple(K.shape)}, |K| decays from {K[:, 0].abs().mean():.3f} "
          f"to {K[:, -1].abs().mean():.2e} at l={L - 1}   ({t1 - t0:.3f} s)")
    print(f"  fftconv          -> y {tuple(y_conv.shape)}   ({t2 - t1:.3f} s)")
    print(f"  ssm_scan         -> y {tuple(y_rec.shape)}, last state {tuple(last.shape)}   ({t3 - t2:.3f} s)")
    print(f"  convolution vs recurrence: relative difference of y = {rel(y_conv, y_rec):.2e}")
    print(f"  vandermonde_transpose vs scan's last state: relative difference = {rel(last_from_kernel, last):.2e}")


if __name__ == "__main__":
    main()
