"""Train a small 2-layer S4D (or DSS) classifier, then reduce its state with BT, modal and h2 (no
retraining) and report per method and size: test accuracy, each layer's guaranteed bound against the
measured H-infinity error of its channels, and the kernels' relative error over the task's length.
Each method runs with the infinite horizon and with the horizon L of the task (time-limited BT / h2:
only the first L steps of each kernel matter to a model that reads sequences of length L).

    python examples/reduce_trained.py --layer s4d            # digits (sklearn's 8x8, as 256-pixel sequences)
    python examples/reduce_trained.py --layer dss --json out.json

Speed of the reduced models: bench/test_bench_reduction.py (scripts/bench_reduction.sh). Everything
is seeded; the numbers in the notes come from these commands.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from dssm_kernels import tasks
from dssm_kernels.nn import SequenceClassifier
from dssm_kernels.reduction import reduce_model
from dssm_kernels.workflows.training import accuracy, fit


def evaluate(model, red, rep, task, logits) -> dict:
    """Accuracy and errors of one reduced model against the full one."""
    with torch.no_grad():
        err = ((red(task.test[0]) - logits).norm() / logits.norm()).item()
    layers = []
    for L in rep.layers:
        rel = L.hinf_error / L.hinf_full
        layers.append(dict(
            name=L.name, rank_mean=float(np.mean(L.rank)), hinf_error_max=float(np.max(L.hinf_error)),
            hinf_rel_error_max=float(np.max(rel)), kernel_error=L.kernel_error,
            bound_max=None if L.error_bound is None else float(np.max(L.error_bound)),
            bound_over_measured_median=None if L.error_bound is None else float(np.median(L.error_bound / L.hinf_error))))
    return dict(accuracy=accuracy(red, task.test), logit_rel_error=err, params=rep.params_after, layers=layers)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layer", choices=["s4d", "dss"], default="s4d")
    p.add_argument("--task", choices=tasks.names(), default="digits")
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--d-state", type=int, default=64, help="the full model's real state size per channel")
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 16, 8, 4], help="reduced d_state values")
    p.add_argument("--methods", nargs="+", default=["bt", "modal", "h2"])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args()

    torch.manual_seed(a.seed)
    task = tasks.load(a.task, seed=a.seed)
    kind = dict(vocab_size=task.vocab_size) if task.vocab_size else dict(d_input=task.d_input)
    model = SequenceClassifier(task.n_classes, layer=a.layer, d_model=a.d_model, d_state=a.d_state, n_layers=2,
                               seed=a.seed, **kind)
    t0 = time.perf_counter()
    fit(model, task, epochs=a.epochs, lr=1e-2, batch_size=64, seed=a.seed)
    model.eval()
    L = task.test[0].shape[1]
    full_acc = accuracy(model, task.test)
    print(f"{task.describe()}\n{a.layer} d_model={a.d_model} d_state={a.d_state}: trained {a.epochs} epochs in "
          f"{time.perf_counter() - t0:.0f} s, test accuracy {full_acc:.4f}, "
          f"{sum(q.numel() for q in model.parameters())} parameters", flush=True)
    with torch.no_grad():
        logits = model(task.test[0])
    rows = [dict(method="full", d_state=a.d_state, accuracy=full_acc, params=sum(q.numel() for q in model.parameters()))]
    print(f"\n{'method':<7}{'horizon':>8}{'d_state':>8}{'acc':>8}{'logit err':>11}{'bound max':>11}"
          f"{'Hinf err max':>13}{'rel':>9}{'kernel err':>11}{'params':>8}")
    for method in a.methods:
        for horizon in (None, L):
            for r in a.sizes:
                t = time.perf_counter()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    red, rep = reduce_model(model, d_state=r, method=method, horizon=horizon, measure_steps=L)
                row = dict(method=method, horizon=horizon, d_state=r, seconds=time.perf_counter() - t,
                           warnings=sorted({str(w.message) for w in caught}), **evaluate(model, red, rep, task, logits))
                rows.append(row)
                bnd = max((x["bound_max"] for x in row["layers"] if x["bound_max"] is not None), default=None)
                print(f"{method:<7}{'inf' if horizon is None else horizon:>8}{r:>8}{row['accuracy']:>8.4f}"
                      f"{row['logit_rel_error']:>11.3e}{'-' if bnd is None else f'{bnd:.3e}':>11}"
                      f"{max(x['hinf_error_max'] for x in row['layers']):>13.3e}"
                      f"{max(x['hinf_rel_error_max'] for x in row['layers']):>9.3f}"
                      f"{max(x['kernel_error'] for x in row['layers']):>11.3e}{row['params']:>8}", flush=True)
    print(f"\nbound max / Hinf err max: the largest per-channel guaranteed bound (BT, modal; infinite horizon) and "
          f"measured ||G - G_r||_inf over both layers; rel: the largest ||G - G_r||_inf / ||G||_inf; kernel err: "
          f"||K - K_r|| / ||K|| over L={L} steps (worst layer); logit err: relative change of the test logits.")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(args=vars(a), task=task.describe(), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
