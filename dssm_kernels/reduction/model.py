"""reduce_model: every SSM layer of a model reduced to a smaller state, with a report.

A layer takes part through the layer protocol (layers.py): S4D / DSS give H SISO channels, S4 H dense
channels, S5 / LRU one MIMO system; each is reduced on its *discrete* system (what the layer computes),
so bounds and errors are those of the layer's kernel. The size asked for is one of

    d_state   every layer's new real state size (per channel for S4D / DSS / S4);
    tol       per layer the fewest modes whose guaranteed bound meets tol on every system of the layer;
    budget    a total number of real states for the whole network, or
    fraction  of the network's present total, split across layers and, for S4D / DSS / S4, across
              channels by an allocation rule (budget.py: bound | last | energy | uniform).

A system keeping k complex modes is reduced to real order 2k with its modal form fitted into k modes (a
real pole takes a whole mode). With d_state every channel of a layer is padded to the same k (inert
modes: B = 1, C = 0); with a budget each channel keeps its own count (channel_modes: stored flat, so the
smaller total is what the layer computes). Reduced S4 layers are S4D layers (bilinear).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from dssm_kernels._validate import check_int, check_number
from dssm_kernels.nn._base import SSMLayer
from dssm_kernels.reduction import budget as budgets
from dssm_kernels.reduction import composition
from dssm_kernels.reduction._common import check_max_iter, check_tol, single_threaded
from dssm_kernels.reduction.bt import BSP, BT
from dssm_kernels.reduction.dense import DenseSystem
from dssm_kernels.reduction.gramians import check_horizon, resolve_horizon
from dssm_kernels.reduction.h2 import H2, stabilized
from dssm_kernels.reduction.layers import (feedthrough_shift, from_layer, modal_feedthrough_shift, reducible,
                                           to_layer)
from dssm_kernels.reduction.modal import MSP, MT, dominance
from dssm_kernels.reduction.norms import h2_norm, hinf_norm
from dssm_kernels.reduction.reductor import SystemContext, run
from dssm_kernels.reduction.system import MimoSystem

METHODS = ("bt", "bsp", "modal", "msp", "h2", "tlh2")
BOUNDED = ("bt", "bsp", "modal", "msp")
ALLOCATIONS = budgets.ALLOCATIONS
DEFAULT_MEASURE_STEPS = 1024      # kernel length errors are measured over without horizon or l_max
_METHOD_CLASSES = {"bt": BT, "bsp": BSP, "modal": MT, "msp": MSP}


@dataclass
class LayerReport:
    """One reduced layer. Arrays are per system: (H,) channels for S4D / DSS / S4, () for S5 / LRU.

    modes: the complex modes each system keeps (its allocation).  rank: the real order kept.  hsv: the
    full systems' Hankel singular values.  error_bound: guaranteed ||G - G_r||_inf per system (None for
    h2, or over a finite horizon).  feedthrough_shift: what a MIMO layer's diagonal D could not hold
    (layers.py), included in layer_bound = max of error_bound + shift (the layer's guaranteed H-inf
    error).  hinf_error, hinf_full: measured ||G - G_r||_inf and ||G||_inf (inf where unstable).
    kernel_error: ||K - K_r|| / ||K|| over `measured_steps` (all systems; per system in
    kernel_error_channels).  weight: the layer's weight in the composed bound (composition.py).
    """
    name: str
    layer: str
    method: str
    d_state_before: int
    d_state_after: int
    rank: np.ndarray
    hsv: np.ndarray
    error_bound: np.ndarray | None
    hinf_error: np.ndarray
    hinf_full: np.ndarray
    kernel_error: float
    kernel_error_channels: np.ndarray
    measured_steps: int
    params_before: int
    params_after: int
    modes: np.ndarray = None
    states_before: int = 0
    states_after: int = 0
    feedthrough_shift: float = 0.0
    layer_bound: float | None = None
    weight: float = 1.0
    extra: dict = field(default_factory=dict)


@dataclass
class ModelReport:
    """layers: the reduced layers' reports. states: real states of every SSM layer (the layers not reduced
    too) before and after; budget: the request (d_state / tol / budget / fraction, allocation rule);
    composed_bound: head * sum_l w_l layer_bound_l (composition.py; None when a layer has no bound)."""
    layers: list
    params_before: int
    params_after: int
    states_before: int = 0
    states_after: int = 0
    request: dict = field(default_factory=dict)
    composed_bound: float | None = None
    head: float = 1.0

    def summary(self) -> str:
        """A plain-text table, one row per layer, then the totals."""
        rows = [f"{'layer':<18}{'kind':<5}{'d_state':>9}{'modes min/mean/max':>20}{'bound':>11}{'Hinf err':>11}"
                f"{'kernel err':>11}{'weight':>9}"]
        for r in self.layers:
            bound = "-" if r.layer_bound is None else f"{r.layer_bound:.3e}"
            m = np.atleast_1d(r.modes)
            rows.append(f"{r.name:<18}{r.layer:<5}{f'{r.d_state_before}->{r.d_state_after}':>9}"
                        f"{f'{m.min()}/{m.mean():.1f}/{m.max()}':>20}{bound:>11}{np.max(r.hinf_error):>11.3e}"
                        f"{r.kernel_error:>11.3e}{r.weight:>9.2g}")
        comp = "-" if self.composed_bound is None else f"{self.composed_bound:.3e}"
        rows.append(f"states {self.states_before} -> {self.states_after}, parameters {self.params_before} -> "
                    f"{self.params_after}, composed bound {comp}")
        return "\n".join(rows)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def layer_states(layer) -> int:
    """Real states a layer stores: H d_state for a SISO-per-channel layer (2 M with per-channel counts),
    d_state for a MIMO one."""
    from dssm_kernels.nn import LRU, S5
    if isinstance(layer, (S5, LRU)):
        return layer.d_state
    layout = getattr(layer, "layout", None)
    return 2 * layout.M if layout is not None else layer.d_model * layer.d_state


def ssm_layers(model: nn.Module):
    """[(parent or None, attribute, name, layer)] of the model's SSM layers; TypeError for an SSM layer
    without the reduction protocol, or for a model holding none."""
    found = []
    for name, mod in model.named_modules():
        if isinstance(mod, SSMLayer):
            if not reducible(mod):
                raise TypeError(f"reduce_model: {name or 'model'} is a {type(mod).__name__}, which lacks the reduction "
                                "protocol (modal_form or dense_form, and with_modal_form)")
            parent, _, attr = name.rpartition(".")
            found.append((model.get_submodule(parent) if name else None, attr, name or "model", mod))
    if not found:
        raise TypeError(f"reduce_model: {type(model).__name__} holds no SSM layer of dssm_kernels.nn")
    return found


def _check_size(d_state, tol, budget, fraction, method):
    given = [k for k, v in (("d_state", d_state), ("tol", tol), ("budget", budget), ("fraction", fraction))
             if v is not None]
    if len(given) != 1:
        raise ValueError(f"reduce_model: give exactly one of d_state, tol, budget and fraction, got "
                         f"{', '.join(given) or 'none'} (d_state={d_state!r}, tol={tol!r}, budget={budget!r}, "
                         f"fraction={fraction!r})")
    if d_state is not None:
        d_state = check_int("reduce_model", "d_state", d_state, 2)
        if d_state % 2:
            raise ValueError(f"reduce_model: d_state must be even (conjugate pairs), got {d_state}")
    budget = check_int("reduce_model", "budget", budget, 2, allow_none=True)
    fraction = check_number("reduce_model", "fraction", fraction, maximum=1, positive=True, allow_none=True)
    tol = check_tol("reduce_model", tol)
    if tol is not None and method not in BOUNDED:
        raise ValueError(f"reduce_model: tol needs a method with a guaranteed bound {BOUNDED}, got method={method!r}")
    return (None if d_state is None else int(d_state)), tol, (None if budget is None else int(budget)), \
        (None if fraction is None else float(fraction))


class _Job:
    """One layer being reduced: its systems, their contexts (from `cache` when it holds them for this
    layer, unchanged), the allocation."""

    def __init__(self, parent, attr, name, layer, horizon, source, cache):
        self.parent, self.attr, self.name, self.layer = parent, attr, name, layer
        stamp = tuple((p.data_ptr(), p._version, tuple(p.shape)) for p in source.parameters())
        key = (name, horizon)
        hit = cache.get(key) if cache is not None else None
        if hit is not None and hit["stamp"] == stamp:
            self.sys, self.horizon, self.ctxs = hit["sys"], hit["horizon"], hit["ctxs"]
            self.hinf_full = hit.get("hinf_full")
            for ctx in self.ctxs:
                ctx.max_modes = None
        else:
            self.sys = from_layer(layer)
            self.horizon = resolve_horizon(f"reduce_model ({name})", self.sys, horizon)
            self.ctxs = [SystemContext(one, self.horizon, "reduce_model") for one in self.sys.flat()]
            self.hinf_full = None
            if cache is not None:
                cache[key] = dict(stamp=stamp, sys=self.sys, horizon=self.horizon, ctxs=self.ctxs, entry=None)
        self._entry = cache.get(key) if cache is not None else None
        self.n_modes = self.sys.n_states // 2          # per system (a dense S4 channel: d_state / 2)
        self.ks = None

    def set_gain(self, hinf_full) -> None:
        self.hinf_full = hinf_full
        if self._entry is not None:
            self._entry["hinf_full"] = hinf_full

    @property
    def mimo(self) -> bool:
        return isinstance(self.sys, MimoSystem)


def _method(name: str, horizon, max_iter: int, who: str = "reduce_model"):
    if name in ("h2", "tlh2"):
        return H2(who, horizon, None, init="bt", max_iter=max_iter)
    return _METHOD_CLASSES[name](who, horizon, None)


def _errors_by_modes(job: _Job, method: str, ctx) -> np.ndarray:
    """e(k), k = 0 .. N modes: the method's bound when the system keeps k modes (BT's for h2, which has
    none: the allocation needs a curve). BT / BSP: 2 * the HSVs beyond order 2k. A MIMO layer's: the
    reduced system's own bound plus the feedthrough shift its layer adds (layers.py), from the reduction
    at each k (one system per layer: N reductions)."""
    if job.mimo and method in BOUNDED:
        curves = ctx.__dict__.setdefault("_mimo_curves", {})
        if method in curves:
            return curves[method]
        m = _METHOD_CLASSES[method]("reduce_model", job.horizon, None)
        e = [np.inf]
        for k in range(1, job.n_modes + 1):
            ctx.max_modes = k
            f = m.fit(ctx, m.rank_for(ctx, min(2 * k, ctx.n), None))
            e.append(f.bound + modal_feedthrough_shift(f.p, f.b, f.c, f.d, ctx.discrete))
        ctx.max_modes = None
        e = np.array(e)
        curves[method] = np.where(np.isnan(e), np.inf, e)   # nan: a modal bound that is not guaranteed (dense)
        return curves[method]
    if method in ("modal", "msp"):
        m = _METHOD_CLASSES[method]("reduce_model", job.horizon, None)
        e = m.bounds_by_modes(ctx)
        return np.concatenate([e, np.zeros(max(0, job.n_modes + 1 - len(e)))])[:job.n_modes + 1]
    tails = ctx.balancing.tails
    return np.array([tails[min(2 * k, len(tails) - 1)] for k in range(job.n_modes + 1)])


def _scores(ctx) -> np.ndarray:
    """LAST's per-mode H-infinity scores (squared dominance), padded with zeros to the system's modes."""
    return dominance(ctx.std) ** 2


def _allocate(jobs: list, method: str, rule: str, K: int, model, gains: dict):
    systems = []
    for li, job in enumerate(jobs):
        for ctx in job.ctxs:
            # LAST's scores need the modal form (for a dense S4 channel, a diagonalisation that may warn):
            # only its rule reads them
            scores = _scores(ctx) if rule == "last" else np.zeros(0)
            scores = np.concatenate([scores, np.zeros(max(0, job.n_modes - len(scores)))])[:job.n_modes]
            systems.append(budgets.SystemData(li, job.n_modes, _errors_by_modes(job, method, ctx), ctx.hsv, scores))
    budgets.check_budget("reduce_model", systems, K)
    w, head = composition.weights(model, [j.name for j in jobs], gains)
    weights = {li: w[j.name] for li, j in enumerate(jobs)}
    ks = budgets.allocate(rule, systems, K, weights)
    at = 0
    for job in jobs:
        job.ks = ks[at:at + len(job.ctxs)]
        at += len(job.ctxs)
    # the composed bound the allocation sees (the curves e(k)), for it and for uniform's: the report's
    return head * budgets.composed(systems, ks, weights), head * budgets.composed(systems, budgets.uniform(systems, K),
                                                                                   weights)


def _modes_for_tol(job: _Job, method: str, tol: float, max_iter: int) -> int:
    """The fewest complex modes in which every system of the layer meets tol (the method's bound)."""
    m = _method(method, job.horizon, max_iter)
    return max(1, max(len(m.fit(ctx, m.rank_for(ctx, None, tol)).p) for ctx in job.ctxs))


@single_threaded
def reduce_model(model: nn.Module, d_state: int | None = None, tol: float | None = None, method: str = "bt",
                 horizon=None, *, budget: int | None = None, fraction: float | None = None, allocate: str = "bound",
                 max_iter: int = 300, measure_steps: int | None = None, measure: bool = True, cache: dict | None = None):
    """A copy of `model` with its SSM layers' states reduced, and a ModelReport.

    Args:
        model: an nn.Module holding layers of dssm_kernels.nn (S4D, DSS, S4, S5, LRU; or one such layer).
            It is not modified.
        d_state / tol / budget / fraction: exactly one (module docstring). d_state: even int >= 2 (a layer
            already that small is kept). tol: absolute, in the units of the layer's output (bounded methods).
            budget: an int of real states for the whole network; fraction: in (0, 1] of its present states.
        method: "bt" | "bsp" | "modal" | "msp" | "h2" | "tlh2" (h2 starts from BT at the same size; "tlh2" is
            h2 over `horizon` steps, which it needs).
        horizon: an int L: reduce for the first L steps (time-limited Gramians / h2; no guaranteed bound).
        allocate: with budget / fraction, "bound" | "last" | "energy" | "uniform" (budget.py).
        max_iter: L-BFGS iterations of h2.   measure_steps: the kernel length the report's kernel errors are
            measured over (default: horizon, else the layer's l_max, else 1024).   measure: False skips the
            H-inf and kernel measurements (nan in the report).
        cache: a dict kept across calls on the same model: each layer's systems, Gramians, balancing and gain
            are computed once (what a sweep over sizes, methods and rules needs); an entry whose layer's
            parameters changed since is recomputed.
    Returns:
        (reduced model, ModelReport). The reduced model holds layers of the library; a SequenceClassifier's
        current_config() rebuilds it for its state_dict.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"reduce_model: model must be a torch.nn.Module, got {type(model).__name__}")
    if method not in METHODS:
        raise ValueError(f"reduce_model: method must be one of {METHODS}, got {method!r}")
    d_state, tol, budget, fraction = _check_size(d_state, tol, budget, fraction, method)
    if allocate not in ALLOCATIONS:
        raise ValueError(f"reduce_model: allocate must be one of {ALLOCATIONS}, got {allocate!r}")
    horizon = check_horizon("reduce_model", True, horizon)
    if method == "tlh2" and horizon is None:
        raise ValueError("reduce_model: method 'tlh2' (time-limited h2) needs horizon (the steps it fits), got None")
    measure_steps = check_horizon("reduce_model", True, measure_steps, name="measure_steps")
    max_iter = check_max_iter("reduce_model", max_iter)
    if not isinstance(measure, bool):
        raise TypeError(f"reduce_model: measure must be True or False, got {measure!r}")
    if cache is not None and not isinstance(cache, dict):
        raise TypeError(f"reduce_model: cache must be a dict (or None), got {type(cache).__name__}")
    new_model = copy.deepcopy(model)
    entries = ssm_layers(new_model)
    sources = {name: layer for _, _, name, layer in ssm_layers(model)}
    states_before = sum(layer_states(e[3]) for e in entries)
    jobs = [_Job(*e, horizon, sources[e[2]], cache) for e in entries]
    gains = {}
    if measure or (d_state is None and tol is None):       # the composed bound's weights need the layers' gains
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # unstable layers: inf, warned about elsewhere
            for job in jobs:
                if job.hinf_full is None:
                    job.set_gain(np.asarray(hinf_norm(job.sys)))
                gains[job.name] = float(np.max(job.hinf_full))
    request = dict(method=method, horizon=horizon, d_state=d_state, tol=tol, budget=budget, fraction=fraction,
                   allocate=allocate if d_state is None and tol is None else None)
    if d_state is not None:
        for job in jobs:
            job.ks = np.full(len(job.ctxs), min(d_state // 2, job.n_modes))
    elif tol is not None:
        for job in jobs:
            job.ks = np.full(len(job.ctxs), min(_modes_for_tol(job, method, tol, max_iter), job.n_modes))
    else:
        total_modes = sum(len(j.ctxs) * j.n_modes for j in jobs)
        K = budget // 2 if budget is not None else int(np.floor(fraction * states_before / 2 + 1e-9))
        K = min(K, total_modes)
        request["objective"], request["objective_uniform"] = _allocate(jobs, method, allocate, K, new_model, gains)
        request["budget_modes"] = K
    reports = []
    for job in jobs:
        if np.all(job.ks >= job.n_modes) and not isinstance(job.sys, DenseSystem):
            continue                    # keeps every mode: the layer as it is (an S4 is always made diagonal)
        new, info, red = _reduce_layer(job, method, max_iter, uniform=d_state is not None or tol is not None)
        if job.parent is None:
            new_model = new
        else:
            setattr(job.parent, job.attr, new)
        reports.append(_report(job, new, red, method, info, measure_steps or horizon, measure))
    w, head = composition.weights(new_model, [r.name for r in reports], gains)
    for r in reports:
        r.weight = w[r.name]
    bounds = [r.layer_bound for r in reports]
    composed = None if any(b is None for b in bounds) else head * float(sum(r.weight * r.layer_bound for r in reports))
    states_after = sum(layer_states(e[3]) for e in ssm_layers(new_model))
    return new_model, ModelReport(reports, _count(model), _count(new_model), states_before, states_after, request,
                                  composed, head)


def _reduce_layer(job: _Job, method: str, max_iter: int, uniform: bool):
    """(new layer, ReductionInfo, the reduced system it holds) for the job's allocation."""
    m = _method(method, job.horizon, max_iter)
    for ctx, k in zip(job.ctxs, job.ks):
        ctx.max_modes = int(k)
    ranks = [min(2 * int(k), ctx.n) for ctx, k in zip(job.ctxs, job.ks)]
    red, info = run(m, job.sys, np.array(ranks), None, ctxs=job.ctxs)
    if job.horizon is not None and not job.sys.unstable_count():
        red, moved = stabilized(job.sys, red, job.horizon)
        if moved:
            warnings.warn(f"reduce_model ({job.name}): the time-limited reduction gave {moved} unstable mode(s) of a "
                          "stable layer; mirrored into Re lam < 0 and the inputs refit over the horizon",
                          RuntimeWarning, stacklevel=3)
            info.extra["stabilized_modes"] = moved
    counts = np.maximum(np.atleast_1d(info.extra["modes"]), 1)
    if job.mimo:
        return to_layer(job.layer, red), info, red
    if uniform:
        n = int(np.max(job.ks))
        red = _pad(red, n)
        return to_layer(job.layer, red), info, red
    if np.all(counts == counts[0]):
        return to_layer(job.layer, _pad(red, int(counts[0]))), info, red
    return to_layer(job.layer, red, channel_modes=[int(c) for c in counts]), info, red


def _pad(red, n: int):
    """A SISO batch padded with inert modes up to n (the reductor's padding already is, beyond its own)."""
    from dssm_kernels.reduction.system import DiagonalSystem, pad_modes
    if red.n_modes >= n:
        return red
    lam, B, C = pad_modes(red.lam, red.B, red.C, n)
    return DiagonalSystem(lam, B, C, red.D, red.dt, red.disc)


def _report(job: _Job, new, red, method: str, info, steps, measure: bool) -> LayerReport:
    full = job.sys
    held = from_layer(new)             # what the new layer holds, after its own rounding
    L = steps or getattr(job.layer, "l_max", None) or DEFAULT_MEASURE_STEPS
    shift = feedthrough_shift(red)
    bound = info.error_bound
    layer_bound = None if bound is None else float(np.max(bound)) + shift
    if measure:
        # ||K - K_r|| over L steps per system, at a cost independent of L (h2_norm: direct head, closed-form tail)
        err, ref = np.asarray(h2_norm(full - held, L)), np.asarray(h2_norm(full, L))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # unstable layers: inf, already warned about
            hinf = np.asarray(hinf_norm(full - held))
        kernel_error = float(np.linalg.norm(err) / max(np.linalg.norm(ref), 1e-300))
        channels = err / np.maximum(ref, 1e-300)
    else:
        hinf = np.full(full.batch_shape, np.nan)
        kernel_error, channels = float("nan"), np.full(full.batch_shape, np.nan)
    return LayerReport(
        name=job.name, layer=type(job.layer).__name__, method=method, d_state_before=job.layer.d_state,
        d_state_after=new.d_state, rank=np.asarray(info.rank), hsv=info.hsv, error_bound=bound, hinf_error=hinf,
        hinf_full=job.hinf_full if job.hinf_full is not None else np.full(full.batch_shape, np.nan),
        kernel_error=kernel_error,
        kernel_error_channels=channels, measured_steps=int(L), params_before=_count(job.layer),
        params_after=_count(new), modes=np.asarray(job.ks), states_before=layer_states(job.layer),
        states_after=layer_states(new), feedthrough_shift=shift, layer_bound=layer_bound,
        extra=dict(info.extra, options=info.options, horizon=job.horizon))
