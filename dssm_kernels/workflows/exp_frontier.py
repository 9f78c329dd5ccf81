"""Experiment "frontier" (issue 13): test accuracy against the SSM states kept, for every way the library
has of getting a small model, on digits and on UCR sets, per layer kind.

Per task, layer kind and seed (every training: fit(), AdamW, cosine schedule, the same settings):
  full        the full model trained for `epochs`;
  after       the full model reduced to each kept fraction of its states by reduce_model(fraction=f,
              method=`method`, allocate=`allocate`) (the library's best guaranteed method and
              allocation), no retraining;
  last        the peer baseline, LAST (Gwak et al.): modal truncation with its normalised H-inf scores
              and one global threshold (allocate="last"), same fractions, no retraining;
  penalty     trained with the Hankel penalty (hsv_reg * sum of Hankel singular values) for `epochs`,
              then reduced like "after" (the point at f = 1 is the penalised model itself);
  during      reduced while training (CompreSSM): compress_during_training(tol) for each tol, for
              `epochs` (the final model, no retraining after);
  scratch     a model of the size "during" reached (the nearest uniform even d_state) trained from its
              initialisation for `epochs`;
  carry       on the first task only: "during" again with each other way of carrying AdamW's state across
              a reduction (carry_compare: reset, slice; compress.CompressDuringTraining);
  btinit      seed 000: the full model BT-reduced to each fraction in `retrain_fractions`, then retrained
              for `retrain_epochs` (its time counts the full training too).
"States" are the real SSM states of the whole network (layer_states summed: H d_state per SISO layer,
d_state per MIMO one). Each arm's training time is recorded (one thread; the machine's other load
varies, so compare times within a row only).
"""
from __future__ import annotations

import copy
import time
import warnings

import numpy as np

from dssm_kernels import reduction as R
from dssm_kernels import tasks
from dssm_kernels.workflows import _exp_common as E
from dssm_kernels.workflows import compress, reporting
from dssm_kernels.workflows.training import accuracy, fit

NAME = "frontier"
TITLE = "The compression frontier: accuracy against SSM states kept, by how the small model is made"
CLAIM = ("Issue 13: Hankel-singular-value regularisation (Schwerdtner et al., NeurIPS 2025) and reduction during "
         "training (CompreSSM, ICLR 2026) give much smaller models for the same accuracy than reducing after "
         "training; targets: 80% of the states removed for at most 1 point without retraining (best of "
         "penalty-then-reduce and reduce-during-training), 90% for reduction during training, and for S5 / LRU "
         "a training run at least 1.3x faster than the full model's.")
ARMS = ("full", "after", "last", "penalty", "during", "scratch", "btinit")
ARM_NAMES = {"full": "full training", "after": "reduce after training", "last": "LAST pruning",
             "penalty": "Hankel penalty, then reduce", "during": "reduce during training",
             "scratch": "from scratch at the reduced size", "btinit": "BT-init retraining (seed 000)"}

# Sized to about half an hour of one core of a shared 2-core CPU: models of d_model 32, trained for a few
# hundred steps (well short of what these tasks reward: the full models are far from their best accuracy).
DEFAULT = dict(
    tasks=[dict(name="digits", options={"upsample": 1}, sizes={}, epochs=8, batch_size=32),
           dict(name="ucr", options={"dataset": "OSULeaf"}, sizes={}, epochs=12, batch_size=16),
           dict(name="ucr", options={"dataset": "ArrowHead"}, sizes={}, epochs=30, batch_size=8)],
    kinds=["s4d", "dss", "s5", "lru"], d_model=32, d_state=32, kind_d_state={"s5": 64, "lru": 64}, n_layers=2,
    epochs=8, lr=1e-2, batch_size=32, seeds=[0, 1, 2], fractions=[0.5, 0.2, 0.1], method="bt", allocate="bound",
    hsv_reg=1e-4, compress_tols=[0.02, 0.1], compress_until=0.1, compress_every=None, compress_carry="transform",
    carry_compare=["reset", "slice"], channel_sizes=False, retrain_fractions=[0.1], retrain_epochs=3)
QUICK = dict(DEFAULT, tasks=[dict(name="digits", options={"upsample": 1}, sizes={"n_train": 100, "n_val": 20,
                                                                                   "n_test": 40}),
                             dict(name="ucr", options={"dataset": "UnitTest"}, sizes={})],
             kinds=["s4d", "s5"], d_model=4, d_state=8, kind_d_state={}, epochs=2, seeds=[0], fractions=[0.5],
             compress_tols=[0.3],
             compress_until=1.0, retrain_epochs=1)


def _task_label(tc: dict) -> str:
    return tc["options"].get("dataset", tc["name"])


def total_states(model) -> int:
    """The real SSM states of the whole network."""
    from dssm_kernels.reduction.model import layer_states, ssm_layers
    return sum(layer_states(m) for _, _, _, m in ssm_layers(model))


def _n_systems(model) -> int:
    from dssm_kernels.nn import LRU, S5
    from dssm_kernels.reduction.model import ssm_layers
    return sum(1 if isinstance(m, (S5, LRU)) else m.d_model for _, _, _, m in ssm_layers(model))


def _reduce(model, fraction: float, method: str, allocate: str, cache: dict | None = None):
    """reduce_model at `fraction` of the states, raised where needed to one mode per system (the least a
    budget may keep; the rows record the states actually kept). cache: reduce_model's, shared by the calls
    on one model (its systems, Gramians and balancings computed once)."""
    fraction = min(1.0, max(fraction, 2 * _n_systems(model) / total_states(model)))
    with warnings.catch_warnings():      # unstable modes: the finite horizon reduce_model warns of
        warnings.simplefilter("ignore", RuntimeWarning)
        return R.reduce_model(model, fraction=fraction, method=method, allocate=allocate, measure=False,
                              cache=cache)[0]


def _scratch_d_state(kind: str, states: int, cfg: dict) -> int:
    """The uniform even d_state whose network holds about `states` real states (>= 2)."""
    per_layer = states / cfg["n_layers"]
    if kind not in ("s5", "lru"):
        per_layer /= cfg["d_model"]
    return max(2, 2 * int(round(per_layer / 2)))


def _point(arm, model, t, seconds, **extra) -> dict:
    return dict(arm=arm, states=total_states(model), test_acc=accuracy(model, t.test), seconds=seconds, **extra)


def run(cfg: dict, progress: bool = True, log=print) -> dict:
    from dssm_kernels.nn import LAYERS
    kinds = [k for k in cfg["kinds"] if k in LAYERS]
    rows, descr = [], {}
    jobs = [(tc, kind, s) for tc in cfg["tasks"] for kind in kinds for s in cfg["seeds"]]
    loaded = {}
    for tc, kind, seed in reporting.progress_bar(jobs, progress, desc=NAME, unit="run"):
        label = _task_label(tc)
        if label not in loaded:
            loaded[label] = tasks.load(tc["name"], seed=0, **tc["sizes"], **tc["options"])
            descr[label] = loaded[label].describe()
        t = loaded[label]
        epochs, batch_size = tc.get("epochs", cfg["epochs"]), tc.get("batch_size", cfg["batch_size"])
        steps = epochs * -(-len(t.train[1]) // batch_size)

        def model(d_state=cfg["kind_d_state"].get(kind, cfg["d_state"])):
            return E.make_model(t, layer=kind, d_model=cfg["d_model"], d_state=d_state, n_layers=cfg["n_layers"],
                                seed=seed)

        def train(m, epochs=epochs, **hooks):
            start = time.perf_counter()
            hist = fit(m, t, epochs=epochs, lr=cfg["lr"], batch_size=batch_size, seed=seed, **hooks)
            return hist.model, time.perf_counter() - start

        key = dict(task=label, kind=kind, seed=seed)
        full, sec_full = train(model())
        rows.append(dict(key, **_point("full", full, t, sec_full)))
        cache = {}
        for f in cfg["fractions"]:
            rows.append(dict(key, **_point("after", _reduce(full, f, cfg["method"], cfg["allocate"], cache), t,
                                           sec_full, fraction=f)))
            rows.append(dict(key, **_point("last", _reduce(full, f, "modal", "last", cache), t, sec_full, fraction=f)))
        pen, sec_pen = train(model(), loss_hook=compress.hsv_penalty_hook(cfg["hsv_reg"]))
        rows.append(dict(key, **_point("penalty", pen, t, sec_pen, fraction=1.0)))
        cache_pen = {}
        for f in cfg["fractions"]:
            rows.append(dict(key, **_point("penalty", _reduce(pen, f, cfg["method"], cfg["allocate"], cache_pen), t,
                                           sec_pen, fraction=f)))
        for tol in cfg["compress_tols"]:
            hook = compress.compress_during_training(tol, steps, every=cfg["compress_every"],
                                                     until=cfg["compress_until"], carry=cfg["compress_carry"],
                                                     channel_sizes=cfg["channel_sizes"])
            small, sec = train(model(), model_hook=hook)
            rows.append(dict(key, **_point("during", small, t, sec, tol=tol, carry=cfg["compress_carry"],
                                           log=[[e["step"], e["states"]] for e in hook.log])))
            if tc is cfg["tasks"][0] and tol == cfg["compress_tols"][0]:
                for carry in cfg["carry_compare"]:      # the optimizer state across reductions, side by side
                    hook = compress.compress_during_training(tol, steps, every=cfg["compress_every"],
                                                             until=cfg["compress_until"], carry=carry,
                                                             channel_sizes=cfg["channel_sizes"])
                    other, sec_c = train(model(), model_hook=hook)
                    rows.append(dict(key, **_point("carry", other, t, sec_c, tol=tol, carry=carry)))
            d = _scratch_d_state(kind, rows[-1]["states"], cfg)
            scratch, sec_s = train(model(d))
            rows.append(dict(key, **_point("scratch", scratch, t, sec_s, tol=tol, d_state=d)))
        for f in cfg["retrain_fractions"]:
            small = copy.deepcopy(_reduce(full, f, "bt", cfg["allocate"], cache))
            small, sec = train(small, epochs=cfg["retrain_epochs"])
            rows.append(dict(key, **_point("btinit", small, t, sec_full + sec, fraction=f)))
        done = [r for r in rows if r["task"] == label and r["kind"] == kind and r["seed"] == seed]
        log(f"{label} {kind} seed {seed}: " + "; ".join(f"{r['arm']} {r['states']}:{r['test_acc']:.3f}" for r in done))
    return {"config": cfg, "tasks": descr, "rows": rows}


# ------------------------------------------------------------------------------------- summaries
def _groups(res: dict):
    """{(task, kind): rows} in the configured order."""
    out = {}
    for r in res["rows"]:
        out.setdefault((r["task"], r["kind"]), []).append(r)
    return out


def _setting(r: dict):
    return (r["arm"], r.get("fraction"), r.get("tol"))


def summary(rows: list[dict]) -> list[dict]:
    """One entry per arm and setting: mean states, accuracy mean and std over seeds, mean seconds."""
    by = {}
    for r in rows:
        by.setdefault(_setting(r), []).append(r)
    out = []
    for (arm, frac, tol), rs in by.items():
        m, s = E.mean_std([r["test_acc"] for r in rs])
        out.append(dict(arm=arm, fraction=frac, tol=tol, states=float(np.mean([r["states"] for r in rs])),
                        acc=m, acc_std=s, seconds=float(np.mean([r["seconds"] for r in rs])), n=len(rs)))
    return out


def _setting_label(e: dict) -> str:
    if e["arm"] == "full":
        return ARM_NAMES["full"]
    if e["arm"] in ("during", "scratch"):
        return f"{ARM_NAMES[e['arm']]} (tol {e['tol']:g})"
    return f"{ARM_NAMES[e['arm']]} ({100 * e['fraction']:g}% kept)"


def carry_table(res: dict) -> str:
    """Reduction during training with each way of carrying the optimizer state (first task)."""
    body = []
    for (task, kind), rows in _groups(res).items():
        during = [r for r in rows if r["arm"] in ("during", "carry") and r["tol"] == res["config"]["compress_tols"][0]]
        if not any(r["arm"] == "carry" for r in during):
            continue
        for carry in [res["config"]["compress_carry"]] + list(res["config"]["carry_compare"]):
            rs = [r for r in during if r.get("carry") == carry]
            m, sd = E.mean_std([r["test_acc"] for r in rs])
            body.append([task, kind, carry, f"{np.mean([r['states'] for r in rs]):.0f}",
                         f"{100 * m:.1f}" + ("" if np.isnan(sd) else f" ± {100 * sd:.1f}")])
    if not body:
        return ""
    return "### The optimizer state across reductions\n\n" + reporting.md_table(
        ["task", "layer", "carry", "SSM states", "test acc (%)"], body)


def tables(res: dict) -> str:
    parts = []
    for (task, kind), rows in _groups(res).items():
        rows = [r for r in rows if r["arm"] != "carry"]
        s = summary(rows)
        full = next(e for e in s if e["arm"] == "full")
        body = [[_setting_label(e), f"{e['states']:.0f}", f"{100 * (1 - e['states'] / full['states']):.0f}%",
                 f"{100 * e['acc']:.1f}" + ("" if np.isnan(e["acc_std"]) else f" ± {100 * e['acc_std']:.1f}"),
                 f"{100 * (e['acc'] - full['acc']):+.1f}", f"{e['seconds']:.1f}"]
                for e in sorted(s, key=lambda e: (ARMS.index(e["arm"]), -e["states"]))]
        parts.append(f"### {task}, {kind}\n\n" + reporting.md_table(
            ["model", "SSM states", "removed", "test acc (%)", "vs full (pts)", "train s"], body))
    carry = carry_table(res)
    return "\n\n".join(parts + ([carry] if carry else []))


def targets(res: dict) -> list[dict]:
    """Per (task, kind): the most states removed within 1 point of the full model's accuracy (no retraining)
    by penalty-then-reduce and by reduce-during-training, and during's training-time ratio to full."""
    out = []
    for (task, kind), rows in _groups(res).items():
        s = summary([r for r in rows if r["arm"] != "carry"])
        full = next(e for e in s if e["arm"] == "full")

        def best(arms):
            ok = [e for e in s if e["arm"] in arms and e["acc"] >= full["acc"] - 0.01]
            return max((1 - e["states"] / full["states"] for e in ok), default=0.0)

        during = [e for e in s if e["arm"] == "during"]
        out.append(dict(task=task, kind=kind, full_acc=full["acc"], best_penalty=best(("penalty",)),
                        best_during=best(("during",)), best_after=best(("after",)), best_last=best(("last",)),
                        speedup=(full["seconds"] / min(e["seconds"] for e in during)) if during else None,
                        during_removed=max((1 - e["states"] / full["states"] for e in during), default=None),
                        during_drop=min((full["acc"] - e["acc"] for e in during), default=None)))
    return out


def reading(res: dict) -> str:
    lines = []
    tg = targets(res)
    for e in tg:
        best = max(e["best_penalty"], e["best_during"])
        lines.append(
            f"- {e['task']}, {e['kind']} (full {100 * e['full_acc']:.1f}%): within 1 point and without retraining, "
            f"penalty-then-reduce removes {100 * e['best_penalty']:.0f}% of the states, reduce-during-training "
            f"{100 * e['best_during']:.0f}%, reduce-after {100 * e['best_after']:.0f}%, LAST {100 * e['best_last']:.0f}% "
            f"-> 80% target {'met' if best >= 0.8 else 'missed'}"
            + (f"; reduction during training ended at {100 * e['during_removed']:.0f}% removed, "
               f"{-100 * e['during_drop']:+.1f} points against full (90% target "
               f"{'met' if e['during_removed'] >= 0.9 and e['during_drop'] <= 0.01 else 'missed'}), and the full "
               f"run took {e['speedup']:.2f}x its time" if e["speedup"] is not None else "") + ".")
    mimo = [e for e in tg if e["kind"] in ("s5", "lru") and e["speedup"] is not None]
    if mimo:
        ratio = lambda e: f"{e['task']} {e['kind']} {e['speedup']:.2f}x"  # noqa: E731
        lines.append(f"- Training-time ratio full / during for S5 and LRU: {', '.join(map(ratio, mimo))} (target "
                     ">= 1.3x); all kinds: " + ", ".join(ratio(e) for e in tg if e["speedup"] is not None) + ".")
    lines += _carry_reading(res)
    if res.get("quick"):
        lines.append("- Quick run: toy sizes, one seed; these numbers check the pipeline and mean nothing.")
    return "\n".join(lines)


def _carry_reading(res: dict) -> list[str]:
    cfg = res["config"]
    runs = [r for r in res["rows"] if r["arm"] in ("during", "carry") and r.get("tol") == cfg["compress_tols"][0]
            and r["task"] == _task_label(cfg["tasks"][0])]
    if not any(r["arm"] == "carry" for r in runs):
        return []
    base = cfg["compress_carry"]
    keyed = {(r["kind"], r["seed"], r["carry"]): r["test_acc"] for r in runs}
    pairs = sorted({(k, sd) for k, sd, _ in keyed})
    out = []
    for carry in cfg["carry_compare"]:
        common = [p for p in pairs if (*p, carry) in keyed and (*p, base) in keyed]
        cmp = E.paired([keyed[(*p, base)] for p in common], [keyed[(*p, carry)] for p in common])
        verdict = {"a": f"{base} better in every pair", "b": f"{carry} better in every pair", "mixed": "mixed"}
        out.append(f"- Optimizer state across reductions ({_task_label(cfg['tasks'][0])}, every kind and seed paired): "
                   f"{base} - {carry} = {100 * cmp['mean']:+.1f} points on average, {cmp['n_pos']} of {cmp['n']} "
                   f"pairs in favour of {base} ({verdict[cmp['verdict']]}).")
    return out


def plot(res: dict, path: str) -> None:
    """Accuracy against states kept (log scale), one panel per task and kind, one series per arm."""
    plt = reporting.pyplot()
    from matplotlib.ticker import NullFormatter
    groups = _groups(res)
    task_names = list(dict.fromkeys(t for t, _ in groups))
    kinds = list(dict.fromkeys(k for _, k in groups))
    fig, axes = plt.subplots(len(task_names), len(kinds), figsize=(3.2 * len(kinds), 2.8 * len(task_names)),
                             squeeze=False)
    styles = {"full": "k*", "after": "o-", "last": "v-", "penalty": "s-", "during": "D", "scratch": "x",
              "btinit": "P"}
    for (task, kind), rows in groups.items():
        ax = axes[task_names.index(task)][kinds.index(kind)]
        s = summary([r for r in rows if r["arm"] != "carry"])
        for arm in ARMS:
            pts = sorted([e for e in s if e["arm"] == arm], key=lambda e: e["states"])
            if pts:
                ax.plot([e["states"] for e in pts], [100 * e["acc"] for e in pts], styles[arm], label=ARM_NAMES[arm],
                        ms=5)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())     # the minor ticks' labels overlap on a short decade
        ax.set_title(f"{task}, {kind}", fontsize=8)
        ax.set_xlabel("SSM states kept", fontsize=7)
        ax.set_ylabel("test accuracy (%)", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
