"""The demo: train a small DSS model on a built-in task, reduce it with BT, modal and h2 to several
state sizes, evaluate without retraining, retrain the BT-initialised model against a Skew-HiPPO-
initialised one of the same size for the same budget, and time full against reduced inference.
Writes results.json, results.md (the table) and results.png to the output folder."""
from __future__ import annotations

import copy
import math
import os
import time

from dssm_kernels import reduction as R
from dssm_kernels import tasks
from dssm_kernels.nn import LAYERS, SequenceClassifier, make_layer
from dssm_kernels.workflows import checkpoint, preflight, reporting, training
from dssm_kernels.workflows.timing import time_models

METHODS = ("bt", "modal", "h2")


def check_arguments(out, *, task, layer, d_model, d_state, n_layers, epochs, retrain_epochs, ranks, retrain_ranks,
                    methods, lr, seed, time_batch, time_repeats, flags: bool = False) -> None:
    """Everything run_demo needs, checked before it trains, so that no argument fails after minutes of
    training: sizes and counts, lr, the methods, state sizes below d_state (a "reduction" to d_state or
    more removes nothing), the layer reducible by reduce_model, the task, the output folder writable.
    ValueError / TypeError of one line naming the argument: as run_demo's parameter, or with flags=True
    as the `dssm demo` flag (d_state -> --d-state)."""
    def name(arg):
        return "--" + arg.replace("_", "-") if flags else arg

    where = "" if flags else "run_demo: "

    def check_ints(arg, values, least, even=False, below=None):
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{where}{name(arg)} must be an int, got {type(v).__name__} ({v!r})")
            if v < least or (even and v % 2) or (below is not None and v >= below):
                want = f"{'an even int' if even else 'an int'} >= {least}" + \
                       (f" and below {name('d_state')} {below}" if below is not None else "")
                raise ValueError(f"{where}{name(arg)} must be {want}, got {v}")

    for arg, value, least in (("d_model", d_model, 1), ("n_layers", n_layers, 1), ("epochs", epochs, 1),
                              ("retrain_epochs", retrain_epochs, 1), ("seed", seed, 0), ("time_batch", time_batch, 1),
                              ("time_repeats", time_repeats, 1)):
        check_ints(arg, [value], least)
    check_ints("d_state", [d_state], 2, even=True)
    ranks, retrain_ranks, methods = list(ranks), list(retrain_ranks), list(methods)
    if not ranks:
        raise ValueError(f"{where}{name('ranks')} must name at least one state size")
    check_ints("ranks", ranks, 2, even=True, below=d_state)
    check_ints("retrain_ranks", retrain_ranks, 2, even=True, below=d_state)
    if not methods or any(m not in METHODS for m in methods):
        raise ValueError(f"{where}{name('methods')} must be a non-empty selection of {', '.join(METHODS)}, "
                         f"got {' '.join(map(str, methods))}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"{where}{name('lr')} must be a finite number > 0, got {lr!r}")
    if layer not in LAYERS:
        raise ValueError(f"{where}{name('layer')} must be one of {', '.join(LAYERS)}, got {layer!r}")
    reason = preflight.unreducible_reason(make_layer(layer, 1, 2))
    if reason is not None:
        raise ValueError(f"{where}{name('layer')} {layer}: the demo reduces the trained model, and {reason}")
    try:
        tasks.check(task, seed=seed)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{where}{name('task')}: {e}") from None
    preflight.writable_dir(out, f"{where}{name('out')}")


def run_demo(out: str = "dssm-demo", *, task: str = "digits", layer: str = "dss", d_model: int = 32,
             d_state: int = 64, n_layers: int = 2, epochs: int = 8, retrain_epochs: int = 4,
             ranks=(16, 8, 4), retrain_ranks=(8, 4), methods=METHODS, lr: float = 1e-2,
             seed: int = 0, time_batch: int = 16, time_repeats: int = 5, progress: bool = True,
             log=print) -> dict:
    """Run the whole demo; returns the results dict also written to out/results.json. Every argument is
    checked first (check_arguments), before any training."""
    check_arguments(out, task=task, layer=layer, d_model=d_model, d_state=d_state, n_layers=n_layers, epochs=epochs,
                    retrain_epochs=retrain_epochs, ranks=ranks, retrain_ranks=retrain_ranks, methods=methods, lr=lr,
                    seed=seed, time_batch=time_batch, time_repeats=time_repeats)
    start = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    t = tasks.load(task, seed=seed)
    log(f"task  {t.describe()}")
    cfg = dict(n_classes=t.n_classes, d_input=t.d_input, vocab_size=t.vocab_size, layer=layer, d_model=d_model,
               d_state=d_state, n_layers=n_layers, seed=seed)
    full = SequenceClassifier(**cfg)
    hist = training.fit(full, t, epochs=epochs, lr=lr, seed=seed, progress=progress)
    res = {"machine": reporting.machine(), "task": t.describe(), "config": full.current_config(),
           "full": {"d_state": d_state, "test_acc": training.accuracy(full, t.test), "val_acc": hist.val_acc,
                    "ssm_params": checkpoint.ssm_parameter_count(full), "train_seconds": hist.seconds[-1]}}
    checkpoint.save(os.path.join(out, "full.pt"), full, t, history=hist.records())
    log(f"full  d_state={d_state}: test accuracy {res['full']['test_acc']:.3f} ({hist.seconds[-1]:.0f} s)")

    res["reduced"], bt_models = [], {}
    for r in ranks:
        for method in methods:
            t0 = time.perf_counter()
            small, report = R.reduce_model(full, d_state=r, method=method)
            acc = training.accuracy(small, t.test)
            res["reduced"].append({"method": method, "d_state": r, "test_acc": acc,
                                   "ssm_params": checkpoint.ssm_parameter_count(small),
                                   "seconds": time.perf_counter() - t0, "report": reporting.jsonable(report)})
            if method == "bt":
                bt_models[r] = small
            log(f"reduce {method:5s} d_state={r:3d}: test accuracy {acc:.3f} (no retraining)")

    res["retrained"] = []
    for r in retrain_ranks:
        if r not in bt_models:
            bt_models[r] = R.reduce_model(full, d_state=r, method="bt")[0]
        bt = copy.deepcopy(bt_models[r])
        h_bt = training.fit(bt, t, epochs=retrain_epochs, lr=lr, seed=seed, progress=progress)
        skew = SequenceClassifier(**{**cfg, "d_state": r})
        h_sk = training.fit(skew, t, epochs=retrain_epochs, lr=lr, seed=seed, progress=progress)
        row = {"d_state": r, "bt_init": training.accuracy(bt, t.test),
               "skew_hippo_init": training.accuracy(skew, t.test), "bt_val": h_bt.val_acc, "skew_val": h_sk.val_acc}
        res["retrained"].append(row)
        checkpoint.save(os.path.join(out, f"bt{r}-retrained.pt"), bt, t, history=h_bt.records())
        log(f"retrain d_state={r:3d}: BT-initialised {row['bt_init']:.3f}, "
            f"Skew-HiPPO-initialised {row['skew_hippo_init']:.3f}")

    x = t.test[0][:time_batch]
    models = {d_state: full, **{r: bt_models[r] for r in sorted(bt_models, reverse=True)}}
    times = time_models({str(k): m for k, m in models.items()}, x, repeats=time_repeats)
    res["timing"] = {"batch": list(x.shape), "seconds": times,
                     "speedup": {k: {m: times[str(d_state)][m] / v[m] for m in v} for k, v in times.items()}}
    res["seconds"] = time.perf_counter() - start
    table = results_table(res)
    reporting.write_outputs(out, "results", res, table, plot)
    log(table)
    log(f"wrote {out}/results.json, results.md, results.png, checkpoints ({res['seconds']:.0f} s)")
    return res


def results_table(res: dict) -> str:
    """One Markdown table: per state size, accuracy without retraining per method, after retraining, and
    the reduced model's inference speedup over the full one."""
    methods = sorted({row["method"] for row in res["reduced"]}, key=METHODS.index)
    acc = {(row["method"], row["d_state"]): row["test_acc"] for row in res["reduced"]}
    retr = {row["d_state"]: row for row in res["retrained"]}
    sp = res["timing"]["speedup"]
    modes = list(next(iter(sp.values())))
    head = ["d_state", "SSM params"] + [f"{m} (no retrain)" for m in methods] + \
           ["BT-init retrained", "Skew-HiPPO retrained"] + [f"speedup {m}" for m in modes]
    full = res["full"]
    rows = [[f"{full['d_state']} (full)", full["ssm_params"], *(f"{full['test_acc']:.3f}" for _ in methods),
             "-", "-", *("1.00" for _ in modes)]]
    for r in sorted({row["d_state"] for row in res["reduced"]} | set(retr), reverse=True):
        params = next((row["ssm_params"] for row in res["reduced"] if row["d_state"] == r), "")
        cells = [f"{acc[(m, r)]:.3f}" if (m, r) in acc else "-" for m in methods]
        rt = retr.get(r)
        cells += [f"{rt['bt_init']:.3f}", f"{rt['skew_hippo_init']:.3f}"] if rt else ["-", "-"]
        cells += [f"{sp[str(r)][m]:.2f}" if str(r) in sp else "-" for m in modes]
        rows.append([r, params, *cells])
    return reporting.md_table(head, rows)


def plot(res: dict, path: str) -> None:
    """Accuracy against state size per method (left), inference speedup against state size (right)."""
    plt = reporting.pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for m in METHODS:
        rows = sorted((r["d_state"], r["test_acc"]) for r in res["reduced"] if r["method"] == m)
        if rows:
            a.plot(*zip(*rows), "o-", label=f"{m}, no retraining")
    if res["retrained"]:
        rows = sorted((r["d_state"], r["bt_init"], r["skew_hippo_init"]) for r in res["retrained"])
        a.plot([r[0] for r in rows], [r[1] for r in rows], "s--", label="BT-init, retrained")
        a.plot([r[0] for r in rows], [r[2] for r in rows], "^--", label="Skew-HiPPO init, retrained")
    a.axhline(res["full"]["test_acc"], color="k", lw=0.8, label=f"full (d_state={res['full']['d_state']})")
    a.set_xscale("log", base=2)
    a.set_xlabel("d_state per layer")
    a.set_ylabel("test accuracy")
    a.legend(fontsize=7)
    sp = res["timing"]["speedup"]
    ks = sorted(int(k) for k in sp)
    for mode in next(iter(sp.values())):
        b.plot(ks, [sp[str(k)][mode] for k in ks], "o-", label=mode)
    b.set_xscale("log", base=2)
    b.set_xlabel("d_state per layer")
    b.set_ylabel("speedup over the full model")
    b.legend(fontsize=7)
    fig.suptitle(f"{res['task']}  ({res['machine']})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
