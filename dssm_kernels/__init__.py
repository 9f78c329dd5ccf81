"""dssm_kernels: kernels, layers and model reduction for diagonal state-space models."""
from dssm_kernels._backend import BACKENDS
from dssm_kernels.ops.cauchy import cauchy, cauchy_ref
from dssm_kernels.ops.diag_scan import diag_scan, diag_scan_ref
from dssm_kernels.ops.fftconv import fftconv, fftconv_ref
from dssm_kernels.ops.ssm_scan import ssm_scan, ssm_scan_ref
from dssm_kernels.ops.ssm_step import ssm_step, ssm_step_ref
from dssm_kernels.ops.vandermonde import vandermonde, vandermonde_ref
from dssm_kernels.ops.vandermonde_transpose import vandermonde_transpose, vandermonde_transpose_ref

__version__ = "0.1.0"
__all__ = [
    "BACKENDS",
    "vandermonde", "vandermonde_transpose", "cauchy", "fftconv", "ssm_scan", "ssm_step", "diag_scan",
    "vandermonde_ref", "vandermonde_transpose_ref", "cauchy_ref", "fftconv_ref", "ssm_scan_ref", "ssm_step_ref",
    "diag_scan_ref",
]
