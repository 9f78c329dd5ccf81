"""Model reduction for diagonal state-space models (DESIGN.md, "reduction").

    sys = DiagonalSystem(lam, B, C, D=None, dt=None, disc="zoh")      # SISO channels (S4D, DSS), a batch
    sys = MimoSystem(lam, B (N, m), C (p, N), D (p, m), dt, disc)      # one shared state (S5, LRU)
    sys = DenseSystem(A, B, C, D, discrete=True, dt=..., disc=...)     # dense channels (S4's DPLR)
    from_layer(layer) / to_layer(layer, reduced)                       # every layer kind of dssm_kernels.nn
    hankel_singular_values(sys, horizon=None)                          # of the real system
    balanced_truncation(sys, rank=None, tol=None, horizon=None)        # -> (reduced, info)
    balanced_singular_perturbation(sys, rank=None, tol=None, horizon=None)   # keeps the DC gain
    modal_truncation(sys, rank) / modal_singular_perturbation(sys, rank)
    h2_reduction(sys, rank, init="bt", horizon=None)
    h2_norm(sys, horizon=None), hinf_norm(sys)
    reduce_model(model, d_state=None, tol=None, method="bt", horizon=None, *, budget=None, fraction=None,
                 allocate="bound")                                     # -> (reduced model, report)
    hankel_penalty(model) / layer_hsv_sum(layer)       # differentiable sum of HSVs (torch): a training penalty

Every reductor runs through one loop (reductor.py) with small hooks per method; a model-wide budget is
split across layers and channels by budget.py's rules.

Example (a real mode's twin adds the Hankel singular value 0; the bound is 2 * sum of the dropped ones):
    >>> import numpy as np
    >>> from dssm_kernels import reduction as R
    >>> sys = R.DiagonalSystem(np.array([-0.1 + 1j, -0.5 + 3j, -1.0]), np.ones(3), np.array([1.0, 0.3, 0.1]), dt=0.1)
    >>> np.round(R.hankel_singular_values(sys), 4)
    array([4.9619, 4.9063, 0.2895, 0.2446, 0.0447, 0.    ])
    >>> red, info = R.balanced_truncation(sys, rank=2)
    >>> red
    DiagonalSystem(discrete (zoh), batch=(), N=1 modes, real order 2)
    >>> round(float(info.error_bound), 4), bool(R.hinf_norm(sys - red) <= info.error_bound)
    (1.1576, True)
"""
from dssm_kernels.reduction._common import ReductionInfo
from dssm_kernels.reduction.bt import balanced_singular_perturbation, balanced_truncation
from dssm_kernels.reduction.dense import DenseSystem
from dssm_kernels.reduction.gramians import gramians, hankel_singular_values
from dssm_kernels.reduction.h2 import h2_reduction
from dssm_kernels.reduction.layers import from_layer, to_layer
from dssm_kernels.reduction.modal import modal_singular_perturbation, modal_truncation
from dssm_kernels.reduction.model import LayerReport, ModelReport, reduce_model
from dssm_kernels.reduction.norms import h2_norm, hinf_norm
from dssm_kernels.reduction.penalty import hankel_penalty, layer_hsv_sum
from dssm_kernels.reduction.system import DiagonalSystem, MimoSystem

__all__ = ["DiagonalSystem", "MimoSystem", "DenseSystem", "from_layer", "to_layer", "gramians",
           "hankel_singular_values", "h2_norm", "hinf_norm", "balanced_truncation", "balanced_singular_perturbation",
           "modal_truncation", "modal_singular_perturbation", "h2_reduction", "ReductionInfo", "reduce_model",
           "LayerReport", "ModelReport", "hankel_penalty", "layer_hsv_sum"]
