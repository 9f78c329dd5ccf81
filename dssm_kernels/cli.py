"""The `dssm` command: the demo, and each of its steps on a user's own checkpoint.

    dssm demo [--out DIR] [--epochs N] ...          train, reduce (bt / modal / h2), retrain, time; one table
    dssm train --task NAME --layer KIND --out CKPT  train a classifier on a built-in task (torchrun: on N processes)
    dssm reduce CKPT (--budget N | --fraction F | --d-state R | --tol T) [--method bt|bsp|modal|msp|h2|tlh2]
               [--allocate bound|last|energy|uniform] [--out CKPT]
    dssm eval CKPT [CKPT ...]                       test accuracy, sizes
    dssm bench CKPT [CKPT ...]                      inference time side by side (conv, scan, step, decode)
    dssm experiment NAME                            the seed papers' experiments at CPU scale
    dssm export CKPT --format onnx --out MODEL.onnx  the forward and the streaming step as ONNX graphs

Checkpoints carry the model config and the task, so reduce / eval / bench need nothing else; loading one
runs no code from the file. Exit status: 0 done, 2 bad input (one line `dssm CMD: error: ...` on
stderr), 1 a system error (disk full ...), 130 interrupted (Ctrl-C), 141 the reader of the output left.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys

from dssm_kernels import tasks
from dssm_kernels.nn import LAYERS
from dssm_kernels.reduction.model import ALLOCATIONS, METHODS
from dssm_kernels.workflows.demo import METHODS as DEMO_METHODS
from dssm_kernels.workflows import experiments
from dssm_kernels.workflows.distributed import DEFAULT_TIMEOUT_S
from dssm_kernels.workflows.timing import MODES

# Bounds of the size flags: a typo (an extra zero or three) is an error at once, not an allocation of
# hundreds of GB after the task is generated.
MAX_WIDTH = 4096          # --d-model, --d-state, --ranks
MAX_LAYERS = 64
MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_REPEATS = 10_000
MAX_HORIZON = 10 ** 15    # --horizon: the Gramians' closed form costs O(log horizon)
MAX_LENGTH = 2 ** 20      # --max-length: an S4 kernel of that length is stored in the exported graph
MAX_SEED = 2 ** 32 - 1
DEFAULT_BATCH = 16        # bench


# ---------------------------------------------------------------- argument types (argparse names the flag)

def _int_type(least: int, most: int, even: bool = False):
    """An argparse type: an int in [least, most] (even, if asked); the error argparse prints names the flag."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not least <= value <= most or (even and value % 2):
            kind = "an even integer" if even else "an integer"
            why = " (states come in conjugate pairs)" if even else ""
            raise argparse.ArgumentTypeError(f"expected {kind} in [{least}, {most}]{why}, got {value}")
        return value
    return parse


def _float_type(accepts, expected: str):
    """An argparse type: a float for which accepts(value) holds, `expected` saying which in the error."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    return parse


_positive_float = _float_type(lambda value: math.isfinite(value) and value > 0, "a finite number > 0")
_nonnegative_float = _float_type(lambda value: math.isfinite(value) and value >= 0, "a finite number >= 0")
_fraction = _float_type(lambda value: 0 < value <= 1, "a number in (0, 1]")


def _task_option(text: str) -> tuple[str, object]:
    """An argparse type: KEY=VALUE, the value read as an int, else a float, else kept as a str."""
    key, eq, raw = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    for conv in (int, float):
        try:
            return key, conv(raw)
        except ValueError:
            pass
    return key, raw


def _task_options(pairs) -> dict:
    out = {}
    for key, value in pairs or []:
        if key == "seed":
            raise ValueError("--task-option seed: give the seed with --seed")
        if key in out:
            raise ValueError(f"--task-option {key} given twice")
        out[key] = value
    return out


# ---------------------------------------------------------------- the commands

def cmd_demo(a) -> int:
    from dssm_kernels.workflows import demo
    kw = dict(task=a.task, layer=a.layer, d_model=a.d_model, d_state=a.d_state, n_layers=a.n_layers, epochs=a.epochs,
              retrain_epochs=a.retrain_epochs, ranks=a.ranks, retrain_ranks=a.retrain_ranks, methods=a.methods,
              lr=a.lr, seed=a.seed, time_repeats=a.time_repeats)
    demo.check_arguments(a.out, **kw, time_batch=16, flags=True)   # errors that name the flags, before training
    demo.run_demo(a.out, **kw, progress=not a.no_progress)
    return 0


def cmd_train(a) -> int:
    import torch

    from dssm_kernels.nn import SequenceClassifier
    from dssm_kernels.workflows import checkpoint, compress, distributed, preflight, training
    preflight.writable_file(a.out, "--out")            # before training: a failing save would lose the model
    if a.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device (a CPU-only torch build, or no driver)")
    try:
        t = tasks.load(a.task, seed=a.seed, **_task_options(a.task_option))
    except (ValueError, TypeError) as e:
        raise type(e)(f"--task {a.task} / --task-option: {e}") from None
    # under torchrun: join the process group (gloo on CPU, nccl on CUDA); a plain run stays one process
    world = distributed.init_from_env(device=a.device, timeout_s=a.dist_timeout)
    try:
        if a.batch_size < world.size:
            raise ValueError(f"--batch-size {a.batch_size} is the global batch, split over the {world.size} "
                             "processes: give at least one sample per process")
        if world.is_main:
            print(t.describe() + (f"; {world.size} processes" if world.size > 1 else ""), flush=True)
        model = SequenceClassifier(t.n_classes, d_input=t.d_input, vocab_size=t.vocab_size, layer=a.layer,
                                   d_model=a.d_model, d_state=a.d_state, n_layers=a.n_layers, seed=a.seed)
        if a.device == "cuda":
            model = model.to(f"cuda:{world.local_rank}")
        loss_hook = compress.hsv_penalty_hook(a.hsv_reg) if a.hsv_reg else None
        model_hook = None
        if a.compress_tol is not None:
            total_steps = a.epochs * -(-len(t.train[1]) // a.batch_size)
            model_hook = compress.compress_during_training(a.compress_tol, total_steps, every=a.compress_every,
                                                           until=a.compress_until, method=a.compress_method,
                                                           carry=a.compress_carry,
                                                           channel_sizes=a.compress_channel_sizes)
        hist = training.fit(model, t, epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, seed=a.seed,
                            progress=not a.no_progress, loss_hook=loss_hook, model_hook=model_hook)
        if world.is_main:                               # one checkpoint and one report, from rank 0
            model = hist.model.cpu()
            checkpoint.save(a.out, model, t, history=hist.records())
            report = {"checkpoint": a.out, "val_acc": hist.val_acc, "test_acc": training.accuracy(model, t.test),
                      "seconds": hist.seconds[-1]}
            if model_hook is not None:       # the state sizes over time: [optimizer step, real SSM states]
                report["states"] = [[e["step"], e["states"]] for e in model_hook.log]
            print(json.dumps(report, indent=1))
    finally:
        distributed.shutdown()
    return 0


def reduced_path(checkpoint: str, method: str, d_state: int | None, tol: float | None, budget: int | None = None,
                 fraction: float | None = None, allocate: str = "bound") -> str:
    """Where `dssm reduce` writes by default: next to the input, its file's stem (never the folders'
    names, nor any suffix: model.pth -> model-bt8.pt) with the method and the size, tolerance or budget
    (m-bt-b256-bound.pt, m-bsp-f0.25-last.pt)."""
    p = pathlib.Path(checkpoint)
    if d_state is not None:
        tag = f"{method}{d_state}"
    elif tol is not None:
        tag = f"{method}-tol{tol:g}"
    elif budget is not None:
        tag = f"{method}-b{budget}-{allocate}"
    else:
        tag = f"{method}-f{fraction:g}-{allocate}"
    return str(p.with_name(f"{p.stem}-{tag}.pt"))


def report_path(out: str) -> str:
    """The JSON report written next to a reduced checkpoint: m-bt8.pt -> m-bt8.report.json."""
    p = pathlib.Path(out)
    return str(p.with_name(f"{p.stem}.report.json"))


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def cmd_reduce(a) -> int:
    from dssm_kernels import reduction as R
    from dssm_kernels.workflows import checkpoint, preflight
    from dssm_kernels.workflows.reporting import jsonable
    from dssm_kernels.workflows.training import accuracy
    if a.tol is not None and a.method not in R.model.BOUNDED:
        raise ValueError(f"--tol needs --method bt or modal (or bsp, msp: their error bounds choose the size), "
                         f"got --method {a.method}")
    if a.allocate is not None and a.budget is None and a.fraction is None:
        raise ValueError(f"--allocate {a.allocate} splits a --budget or --fraction across the layers; give one of them")
    allocate = a.allocate or "bound"
    out = a.out or reduced_path(a.checkpoint, a.method, a.d_state, a.tol, a.budget, a.fraction, allocate)
    report_file = report_path(out)
    for path, what in ((out, "--out"), (report_file, "the report")):
        if _same_file(path, a.checkpoint):
            raise ValueError(f"{what} {path!r} is the input checkpoint: writing it would overwrite the full model; "
                             "give another --out")
    preflight.writable_file(out, "--out")
    preflight.writable_file(report_file, "the report")
    model, t, _ = checkpoint.load(a.checkpoint)
    for block in model.blocks:
        reason = preflight.unreducible_reason(block.layer)
        if reason is not None:
            raise ValueError(f"{a.checkpoint} cannot be reduced: {reason}")
    sizes = [block.layer.d_state for block in model.blocks]
    states = sum(R.model.layer_states(block.layer) for block in model.blocks)
    kinds = {type(block.layer).__name__ for block in model.blocks}
    if a.d_state is not None and a.d_state >= max(sizes) and "S4" not in kinds:
        raise ValueError(f"--d-state {a.d_state} removes nothing: the layers of {a.checkpoint} have d_state "
                         f"{', '.join(map(str, sizes))}; give a smaller one (nothing written)")
    if a.budget is not None and a.budget >= states:
        raise ValueError(f"--budget {a.budget} removes nothing: {a.checkpoint} holds {states} real states; give fewer "
                         "(nothing written)")
    horizon = a.horizon
    if a.method == "tlh2" and horizon is None:
        horizon = int(t.test[0].shape[1])          # time-limited h2 fits the task's sequences
    small, report = R.reduce_model(model, d_state=a.d_state, tol=a.tol, method=a.method, horizon=horizon,
                                   budget=a.budget, fraction=a.fraction, allocate=allocate)
    if not report.layers:
        raise ValueError(f"--tol {a.tol:g} removes nothing: no layer of {a.checkpoint} meets it with fewer states than "
                         f"its present d_state ({', '.join(map(str, sizes))}); give a larger --tol (nothing written)")
    request = {"method": a.method, "d_state": a.d_state, "tol": a.tol, "budget": a.budget, "fraction": a.fraction,
               "allocate": allocate if (a.budget is not None or a.fraction is not None) else None, "horizon": horizon}
    summary = {"checkpoint": out, "parent": a.checkpoint, **request,
               "test_acc_before": accuracy(model, t.test), "test_acc_after": accuracy(small, t.test),
               "ssm_params_before": checkpoint.ssm_parameter_count(model),
               "ssm_params_after": checkpoint.ssm_parameter_count(small),
               "states_before": report.states_before, "states_after": report.states_after,
               "composed_bound": report.composed_bound}
    checkpoint.save(out, small, t, parent=a.checkpoint, reduction={**request, "report": jsonable(report)})
    with open(report_file, "w") as f:
        json.dump({**summary, "report": jsonable(report)}, f, indent=1)
    print(_reduce_summary(summary, report, report_file, len(sizes)))
    return 0


def _reduce_summary(s: dict, report, report_file: str, n_layers: int) -> str:
    """A few lines: what was written, accuracy, states and SSM parameters before -> after, and per reduced layer
    its state size, the modes its systems keep (the allocation), the guaranteed bound and the measured error
    (maxima over the channels), and the composed bound."""
    import numpy as np
    if s["d_state"] is not None:
        asked = f"--d-state {s['d_state']}"
    elif s["tol"] is not None:
        asked = f"--tol {s['tol']:g}"
    else:
        size = f"--budget {s['budget']}" if s["budget"] is not None else f"--fraction {s['fraction']:g}"
        asked = f"{size} --allocate {s['allocate']}"
    comp = "-" if s["composed_bound"] is None else f"{s['composed_bound']:.2e}"
    lines = [f"wrote {s['checkpoint']} ({s['method']}, {asked}: {len(report.layers)} of {n_layers} layers reduced)",
             f"full report: {report_file}",
             f"test accuracy  {s['test_acc_before']:.3f} -> {s['test_acc_after']:.3f}",
             f"SSM params     {s['ssm_params_before']} -> {s['ssm_params_after']}; states {s['states_before']} -> "
             f"{s['states_after']}; composed bound {comp}",
             f"{'layer':<20} {'d_state':>9} {'bound (max)':>12} {'H-inf error (max)':>18} {'kernel rel. error':>18} "
             f"{'modes min/mean/max':>19}"]
    for r in report.layers:
        bound = "-" if r.layer_bound is None else f"{r.layer_bound:.2e}"
        m = np.atleast_1d(r.modes)
        lines.append(f"{r.name:<20} {f'{r.d_state_before} -> {r.d_state_after}':>9} {bound:>12} "
                     f"{np.max(r.hinf_error):>18.2e} {r.kernel_error:>18.2e} {f'{m.min()}/{m.mean():.1f}/{m.max()}':>19}")
    return "\n".join(lines)


def cmd_eval(a) -> int:
    from dssm_kernels.workflows import checkpoint
    from dssm_kernels.workflows.training import accuracy
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
    from dssm_kernels.workflows.timing import supported_modes, time_models
    models, task = {}, {}
    for path in a.checkpoints:
        models[path], task[path], _ = checkpoint.load(path)
    base = a.checkpoints[0]
    for path in a.checkpoints[1:]:
        if (task[path].vocab_size, task[path].d_input) != (task[base].vocab_size, task[base].d_input):
            raise ValueError(f"{path} reads {task[path].describe()}, but {base} reads {task[base].describe()}: "
                             "bench times every checkpoint on one batch of the first one's test set")
    x = task[base].test[0]
    if a.batch is not None and a.batch > len(x):
        raise ValueError(f"--batch {a.batch} is more than the {len(x)} test sequences of {base}")
    x = x[:a.batch or DEFAULT_BATCH]
    supported = {path: supported_modes(m, x) for path, m in models.items()}
    if a.modes is not None:
        modes = list(dict.fromkeys(a.modes))
        for path, ok in supported.items():
            for mode in modes:
                if mode not in ok:
                    kind = models[path].config["layer"]
                    raise ValueError(f"--modes {mode}: {path} ({kind} layers) has no {mode} view")
    else:
        modes = [m for m in MODES if all(m in ok for ok in supported.values())]
        skipped = {m: [p for p, ok in supported.items() if m not in ok] for m in MODES if m not in modes}
        for m, paths in skipped.items():
            print(f"({m} left out: {', '.join(paths)} has no {m} view)")
    times = time_models(models, x, modes=modes, repeats=a.repeats)
    print(f"batch {tuple(x.shape)}; ratios are time({base}) / time(model), measured side by side")
    print("| checkpoint | d_state | " + " | ".join(f"{m} ms | {m} speedup" for m in modes) + " |")
    print("|---|---|" + "---|---|" * len(modes))
    for path, d in times.items():
        ds = models[path].current_config()["d_state"]
        cells = " | ".join(f"{1e3 * d[m]:.1f} | {times[base][m] / d[m]:.2f}" for m in modes)
        print(f"| {path} | {ds} | {cells} |")
    return 0


def cmd_experiment(a) -> int:
    from dssm_kernels.workflows import preflight
    preflight.writable_dir(a.out, "--out")
    return experiments.run(a.name, out=a.out, quick=a.quick, progress=not a.no_progress)


def cmd_export(a) -> int:
    from dssm_kernels.deploy.onnx import export_onnx, onnx_unavailable_reason, step_path
    from dssm_kernels.workflows import checkpoint, preflight
    reason = onnx_unavailable_reason()
    if reason is not None:
        raise ValueError(f"--format onnx: {reason}")
    outs = {"both": [a.out, step_path(a.out)], "forward": [a.out], "step": [a.out]}[a.graph]
    if not a.out.endswith(".onnx"):
        raise ValueError(f"--out must end in .onnx, got {a.out!r}")
    for path in outs:
        if _same_file(path, a.checkpoint):
            raise ValueError(f"--out {path!r} is the input checkpoint: give another --out")
        preflight.writable_file(path, "--out")
    model, _, _ = checkpoint.load(a.checkpoint)
    written = export_onnx(model, a.out, graph=a.graph, max_length=a.max_length)
    for path in written:
        print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------- the parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dssm", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help, description, func):
        s = sub.add_parser(name, help=help, description=description)
        s.set_defaults(func=func)
        return s

    width, count = _int_type(1, MAX_WIDTH), _int_type(1, MAX_EPOCHS)
    state = _int_type(2, MAX_WIDTH, even=True)

    def model_args(s, d_model, d_state, epochs):
        s.add_argument("--task", default="digits", choices=tasks.names(), help="built-in task (default %(default)s)")
        s.add_argument("--layer", default="dss", choices=tuple(LAYERS), help="SSM layer kind (default %(default)s)")
        s.add_argument("--d-model", type=width, default=d_model, help="channels (default %(default)s)")
        s.add_argument("--d-state", type=state, default=d_state,
                       help="real state size per layer, even (default %(default)s)")
        s.add_argument("--n-layers", type=_int_type(1, MAX_LAYERS), default=2,
                       help="residual blocks (default %(default)s)")
        s.add_argument("--epochs", type=count, default=epochs, help="training epochs (default %(default)s)")
        s.add_argument("--lr", type=_positive_float, default=1e-2,
                       help="learning rate (default %(default)s; SSM parameters keep 1e-3)")
        s.add_argument("--seed", type=_int_type(0, MAX_SEED), default=0,
                       help="seed of the task, the model and training (default %(default)s)")
        s.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")

    s = command("demo", "train, reduce, retrain and time a DSS model (about a minute on 2 cores)",
                "Train a small model on a built-in task, reduce it with each method to each --ranks size, evaluate "
                "without retraining, retrain the BT-initialised model against a Skew-HiPPO-initialised one of the same "
                "size, and time full against reduced inference. Writes results.json, results.md, results.png and "
                "checkpoints to --out. Every argument is checked before training starts.", cmd_demo)
    model_args(s, 32, 64, 8)
    s.add_argument("--out", default="dssm-demo", help="output folder (default ./%(default)s)")
    s.add_argument("--retrain-epochs", type=count, default=4, help="epochs of each retraining (default %(default)s)")
    s.add_argument("--time-repeats", type=_int_type(1, MAX_REPEATS), default=5,
                   help="timing rounds per model and mode (default %(default)s)")
    s.add_argument("--ranks", type=state, nargs="+", default=[16, 8, 4],
                   help="reduced d_state values, each even and below --d-state (default 16 8 4)")
    s.add_argument("--retrain-ranks", type=state, nargs="+", default=[8, 4],
                   help="reduced d_state values retrained (default 8 4)")
    s.add_argument("--methods", nargs="+", default=list(DEMO_METHODS), choices=DEMO_METHODS,
                   help=f"reduction methods (default {' '.join(DEMO_METHODS)})")

    s = command("train", "train a classifier on a built-in task and save a checkpoint",
                "Train a sequence classifier on a built-in task and write a checkpoint holding its config, weights "
                "and task. --out is checked before training. Prints the task, then a JSON line of accuracies. "
                "Data-parallel on N processes: torchrun --nproc-per-node N -m dssm_kernels train ... (each process "
                "reads its share of every batch; rank 0 validates, prints and writes the checkpoint).",
                cmd_train)
    model_args(s, 64, 64, 8)
    s.add_argument("--task-option", action="append", type=_task_option, metavar="KEY=VALUE",
                   help="a task option, repeatable, e.g. seq_len=128 or n_train=500 (default: the task's defaults)")
    s.add_argument("--batch-size", type=_int_type(1, MAX_BATCH), default=64,
                   help="sequences per optimizer step, over all processes together (default %(default)s)")
    s.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where to train; under torchrun each process takes cuda:LOCAL_RANK (default %(default)s)")
    s.add_argument("--dist-timeout", type=_positive_float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help="under torchrun: how long a process waits for the others before the run fails "
                        "(default %(default)s)")
    s.add_argument("--out", required=True, help="checkpoint path to write (required)")
    s.add_argument("--hsv-reg", type=_nonnegative_float, default=0.0, metavar="LAMBDA",
                   help="add LAMBDA times the sum of every SSM system's Hankel singular values to the loss, so that "
                        "the trained model loses little to balanced truncation (default 0: off)")
    s.add_argument("--compress-tol", type=_fraction, default=None, metavar="TAU",
                   help="reduce while training: every --compress-every steps of the first --compress-until of "
                        "training, cut each SSM system to the fewest modes whose discarded Hankel energy (sum of the "
                        "dropped Hankel singular values over their total) is at most TAU, and train on with the "
                        "smaller model (default: off)")
    s.add_argument("--compress-every", type=_int_type(1, MAX_EPOCHS * MAX_BATCH), default=None, metavar="K",
                   help="optimizer steps between two reductions (default: a fiftieth of the run's steps)")
    s.add_argument("--compress-until", type=_fraction, default=0.1, metavar="FRACTION",
                   help="the fraction of the run's optimizer steps during which reductions happen (default "
                        "%(default)s)")
    s.add_argument("--compress-method", default="bt", choices=("bt", "bsp"),
                   help="reduction method during training (default %(default)s)")
    s.add_argument("--compress-carry", default="transform", choices=("transform", "reset", "slice"),
                   help="AdamW's moments across a reduction: keep those of unchanged coordinates and restart the "
                        "reduced modes' (transform), restart all (reset), or give each new mode its nearest old "
                        "mode's (slice, CompreSSM) (default %(default)s)")
    s.add_argument("--compress-channel-sizes", action="store_true",
                   help="let each channel of an S4D / DSS layer keep its own number of modes (fewest states; the "
                        "layer then runs group by group) instead of the layer's largest count on every channel "
                        "(default: off)")

    s = command("reduce", "reduce every SSM layer of a checkpoint to a smaller state",
                "Reduce every SSM layer of a checkpoint (S4D, DSS, S4, S5, LRU) with balanced truncation (bt), balanced "
                "singular perturbation (bsp), modal truncation (modal), modal singular perturbation (msp), h2 or "
                "time-limited h2 (tlh2), to a size per layer (--d-state, --tol) or to a state budget for the whole "
                "network (--budget, --fraction) split by an allocation rule; write the reduced checkpoint, plus the "
                "full reduction report as JSON next to it (OUT's stem + .report.json). Prints a short summary: "
                "accuracy, states and SSM parameters before and after, and per layer the allocation, the error bound "
                "and the measured error. A reduction that removes nothing is an error.", cmd_reduce)
    s.add_argument("checkpoint", help="checkpoint to reduce (from dssm train)")
    size = s.add_mutually_exclusive_group(required=True)
    size.add_argument("--budget", type=_int_type(2, 2 ** 40), default=None,
                      help="total real states of all SSM layers after reduction (S4D / DSS / S4: summed over the "
                           "channels), split by --allocate (no default: this, --fraction, --d-state or --tol)")
    size.add_argument("--fraction", type=_fraction, default=None,
                      help="instead: the fraction in (0, 1] of the model's present states to keep, split by --allocate "
                           "(no default)")
    size.add_argument("--d-state", type=state, default=None,
                      help="instead: real state size per layer after reduction, even (per channel for S4D / DSS / S4; "
                           "no default)")
    size.add_argument("--tol", type=_positive_float, default=None,
                      help="instead of --d-state: per layer the smallest size whose guaranteed H-inf error bound is at "
                           "most tol, absolute (bt, bsp, modal and msp only; no default)")
    s.add_argument("--method", default="bt", choices=METHODS, help="reduction method (default %(default)s)")
    s.add_argument("--allocate", default=None, choices=ALLOCATIONS,
                   help="how --budget / --fraction is split across layers and channels: bound (minimise the composed "
                        "output-error bound), last (LAST's normalised H-inf scores, one global threshold), energy "
                        "(one global Hankel-energy threshold), uniform (default: bound)")
    s.add_argument("--horizon", type=_int_type(1, MAX_HORIZON), default=None,
                   help="reduce for the first HORIZON steps (time-limited); default: infinite horizon (tlh2: the "
                        "task's sequence length)")
    s.add_argument("--out", default=None,
                   help="checkpoint to write, not the input (default: next to the input, STEM-METHOD<d_state>.pt, "
                        "STEM-METHOD-tol<tol>.pt, STEM-METHOD-b<budget>-<allocate>.pt or STEM-METHOD-f<fraction>-"
                        "<allocate>.pt)")

    s = command("eval", "accuracy and sizes of checkpoints",
                "Accuracy on one split and parameter counts of each checkpoint, as JSON.", cmd_eval)
    s.add_argument("checkpoints", nargs="+", help="checkpoints to evaluate")
    s.add_argument("--split", default="test", choices=["train", "val", "test"], help="split (default %(default)s)")

    s = command("bench", "inference time of checkpoints side by side (the first is the baseline)",
                "Inference time of each checkpoint in each mode, the models interleaved in one run so that machine "
                "noise hits all alike, on one batch of the first checkpoint's test set; speedups are relative to the "
                "first checkpoint.", cmd_bench)
    s.add_argument("checkpoints", nargs="+", help="checkpoints to time; the first is the baseline")
    s.add_argument("--batch", type=_int_type(1, MAX_BATCH), default=None,
                   help=f"sequences per call (default {DEFAULT_BATCH}, or the whole test set if smaller)")
    s.add_argument("--repeats", type=_int_type(1, MAX_REPEATS), default=5,
                   help="timing rounds; the median is reported (default %(default)s)")
    s.add_argument("--modes", nargs="+", default=None, choices=MODES,
                   help="views to time: conv (convolution), scan (recurrence over the sequence), step (token by "
                        "token, the model's step in eager torch), decode (token by token, deploy's StreamingDecoder) "
                        "(default: each one that every checkpoint's layers have)")

    s = command("experiment", "one of the seed papers' experiments at CPU scale (results in docs/)",
                "Run one of the seed papers' experiments at CPU scale and write NAME.json, NAME.md and NAME.png to "
                "--out (at most about 15 minutes on 2 cores; --quick: under a minute, a pipeline check whose numbers "
                "mean nothing).", cmd_experiment)
    s.add_argument("name", choices=experiments.names(), help="the experiment")
    s.add_argument("--out", default=experiments.DEFAULT_OUT, help="folder for results (default %(default)s)")
    s.add_argument("--quick", action="store_true", help="a small run to check the pipeline (default: off)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")

    s = command("export", "export a checkpoint for deployment (ONNX: the forward and the streaming step)",
                "Export a checkpoint's model, full or reduced, as ONNX graphs in real arithmetic (complex states as "
                "real and imaginary parts): the whole-sequence forward to --out and the streaming step (the token's "
                "features and the state in, the output and the new state out) to --out's stem + .step.onnx. The "
                "graphs' metadata names their inputs, outputs and state shapes. Needs the packages onnx and "
                "onnxscript; onnxruntime runs the result.", cmd_export)
    s.add_argument("checkpoint", help="checkpoint to export (from dssm train or dssm reduce)")
    s.add_argument("--format", required=True, choices=["onnx"], help="export format (required; onnx)")
    s.add_argument("--out", required=True, help="the forward graph's path, ending in .onnx (required)")
    s.add_argument("--graph", default="both", choices=["both", "forward", "step"],
                   help="which graphs: both (--out and its .step.onnx), or one of them to --out (default %(default)s)")
    s.add_argument("--max-length", type=_int_type(1, MAX_LENGTH), default=4096,
                   help="the longest input of the forward graph of S4 layers, whose kernel is stored "
                        "(default %(default)s; other layers take any length)")
    return p


def _rank_tag() -> str:
    """' (rank R of W)' in a process torchrun started for a run of W > 1 processes, else '': each rank
    reports its own errors, and the reader must know whose."""
    rank, size = os.environ.get("RANK", ""), os.environ.get("WORLD_SIZE", "")
    return f" (rank {rank} of {size})" if rank.isdigit() and size.isdigit() and int(size) > 1 else ""


def _one_line(e: BaseException) -> str:
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__


def main(argv=None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status (see the module docstring)
    and never raises for bad input: argparse's usage errors, and the ValueError / TypeError every check
    raises, end as one line on stderr."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:      # --help (0) or a usage error (2): argparse has printed it
        return e.code if isinstance(e.code, int) else 2
    where = f"dssm {args.command}{_rank_tag()}"
    try:
        status = args.func(args)
        sys.stdout.flush()       # a closed pipe shows here, not in the interpreter's exit
        return status
    except BrokenPipeError:
        # the reader of our output left (`dssm reduce ... | head`): stop quietly, as a process killed by SIGPIPE
        # does; stdout goes to /dev/null so that the interpreter's last flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError) as e:
        print(f"{where}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{where}: error: {_one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
