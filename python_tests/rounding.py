"""Tolerances derived from floating-point rounding, for tests that compare two different computations.

Two evaluations of the same n-term sum or n-step recurrence (another summation order, FMA or not,
another BLAS or SIMD kernel on another processor) each carry a relative error of at most about
n * eps in the magnitudes summed (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
section 3.1), so they agree to 2 n eps; SAFETY covers the few operations per term and the constants.
Nothing here depends on the machine: the suite must pass on any x86-64 processor and thread count.
"""
import numpy as np

EPS64 = float(np.finfo(np.float64).eps)   # 2.2e-16, the float64 unit roundoff times 2
SAFETY = 8


def accumulated(n_terms: int, eps: float = EPS64) -> float:
    """Relative tolerance (to the magnitude of the terms) for two evaluations of an n-term sum."""
    return SAFETY * 2 * max(int(n_terms), 1) * eps
