"""What reduction buys on a CPU: a full S4D model (d_state = 64, the real state size) against its
balanced-truncation reductions to d_state in {32, 16, 8, 4}, timed side by side in one run in the
three ways a model runs: convolution (training view), scan (the recurrence over a sequence, dk.ssm_scan)
and step (one token at a time, dk.ssm_step: the decoding / streaming view). Each is timed for the
whole model (a 2-block SequenceClassifier: its GLU output maps cost the same at every d_state) and
for its first S4D layer alone (where the state size is the cost).

And what a state budget buys (test_budget_paired): an S5, an LRU and an S4D layer (d_model 64, d_state 64)
against reduce_model(layer, fraction=f) of it, f = 1/2, 1/4, 1/8 (the S4D's channels keep their own
counts: allocate="last", stored flat), scan and step, each speedup beside its work ratio (the states
before / after: the state is most of these layers' work).

Run through scripts/bench_reduction.sh (saves the JSON under bench/results/ named by machine and
prints the speedup table); `python bench/test_bench_reduction.py <json>` prints the table again.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

FULL, REDUCED = 64, (32, 16, 8, 4)
B, H, L, LAYERS = 8, 256, 1024, 2          # conv and scan: a batch of sequences
STEP_B = 1                                  # step: one stream, per-token latency


@pytest.fixture(scope="module")
def models():
    """{d_state: model}: the full S4D classifier and its BT reductions (reduction itself is not timed)."""
    from dssm_kernels.nn import SequenceClassifier
    from dssm_kernels.reduction import reduce_model
    full = SequenceClassifier(10, d_input=1, layer="s4d", d_model=H, d_state=FULL, n_layers=LAYERS, seed=0).eval()
    out = {FULL: full}
    for r in REDUCED:
        out[r] = reduce_model(full, d_state=r, method="bt")[0].eval()
    return out


def _runner(models, target, mode, d_state):
    """A zero-argument callable running one timed unit of work, and its sizes."""
    model = models[d_state]
    mod = model if target == "model" else model.blocks[0].layer
    if mode == "step":
        x = torch.randn(STEP_B, 1) if target == "model" else torch.randn(STEP_B, H)
        with torch.no_grad():
            state = mod.step(x, mod.default_state(STEP_B))[1]
        return (lambda: mod.step(x, state)), mod, dict(B=STEP_B, H=H)
    x = torch.randn(B, L, 1 if target == "model" else H, generator=torch.Generator().manual_seed(0))
    if target == "model":
        fn = lambda: model(x, mode=mode)  # noqa: E731
    else:
        fn = (lambda: mod(x)) if mode == "conv" else (lambda: mod.scan(x))
    return fn, mod, dict(B=B, H=H, L=L)


CASES = [(t, m) for t in ("layer", "model") for m in ("conv", "scan", "step")]


@pytest.mark.parametrize("d_state", (FULL,) + REDUCED)
@pytest.mark.parametrize("target,mode", CASES)
def test_time(benchmark, models, target, mode, d_state):
    """Absolute time of one variant (pytest-benchmark's own statistics)."""
    fn, mod, sizes = _runner(models, target, mode, d_state)
    benchmark.group = f"{target} {mode}"
    benchmark.extra_info.update(kind="time", target=target, mode=mode, d_state=d_state,
                                params=sum(p.numel() for p in mod.parameters()), threads=torch.get_num_threads(),
                                layers=LAYERS if target == "model" else 1, **sizes)
    with torch.no_grad():
        if mode == "step":
            benchmark.pedantic(fn, rounds=200, iterations=5, warmup_rounds=5)
        else:
            benchmark.pedantic(fn, rounds=8, warmup_rounds=1)


def paired_rounds(benchmark, runs: dict, mode: str) -> dict:
    """{key: [seconds per call, one per round]}: every round times each of `runs` once, in rotating order, so
    the load a shared CPU adds falls on all of them alike (a step is timed over 50 calls per round, a scan
    once). After one warm-up call each, under no_grad."""
    rounds, reps = (40, 50) if mode == "step" else (12, 1)
    times = {k: [] for k in runs}
    order = list(runs)

    def one_round():
        for k in order:
            t = time.perf_counter()
            for _ in range(reps):
                runs[k]()
            times[k].append((time.perf_counter() - t) / reps)
        order.append(order.pop(0))

    with torch.no_grad():
        for fn in runs.values():
            fn()
        benchmark.pedantic(one_round, rounds=rounds, warmup_rounds=0)
    return times


@pytest.mark.parametrize("target,mode", CASES)
def test_paired(benchmark, models, target, mode):
    """The speedups: every round times each variant once, in rotating order, so the load a shared CPU
    adds falls on all of them alike; per variant, the median over rounds of full time / its time."""
    runs = {d: _runner(models, target, mode, d)[0] for d in (FULL,) + REDUCED}
    times = paired_rounds(benchmark, runs, mode)
    full = np.array(times[FULL])
    benchmark.group = f"paired {target} {mode}"
    benchmark.extra_info.update(kind="paired", target=target, mode=mode, threads=torch.get_num_threads(), ratios={
        str(d): dict(median_s=float(np.median(times[d])), speedup=float(np.median(full / np.array(times[d]))),
                     q1=float(np.quantile(full / np.array(times[d]), 0.25)),
                     q3=float(np.quantile(full / np.array(times[d]), 0.75))) for d in runs})


# --- what a state budget buys --------------------------------------------------------------------------
BUDGET_KINDS = ("s5", "lru", "s4d")
BUDGET_FRACTIONS = (0.5, 0.25, 0.125)
BH, BL, BB = 64, 1024, 16


@pytest.fixture(scope="module")
def budget_layers():
    """{kind: {fraction: layer}} (1.0: the full layer); the reduction itself is not timed."""
    from dssm_kernels.nn import make_layer
    from dssm_kernels.reduction import reduce_model
    out = {}
    for kind in BUDGET_KINDS:
        full = make_layer(kind, BH, FULL, seed=0).eval()
        out[kind] = {1.0: full}
        for f in BUDGET_FRACTIONS:
            out[kind][f] = reduce_model(full, fraction=f, allocate="last", measure=False)[0].eval()
    return out


@pytest.mark.parametrize("kind", BUDGET_KINDS)
@pytest.mark.parametrize("mode", ("scan", "step"))
def test_budget_paired(benchmark, budget_layers, kind, mode):
    """Paired rounds as test_paired: full against each budget's layer, the median speedup and the work
    ratio (real states before / after)."""
    from dssm_kernels.reduction.model import layer_states
    layers = budget_layers[kind]
    x = torch.randn(BB, BL, BH, generator=torch.Generator().manual_seed(0))
    xt = torch.randn(1, BH, generator=torch.Generator().manual_seed(1))
    runs = {}
    for f, layer in layers.items():
        if mode == "scan":
            runs[f] = (lambda m: lambda: m.scan(x))(layer)
        else:
            state = layer.step(xt, None)[1]
            runs[f] = (lambda m, s: lambda: m.step(xt, s))(layer, state)
    times = paired_rounds(benchmark, runs, mode)
    full = np.array(times[1.0])
    states = {f: layer_states(m) for f, m in layers.items()}
    benchmark.group = f"budget {kind} {mode}"
    benchmark.extra_info.update(kind="budget", layer=kind, mode=mode, threads=torch.get_num_threads(),
                                sizes=dict(B=BB if mode == "scan" else 1, H=BH, L=BL if mode == "scan" else 1),
                                ratios={str(f): dict(median_s=float(np.median(times[f])), states=states[f],
                                                     speedup=float(np.median(full / np.array(times[f]))),
                                                     work=states[1.0] / states[f]) for f in runs})


def summarize(path) -> str:
    """Markdown table: per target and mode, the full model's median time and each reduction's median
    paired speedup (interquartile range over the rounds)."""
    data = json.loads(Path(path).read_text())
    paired = {(b["extra_info"]["target"], b["extra_info"]["mode"]): b["extra_info"] for b in data["benchmarks"]
              if b["extra_info"].get("kind") == "paired"}
    timed = {(b["extra_info"]["target"], b["extra_info"]["mode"], b["extra_info"]["d_state"]): b["extra_info"]
             for b in data["benchmarks"] if b["extra_info"].get("kind") == "time"}
    head = "| what | mode | sizes | d_state 64 (time) | " + " | ".join(f"d_state {d}" for d in REDUCED) + " |"
    lines = [head, "|" + "---|" * (4 + len(REDUCED))]
    for (target, mode), info in paired.items():
        r = info["ratios"]
        sz = timed.get((target, mode, FULL), {})
        sizes = f"B={sz.get('B')} H={sz.get('H')}" + (f" L={sz['L']}" if "L" in sz else " (one token)")
        what = "S4D layer" if target == "layer" else f"model ({LAYERS} blocks)"
        cells = [f"{r[str(FULL)]['median_s'] * 1e3:.3f} ms"] + [
            f"{r[str(d)]['speedup']:.2f}x ({r[str(d)]['q1']:.2f}-{r[str(d)]['q3']:.2f})" for d in REDUCED]
        lines.append(f"| {what} | {mode} | {sizes} | " + " | ".join(cells) + " |")
    for target in ("layer", "model"):
        params = " / ".join(str(timed[(target, "scan", d)]["params"]) for d in (FULL,) + REDUCED
                            if (target, "scan", d) in timed)
        lines.append(f"\n{target} parameters (d_state {'/'.join(map(str, (FULL,) + REDUCED))}): {params}")
    budget = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("kind") == "budget"]
    if budget:
        lines += ["", "| budget: layer | mode | sizes | full (time) | " +
                  " | ".join(f"{100 * f:g} % of the states: speedup (work ratio)" for f in BUDGET_FRACTIONS) + " |",
                  "|" + "---|" * (4 + len(BUDGET_FRACTIONS))]
        for info in budget:
            r = info["ratios"]
            sz = info["sizes"]
            cells = [f"{r['1.0']['median_s'] * 1e3:.3f} ms"] + [
                f"{r[str(f)]['speedup']:.2f}x ({r[str(f)]['work']:.2f}x)" for f in BUDGET_FRACTIONS]
            lines.append(f"| {info['layer'].upper()} | {info['mode']} | B={sz['B']} H={sz['H']} L={sz['L']} | "
                         + " | ".join(cells) + " |")
    mi = data["machine_info"]
    timed = list(paired.values()) + budget
    threads = timed[0]["threads"] if timed else "?"
    lines.append(f"\nmachine: {mi.get('cpu_model') or mi.get('device', mi.get('processor'))}, "
                 f"{mi.get('cpu', {}).get('count', '?')} cores, "
                 f"{threads} thread(s), torch {mi.get('torch')}; speedup = median over interleaved rounds of "
                 "full time / reduced time (interquartile range)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(sys.argv[1]))
