"""Model reduction for diagonal state-space models (DESIGN.md, "reduction")."""
from dssm_kernels.reduction.gramians import gramians, hankel_singular_values
from dssm_kernels.reduction.norms import h2_norm, hinf_norm
from dssm_kernels.reduction.system import DiagonalSystem, from_layer, to_layer

__all__ = ["DiagonalSystem", "from_layer", "to_layer", "gramians", "hankel_singular_values", "h2_norm", "hinf_norm"]
