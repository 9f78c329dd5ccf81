"""The six SSM ops of DESIGN.md; each module holds its reference, autograd.Function and public function."""
from dssm_kernels.ops.cauchy import cauchy, cauchy_ref
from dssm_kernels.ops.fftconv import fftconv, fftconv_ref
from dssm_kernels.ops.vandermonde import vandermonde, vandermonde_ref
from dssm_kernels.ops.vandermonde_transpose import vandermonde_transpose, vandermonde_transpose_ref

__all__ = ["fftconv", "fftconv_ref", "cauchy", "cauchy_ref", "vandermonde", "vandermonde_ref", "vandermonde_transpose", "vandermonde_transpose_ref"]
