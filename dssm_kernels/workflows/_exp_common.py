"""What the seed papers' experiments share: a fixed-thread context, seeded model construction and
training, summary statistics, the reproducing command and the header of NAME.md. Tables, plots, progress
bars and writing NAME.json / NAME.md / NAME.png are workflows.reporting's; training is
workflows.training's."""
from __future__ import annotations

import contextlib
import math
import os
import time

import numpy as np
import torch

from dssm_kernels.nn import SequenceClassifier
from dssm_kernels.workflows.training import accuracy, fit

# One thread, for torch and for numpy's BLAS/LAPACK alike: results do not depend on the machine's core
# count, and on a shared 2-core machine a single thread is not stalled at barriers by other people's
# jobs. Measured under load: torch on 2 threads took 1.0-7.8 s for what 1 thread did in 1.8-2.0 s, and
# a BT reduction_model call spent 12 s in multithreaded OpenBLAS SVDs that take 1.4 s on one thread.
THREADS = 1


@contextlib.contextmanager
def fixed_threads(n: int = THREADS):
    """torch's intra-op threads and the BLAS/OpenMP pools numpy and scipy use (threadpoolctl, which
    scikit-learn brings) set to n inside the block, restored after."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn, a requirement, depends on it
        threadpool_limits = None
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n) if threadpool_limits is not None else contextlib.nullcontext():
            yield
    finally:
        torch.set_num_threads(before)


def make_model(task, *, layer: str, d_model: int, d_state, n_layers: int, seed: int, pool: str = "mean",
               layer_kwargs: dict | None = None) -> SequenceClassifier:
    """A classifier sized for `task` (token or real input), built deterministically from `seed`."""
    return SequenceClassifier(task.n_classes, d_input=task.d_input, vocab_size=task.vocab_size, layer=layer,
                              d_model=d_model, d_state=d_state, n_layers=n_layers, pool=pool,
                              layer_kwargs=layer_kwargs, seed=seed)


def train(model, task, *, epochs: int, lr: float, batch_size: int, seed: int, progress: bool = False) -> dict:
    """fit() then the test accuracy: {"test_acc", "val_acc" (per epoch), "seconds"}."""
    hist = fit(model, task, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, progress=progress)
    return {"test_acc": accuracy(model, task.test), "val_acc": hist.val_acc, "seconds": hist.seconds[-1]}


def mean_std(values) -> tuple[float, float]:
    """(mean, sample standard deviation (ddof=1; nan for a single value))."""
    v = np.asarray(list(values), dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def fmt_ms(values, digits: int = 3) -> str:
    """'mean ± std' of values ('mean' alone for one value)."""
    m, s = mean_std(values)
    return f"{m:.{digits}f}" if math.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"


def paired(a, b) -> dict:
    """Paired comparison of a and b (one value each per seed): the differences a - b, their mean and
    std, how many are > 0, and a verdict: "a" (every difference > 0), "b" (every one < 0) or "mixed"."""
    d = np.asarray(list(a), dtype=np.float64) - np.asarray(list(b), dtype=np.float64)
    m, s = mean_std(d)
    verdict = "a" if bool((d > 0).all()) else "b" if bool((d < 0).all()) else "mixed"
    return {"diff": d.tolist(), "mean": m, "std": s, "n_pos": int((d > 0).sum()), "n": len(d), "verdict": verdict}


def command(name: str, out: str, quick: bool, default_out: str) -> str:
    """The `dssm experiment` command line that reproduces a run."""
    cmd = f"dssm experiment {name}"
    if os.path.normpath(out) != os.path.normpath(default_out):
        cmd += f" --out {out}"
    return cmd + (" --quick" if quick else "")


def header(title: str, claim: str, res: dict) -> str:
    """The top of NAME.md: title, the paper's claim, command, machine and wall time."""
    return (f"# {title}\n\n{claim}\n\n"
            f"Command: `{res['command']}`  \n"
            f"Machine: {res['machine']}  \n"
            f"Wall time: {res['seconds']:.0f} s ({'quick' if res['quick'] else 'default'} run)\n"
            + ("\n**Quick run**: toy sizes that check the pipeline; its numbers say nothing about the claim.\n"
               if res["quick"] else ""))


class Stopwatch:
    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


__all__ = ["THREADS", "fixed_threads", "make_model", "train", "mean_std", "fmt_ms", "paired", "command", "header",
           "Stopwatch"]
