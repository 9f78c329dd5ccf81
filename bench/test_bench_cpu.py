"""CPU benchmarks of the C++ backend against the plain-torch reference, at the sizes the C++ issue
sets its targets at, plus the full-against-truncated state sweep. Run through scripts/bench_cpu.sh,
which saves the JSON under bench/results/ and prints the ratios and rates (bench/summarize_cpu.py).

Every test records what it timed in extra_info (op, backend, direction, sizes, work = the number of
mode-steps / state updates / terms), so ratios and rates come from one run on one machine.
"""
import math

import pytest
import torch

import dssm_kernels as dk
from conftest import fma_peak, s4d_params, timed_backends

pytestmark = pytest.mark.skipif("cpp" not in timed_backends(), reason="needs the C++ extension on a CPU")
BACKENDS = ["reference", "cpp"]


# FMA-pipe operations (a multiply, an add or a fused multiply-add: one slot each) per unit of work of
# each C++ kernel, counted from its inner loop (csrc/cpu/kernels): the fraction of the FMA peak a row
# reaches is work/s x this / (FMA slots/s of the cores used). vandermonde: two FMAs per mode and
# position (Re(c a_b P_j) into two accumulators). ssm_scan forward: the update of one mode (dA x +
# dB u: 6) and 2 Re(C x) (2). ssm_scan backward: the rebuilt state (6) and the walk (lambda 2, the
# dA / dB / C gradient terms 8, gu 2, the carry 4). cauchy's division has no such count.
FMA_OPS = {("vandermonde", "forward"): 2, ("ssm_scan", "forward"): 8, ("ssm_scan", "backward"): 22}


def _peak_info(op, direction):
    peak = fma_peak()
    return dict(fma_ops_per_work=FMA_OPS.get((op, direction)), threads=torch.get_num_threads(),
                peak_flops_per_core=peak.get("flops_per_core"))


def _time_forward(benchmark, fn, args, backend, info, rounds):
    benchmark.extra_info.update(info, backend=backend, direction="forward", **_peak_info(info["op"], "forward"))
    benchmark.group = f"{info['op']} forward {info.get('sizes', '')}"
    with torch.no_grad():
        benchmark.pedantic(lambda: fn(*args, backend=backend), rounds=rounds, warmup_rounds=1)


def _time_backward(benchmark, fn, args, grad_idx, info, rounds):
    """The backward pass alone: the graph is built once and replayed with retain_graph."""
    args = [a.detach().requires_grad_(i in grad_idx) if isinstance(a, torch.Tensor) else a
            for i, a in enumerate(args)]
    out = fn(*args, backend="cpp")
    outs = out if isinstance(out, tuple) else (out,)
    weights = [torch.randn_like(o) for o in outs]
    leaves = [args[i] for i in grad_idx]
    benchmark.extra_info.update(info, backend="cpp", direction="backward", **_peak_info(info["op"], "backward"))
    benchmark.group = f"{info['op']} backward {info.get('sizes', '')}"
    benchmark.pedantic(lambda: torch.autograd.grad(outs, leaves, weights, retain_graph=True),
                       rounds=rounds, warmup_rounds=1)


def _vandermonde_case(H=256, N=32, L=4096):
    dtA, dB, C = s4d_params(H, N)
    return (C * dB, dtA, L), dict(op="vandermonde", sizes=f"H={H} N={N} L={L}", N=N, work=H * N * L)


def _cauchy_case(H=256, N=32, points=2049):
    dtA, _, C = s4d_params(H, N)
    omega = torch.exp(-2j * math.pi * torch.arange(points) / (2 * points - 1))
    z = (2 * (1 - omega) / (1 + omega)).to(torch.complex64)
    return (C, z, dtA), dict(op="cauchy", sizes=f"H={H} N={N} points={points}", N=N, work=H * N * points)


def _scan_case(B=8, H=256, N=32, L=4096):
    dtA, dB, C = s4d_params(H, N)
    u = torch.randn(B, H, L, generator=torch.Generator().manual_seed(2))
    return (u, torch.exp(dtA), dB, C, torch.randn(H)), dict(op="ssm_scan", sizes=f"B={B} H={H} N={N} L={L}",
                                                            N=N, work=B * H * N * L)


# op: (function, case builder, differentiable argument positions, rounds for the reference, for C++)
TARGETS = {
    "vandermonde": (dk.vandermonde, _vandermonde_case, (0, 1), 3, 20),
    "cauchy": (dk.cauchy, _cauchy_case, (0, 2), 3, 20),
    "ssm_scan": (dk.ssm_scan, _scan_case, (0, 1, 2, 3, 4), 2, 10),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", list(TARGETS))
def test_forward(benchmark, op, backend):
    fn, case, _, ref_rounds, cpp_rounds = TARGETS[op]
    args, info = case()
    _time_forward(benchmark, fn, args, backend, info, rounds=ref_rounds if backend == "reference" else cpp_rounds)


@pytest.mark.parametrize("op", list(TARGETS))
def test_backward(benchmark, op):
    fn, case, grad_idx, _, cpp_rounds = TARGETS[op]
    args, info = case()
    _time_backward(benchmark, fn, args, grad_idx, info, rounds=cpp_rounds)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ssm_step(benchmark, backend):
    B, H, N = 1, 256, 32
    dtA, dB, C = s4d_params(H, N)
    state = torch.zeros(B, H, N, dtype=torch.complex64)
    args = (torch.randn(B, H), state, torch.exp(dtA), dB, C, torch.randn(H))
    benchmark.extra_info.update(op="ssm_step", sizes=f"B={B} H={H} N={N}", N=N, work=B * H * N,
                                backend=backend, direction="forward")
    benchmark.group = "ssm_step forward per call"
    with torch.no_grad():
        benchmark(lambda: dk.ssm_step(*args, backend=backend))


def test_memory_floor(benchmark):
    """The small-state scan's floor: one pass of u in and y out, as a copy of u into a y-sized buffer."""
    (u, *_), info = _scan_case()
    y = torch.empty_like(u)
    benchmark.extra_info.update(op="copy u -> y", sizes=info["sizes"].replace(" N=32", ""), N=0, work=u.numel(),
                                backend="torch", direction="forward", floor=True, threads=torch.get_num_threads())
    benchmark.group = "memory floor"
    benchmark.pedantic(lambda: y.copy_(u), rounds=20, warmup_rounds=2)


@pytest.mark.parametrize("N", [2, 4, 8, 16, 32, 64])
@pytest.mark.parametrize("op", ["vandermonde", "ssm_scan"])
def test_state_size_sweep(benchmark, op, N):
    """Full against truncated state: time against N at fixed everything else (C++ backend)."""
    if op == "vandermonde":
        args, info = _vandermonde_case(N=N)
        fn = dk.vandermonde
    else:
        args, info = _scan_case(N=N)
        fn = dk.ssm_scan
    info.update(sweep=True)
    _time_forward(benchmark, fn, args, "cpp", info, rounds=10)
    benchmark.group = f"{op} forward, state-size sweep"
