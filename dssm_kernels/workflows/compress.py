"""Training for compression: the fit() hooks behind `dssm train --hsv-reg` and `--compress-tol`.

    hsv_penalty_hook(weight, every=1) -> loss_hook       weight * (sum of every SSM system's Hankel singular
                                                         values), reduction.penalty.hankel_penalty
    CompressDuringTraining(tol, every, until, method)    model_hook: reduce each layer while training
                                                         (see its docstring)
"""
from __future__ import annotations

from dssm_kernels._validate import check_number
from dssm_kernels.reduction.penalty import hankel_penalty, ssm_layers


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

