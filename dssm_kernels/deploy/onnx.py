"""ONNX export of a trained (or reduced) model: the streaming step and the whole-sequence forward, in
real arithmetic (deploy.realnet), for onnxruntime or any other ONNX runtime.

    paths = export_onnx(model, "model.onnx")      # model.onnx (forward) and model.step.onnx (step)

The forward graph: input "x" (B, L, d_input) float, (B, L) int64 ids, or (B, L, H) for a block or a
layer, B and L dynamic; output "y", what model.forward gives. An S4 layer convolves with its kernel
computed here up to `max_length` tokens (its diagonalised form is too ill-conditioned to run in
float32): a longer input fails in the runtime (an out-of-range Gather), never silently.

The step graph: inputs "x" (B, d_input) / (B,) / (B, H) and the state "state_<i>" per block, then for
pool="mean" "pool_sum" (B, H) and "pool_count" (B,); outputs "y" (B, n_out) and "new_" + each state
name. Start from zeros of the shapes in the metadata ("state_shapes", B = 1 there) and feed each
call's new state to the next. Layouts: deploy.plan (complex states as re, im planes).

The metadata_props of both graphs say what was exported (model, layers, d_state, dtype, graph,
max_length, the state's names and shapes).
"""
from __future__ import annotations

import json
import os
import warnings

import torch
from torch import nn

from dssm_kernels.deploy.plan import NetworkPlan, plan_model

GRAPHS = ("forward", "step", "both")
DEFAULT_MAX_LENGTH = 4096


def onnx_unavailable_reason() -> str | None:
    """None if torch.onnx's exporter can run here (it needs the packages onnx and onnxscript)."""
    for mod in ("onnx", "onnxscript"):
        try:
            __import__(mod)
        except ImportError as exc:
            return f"ONNX export needs the package {mod!r} (pip install onnx onnxscript onnxruntime): {exc}"
    return None


def state_names(plan: NetworkPlan) -> list:
    names = [f"state_{i}" for i in range(len(plan.blocks))]
    return names + (["pool_sum", "pool_count"] if plan.pool == "mean" else [])


def initial_state(plan: NetworkPlan, batch: int) -> dict:
    """{name: zeros} of the step graph's state inputs for `batch` streams (numpy arrays, the plan's dtype)."""
    dt = plan.dtype
    shapes = [b.ssm.state_shape(batch) for b in plan.blocks]
    if plan.pool == "mean":
        shapes += [(batch, plan.d_model), (batch,)]
    return {n: torch.zeros(s, dtype=dt).numpy() for n, s in zip(state_names(plan), shapes)}


def _example_x(plan: NetworkPlan, batch: int, length: int | None) -> torch.Tensor:
    lead = (batch,) if length is None else (batch, length)
    if plan.tokens:
        return torch.zeros(lead, dtype=torch.int64)
    return torch.zeros(lead + (plan.d_input,), dtype=plan.dtype)


def _export(module: nn.Module, args: tuple, path: str, input_names, output_names, dynamic, meta: dict) -> None:
    import onnx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, path, dynamo=True, input_names=input_names, output_names=output_names,
                          dynamic_shapes=dynamic, optimize=True, verbose=False)
    model = onnx.load(path)
    # The exporter writes static intermediate shapes for DFT nodes traced at the example's length, which
    # onnxruntime then enforces at other lengths; the shapes are optional annotations: drop them all.
    del model.graph.value_info[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v)
    onnx.save(model, path)


def _check_path(name: str, path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"export_onnx: {name} must be a path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    if not path.endswith(".onnx"):
        raise ValueError(f"export_onnx: {name} must end in .onnx, got {path!r}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"export_onnx: {name}'s folder {parent!r} does not exist")
    return path


def step_path(path: str) -> str:
    """Where export_onnx writes the step graph for an output path: model.onnx -> model.step.onnx."""
    return path[: -len(".onnx")] + ".step.onnx"


def export_onnx(model: nn.Module, path, *, graph: str = "both", max_length: int = DEFAULT_MAX_LENGTH) -> list:
    """Export `model` (SequenceClassifier, ResidualBlock or a bare S4D / DSS / S4 / S5 / LRU layer, full or
    reduced) to ONNX. graph: "forward" (to `path`), "step" (to `path` itself), or "both" (forward to
    `path`, step to step_path(path)). max_length: the longest input of an S4 layer's forward graph.
    Returns the paths written."""
    if graph not in GRAPHS:
        raise ValueError(f"export_onnx: graph must be one of {GRAPHS}, got {graph!r}")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 1 <= max_length <= 1 << 20:
        raise ValueError(f"export_onnx: max_length must be an int in [1, 2^20], got {max_length!r}")
    path = _check_path("path", path)
    reason = onnx_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"export_onnx: {reason}")
    from dssm_kernels.deploy.realnet import RealSequence, RealStep
    plan = plan_model(model, kernel_length=max_length if graph != "step" else None)
    meta = dict(plan.source, dtype=str(plan.dtype).removeprefix("torch."), n_out=plan.n_out,
                producer="dssm_kernels.deploy.export_onnx")
    B = torch.export.Dim("B", min=1, max=1 << 20)
    written = []
    if graph in ("forward", "both"):
        L = torch.export.Dim("L", min=2, max=1 << 20)
        seq = RealSequence(plan).eval()
        has_s4 = any(b.ssm.kind == "dplr" for b in plan.blocks)
        _export(seq, (_example_x(plan, 2, 16),), path, ["x"], ["y"], ({0: B, 1: L},),
                dict(meta, graph="forward", max_length=max_length if has_s4 else None))
        written.append(path)
    if graph in ("step", "both"):
        out = path if graph == "step" else step_path(path)
        step = RealStep(plan).eval()
        names = state_names(plan)
        zeros = initial_state(plan, 2)
        args = (_example_x(plan, 2, None),) + tuple(torch.from_numpy(zeros[n]) for n in names)
        dyn = ({0: B}, tuple({0: B} for _ in names))     # x, then forward's *state
        shapes = {n: list(v.shape[1:]) for n, v in zeros.items()}
        _export(step, args, out, ["x"] + names, ["y"] + [f"new_{n}" for n in names], dyn,
                dict(meta, graph="step", state_names=names, state_shapes={n: [1] + s for n, s in shapes.items()}))
        written.append(out)
    return written
