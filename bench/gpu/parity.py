"""The "parity" section: every op on the compiled Triton backend at production sizes (N up to 256, L up
to 64K, B 16, H 768), forward and backward, float32 and float64, fftconv also with float16 and
bfloat16 u, against the op's float64 reference.

Method (the project's, python_tests/testing.py; written again here so that this check depends on the
public API only). Inputs are drawn in float64 / complex128. The backend runs at full size on them
cast to the test precision. The oracle is the op's plain-torch reference (dk.<op>_ref) in float64 on
exactly those cast values; the same reference run at the test precision sets the bar:

    error(backend) <= 2 * error(reference at the test precision) + 1e-6

by relative RMS error, for every output and for the gradient of a random-weighted sum of the outputs.
In float64 the bar is the suite's 1e-10, or, where the problem is worse conditioned than that, the
float32 reference's error scaled to float64's unit roundoff: 2 * SAFETY * 2^-29 * error(reference in
float32) (SAFETY = 8, as python_tests/testing.py: a few roundings per term).

The reference materialises (..., N, L) and the scans' references are Python loops over time, far too
big or slow at these sizes, so the reference runs on a few rows only (channels, batch entries: the
first, the last and random ones) and the loss weights every other row zero. The backend still runs
the whole problem, forward and backward, and its gradients of parameters shared across rows (cauchy's
z, the scans' dA, ...) then hold exactly the chosen rows' contributions, as the reference's do. Every
full-size output and gradient must also be finite (quantity "nonfinite": count, tolerance 0). The
scans' references loop over time on the CPU, where a loop of small steps is faster than kernel
launches; they are what limits the scans' L (16K, then 64K if the budget has room).

A problem that runs out of device memory is retried at the next size of its ladder (the OOM is
recorded); the sizes that ran are in each record.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

import dssm_kernels as dk
from bench.gpu.harness import Section, generator, release_memory, sync

U64_OVER_U32 = 2.0 ** -29   # float64's unit roundoff over float32's
SAFETY = 8                  # as python_tests/testing.py
TOL64_FLOOR = 1e-10         # the suite's float64 tolerance (README, "Tests")
LOW_REAL = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float32, "bfloat16": torch.float32}
HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Problem:
    """One op at one size: full-size float64 inputs on the device, the inputs to differentiate, and how
    each tensor is cut down to the rows the reference checks: {dim: axis name} per input and per
    output, and the indices chosen on each axis (`picks`)."""
    op: str
    size: dict
    inputs: dict
    grads: list
    input_axes: dict
    output_names: list
    output_axes: list
    picks: dict
    ref_device: torch.device


def _crandn(*shape, g, device):
    re = torch.randn(shape, dtype=torch.float64, device=device, generator=g)
    return torch.complex(re, torch.randn(shape, dtype=torch.float64, device=device, generator=g)) / math.sqrt(2)


def _s4d_lin(H: int, N: int, g, device):
    """S4D-Lin modes A_n = -1/2 + i pi n, dt log-uniform in [1e-3, 1e-1] per channel, ZOH with B = 1:
    (A, dt (H, 1), dtA, dB, C), complex128 (H, N): the parameters a trained S4D layer starts from."""
    n = torch.arange(N, dtype=torch.float64, device=device)
    A = torch.complex(torch.full((H, N), -0.5, dtype=torch.float64, device=device), math.pi * n.expand(H, N))
    lo, hi = math.log(1e-3), math.log(1e-1)
    dt = torch.exp(lo + (hi - lo) * torch.rand(H, 1, dtype=torch.float64, device=device, generator=g))
    dtA = dt * A
    dB = (torch.exp(dtA) - 1) / A
    return A, dt, dtA, dB, _crandn(H, N, g=g, device=device)


def _pick(n: int, k: int, g) -> torch.Tensor:
    """k row indices out of n: the first, the last (where index arithmetic breaks first) and random ones."""
    if k >= n:
        return torch.arange(n)
    rest = torch.randperm(n - 2, generator=g)[: max(0, k - 2)] + 1
    return torch.cat([torch.tensor([0, n - 1]), rest]).sort().values


def build(op: str, size: dict, rows: dict, device: torch.device, seed: int) -> Problem:
    """The Problem for `op` at `size`, checking rows[axis] indices on each axis."""
    g = generator(device, seed)
    gc = torch.Generator().manual_seed(seed)
    cpu = torch.device("cpu")
    f64 = dict(dtype=torch.float64, device=device)
    if op in ("vandermonde", "vandermonde_transpose", "cauchy"):
        H, N, L = size["H"], size["N"], size["L"]
        A, dt, dtA, dB, C = _s4d_lin(H, N, g, device)
        picks = {"h": _pick(H, rows["h"], gc)}
        by_h = {0: "h"}
        if op == "vandermonde":
            return Problem(op, size, {"v": C * dB, "x": dtA, "L": L}, ["v", "x"], {"v": by_h, "x": by_h},
                           ["K"], [by_h], picks, device)
        if op == "vandermonde_transpose":
            return Problem(op, size, {"u": torch.randn(H, L, generator=g, **f64), "v": dB, "x": dtA}, ["u", "v", "x"],
                           {"u": by_h, "v": by_h, "x": by_h}, ["s"], [by_h], picks, device)
        # S4's nodes z = 2 (1 - omega) / (1 + omega) at L // 2 + 1 frequencies; omega on a grid of L + 1
        # (not L) points so that no node hits omega = -1, where z is infinite
        j = torch.arange(L // 2 + 1, **f64)
        omega = torch.exp(torch.complex(torch.zeros_like(j), -2 * math.pi * j / (L + 1)))
        z = 2 * (1 - omega) / (1 + omega)
        return Problem(op, size, {"v": C * dt, "z": z, "w": dt * A}, ["v", "w", "z"], {"v": by_h, "w": by_h},
                       ["k"], [by_h], picks, device)
    if op == "fftconv":
        B, H, L = size["B"], size["H"], size["L"]
        # a decaying random kernel per channel, decay rates log-uniform over three decades
        rate = torch.exp(math.log(1e-4) + math.log(1e3) * torch.rand(H, 1, generator=g, **f64))
        k = torch.randn(H, L, generator=g, **f64) * torch.exp(-rate * torch.arange(L, **f64))
        inputs = {"u": torch.randn(B, H, L, generator=g, **f64), "k": k, "D": torch.randn(H, generator=g, **f64)}
        return Problem(op, size, inputs, ["u", "k", "D"], {"u": {1: "h"}, "k": {0: "h"}, "D": {0: "h"}},
                       ["y"], [{1: "h"}], {"h": _pick(H, rows["h"], gc)}, device)
    if op in ("ssm_scan", "ssm_step"):
        B, H, N = size["B"], size["H"], size["N"]
        _, _, dtA, dB, C = _s4d_lin(H, N, g, device)
        u = torch.randn(B, H, size["L"], generator=g, **f64) if op == "ssm_scan" else torch.randn(B, H, generator=g, **f64)
        inputs = {"u": u, "dA": torch.exp(dtA), "dB": dB, "C": C, "D": torch.randn(H, generator=g, **f64),
                  "state": 0.5 * _crandn(B, H, N, g=g, device=device)}
        bh, by_h = {0: "b", 1: "h"}, {0: "h"}
        names = ["y", "last_state"] if op == "ssm_scan" else ["y", "new_state"]
        return Problem(op, size, inputs, ["u", "dA", "dB", "C", "D", "state"],
                       {"u": bh, "dA": by_h, "dB": by_h, "C": by_h, "D": by_h, "state": bh}, names, [bh, bh],
                       {"b": _pick(B, rows["b"], gc), "h": _pick(H, rows["h"], gc)},
                       cpu if op == "ssm_scan" else device)
    if op == "diag_scan":
        B, L, N = size["B"], size["L"], size["N"]
        _, _, dtA, _, _ = _s4d_lin(1, N, g, device)
        inputs = {"v": _crandn(B, L, N, g=g, device=device), "dA": torch.exp(dtA[0]),
                  "state": _crandn(B, N, g=g, device=device)}
        by_b = {0: "b"}
        return Problem(op, size, inputs, ["v", "dA", "state"], {"v": by_b, "state": by_b}, ["xs", "last_state"],
                       [by_b, by_b], {"b": _pick(B, rows["b"], gc)}, cpu)
    raise ValueError(f"parity: unknown op {op!r}")


def _cast(name: str, t, precision: str):
    """The test-precision copy of an input: float32 / complex64, float64 kept, or (float16 / bfloat16
    precisions, fftconv) u in that dtype and the rest in float32."""
    if not isinstance(t, torch.Tensor):
        return t
    if precision in HALF and name == "u":
        return t.to(HALF[precision])
    real = LOW_REAL[precision]
    return t.to(real if not t.is_complex() else (torch.complex64 if real == torch.float32 else torch.complex128))


def _upcast(t):
    if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.is_complex()):
        return t
    return t.to(torch.complex128 if t.is_complex() else torch.float64)


def _take(t: torch.Tensor, axes: dict, picks: dict) -> torch.Tensor:
    for dim, axis in axes.items():
        t = t.index_select(dim, picks[axis].to(t.device))
    return t


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _weighted_sum(outputs, weights) -> torch.Tensor:
    """sum_i <w_i, o_i> in float64 (the real part of conj(w) o for complex outputs)."""
    total = 0.0
    for o, w in zip(outputs, weights):
        w = w.to(o.device)
        if o.is_complex():
            total = total + (o.to(torch.complex128) * w.conj()).real.sum()
        else:
            total = total + (o.to(torch.float64) * w).sum()
    return total


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """sqrt(mean |a - b|^2) / sqrt(mean |b|^2) in float64 (the plain RMS difference when b is zero)."""
    dt = torch.complex128 if (a.is_complex() or b.is_complex()) else torch.float64
    a, b = a.detach().cpu().to(dt), b.detach().cpu().to(dt)
    num = (a - b).abs().pow(2).mean().sqrt().item()
    den = b.abs().pow(2).mean().sqrt().item()
    return num / den if den > 0 else num


def _quantities(outputs, grads, names, grad_names) -> dict:
    q = {name: o.detach().cpu() for name, o in zip(names, outputs)}
    q.update({f"grad_{k}": g.detach().cpu() for k, g in zip(grad_names, grads) if g is not None})
    return q


def ssm_scan_loop(u, dA, dB, C, D=None, state=None):
    """dk.ssm_scan_ref's recurrence, the same operations in the same order (dk.ssm_step_ref's), over
    u.unbind(-1): the reference indexes u[..., t] per step, and the backward of each index writes a
    zero (B, H, L) tensor, which is quadratic in L (minutes at L = 64K); unbind is one backward node."""
    if state is None:
        state = torch.zeros(*u.shape[:-1], dA.shape[-1], dtype=dA.dtype, device=dA.device)
    ys = []
    for u_t in u.unbind(-1):
        state = dA * state + dB * u_t.unsqueeze(-1)
        y = 2 * (C * state).sum(-1).real
        ys.append(y + D * u_t if D is not None else y)
    return torch.stack(ys, dim=-1), state


def reference(op: str):
    """The plain-torch oracle of `op` (the public dk.<op>_ref, but ssm_scan's: see ssm_scan_loop)."""
    return ssm_scan_loop if op == "ssm_scan" else getattr(dk, f"{op}_ref")


def _reference(op: str, inputs: dict, grad_names, weights, names) -> dict:
    """The reference's outputs and gradients of the weighted sum, on the inputs' device."""
    leaves = {k: (t.detach().clone().requires_grad_(k in grad_names) if isinstance(t, torch.Tensor) else t)
              for k, t in inputs.items()}
    out = _as_tuple(reference(op)(**leaves))
    grads = torch.autograd.grad(_weighted_sum(out, weights), [leaves[k] for k in grad_names], allow_unused=True)
    return _quantities(out, grads, names, grad_names)


def _reference_errors(p: Problem, sub_low: dict, weights) -> tuple[dict, dict]:
    """(oracle quantities in float64, relative error of the reference run at sub_low's precision)."""
    oracle = _reference(p.op, {k: _upcast(t) for k, t in sub_low.items()}, p.grads, weights, p.output_names)
    low = _reference(p.op, sub_low, p.grads, weights, p.output_names)
    return oracle, {q: rel_rms(low[q], oracle[q]) for q in oracle}


def check(p: Problem, precision: str, seed: int, ref32_errors: dict | None = None) -> tuple[list[dict], dict]:
    """Parity of dk.<op>(backend="triton") with the reference at `precision` ("float32" | "float64" |
    "float16" | "bfloat16"). Returns (one row per quantity, the float32 reference's errors when
    precision is "float32", for the float64 run's tolerance)."""
    low = {k: _cast(k, t, precision) for k, t in p.inputs.items()}
    if precision != "float64":
        p.inputs = {}  # the float64 originals: not needed once cast (the oracle sees the cast values)
    dtypes = {k: str(t.dtype).removeprefix("torch.") for k, t in low.items() if isinstance(t, torch.Tensor)}
    t0 = time.time()
    leaves = {k: (t.detach().requires_grad_(k in p.grads) if isinstance(t, torch.Tensor) else t) for k, t in low.items()}
    out = _as_tuple(getattr(dk, p.op)(**leaves, backend="triton"))
    subs = [_take(o, axes, p.picks) for o, axes in zip(out, p.output_axes)]
    gw = torch.Generator().manual_seed(seed + 1)
    weights = [torch.randn(s.shape, dtype=torch.complex128 if s.is_complex() else torch.float64, generator=gw)
               for s in subs]
    grads = torch.autograd.grad(_weighted_sum(subs, weights), [leaves[k] for k in p.grads], allow_unused=True)
    nonfinite = sum(int((~torch.isfinite(t)).sum()) for t in (*out, *(g for g in grads if g is not None)))
    missing = [k for k, g in zip(p.grads, grads) if g is None]
    backend = _quantities(subs, [_take(g, p.input_axes.get(k, {}), p.picks) if g is not None else None
                                 for k, g in zip(p.grads, grads)], p.output_names, p.grads)
    device = out[0].device
    sync(device)
    backend_s = time.time() - t0
    del leaves, out, subs, grads
    release_memory(device)

    t0 = time.time()
    sub_low = {k: (_take(t, p.input_axes.get(k, {}), p.picks).to(p.ref_device) if isinstance(t, torch.Tensor) else t)
               for k, t in low.items()}
    del low
    if precision == "float64":
        oracle = _reference(p.op, sub_low, p.grads, weights, p.output_names)
        if ref32_errors is None:
            sub32 = {k: _cast(k, t, "float32") for k, t in sub_low.items()}
            ref32_errors = _reference_errors(p, sub32, weights)[1]
        tol = {q: max(TOL64_FLOOR, 2 * SAFETY * U64_OVER_U32 * ref32_errors.get(q, 0.0)) for q in oracle}
        own = None
    else:
        oracle, ref_err = _reference_errors(p, sub_low, weights)
        tol = {q: 2 * ref_err[q] + 1e-6 for q in oracle}
        own = ref_err if precision == "float32" else None
    reference_s = time.time() - t0

    common = {"op": p.op, "backend": "triton", "precision": precision, "dtypes": dtypes, "size": p.size,
              "rows_checked": {a: len(i) for a, i in p.picks.items()}, "backend_s": round(backend_s, 3),
              "reference_s": round(reference_s, 3)}
    rows = [{**common, "quantity": "nonfinite", "error": nonfinite, "tolerance": 0, "pass": nonfinite == 0}]
    for q in oracle:
        if q not in backend:
            rows.append({**common, "quantity": q, "error": None, "tolerance": tol[q], "pass": False,
                         "note": f"the backend gave no gradient for {missing}"})
            continue
        err = rel_rms(backend[q], oracle[q])
        rows.append({**common, "quantity": q, "error": err, "tolerance": tol[q], "ratio": err / tol[q],
                     "pass": bool(err <= tol[q])})
    return rows, own


# Size ladders: the first size that fits in memory runs. rows: how many indices the reference checks per axis.
# The scans' references loop over time on the CPU (seconds per 10K steps, forward and backward), so
# the scans run at L 16K first and at L 64K last ("long"), if the budget has room.
PROD = {
    "vandermonde": ([{"H": 768, "N": 256, "L": 65536}, {"H": 768, "N": 256, "L": 16384}], {"h": 4}),
    "vandermonde_transpose": ([{"H": 768, "N": 256, "L": 65536}, {"H": 768, "N": 256, "L": 16384}], {"h": 4}),
    "cauchy": ([{"H": 768, "N": 256, "L": 65536}, {"H": 768, "N": 256, "L": 16384}], {"h": 4}),
    "fftconv": ([{"B": 16, "H": 768, "L": 65536}, {"B": 4, "H": 768, "L": 65536}, {"B": 16, "H": 768, "L": 16384}],
                {"h": 4}),
    "ssm_scan": ([{"B": 16, "H": 768, "N": 32, "L": 16384}, {"B": 4, "H": 768, "N": 32, "L": 16384}],
                 {"b": 2, "h": 4}),
    "ssm_step": ([{"B": 64, "H": 768, "N": 32}], {"b": 4, "h": 8}),
    "diag_scan": ([{"B": 16, "L": 16384, "N": 256}, {"B": 4, "L": 16384, "N": 256}], {"b": 2}),
}
PROD_LARGE_STATE = {
    "ssm_scan": ([{"B": 16, "H": 768, "N": 256, "L": 4096}, {"B": 4, "H": 768, "N": 256, "L": 4096}], {"b": 2, "h": 4}),
    "ssm_step": ([{"B": 16, "H": 768, "N": 256}], {"b": 4, "h": 8}),
}
PROD_LONG = {
    "ssm_scan": ([{"B": 16, "H": 768, "N": 32, "L": 65536}, {"B": 4, "H": 768, "N": 32, "L": 65536}], {"b": 1, "h": 2}),
    "diag_scan": ([{"B": 16, "L": 65536, "N": 256}, {"B": 4, "L": 65536, "N": 256}], {"b": 1}),
}
DRY = {
    "vandermonde": ([{"H": 3, "N": 5, "L": 40}], {"h": 2}),
    "vandermonde_transpose": ([{"H": 3, "N": 5, "L": 40}], {"h": 2}),
    "cauchy": ([{"H": 3, "N": 5, "L": 40}], {"h": 2}),
    "fftconv": ([{"B": 2, "H": 3, "L": 40}], {"h": 2}),
    "ssm_scan": ([{"B": 2, "H": 3, "N": 5, "L": 16}], {"b": 1, "h": 2}),
    "ssm_step": ([{"B": 3, "H": 3, "N": 5}], {"b": 2, "h": 2}),
    "diag_scan": ([{"B": 3, "L": 16, "N": 5}], {"b": 2}),
}
DRY_LARGE_STATE = {"ssm_step": ([{"B": 2, "H": 3, "N": 9}], {"b": 1, "h": 2})}
DRY_LONG = {"diag_scan": ([{"B": 2, "L": 24, "N": 3}], {"b": 1})}


def plan(dry: bool) -> list[tuple[str, str, list, dict, str]]:
    """(problem set, op, size ladder, rows, precision) in the order they run: float32 for every op first,
    then fftconv's half-precision inputs, then float64, then the large-state ops, then the scans at
    L 64K in float32; a budget that runs out cuts from the end."""
    main, large, long = (DRY, DRY_LARGE_STATE, DRY_LONG) if dry else (PROD, PROD_LARGE_STATE, PROD_LONG)
    cases = [("main", op, *main[op], "float32") for op in main]
    cases += [("main", "fftconv", *main["fftconv"], half) for half in HALF]
    cases += [("main", op, *main[op], "float64") for op in main]
    cases += [("large_state", op, *large[op], prec) for prec in ("float32", "float64") for op in large]
    cases += [("long", op, *long[op], "float32") for op in long]
    return cases


def run(sec: Section) -> None:
    cases = plan(sec.dry)
    sec.note(method=__doc__.split("\n\n")[1].replace("\n", " "), n_cases=len(cases))
    ref32: dict = {}
    min_left = 3.0 if sec.dry else 12.0
    for group, op, ladder, rows, precision in cases:
        seed = 1000 + 17 * list(PROD).index(op) + {"main": 0, "large_state": 500, "long": 700}[group]
        for size in ladder:
            key = (op, group, tuple(sorted(size.items())))

            def one(op=op, size=size, rows=rows, precision=precision, key=key, seed=seed):
                problem = build(op, size, rows, sec.device, seed)
                out, own = check(problem, precision, seed, ref32.get(key) if precision == "float64" else None)
                if own is not None:
                    ref32[key] = own
                return out

            label = f"{op} {precision} " + " ".join(f"{k}={v}" for k, v in size.items())
            added = sec.run_case(label, one, min_left=min_left, op=op, precision=precision, size=size, group=group)
            if added[0]["status"] != "oom":
                break
