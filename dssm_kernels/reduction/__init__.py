"""Model reduction for diagonal state-space models (DESIGN.md, "reduction").

    sys = DiagonalSystem(lam, B, C, D=None, dt=None, disc="zoh")      # one SISO channel, or a batch
    hankel_singular_values(sys, horizon=None)                          # of the real 2N-state system
    balanced_truncation(sys, rank=None, tol=None, horizon=None)        # -> (reduced, info)
    modal_truncation(sys, rank) / h2_reduction(sys, rank, init="bt", horizon=None)
    h2_norm(sys, horizon=None), hinf_norm(sys)
    reduce_model(model, d_state=None, tol=None, method="bt", horizon=None)   # -> (reduced model, report)
"""
from dssm_kernels.reduction._common import ReductionInfo
from dssm_kernels.reduction.bt import balanced_truncation
from dssm_kernels.reduction.gramians import gramians, hankel_singular_values
from dssm_kernels.reduction.h2 import h2_reduction
from dssm_kernels.reduction.modal import modal_truncation
from dssm_kernels.reduction.model import LayerReport, ModelReport, reduce_model
from dssm_kernels.reduction.norms import h2_norm, hinf_norm
from dssm_kernels.reduction.system import DiagonalSystem, from_layer, to_layer

__all__ = ["DiagonalSystem", "from_layer", "to_layer", "gramians", "hankel_singular_values", "h2_norm", "hinf_norm",
           "balanced_truncation", "modal_truncation", "h2_reduction", "ReductionInfo", "reduce_model", "LayerReport",
           "ModelReport"]
