"""Training for compression: the fit() hooks behind `dssm train --hsv-reg` and `--compress-tol`.

    hsv_penalty_hook(weight) -> loss_hook               weight * (sum of every SSM system's Hankel singular
                                                        values), reduction.penalty.hankel_penalty
    compress_during_training(tol, total_steps, every=None, until=0.1, method="bt", carry="transform",
                             channel_sizes=False)
        -> CompressDuringTraining, a model_hook: every `every` steps of the first `until` of training,
        each system cut to the fewest modes whose discarded Hankel energy is <= tol (its docstring);
        .log holds the state sizes over time.
    reduce_layers(model, states, method, uniform=())   the reduction it applies, layer by layer
    carry_moments(old, new, old_opt, new_opt, slice_modes=False)   AdamW's state across a reduction
"""
from __future__ import annotations

import copy
import functools
import math
import time
import warnings

import numpy as np
import torch
from torch import nn

from dssm_kernels._validate import check_choice, check_int, check_number
from dssm_kernels.nn._base import DiagonalConvLayer
from dssm_kernels.reduction.penalty import hankel_penalty, ssm_layers
from dssm_kernels.workflows import distributed
from dssm_kernels.workflows.training import ModelSwap


def hsv_penalty_hook(weight: float):
    """A fit() loss_hook adding weight * hankel_penalty(model) to every step's loss (Schwerdtner et al.
    2025: the sum of Hankel singular values of each SSM system, which pushes the tail of the HSVs down so
    that balanced truncation afterwards discards little). weight >= 0 (0: nothing added)."""
    weight = check_number("hsv_penalty_hook", "weight", weight, 0)

    def hook(model, step):
        if weight == 0:
            return None
        if not ssm_layers(model):
            raise TypeError(f"hsv_penalty_hook: {type(model).__name__} has no SSM layer to penalise")
        return weight * hankel_penalty(model)

    return hook


# ------------------------------------------------------------------------- reduction during training
CARRY = ("transform", "reset", "slice")
COMPRESS_METHODS = ("bt", "bsp")


def kept_modes(hsv: np.ndarray, tol: float, n_modes: int) -> int:
    """The fewest complex modes k (1 <= k <= n_modes) whose real order 2k discards Hankel energy at most
    tol: sum_{i > 2k} sigma_i <= tol * sum_i sigma_i (sigma descending). The energy is the HSV sum
    (the Hankel nuclear norm, what hsv_penalty_hook lowers); BT's error bound is twice the discarded sum."""
    total = float(np.sum(hsv))
    if total <= 0:
        return 1
    tail = total - np.cumsum(hsv)               # tail[r - 1]: discarded at real order r
    orders = np.flatnonzero(tail <= tol * total)
    r = int(orders[0]) + 1 if len(orders) else len(hsv)
    return int(min(n_modes, max(1, -(-r // 2))))


def energy_states(model: nn.Module, tol: float, channel_sizes: bool = False) -> tuple[int, int, list[dict]]:
    """(states now, states kept at tolerance tol, per layer {name, kind, before, after, uniform}): the real
    states of the SSM layers and what kept_modes leaves of each system (one per channel of an S4D / DSS / S4
    layer, one per S5 / LRU layer). A SISO layer keeps, on every channel, its largest channel's count
    (uniform: one d_state, the layer's ops run as one block), or with channel_sizes each channel its own
    (fewer states, run group by group: slower at small sizes)."""
    from dssm_kernels.reduction import from_layer, hankel_singular_values
    from dssm_kernels.reduction.model import layer_states, ssm_layers as reducible_layers

    now = kept = 0
    rows = []
    for _, _, name, layer in reducible_layers(model):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)      # unstable modes: the finite horizon it warns of
            hsv = np.asarray(hankel_singular_values(from_layer(layer)))
        hsv = hsv.reshape(-1, hsv.shape[-1])
        n_modes = hsv.shape[-1] // 2
        layout = getattr(layer, "layout", None)
        counts = layout.counts if layout is not None else [n_modes] * len(hsv)
        k = [min(kept_modes(h, tol, n_modes), c) for h, c in zip(hsv, counts)]
        before = layer_states(layer)
        uniform = not channel_sizes and len(k) > 1
        after = 2 * max(k) * len(k) if uniform else 2 * sum(k)
        now, kept = now + before, kept + after
        rows.append({"name": name, "kind": type(layer).__name__, "before": before, "after": after,
                     "uniform": uniform})
    return now, kept, rows


class CompressDuringTraining:
    """A fit() model_hook that reduces the model while it trains (CompreSSM, ICLR 2026): every `every`
    optimizer steps while step <= until_step, each SSM system is cut to the fewest modes whose discarded
    Hankel energy is at most `tol` (kept_modes), by reduce_layers (reduce_model layer by layer, method
    bt | bsp), and training goes on with the smaller model (fit keeps the learning-rate schedule).
    A check that would remove nothing changes nothing.

    carry: what happens to AdamW's moments across a reduction.
      "transform"  every parameter whose coordinates the reduction leaves alone (encoder, decoder, norms,
                   the layers' D and dt, every layer it did not shrink) keeps its moments and step count;
                   the reduced layers' modal parameters (poles, B, C), which now live in a new basis (the
                   balanced one, diagonalised: each new mode a combination of the old ones), start afresh,
                   as Adam's second moments, per coordinate, cannot be carried through a change of basis.
      "reset"      the whole optimizer state starts afresh (what a new AdamW would do).
      "slice"      CompreSSM's choice: besides what "transform" keeps, each new mode takes the moments of
                   the old mode nearest to it (discrete poles), as if the reduction kept a subset of the
                   old modes, which after balancing it does not.
    channel_sizes: an S4D / DSS layer keeps its largest channel's count on every channel (False: one d_state,
    the fastest to run) or each channel its own (True: fewest states; the layer then runs group by group).
    log: [{"step", "states", "layers": [{name, kind, before, after}]}] at the start and after each reduction.
    """

    def __init__(self, tol: float, *, every: int, until_step: int, method: str = "bt", carry: str = "transform",
                 channel_sizes: bool = False):
        self.tol = check_number("CompressDuringTraining", "tol", tol, 0, 1, positive=True)
        self.every = check_int("CompressDuringTraining", "every", every, 1)
        self.until_step = check_int("CompressDuringTraining", "until_step", until_step, 0)
        self.method = check_choice("CompressDuringTraining", "method", method, COMPRESS_METHODS)
        self.carry = check_choice("CompressDuringTraining", "carry", carry, CARRY)
        if not isinstance(channel_sizes, bool):
            raise TypeError(f"CompressDuringTraining: channel_sizes must be True or False, got {channel_sizes!r}")
        self.channel_sizes = channel_sizes
        self.log: list[dict] = []
        self.seconds = 0.0       # spent deciding and reducing (inside the training time fit reports)

    def __call__(self, model: nn.Module, step: int, optimizer):
        if not self.log:
            _, _, rows = energy_states(model, 1.0)
            self.log.append({"step": 0, "states": sum(r["before"] for r in rows),
                             "layers": [dict(r, after=r["before"]) for r in rows]})
        if step > self.until_step or step % self.every:
            return None
        start = time.perf_counter()
        world = distributed.current()
        decision = energy_states(model, self.tol, self.channel_sizes) if world.is_main else None
        if world.size > 1:      # the decision rests on floating-point results: rank 0's, on every rank
            decision = distributed.broadcast_object(decision)
        now, kept, rows = decision
        if kept >= now:
            self.seconds += time.perf_counter() - start
            return None
        reduced = reduce_layers(model, {r["name"]: r["after"] for r in rows}, self.method,
                                uniform=tuple(r["name"] for r in rows if r["uniform"]))
        from dssm_kernels.reduction.model import layer_states, ssm_layers as reducible_layers
        states = [layer_states(m) for _, _, _, m in reducible_layers(reduced)]
        self.log.append({"step": step, "states": sum(states),
                         "layers": [dict(r, after=s) for r, s in zip(rows, states)]})
        self.seconds += time.perf_counter() - start
        if self.carry == "reset":
            return ModelSwap(reduced, None)
        return ModelSwap(reduced, functools.partial(carry_moments, model, reduced, slice_modes=self.carry == "slice"))


def reduce_layers(model: nn.Module, states: dict, method: str, uniform: tuple = ()) -> nn.Module:
    """A copy of `model` whose SSM layer `name` holds states[name] real states where that is fewer than it
    has: reduce_model on the layer alone, a MIMO layer (S5, LRU) at d_state = states, a SISO layer named in
    `uniform` at d_state = states / H on every channel, another SISO one with the budget split over its
    channels by the energy rule (the same threshold kept_modes applies). Layer by
    layer rather than one model-wide budget: a budget makes reduce_model price every order of every system
    (seconds for a 128-state MIMO layer), where the sizes here are already decided."""
    from dssm_kernels.nn import LRU, S5
    from dssm_kernels.reduction import reduce_model
    from dssm_kernels.reduction.model import layer_states, ssm_layers as reducible_layers

    new_model = copy.deepcopy(model)
    for parent, attr, name, layer in reducible_layers(new_model):
        want = states.get(name)
        if want is None or want >= layer_states(layer):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # unstable modes: the finite horizon it warns of
            if isinstance(layer, (S5, LRU)):
                new, _ = reduce_model(layer, d_state=want, method=method, measure=False)
            elif name in uniform:
                new, _ = reduce_model(layer, d_state=want // layer.d_model, method=method, measure=False)
            else:
                new, _ = reduce_model(layer, budget=want, allocate="energy", method=method, measure=False)
        if parent is None:
            return new
        setattr(parent, attr, new)
    return new_model


def compress_during_training(tol: float, total_steps: int, *, every: int | None = None, until: float = 0.1,
                             method: str = "bt", carry: str = "transform",
                             channel_sizes: bool = False) -> CompressDuringTraining:
    """The hook for a run of total_steps optimizer steps: checks every `every` steps (None: total_steps // 50,
    at least 1) during the first fraction `until` of them (CompreSSM reduces within the first 10%)."""
    total_steps = check_int("compress_during_training", "total_steps", total_steps, 1)
    until = check_number("compress_during_training", "until", until, 0, 1)
    every = max(1, total_steps // 50) if every is None else every
    return CompressDuringTraining(tol, every=every, until_step=int(until * total_steps), method=method, carry=carry,
                                  channel_sizes=channel_sizes)


def _changed_layers(old: nn.Module, new: nn.Module) -> dict[str, tuple[nn.Module, nn.Module]]:
    """{module name: (old layer, new layer)} for the SSM layers whose state size the reduction changed."""
    from dssm_kernels.reduction.model import layer_states, ssm_layers as reducible_layers
    new_layers = {name: m for _, _, name, m in reducible_layers(new)}
    return {name: (m, new_layers[name]) for _, _, name, m in reducible_layers(old)
            if name in new_layers and (layer_states(m) != layer_states(new_layers[name]) or type(m) is not type(new_layers[name]))}


def carry_moments(old_model: nn.Module, new_model: nn.Module, old_opt, new_opt, *, slice_modes: bool = False) -> None:
    """Fill new_opt's state from old_opt's: a parameter of the same name and shape outside the reduced
    layers keeps its state, as do a reduced layer's per-channel D and dt (S4D, DSS: their coordinates are
    the channels, which reduction keeps); the reduced layers' modal parameters start afresh, or with
    slice_modes take the state of the nearest old mode (CompressDuringTraining's "slice")."""
    changed = _changed_layers(old_model, new_model)
    old_params = dict(old_model.named_parameters())
    for name, p_new in new_model.named_parameters():
        layer_name, _, pname = name.rpartition(".")
        p_old = old_params.get(name)
        if p_old is None or p_old not in old_opt.state:
            continue
        state = old_opt.state[p_old]
        per_channel = pname == "D" or (pname == "log_dt" and _mode_axis(changed[layer_name][0], pname) is None) \
            if layer_name in changed else True
        if per_channel and p_old.shape == p_new.shape:
            new_opt.state[p_new] = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
        elif slice_modes and layer_name in changed:
            sliced = _slice_state(*changed[layer_name], pname, p_new, state)
            if sliced is not None:
                new_opt.state[p_new] = sliced


_MIMO_MODE_FIRST = {"log_lam_real", "lam_imag", "log_dt", "B", "nu_log", "theta_log", "gamma_log"}
_SISO_MODAL = {"log_A_real", "A_imag", "B", "C", "log_lam_real", "lam_real", "lam_imag", "W"}


def _mode_axis(layer, pname: str):
    """How parameter `pname` of `layer` holds its modes: "mimo0" (modes first: (N, ...)), "mimo1" (C (H, N, 2)),
    "siso" ((H, N, ...) or a per-channel layout's flat (M, ...)), or None (not per mode)."""
    if isinstance(layer, DiagonalConvLayer):
        return "siso" if pname in _SISO_MODAL else None
    if hasattr(layer, "discrete") and layer.discrete()[0].dim() == 1 and not isinstance(layer, DiagonalConvLayer):
        return "mimo1" if pname == "C" else "mimo0" if pname in _MIMO_MODE_FIRST else None
    return None


def _flat_poles(layer):
    """(discrete poles, channel of each) over the layer's modes in its parameters' flat order."""
    with torch.no_grad():
        p = layer.discrete()[0]
    layout = getattr(layer, "layout", None)
    if layout is not None:
        return p, layout.mode_channel.to(p.device)
    if p.dim() == 1:
        return p, torch.zeros(p.shape[0], dtype=torch.long, device=p.device)
    return p.reshape(-1), torch.arange(p.shape[0], device=p.device).repeat_interleave(p.shape[1])


def _slice_state(old_layer, new_layer, pname: str, p_new, state):
    """The optimizer state of parameter pname of new_layer, each new mode's taken from the nearest old mode
    of the same channel (None when the layers' kinds or the parameter's layout do not allow it)."""
    axis = _mode_axis(old_layer, pname)
    if type(old_layer) is not type(new_layer) or axis is None:
        return None
    p_old, ch_old = _flat_poles(old_layer)
    p_new_modes, ch_new = _flat_poles(new_layer)
    dist = (p_new_modes[:, None] - p_old[None, :]).abs()
    dist = torch.where(ch_new[:, None] == ch_old[None, :], dist, torch.full_like(dist, math.inf))
    idx = dist.argmin(-1)
    out = {}
    for key, v in state.items():
        if not isinstance(v, torch.Tensor) or v.dim() == 0:
            out[key] = v.clone() if isinstance(v, torch.Tensor) else v
            continue
        if axis == "mimo1":
            picked = v.index_select(1, idx.to(v.device))
        else:
            flat = v.reshape(len(p_old), *v.shape[(2 if v.dim() >= 2 and v.shape[0] * v.shape[1] == len(p_old)
                                                   and axis == "siso" else 1):])
            picked = flat.index_select(0, idx.to(v.device))
        if picked.numel() != p_new.numel():
            return None
        out[key] = picked.reshape(p_new.shape).clone()
    return out
