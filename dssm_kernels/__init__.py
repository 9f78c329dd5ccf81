"""dssm_kernels: kernels, layers and model reduction for diagonal state-space models."""
from dssm_kernels._backend import BACKENDS
from dssm_kernels.ops import *  # noqa: F401,F403
from dssm_kernels.ops import __all__ as _ops_all

__version__ = "0.1.0"
__all__ = ["BACKENDS", *_ops_all]
