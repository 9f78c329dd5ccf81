"""The "bench_ops" section: the ops' speed on the GPU, each against a plain-torch baseline measured side
by side in the same run, and as a fraction of the device's limit (bench.gpu.hardware.limits).

- vandermonde, cauchy: forward and forward+backward, Triton against the op's reference; terms per
  second and, forward, the fraction of the FP32 peak (target: >= 50%). Work convention: vandermonde
  is the product of the (N, L) Vandermonde matrix with v, one complex multiply-add (8 flops, as BLAS
  counts complex GEMM) per (mode, step) term; cauchy has two pole terms per (mode, node), 16 flops.
  The kernels execute more than that (exp, sin/cos, divisions): the convention counts the useful
  work, as GEMM efficiency is counted, and the records keep times and sizes for any other.
- fftconv: Triton (dk.fftconv) against a plain torch.fft.rfft / irfft convolution at length 2L,
  L = 1K-64K, B 16, H 768, float32 and bfloat16 u (target: >= 1.5x at L 4K-16K, forward and
  forward+backward).
- ssm_scan: forward and forward+backward; the forward's achieved memory bandwidth, counting the
  least traffic it needs (read u, write y, the parameters and the last state once).
- ssm_step: one decoding step (no autograd), Triton against the reference, in CUDA graphs (a step is
  a few microseconds: launch cost would dominate); achieved bandwidth counting the state read and
  written, u, y and the parameters (target: >= 60% at B 64, H 768, N 32). The graph steps through
  enough separate states that together they are 4x the L2 cache, so the state comes from device
  memory, as it does for a state that size in real decoding between other layers' work.

Inputs are leaves; forward+backward is torch.autograd.grad with a fixed random output gradient,
so no loss function is timed with it. Peak memory: torch.cuda.max_memory_allocated above what was
allocated before the call.
"""
from __future__ import annotations

import math

import torch

import dssm_kernels as dk
from bench.gpu.hardware import limits
from bench.gpu.harness import Section, free_memory_bytes, generator, peak_memory_mb, time_ms

FLOPS_PER_TERM = {"vandermonde": 8, "cauchy": 16}
FP32_TARGET = {"metric": "fraction", "of": "fp32 peak", "min": 0.5, "text": ">= 50% of FP32 peak"}
STEP_TARGET = {"metric": "fraction", "of": "memory bandwidth", "min": 0.6, "text": ">= 60% of memory bandwidth"}
FFTCONV_TARGET = {"metric": "speedup", "baseline": "rfft_conv", "min": 1.5, "text": ">= 1.5x rfft convolution"}
# The reference materialises (H, N, L) complex64 a few times over (x*l, exp, the product, what
# autograd keeps): it is only timed where this many copies fit in half the free memory.
REFERENCE_COPIES = 6

PROD = {
    "vandermonde": [{"H": 768, "N": 32, "L": 4096}, {"H": 768, "N": 256, "L": 4096}, {"H": 768, "N": 64, "L": 16384}],
    "cauchy": [{"H": 768, "N": 32, "Lz": 2049}, {"H": 768, "N": 256, "Lz": 2049}, {"H": 768, "N": 64, "Lz": 8193}],
    "fftconv": {"B": 16, "H": 768, "L": [4096, 8192, 16384, 1024, 2048, 32768, 65536], "targeted": [4096, 8192, 16384]},
    "ssm_scan": [{"B": 16, "H": 768, "N": 32, "L": 4096}, {"B": 16, "H": 768, "N": 32, "L": 16384},
                 {"B": 16, "H": 768, "N": 8, "L": 4096}],
    "ssm_step": [{"B": 64, "H": 768, "N": 32}, {"B": 16, "H": 768, "N": 32}, {"B": 64, "H": 768, "N": 8},
                 {"B": 16, "H": 768, "N": 256}],
    "ssm_step_targeted": {"B": 64, "H": 768, "N": 32},
}
DRY = {
    "vandermonde": [{"H": 4, "N": 4, "L": 32}],
    "cauchy": [{"H": 4, "N": 4, "Lz": 33}],
    "fftconv": {"B": 2, "H": 4, "L": [32], "targeted": [32]},
    "ssm_scan": [{"B": 2, "H": 4, "N": 4, "L": 16}],
    "ssm_step": [{"B": 4, "H": 4, "N": 4}],
    "ssm_step_targeted": {"B": 4, "H": 4, "N": 4},
}


def s4d_params(H: int, N: int, device, seed: int = 0):
    """S4D-Lin modes, dt log-uniform in [1e-3, 1e-1], ZOH with B = 1: (A, dt, dtA, dB, C), complex64 (H, N)."""
    g = generator(device, seed)
    A = torch.complex(torch.full((H, N), -0.5, device=device),
                      math.pi * torch.arange(N, dtype=torch.float32, device=device).expand(H, N))
    dt = torch.exp(math.log(1e-3) + math.log(1e2) * torch.rand(H, 1, device=device, generator=g))
    dtA = dt * A
    C = torch.complex(torch.randn(H, N, device=device, generator=g), torch.randn(H, N, device=device, generator=g))
    return A, dt, dtA, (torch.exp(dtA) - 1) / A, C


def rfft_conv(u: torch.Tensor, k: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """The plain-torch baseline: y = irfft(rfft(u, 2L) rfft(k, 2L))[:L] + D u, in float32, cast to u's dtype."""
    L = u.shape[-1]
    uf = u.float()
    y = torch.fft.irfft(torch.fft.rfft(uf, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)[..., :L]
    return (y + D.unsqueeze(-1) * uf).to(u.dtype)


def _measure(sec: Section, fn, *, graph: bool = False, reps_per_call: int = 1) -> dict:
    """Time and peak memory of fn(); with reps_per_call > 1, fn does that many calls and the time is per call."""
    rep_ms = 60 if sec.dry else 100
    t = time_ms(fn, sec.device, graph=graph, rep_ms=rep_ms)
    for key in ("time_ms", "time_ms_q20", "time_ms_q80"):
        t[key] /= reps_per_call
    return {**t, "peak_mem_mib": peak_memory_mb(fn, sec.device)}


def _directions(op_fn, leaves, g_out):
    """(direction, fn): forward without autograd, and forward+backward as autograd.grad of the leaves."""
    def forward():
        with torch.no_grad():
            return op_fn()

    def forward_backward():
        return torch.autograd.grad(op_fn(), leaves, g_out)
    return [("forward", forward), ("forward+backward", forward_backward)]


def _reference_fits(sec: Section, n_elements: int) -> str | None:
    """None, or why the reference is not timed at this size."""
    free = free_memory_bytes(sec.device)
    need = REFERENCE_COPIES * n_elements * 8
    if free is not None and need > free / 2:
        return (f"reference needs about {need / 2**30:.1f} GiB ((H, N, L) complex64 x {REFERENCE_COPIES}), "
                f"free {free / 2**30:.1f} GiB")
    return None


def _kernel_cases(sec: Section, lim: dict, op: str, size: dict) -> None:
    """vandermonde or cauchy at one size: Triton and reference, forward and forward+backward."""
    H, N = size["H"], size["N"]
    A, dt, dtA, dB, C = s4d_params(H, N, sec.device)
    if op == "vandermonde":
        L = size["L"]
        v, x = (C * dB).requires_grad_(), dtA.clone().requires_grad_()
        leaves, terms = (v, x), H * N * L
        g_out = torch.randn(H, L, device=sec.device, generator=generator(sec.device, 1))

        def call(impl):
            return lambda: dk.vandermonde(v, x, L, backend=impl)
    else:
        Lz = size["Lz"]
        j = torch.arange(Lz, dtype=torch.float32, device=sec.device)
        omega = torch.exp(torch.complex(torch.zeros_like(j), -2 * math.pi * j / (2 * Lz - 1)))
        z = 2 * (1 - omega) / (1 + omega)
        v, w = (C * dt).requires_grad_(), (dt * A).requires_grad_()
        leaves, terms = (v, w), H * N * Lz
        g_out = torch.randn(H, Lz, dtype=torch.complex64, device=sec.device, generator=generator(sec.device, 1))

        def call(impl):
            return lambda: dk.cauchy(v, z, w, backend=impl)
    size_label = " ".join(f"{k}={v}" for k, v in size.items())
    for impl in ("triton", "reference"):
        skip = _reference_fits(sec, terms) if impl == "reference" else None
        for direction, fn in _directions(call(impl), leaves, g_out):
            def one(fn=fn, direction=direction, impl=impl):
                if skip:
                    return {"status": "not run", "reason": skip}
                m = _measure(sec, fn)
                rate = terms / (m["time_ms"] * 1e-3)
                row = {**m, "work": {"terms": terms, "flops_per_term": FLOPS_PER_TERM[op]}, "rate": rate,
                       "rate_unit": "terms/s", "fraction": None, "fraction_of": "fp32 peak"}
                if direction == "forward" and lim["fp32_flops"]:
                    row["fraction"] = rate * FLOPS_PER_TERM[op] / lim["fp32_flops"]
                return row
            target = {"target": FP32_TARGET} if impl == "triton" and direction == "forward" else {}
            sec.run_case(f"{op} {impl} {direction} {size_label}", one, op=op, impl=impl, direction=direction,
                         dtype="complex64", size=size, **target)


def _fftconv_cases(sec: Section, spec: dict, L: int, dtype: torch.dtype) -> None:
    B, H = spec["B"], spec["H"]
    g = generator(sec.device, 2)
    u = torch.randn(B, H, L, device=sec.device, generator=g).to(dtype).requires_grad_()
    k = (torch.randn(H, L, device=sec.device, generator=g) / math.sqrt(L)).requires_grad_()
    D = torch.randn(H, device=sec.device, generator=g).requires_grad_()
    g_out = torch.randn(B, H, L, device=sec.device, generator=g).to(dtype)
    impls = {"triton": lambda: dk.fftconv(u, k, D, backend="triton"), "rfft_conv": lambda: rfft_conv(u, k, D)}
    size = {"B": B, "H": H, "L": L}
    dname = str(dtype).removeprefix("torch.")
    for impl, op_fn in impls.items():
        for direction, fn in _directions(op_fn, (u, k, D), g_out):
            target = {"target": FFTCONV_TARGET} if impl == "triton" and L in spec["targeted"] else {}
            sec.run_case(f"fftconv {impl} {direction} {dname} B={B} H={H} L={L}", lambda fn=fn: _measure(sec, fn),
                         op="fftconv", impl=impl, direction=direction, dtype=dname, size=size, **target)


def _scan_cases(sec: Section, lim: dict, size: dict) -> None:
    B, H, N, L = size["B"], size["H"], size["N"], size["L"]
    _, _, dtA, dB, C = s4d_params(H, N, sec.device)
    g = generator(sec.device, 3)
    u = torch.randn(B, H, L, device=sec.device, generator=g).requires_grad_()
    dA, dB, C = torch.exp(dtA).requires_grad_(), dB.requires_grad_(), C.requires_grad_()
    D = torch.randn(H, device=sec.device, generator=g).requires_grad_()
    g_out = torch.randn(B, H, L, device=sec.device, generator=g)
    # the least traffic of a forward: read u, write y (float32), parameters once, write the last state
    min_bytes = 8 * B * H * L + 3 * 8 * H * N + 4 * H + 8 * B * H * N
    label = " ".join(f"{k}={v}" for k, v in size.items())
    for direction, fn in _directions(lambda: dk.ssm_scan(u, dA, dB, C, D, backend="triton")[0],
                                     (u, dA, dB, C, D), g_out):
        def one(fn=fn, direction=direction):
            row = _measure(sec, fn)
            row.update(work={"updates": B * H * N * L, "min_bytes": min_bytes},
                       rate=B * H * N * L / (row["time_ms"] * 1e-3), rate_unit="state updates/s",
                       fraction=None, fraction_of="memory bandwidth")
            if direction == "forward" and lim["mem_bytes_per_s"]:
                row["fraction"] = min_bytes / (row["time_ms"] * 1e-3) / lim["mem_bytes_per_s"]
            return row
        sec.run_case(f"ssm_scan triton {direction} {label}", one, op="ssm_scan", impl="triton",
                     direction=direction, dtype="float32/complex64", size=size)


def _step_cases(sec: Section, lim: dict, size: dict, targeted: bool) -> None:
    B, H, N = size["B"], size["H"], size["N"]
    _, _, dtA, dB, C = s4d_params(H, N, sec.device)
    dA = torch.exp(dtA)
    g = generator(sec.device, 4)
    u = torch.randn(B, H, device=sec.device, generator=g)
    D = torch.randn(H, device=sec.device, generator=g)
    state_bytes = 8 * B * H * N
    if sec.device.type == "cuda":
        l2 = getattr(torch.cuda.get_device_properties(sec.device), "L2_cache_size", 50 << 20)
        n_states = min(64, max(2, math.ceil(4 * l2 / (2 * state_bytes))))
    else:
        n_states = 2
    states = [torch.complex(torch.randn(B, H, N, device=sec.device, generator=g),
                            torch.randn(B, H, N, device=sec.device, generator=g)) for _ in range(n_states)]
    step_bytes = 2 * state_bytes + 8 * B * H + 3 * 8 * H * N + 4 * H
    label = " ".join(f"{k}={v}" for k, v in size.items())
    for impl in ("triton", "reference"):
        def steps(impl=impl):
            with torch.no_grad():
                return [dk.ssm_step(u, s, dA, dB, C, D, backend=impl) for s in states]

        def one(impl=impl, steps=steps):
            row = _measure(sec, steps, graph=True, reps_per_call=n_states)
            row.update(work={"bytes_per_step": step_bytes, "states_rotated": n_states}, fraction=None,
                       fraction_of="memory bandwidth", rate=step_bytes / (row["time_ms"] * 1e-3), rate_unit="bytes/s")
            if lim["mem_bytes_per_s"]:
                row["fraction"] = row["rate"] / lim["mem_bytes_per_s"]
            return row
        target = {"target": STEP_TARGET} if impl == "triton" and targeted else {}
        sec.run_case(f"ssm_step {impl} forward {label}", one, op="ssm_step", impl=impl, direction="forward",
                     dtype="float32/complex64", size=size, **target)


def run(sec: Section) -> None:
    sizes = DRY if sec.dry else PROD
    lim = limits(sec.device, measure_copy=True)
    sec.note(limits=lim, flops_per_term=FLOPS_PER_TERM, sizes=sizes)

    def label(op, size):
        return f"{op} set-up " + " ".join(f"{k}={v}" for k, v in size.items())
    # the targeted cases first, so that a budget running out cuts reported-only ones
    for size in sizes["ssm_step"]:
        sec.guard(label("ssm_step", size), lambda: _step_cases(sec, lim, size, size == sizes["ssm_step_targeted"]),
                  op="ssm_step", size=size)
    for op in ("vandermonde", "cauchy"):
        for size in sizes[op]:
            sec.guard(label(op, size), lambda: _kernel_cases(sec, lim, op, size), op=op, size=size)
    spec = sizes["fftconv"]
    for L in spec["L"]:
        for dtype in (torch.float32, torch.bfloat16):
            size = {"B": spec["B"], "H": spec["H"], "L": L}
            sec.guard(label("fftconv", size) + f" {dtype}", lambda: _fftconv_cases(sec, spec, L, dtype),
                      op="fftconv", size=size)
    for size in sizes["ssm_scan"]:
        sec.guard(label("ssm_scan", size), lambda: _scan_cases(sec, lim, size), op="ssm_scan", size=size)
