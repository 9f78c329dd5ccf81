"""Reduce trained models of every layer kind without retraining: test accuracy at a fraction of their states,
for every reduction method and budget allocation rule (issue 12's closing note).

A 2-layer SequenceClassifier of each kind (S4D, DSS, S4, S5, LRU; d_model 64, d_state 64) is trained on the
digits task (scikit-learn's 8x8 digits as 256-pixel sequences), then reduced with reduce_model(fraction=f)
for every method (bt, bsp, modal, msp, h2, tlh2: h2 over the task's length) x allocation rule (bound, last,
energy, uniform) x f in 50 / 25 / 20 / 12.5 / 6.25 % of the model's states, and evaluated as it comes out.

    python examples/reduce_trained.py --out results/reduce_trained            # the table of the notes
    python examples/reduce_trained.py --out /tmp/rt --layers s4d --epochs 2 --fractions 0.25 --methods bt
                                                                               # a minute: a pipeline check

Writes OUT/reduce_trained.json (every row) and OUT/reduce_trained.md (a table per kind, and per kind the most
states removed within 1 point of the full model's accuracy). The trained models are saved as checkpoints in
OUT and reused by a later run with the same settings (training is half the time). Everything is seeded.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
import torch

from dssm_kernels import tasks
from dssm_kernels.nn import SequenceClassifier
from dssm_kernels.reduction import reduce_model
from dssm_kernels.reduction.model import ALLOCATIONS, METHODS
from dssm_kernels.workflows.training import accuracy, fit
from dssm_kernels.workflows import checkpoint, reporting

KINDS = ("s4d", "dss", "s4", "s5", "lru")
EPOCHS = {"s4d": 15, "dss": 15, "s4": 15, "s5": 8, "lru": 10}     # S5 and LRU cost 4-8x per epoch on a CPU
FRACTIONS = (0.5, 0.25, 0.2, 0.125, 0.0625)


def trained(kind: str, task, a) -> SequenceClassifier:
    """The kind's model, trained (or loaded from OUT when trained before with the same settings)."""
    epochs = a.epochs or EPOCHS[kind]
    path = os.path.join(a.out, f"{kind}-h{a.d_model}-n{a.d_state}-e{epochs}-s{a.seed}.pt")
    if os.path.exists(path):
        return checkpoint.load(path)[0]
    kw = {"l_max": task.test[0].shape[1]} if kind == "s4" else None
    model = SequenceClassifier(task.n_classes, d_input=task.d_input, layer=kind, d_model=a.d_model, d_state=a.d_state,
                               n_layers=2, seed=a.seed, layer_kwargs=kw)
    t0 = time.perf_counter()
    fit(model, task, epochs=epochs, lr=1e-2, batch_size=64, seed=a.seed)
    print(f"{kind}: trained {epochs} epochs in {time.perf_counter() - t0:.0f} s", flush=True)
    checkpoint.save(path, model, task)
    return model.eval()


def sweep(kind: str, model, task, a) -> list:
    """Every method x rule x fraction of one model: its rows."""
    L = task.test[0].shape[1]
    full = accuracy(model, task.test)
    rows = [dict(kind=kind, method="full", allocate=None, fraction=1.0, accuracy=full, drop=0.0)]
    cache = {}                       # one model: its systems, Gramians and gains computed once
    for method in a.methods:
        for rule in a.allocations:
            for f in a.fractions:
                t0 = time.perf_counter()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    red, rep = reduce_model(model, fraction=f, method=method, allocate=rule, measure=False,
                                            horizon=L if method == "tlh2" else None, max_iter=a.h2_iters, cache=cache)
                acc = accuracy(red, task.test)
                rows.append(dict(kind=kind, method=method, allocate=rule, fraction=f, accuracy=acc,
                                 drop=100 * (full - acc), states_before=rep.states_before, states_after=rep.states_after,
                                 composed_bound=rep.composed_bound, objective=rep.request.get("objective"),
                                 seconds=time.perf_counter() - t0, warnings=sorted({str(w.message)[:120] for w in caught})))
                print(f"{kind:<4}{method:<6}{rule:<8}{f:>7.4f}  states {rep.states_before}->{rep.states_after}  "
                      f"acc {acc:.4f} (full {full:.4f})  {rows[-1]['seconds']:.1f} s", flush=True)
    return rows


def markdown(rows: list, a, machine: str, seconds: float) -> str:
    lines = [f"# Reduction without retraining: accuracy at a fraction of the states (digits, 2 layers, d_model "
             f"{a.d_model}, d_state {a.d_state})", "",
             f"`python examples/reduce_trained.py --out {a.out}` ({machine}; {seconds / 60:.0f} min in all; h2 and "
             f"tlh2 run {a.h2_iters} L-BFGS iterations). Test accuracy (360 images) of each reduced model, no "
             "retraining; in brackets the drop in points from the full model.", ""]
    best = []
    for kind in dict.fromkeys(r["kind"] for r in rows):
        kr = [r for r in rows if r["kind"] == kind]
        full = kr[0]["accuracy"]
        lines += [f"## {kind.upper()} (full model: {full:.4f})", "",
                  "| method | allocation | " + " | ".join(f"{100 * f:g} % kept" for f in a.fractions) + " |",
                  "|---|---|" + "---|" * len(a.fractions)]
        for method in a.methods:
            for rule in a.allocations:
                cells = []
                for f in a.fractions:
                    r = next((r for r in kr if r["method"] == method and r["allocate"] == rule and r["fraction"] == f),
                             None)
                    cells.append("-" if r is None else f"{r['accuracy']:.3f} ({r['drop']:+.1f})")
                lines.append(f"| {method} | {rule} | " + " | ".join(cells) + " |")
        ok = [r for r in kr[1:] if r["drop"] <= 1.0]
        top = min(ok, key=lambda r: (r["states_after"], r["drop"])) if ok else None
        best.append((kind, full, top))
        lines.append("")
    lines += ["## The most states removed within 1 point of the full model", "",
              "| kind | full accuracy | states removed | method | allocation | accuracy | >= 80 % removed |",
              "|---|---|---|---|---|---|---|"]
    for kind, full, top in best:
        if top is None:
            lines.append(f"| {kind} | {full:.4f} | - | - | - | - | no |")
            continue
        removed = 1 - top["states_after"] / top["states_before"]
        lines.append(f"| {kind} | {full:.4f} | {100 * removed:.1f} % ({top['states_before']} -> {top['states_after']}) | "
                     f"{top['method']} | {top['allocate']} | {top['accuracy']:.4f} ({top['drop']:+.1f}) | "
                     f"{'yes' if removed >= 0.8 - 1e-9 else 'no'} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="results/reduce_trained", help="folder for checkpoints and results")
    p.add_argument("--layers", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--d-state", type=int, default=64)
    p.add_argument("--epochs", type=int, default=None, help=f"training epochs (default per kind: {EPOCHS})")
    p.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--allocations", nargs="+", default=list(ALLOCATIONS), choices=ALLOCATIONS)
    p.add_argument("--h2-iters", type=int, default=50, help="L-BFGS iterations of h2 / tlh2 (default 50)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    task = tasks.load("digits", seed=a.seed)
    t0 = time.perf_counter()
    rows = []
    for kind in a.layers:
        rows += sweep(kind, trained(kind, task, a), task, a)
    seconds = time.perf_counter() - t0
    machine = reporting.machine()
    with open(os.path.join(a.out, "reduce_trained.json"), "w") as f:
        json.dump(dict(args=vars(a), task=task.describe(), machine=machine, seconds=seconds, rows=rows), f, indent=1,
                  default=float)
    with open(os.path.join(a.out, "reduce_trained.md"), "w") as f:
        f.write(markdown(rows, a, machine, seconds))
    print(markdown(rows, a, machine, seconds))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
