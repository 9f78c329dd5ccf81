"""Checkpoints that carry everything needed to rebuild the model and its task: config, weights, the
task's name and options, and what produced them (training history, reduction report)."""
from __future__ import annotations

import os

import torch

from dssm_kernels import tasks
from dssm_kernels.nn import SequenceClassifier

FORMAT = "dssm-checkpoint-1"


def save(path: str, model: SequenceClassifier, task: tasks.Task, **meta) -> str:
    """Write model (config + state_dict), the task's (name, options) and `meta` to `path`."""
    if not isinstance(model, SequenceClassifier):
        raise TypeError(f"checkpoint.save: model must be a SequenceClassifier, got {type(model).__name__}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"format": FORMAT, "config": model.current_config(), "state_dict": model.state_dict(),
                "task": {"name": task.name, "options": dict(task.options)}, "meta": meta}, path)
    return path


def load(path: str):
    """(model in eval mode, task, meta) from a checkpoint written by save()."""
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint.load: no checkpoint file at {path!r}")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"checkpoint.load: {path!r} is not a {FORMAT} file")
    model = SequenceClassifier.from_config(ck["config"])
    model.load_state_dict(ck["state_dict"])
    model.eval()
    task = tasks.load(ck["task"]["name"], **ck["task"]["options"])
    return model, task, ck["meta"]


def ssm_parameter_count(model: torch.nn.Module) -> int:
    """Parameters of the SSM layers (what reduction shrinks), counting a complex value as two."""
    from dssm_kernels.nn._base import SSMLayer
    return sum(p.numel() for m in model.modules() if isinstance(m, SSMLayer) for p in m.parameters())


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
