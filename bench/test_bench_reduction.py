"""What reduction buys on a CPU: a full S4D model (d_state = 64, the real state size) against its
balanced-truncation reductions to d_state in {32, 16, 8, 4}, timed side by side in one run in the
three ways a model runs: convolution (training view), scan (the recurrence over a sequence, dk.ssm_scan)
and step (one token at a time, dk.ssm_step: the decoding / streaming view). Each is timed for the
whole model (a 2-block SequenceClassifier: its GLU output maps cost the same at every d_state) and
for its first S4D layer alone (where the state size is the cost).

Run through scripts/bench_reduction.sh (saves the JSON under bench/results/ named by machine and
prints the speedup table); `python bench/test_bench_reduction.py <json>` prints the table again.
"""
import json
import sys
from pathlib import Path

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


def _info(benchmark, target, mode, d_state, module, **sizes):
    benchmark.group = f"{target} {mode} {sizes}"
    benchmark.extra_info.update(target=target, mode=mode, d_state=d_state,
                                params=sum(p.numel() for p in module.parameters()), threads=torch.get_num_threads(),
                                **sizes)


@pytest.mark.parametrize("d_state", (FULL,) + REDUCED)
@pytest.mark.parametrize("mode", ["conv", "scan"])
@pytest.mark.parametrize("target", ["model", "layer"])
def test_sequence(benchmark, models, target, mode, d_state):
    model = models[d_state]
    if target == "model":
        x = torch.randn(B, L, 1, generator=torch.Generator().manual_seed(0))
        fn = lambda: model(x, mode=mode)  # noqa: E731
    else:
        layer = model.blocks[0].layer
        x = torch.randn(B, L, H, generator=torch.Generator().manual_seed(0))
        fn = (lambda: layer(x)) if mode == "conv" else (lambda: layer.scan(x))
    _info(benchmark, target, mode, d_state, model if target == "model" else model.blocks[0].layer,
          B=B, H=H, L=L, layers=LAYERS if target == "model" else 1)
    with torch.no_grad():
        benchmark.pedantic(fn, rounds=8, warmup_rounds=1)


@pytest.mark.parametrize("d_state", (FULL,) + REDUCED)
@pytest.mark.parametrize("target", ["model", "layer"])
def test_step(benchmark, models, target, d_state):
    """One token: through the whole model (encoder, both blocks, running-mean pool, decoder), or
    through the first S4D layer."""
    model = models[d_state]
    mod = model if target == "model" else model.blocks[0].layer
    x = torch.randn(STEP_B, 1) if target == "model" else torch.randn(STEP_B, H)
    with torch.no_grad():
        state = mod.default_state(STEP_B)
        _, state = mod.step(x, state)
        _info(benchmark, target, "step", d_state, mod, B=STEP_B, H=H, layers=LAYERS if target == "model" else 1)
        benchmark.pedantic(lambda: mod.step(x, state), rounds=200, iterations=5, warmup_rounds=5)


def summarize(path) -> str:
    """Markdown table: median time per target, mode and d_state, and the speedup over the full model."""
    data = json.loads(Path(path).read_text())
    t = {(b["extra_info"]["target"], b["extra_info"]["mode"], b["extra_info"]["d_state"]):
         (b["stats"]["median"], b["extra_info"]) for b in data["benchmarks"]}
    head = "| what | mode | sizes | " + " | ".join(f"d_state {d}" for d in (FULL,) + REDUCED) + " |"
    lines = [head, "|" + "---|" * (3 + 1 + len(REDUCED))]
    for target in ("layer", "model"):
        for mode in ("conv", "scan", "step"):
            if (target, mode, FULL) not in t:
                continue
            full_t, info = t[(target, mode, FULL)]
            sizes = f"B={info['B']} H={info['H']}" + (f" L={info['L']}" if "L" in info else " (one token)")
            cells = [f"{full_t * 1e3:.3f} ms"] + [
                f"{t[(target, mode, d)][0] * 1e3:.3f} ms ({full_t / t[(target, mode, d)][0]:.2f}x)"
                for d in REDUCED if (target, mode, d) in t]
            what = "S4D layer" if target == "layer" else f"model ({info['layers']} blocks)"
            lines.append(f"| {what} | {mode} | {sizes} | " + " | ".join(cells) + " |")
    mi = data["machine_info"]
    for target in ("layer", "model"):
        params = " / ".join(f"{t[(target, 'scan', d)][1]['params']}" for d in (FULL,) + REDUCED if (target, "scan", d) in t)
        lines.append(f"\n{target} parameters (d_state {'/'.join(map(str, (FULL,) + REDUCED))}): {params}")
    lines.append(f"\nmachine: {mi.get('device', mi.get('processor'))}, {mi.get('cpu', {}).get('count', '?')} cores, "
                 f"torch {mi.get('torch')}; medians; speedup = full / reduced, timed side by side in one run")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(sys.argv[1]))
