"""reduce_model: every diagonal SSM layer of a model reduced to a smaller state, with a report.

A layer takes part through the protocol of the layer issue: layer.modal_form() gives its H channels
as continuous modes with a step and discretisation (system.from_layer), and
layer.with_modal_form(lam, B, C, D, dt) builds a layer of the same class and options holding other
modes (system.to_layer). Each channel is reduced on its *discrete* system (the kernel the layer
convolves with), so bounds and errors are those of the layer's kernel.

The layer has one state size for all channels, d_state = 2 n complex modes. A channel's reduced real
order r fits in n modes when (r - k) / 2 + k <= n for its k real poles; each channel gets the
largest order that fits (BT lowers the rank one step at a time until it does) and leftover modes are
inert padding (B = 1, C = 0: no effect on the output, but trainable when retraining).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from dssm_kernels.nn._base import SSMLayer
from dssm_kernels.reduction._common import check_max_iter, check_tol, single_threaded
from dssm_kernels.reduction.bt import BT, balanced_truncation
from dssm_kernels.reduction.gramians import check_horizon, resolve_horizon
from dssm_kernels.reduction.h2 import h2_reduction, stabilized
from dssm_kernels.reduction.layers import from_layer, reducible, to_layer
from dssm_kernels.reduction.modal import MT, modal_truncation
from dssm_kernels.reduction.norms import h2_norm, hinf_norm
from dssm_kernels.reduction.reductor import SystemContext
from dssm_kernels.reduction.system import DiagonalSystem, pad_modes

METHODS = ("bt", "modal", "h2")
DEFAULT_MEASURE_STEPS = 1024      # kernel length errors are measured over without horizon or l_max


@dataclass
class LayerReport:
    """One reduced layer. Arrays are per channel (H,).

    rank: the real order kept per channel.  hsv: (H, 2N) of the full layer.  error_bound: guaranteed
    ||G_h - G_h,r||_inf per channel (None for h2, or BT over a finite horizon).  hinf_error: the
    measured ||G_h - G_h,r||_inf (inf where the layer has unstable modes); hinf_full: ||G_h||_inf of the
    full layer (for relative errors).  kernel_error: measured
    ||K - K_r|| / ||K|| over `measured_steps` (all channels; per channel in kernel_error_channels).
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
    extra: dict = field(default_factory=dict)


@dataclass
class ModelReport:
    layers: list
    params_before: int
    params_after: int

    def summary(self) -> str:
        """A plain-text table, one row per layer."""
        rows = [f"{'layer':<22}{'kind':<6}{'d_state':>9}{'rank mean':>10}{'bound max':>11}{'Hinf err max':>13}"
                f"{'kernel rel err':>15}{'params':>15}"]
        for r in self.layers:
            bound = "-" if r.error_bound is None else f"{np.max(r.error_bound):.3e}"
            rows.append(f"{r.name:<22}{r.layer:<6}{f'{r.d_state_before}->{r.d_state_after}':>9}{np.mean(r.rank):>10.1f}"
                        f"{bound:>11}{np.max(r.hinf_error):>13.3e}{r.kernel_error:>15.3e}"
                        f"{f'{r.params_before}->{r.params_after}':>15}")
        rows.append(f"model parameters {self.params_before} -> {self.params_after}")
        return "\n".join(rows)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _ssm_layers(model: nn.Module):
    """[(parent or None, attribute, name, layer)] of the reducible layers; TypeError for an SSM layer
    that has no diagonal SISO form (S4's DPLR, S5's MIMO state)."""
    found = []
    for name, mod in model.named_modules():
        can = reducible(mod) and not callable(getattr(mod, "dense_form", None)) and \
            not (callable(getattr(mod, "modal_form", None)) and mod.modal_form().get("mimo", False))
        if isinstance(mod, SSMLayer) and not can:
            raise TypeError(f"reduce_model: {name or 'model'} is a {type(mod).__name__}, which has no diagonal "
                            "SISO-per-channel form (modal_form/with_modal_form): only S4D and DSS layers can be reduced")
        if can:
            parent, _, attr = name.rpartition(".")
            found.append((model.get_submodule(parent) if name else None, attr, name or "model", mod))
    if not found:
        raise TypeError(f"reduce_model: {type(model).__name__} holds no reducible SSM layer (S4D, DSS)")
    return found


def _modes_for_tol(sys: DiagonalSystem, method: str, tol: float, horizon) -> int:
    """The fewest complex modes in which every channel meets tol (BT's or modal's bound)."""
    need = 1
    m = (BT if method == "bt" else MT)("reduce_model", horizon, None)
    for one in sys.flat():
        ctx = SystemContext(one, horizon, "reduce_model")
        need = max(need, len(m.fit(ctx, m.rank_for(ctx, None, tol)).p))
    return need


def _reduce_layer(sys: DiagonalSystem, method: str, n: int, horizon, max_iter: int):
    rank = min(2 * n, 2 * sys.n_modes - 1)
    if method == "bt":
        return balanced_truncation(sys, rank=rank, horizon=horizon, max_modes=n)
    if method == "modal":
        return modal_truncation(sys, rank, horizon=horizon, max_modes=n)
    return h2_reduction(sys, rank, horizon=horizon, max_modes=n, max_iter=max_iter)


@single_threaded
def reduce_model(model: nn.Module, d_state: int | None = None, tol: float | None = None, method: str = "bt",
                 horizon=None, *, max_iter: int = 300, measure_steps: int | None = None):
    """A copy of `model` with every S4D / DSS layer's state reduced, and a ModelReport.

    Args:
        model: an nn.Module holding S4D / DSS layers (or one such layer). It is not modified.
        d_state: the new real state size of every layer (even, >= 2); a layer already that small is kept.
        tol: instead (method "bt" or "modal"): the smallest state per layer whose guaranteed bound on every
            channel's ||G - G_r||_inf is <= tol (absolute, in the units of the layer's output).
        method: "bt" | "modal" | "h2" (h2 starts from BT at the same size).
        horizon: an int L: reduce for the first L steps (time-limited Gramians / h2). None: infinite
            horizon (layers with unstable modes fall back to a finite one, with a warning).
        max_iter: L-BFGS iterations of the h2 method.
        measure_steps: the kernel length the report's kernel errors are measured over (default: horizon,
            else the layer's l_max, else 1024).
    Returns:
        (reduced model, ModelReport). The reduced model has the same classes; a SequenceClassifier's
        current_config() rebuilds it for its state_dict.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"reduce_model: model must be a torch.nn.Module, got {type(model).__name__}")
    if method not in METHODS:
        raise ValueError(f"reduce_model: method must be one of {METHODS}, got {method!r}")
    if (d_state is None) == (tol is None):
        raise ValueError(f"reduce_model: give exactly one of d_state and tol, got d_state={d_state!r}, tol={tol!r}")
    if d_state is not None:
        if isinstance(d_state, bool) or not isinstance(d_state, (int, np.integer)):
            raise TypeError(f"reduce_model: d_state must be an even int >= 2 (conjugate pairs), got {d_state!r} "
                            f"({type(d_state).__name__})")
        if d_state < 2 or d_state % 2:
            raise ValueError(f"reduce_model: d_state must be an even int >= 2 (conjugate pairs), got {d_state!r}")
        d_state = int(d_state)
    tol = check_tol("reduce_model", tol)
    if tol is not None and method == "h2":
        raise ValueError("reduce_model: tol needs a method with a guaranteed bound ('bt' or 'modal'), got method='h2'")
    horizon = check_horizon("reduce_model", True, horizon)
    measure_steps = check_horizon("reduce_model", True, measure_steps, name="measure_steps")
    max_iter = check_max_iter("reduce_model", max_iter)
    new_model = copy.deepcopy(model)
    reports = []
    for parent, attr, name, layer in _ssm_layers(new_model):
        sys = from_layer(layer)
        h = resolve_horizon(f"reduce_model ({name})", sys, horizon)
        n = d_state // 2 if d_state is not None else _modes_for_tol(sys, method, tol, h)
        if n >= sys.n_modes:
            continue
        red, info = _reduce_layer(sys, method, n, h, max_iter)
        if h is not None and np.all(sys.lam.real < 0):
            red, moved = stabilized(sys, red, h)
            if moved:
                warnings.warn(f"reduce_model ({name}): the time-limited reduction gave {moved} unstable mode(s) of a "
                              "stable layer; mirrored into Re lam < 0 and the residues refit over the horizon",
                              RuntimeWarning, stacklevel=2)
                info.extra["stabilized_modes"] = moved
        lam, B, C = pad_modes(red.lam, red.B, red.C, n)
        red = DiagonalSystem(lam, B, C, red.D, red.dt, red.disc)
        new = to_layer(layer, red)
        if parent is None:
            new_model = new
        else:
            setattr(parent, attr, new)
        reports.append(_report(name, layer, new, method, info, h, measure_steps or horizon))
    return new_model, ModelReport(reports, _count(model), _count(new_model))


def _report(name, layer, new, method, info, h, steps) -> LayerReport:
    full, red = from_layer(layer), from_layer(new)   # what the new layer holds, after its own rounding
    L = steps or getattr(layer, "l_max", None) or DEFAULT_MEASURE_STEPS
    # ||K - K_r|| over L steps per channel, at a cost independent of L (h2_norm: direct head, closed-form tail)
    err, ref = np.asarray(h2_norm(full - red, L)), np.asarray(h2_norm(full, L))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # unstable layers: inf, already warned about
        hinf = np.asarray(hinf_norm(full - red))
        gain = np.asarray(hinf_norm(full))
    return LayerReport(
        name=name, layer=type(layer).__name__, method=method, d_state_before=layer.d_state, d_state_after=new.d_state,
        rank=np.asarray(info.rank), hsv=info.hsv, error_bound=info.error_bound, hinf_error=hinf, hinf_full=gain,
        kernel_error=float(np.linalg.norm(err) / max(np.linalg.norm(ref), 1e-300)),
        kernel_error_channels=err / np.maximum(ref, 1e-300),
        measured_steps=int(L), params_before=_count(layer), params_after=_count(new),
        extra=dict(info.extra, options=info.options, horizon=h))
