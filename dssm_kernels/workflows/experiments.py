"""The seed papers' experiments at CPU scale, one command each:

    dssm experiment bt-init          BT-initialised retraining against Skew-HiPPO init (seed 000)
    dssm experiment compression      accuracy without retraining against SSM parameters removed (seed 002)
    dssm experiment ptd-robustness   PTD against LegS-style init under Fourier-mode noise (seed 003)
    dssm experiment penalty-cost     what the Hankel penalty (--hsv-reg) adds to a training step (issue 13)
    dssm experiment frontier         accuracy against SSM states kept: reduce after, LAST, penalty, during
                                     training, from scratch, BT-init (issue 13)

Each writes OUT/NAME.json (configuration, every measured number, machine, wall time), OUT/NAME.md (the
command, the machine, the tables and a reading generated from the numbers, saying where a claim does
not reproduce) and OUT/NAME.png. The default run of each takes at most about 15 minutes on a 2-core CPU,
`quick=True` under a minute (a pipeline check at toy sizes: its numbers mean nothing). Seeds are fixed
and torch runs on one thread, so a rerun gives the same numbers.

    run(name, out="docs/experiments", quick=False, progress=True, log=print) -> 0
    render(name, out="docs/experiments")      # NAME.md and NAME.png again from NAME.json, no training
"""
from __future__ import annotations

import importlib
import json
import os

from dssm_kernels.workflows import _exp_common as E
from dssm_kernels.workflows import preflight, reporting

DEFAULT_OUT = "docs/experiments"
_MODULES = {"bt-init": "exp_bt_init", "compression": "exp_compression", "ptd-robustness": "exp_ptd_robustness",
            "penalty-cost": "exp_penalty_cost", "frontier": "exp_frontier"}


def names() -> tuple[str, ...]:
    """The experiment names run() accepts."""
    return tuple(_MODULES)


def module(name: str):
    """The module implementing experiment `name` (NAME, TITLE, CLAIM, DEFAULT, QUICK, run, tables,
    reading, plot)."""
    if not isinstance(name, str):
        raise TypeError(f"experiments: name must be a str, got {type(name).__name__}")
    if name not in _MODULES:
        raise ValueError(f"experiments: name must be one of {', '.join(map(repr, _MODULES))}, got {name!r}")
    return importlib.import_module(f"dssm_kernels.workflows.{_MODULES[name]}")


def run(name: str, out: str = DEFAULT_OUT, quick: bool = False, *, progress: bool = True, log=print) -> int:
    """Run experiment `name` and write OUT/NAME.{json,md,png}; returns 0 (the CLI's exit code).

    quick: the toy-size configuration (the module's QUICK) instead of DEFAULT.
    progress: tqdm progress bars.   log: where the one-line progress messages go (print; a no-op to silence).
    """
    mod = module(name)
    preflight.writable_dir(out, "experiments.run: out")   # before the run, not after its minutes of training
    if not isinstance(quick, bool):
        raise TypeError(f"experiments.run: quick must be a bool, got {type(quick).__name__}")
    clock = E.Stopwatch()
    with E.fixed_threads():
        res = mod.run(dict(mod.QUICK if quick else mod.DEFAULT), progress=progress, log=log)
        res.update(name=name, quick=quick, command=E.command(name, out, quick, DEFAULT_OUT),
                   machine=reporting.machine(), threads=E.THREADS)
    res["seconds"] = clock()
    paths = reporting.write_outputs(out, name, res, _markdown(mod, res), mod.plot)
    log(mod.tables(res))
    log(mod.reading(res))
    log(f"wrote {', '.join(paths)} ({res['seconds']:.0f} s)")
    return 0


def render(name: str, out: str = DEFAULT_OUT) -> list[str]:
    """Rewrite OUT/NAME.md and OUT/NAME.png from OUT/NAME.json (no training): tables, reading and plot
    come from the recorded numbers, so a change to how they are presented needs no rerun."""
    mod = module(name)
    path = os.path.join(out, f"{name}.json")
    if not os.path.isfile(path):
        raise ValueError(f"experiments.render: no results at {path!r}; run the experiment first")
    with open(path) as f:
        res = json.load(f)
    return reporting.write_outputs(out, name, res, _markdown(mod, res), mod.plot)


def _markdown(mod, res: dict) -> str:
    return "\n".join([E.header(mod.TITLE, mod.CLAIM, res), "## Results\n", mod.tables(res), "\n## Reading\n",
                      mod.reading(res)])
