"""Drop-in torch.nn layers on the dssm_kernels ops: S4D, DSS, S4 (DPLR), S5, LRU, a residual block and a
small sequence classifier; param_groups builds optimiser groups that honour each SSM parameter's own
learning rate and weight decay."""
from __future__ import annotations

import torch

from dssm_kernels._validate import check_number
from dssm_kernels.nn._base import ssm_optim_tags
from dssm_kernels.nn.block import LAYERS, ResidualBlock, make_layer
from dssm_kernels.nn.dss import DSS
from dssm_kernels.nn.lru import LRU
from dssm_kernels.nn.model import SequenceClassifier
from dssm_kernels.nn.s4 import S4
from dssm_kernels.nn.s4d import S4D
from dssm_kernels.nn.s5 import S5

__all__ = ["S4D", "DSS", "S4", "S5", "LRU", "LAYERS", "make_layer", "ResidualBlock", "SequenceClassifier", "param_groups"]


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float = 0.0) -> list[dict]:
    """Optimizer parameter groups: ordinary parameters with (lr, weight_decay); SSM parameters (A, dt,
    B) with their own learning rate and no weight decay, as each layer tagged them."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"param_groups: model must be a torch.nn.Module, got {type(model).__name__}")
    check_number("param_groups", "lr", lr, 0)
    check_number("param_groups", "weight_decay", weight_decay, 0)
    plain, special = [], {}
    tags = ssm_optim_tags(model)
    for p in model.parameters():
        opts = tags.get(id(p))
        if opts is None:
            plain.append(p)
        else:
            key = (opts["lr"] if opts["lr"] is not None else lr, opts["weight_decay"])
            special.setdefault(key, []).append(p)
    groups = [{"params": plain, "lr": lr, "weight_decay": weight_decay}] if plain else []
    groups += [{"params": ps, "lr": k[0], "weight_decay": k[1]} for k, ps in special.items()]
    return groups
