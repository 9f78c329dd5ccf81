"""The `dssm` command: the demo, and each of its steps on a user's own checkpoint.

    dssm demo [--out DIR] [--epochs N] ...          train, reduce (bt / modal / h2), retrain, time; one table
    dssm train --task NAME --layer KIND --out CKPT  train a classifier on a built-in task
    dssm reduce CKPT --d-state R --method bt|modal|h2 --out CKPT
    dssm eval CKPT [CKPT ...]                       test accuracy, sizes
    dssm bench CKPT [CKPT ...]                      inference time side by side (conv, scan, step)
    dssm experiment NAME                            the seed papers' experiments at CPU scale

Checkpoints carry the model config and the task, so reduce / eval / bench need nothing else.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def _task_options(pairs) -> dict:
    """--task-option key=value pairs; values parsed as int, float or str."""
    out = {}
    for item in pairs or []:
        if "=" not in item:
            raise SystemExit(f"dssm: --task-option expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        for conv in (int, float):
            try:
                v = conv(v)
                break
            except ValueError:
                pass
        out[k] = v
    return out


def cmd_demo(a) -> int:
    from dssm_kernels.workflows.demo import run_demo
    run_demo(a.out, task=a.task, layer=a.layer, d_model=a.d_model, d_state=a.d_state, n_layers=a.n_layers,
             epochs=a.epochs, retrain_epochs=a.retrain_epochs, ranks=a.ranks, retrain_ranks=a.retrain_ranks,
             methods=a.methods, lr=a.lr, seed=a.seed, time_repeats=a.time_repeats, progress=not a.no_progress)
    return 0


def cmd_train(a) -> int:
    from dssm_kernels import tasks
    from dssm_kernels.nn import SequenceClassifier
    from dssm_kernels.tasks.training import accuracy, fit
    from dssm_kernels.workflows import checkpoint
    t = tasks.load(a.task, seed=a.seed, **_task_options(a.task_option))
    print(t.describe())
    model = SequenceClassifier(t.n_classes, d_input=t.d_input, vocab_size=t.vocab_size, layer=a.layer,
                               d_model=a.d_model, d_state=a.d_state, n_layers=a.n_layers, seed=a.seed)
    hist = fit(model, t, epochs=a.epochs, lr=a.lr, seed=a.seed, progress=not a.no_progress)
    checkpoint.save(a.out, model, t, history=vars(hist))
    print(json.dumps({"checkpoint": a.out, "val_acc": hist.val_acc, "test_acc": accuracy(model, t.test),
                      "seconds": hist.seconds[-1]}, indent=1))
    return 0


def cmd_reduce(a) -> int:
    from dssm_kernels import reduction as R
    from dssm_kernels.tasks.training import accuracy
    from dssm_kernels.workflows import checkpoint
    from dssm_kernels.workflows.demo import _jsonable
    model, t, meta = checkpoint.load(a.checkpoint)
    small, report = R.reduce_model(model, d_state=a.d_state, tol=a.tol, method=a.method, horizon=a.horizon)
    out = a.out or a.checkpoint.replace(".pt", "") + f"-{a.method}{a.d_state or ''}.pt"
    checkpoint.save(out, small, t, parent=a.checkpoint, reduction={"method": a.method, "d_state": a.d_state,
                                                                   "tol": a.tol, "report": _jsonable(report)})
    print(json.dumps({"checkpoint": out, "test_acc_before": accuracy(model, t.test),
                      "test_acc_after": accuracy(small, t.test),
                      "ssm_params_before": checkpoint.ssm_parameter_count(model),
                      "ssm_params_after": checkpoint.ssm_parameter_count(small),
                      "report": _jsonable(report)}, indent=1))
    return 0


def cmd_eval(a) -> int:
    from dssm_kernels.tasks.training import accuracy
    from dssm_kernels.workflows import checkpoint
    rows = []
    for path in a.checkpoints:
        model, t, _ = checkpoint.load(path)
        split = getattr(t, a.split)
        rows.append({"checkpoint": path, "task": t.describe(), "d_state": model.current_config()["d_state"],
                     f"{a.split}_acc": accuracy(model, split), "params": checkpoint.parameter_count(model),
                     "ssm_params": checkpoint.ssm_parameter_count(model)})
    print(json.dumps(rows, indent=1))
    return 0


def cmd_bench(a) -> int:
    from dssm_kernels.workflows import checkpoint
    from dssm_kernels.workflows.timing import time_models
    models, x = {}, None
    for path in a.checkpoints:
        model, t, _ = checkpoint.load(path)
        models[path] = model
        x = t.test[0][:a.batch] if x is None else x
    times = time_models(models, x, modes=a.modes, repeats=a.repeats)
    base = a.checkpoints[0]
    print(f"batch {tuple(x.shape)}; ratios are time({base}) / time(model), measured side by side")
    print("| checkpoint | d_state | " + " | ".join(f"{m} ms | {m} speedup" for m in a.modes) + " |")
    print("|---|---|" + "---|---|" * len(a.modes))
    for path, d in times.items():
        ds = models[path].current_config()["d_state"]
        print(f"| {path} | {ds} | " + " | ".join(f"{1e3 * d[m]:.1f} | {times[base][m] / d[m]:.2f}" for m in a.modes) + " |")
    return 0


def cmd_experiment(a) -> int:
    from dssm_kernels.workflows import experiments
    return experiments.run(a.name, out=a.out, quick=a.quick, progress=not a.no_progress)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dssm", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(s, d_model, d_state, epochs):
        s.add_argument("--task", default="digits", help="built-in task: listops | digits | recall (default digits)")
        s.add_argument("--layer", default="dss", help="s4d | dss | s4 | s5 (default dss)")
        s.add_argument("--d-model", type=int, default=d_model, help=f"channels (default {d_model})")
        s.add_argument("--d-state", type=int, default=d_state, help=f"real state size per layer (default {d_state})")
        s.add_argument("--n-layers", type=int, default=2, help="residual blocks (default 2)")
        s.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
        s.add_argument("--lr", type=float, default=1e-2, help="learning rate (default 1e-2; SSM parameters keep 1e-3)")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--no-progress", action="store_true", help="no progress bars")

    s = sub.add_parser("demo", help="train, reduce, retrain and time a DSS model (under 5 minutes on 2 cores)")
    model_args(s, 32, 64, 8)
    s.add_argument("--out", default="dssm-demo", help="output folder (default ./dssm-demo)")
    s.add_argument("--retrain-epochs", type=int, default=4, help="epochs of each retraining (default 4)")
    s.add_argument("--time-repeats", type=int, default=5, help="timing rounds per model and mode (default 5)")
    s.add_argument("--ranks", type=int, nargs="+", default=[16, 8, 4], help="reduced d_state values (default 16 8 4)")
    s.add_argument("--retrain-ranks", type=int, nargs="+", default=[8, 4], help="d_state values retrained (default 8 4)")
    s.add_argument("--methods", nargs="+", default=["bt", "modal", "h2"], help="reduction methods")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("train", help="train a classifier on a built-in task and save a checkpoint")
    model_args(s, 64, 64, 8)
    s.add_argument("--task-option", action="append", metavar="KEY=VALUE", help="task option, e.g. upsample=4")
    s.add_argument("--out", required=True, help="checkpoint path to write")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("reduce", help="reduce every SSM layer of a checkpoint to a smaller state")
    s.add_argument("checkpoint")
    s.add_argument("--d-state", type=int, default=None, help="real state size per layer after reduction")
    s.add_argument("--tol", type=float, default=None, help="instead of --d-state: the smallest size whose bound meets tol")
    s.add_argument("--method", default="bt", help="bt | modal | h2 (default bt)")
    s.add_argument("--horizon", type=int, default=None, help="finite horizon in steps (default: infinite)")
    s.add_argument("--out", default=None, help="checkpoint to write (default: derived from the input name)")
    s.set_defaults(func=cmd_reduce)

    s = sub.add_parser("eval", help="accuracy and sizes of checkpoints")
    s.add_argument("checkpoints", nargs="+")
    s.add_argument("--split", default="test", choices=["train", "val", "test"])
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("bench", help="inference time of checkpoints side by side (the first is the baseline)")
    s.add_argument("checkpoints", nargs="+")
    s.add_argument("--batch", type=int, default=16, help="sequences per call (default 16)")
    s.add_argument("--repeats", type=int, default=5)
    s.add_argument("--modes", nargs="+", default=["conv", "scan", "step"], choices=["conv", "scan", "step"])
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("experiment", help="one of the seed papers' experiments at CPU scale (results in docs/)")
    s.add_argument("name", help="bt-init | compression | ptd-robustness")
    s.add_argument("--out", default="docs/experiments", help="folder for results (default docs/experiments)")
    s.add_argument("--quick", action="store_true", help="a small run to check the pipeline")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_experiment)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as e:  # bad arguments reach the user as one line, not a traceback
        print(f"dssm {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
