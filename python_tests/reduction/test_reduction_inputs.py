"""Bad arguments to the reduction entry points that were accepted silently or failed with a bare
numpy error: each is refused with a TypeError / ValueError naming the argument."""
import numpy as np
import pytest
import torch

from dssm_kernels.nn import S4D
from dssm_kernels.reduction import (DiagonalSystem, balanced_truncation, h2_reduction, modal_truncation,
                                    reduce_model)
from testing import random_system


def _sys():
    return random_system(np.random.default_rng(0), 3, dt=0.1)


@pytest.mark.parametrize("call,exc,match", [
    # max_modes=0 gave a one-mode padded system, -1 the same, "a" a bare '<' TypeError
    (lambda s: balanced_truncation(s, rank=2, max_modes=0), ValueError,
     r"balanced_truncation: max_modes must be an int >= 1 \(or None\), got 0"),
    (lambda s: balanced_truncation(s, rank=2, max_modes=-1), ValueError, r"max_modes must be an int >= 1 \(or None\), got -1"),
    (lambda s: modal_truncation(s, 2, max_modes=0), ValueError,
     r"modal_truncation: max_modes must be an int >= 1 \(or None\), got 0"),
    (lambda s: modal_truncation(s, 2, max_modes="a"), TypeError,
     r"modal_truncation: max_modes must be an int or None, got str"),
    (lambda s: h2_reduction(s, 2, max_modes=0), ValueError, r"h2_reduction: max_modes must be an int >= 1 \(or None\), got 0"),
    (lambda s: h2_reduction(s, 2, max_modes=True), TypeError, r"h2_reduction: max_modes must be an int"),
])
def test_reductors_check_max_modes(call, exc, match):
    with pytest.raises(exc, match=match):
        call(_sys())


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(d_state=True), TypeError, r"reduce_model: d_state must be an int, got bool \(True\)"),
    (dict(d_state=4.0), TypeError, r"reduce_model: d_state must be an int, got float \(4.0\)"),
    (dict(d_state=-2), ValueError, r"reduce_model: d_state must be an int >= 2, got -2"),
    (dict(d_state=3), ValueError, r"reduce_model: d_state must be even \(conjugate pairs\), got 3"),
    (dict(tol=float("nan")), ValueError, r"reduce_model: tol must be a finite number > 0 \(or None\), got nan"),
    (dict(tol=0.0), ValueError, r"reduce_model: tol must be a finite number > 0 \(or None\), got 0.0"),
    (dict(d_state=4, method="BT"), ValueError, r"reduce_model: method must be one of \('bt', 'bsp', 'modal', 'msp', 'h2', "
                                               r"'tlh2'\)"),
    # max_iter was read only by method "h2": with "bt" anything passed
    (dict(d_state=4, max_iter="x"), TypeError, r"reduce_model: max_iter must be an int, got str \('x'\)"),
    (dict(d_state=4, max_iter=-1), ValueError, r"reduce_model: max_iter must be an int >= 0, got -1"),
    # the message named "horizon" for measure_steps
    (dict(d_state=4, measure_steps=2.5), TypeError,
     r"reduce_model: measure_steps of a discrete system must be an int number of steps, got 2.5"),
    (dict(d_state=4, measure_steps=0), ValueError, r"reduce_model: measure_steps must be >= 1 step, got 0"),
])
def test_reduce_model_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        reduce_model(S4D(2, 8, seed=0), **kwargs)


def test_reduce_model_takes_a_numpy_int_d_state():
    red, rep = reduce_model(S4D(2, 8, seed=0, dtype=torch.float64), d_state=np.int64(4))
    assert red.d_state == 4 and rep.layers[0].d_state_after == 4


@pytest.mark.parametrize("call,exc,match", [
    (lambda: DiagonalSystem(np.array([True, False]), 1, 1), TypeError,
     r"DiagonalSystem: lam must be numeric, got dtype bool"),
    (lambda: DiagonalSystem(np.array([-1 + 0j]), 1, 1, dt=True), TypeError,
     r"DiagonalSystem: dt must be numeric, got dtype bool"),
    (lambda: DiagonalSystem.from_std(np.ones(3) * 0.5, np.ones(2), 0.0, dt=0.1), ValueError,
     r"DiagonalSystem.from_std: p and r must broadcast to one shape \(..., N\), got \(3,\) and \(2,\)"),
    (lambda: DiagonalSystem.from_std(np.array([np.nan]), np.ones(1), 0.0), ValueError, r"from_std: p must be finite"),
    (lambda: DiagonalSystem.from_std(np.array([0.5]), np.ones(1), 0.0, dt=0.0), ValueError,
     r"DiagonalSystem.from_std: dt must be > 0"),       # was "lam must be finite" (log(p) / 0)
    (lambda: DiagonalSystem.from_std(np.array([0.5]), np.ones(1), 0.0, dt=0.1, disc="euler"), ValueError,
     r"DiagonalSystem.from_std: disc must be one of \('zoh', 'bilinear'\), got 'euler'"),
    (lambda: random_system(np.random.default_rng(0), 2, batch=(2,)) - random_system(np.random.default_rng(1), 2,
                                                                                  batch=(3,)),
     ValueError, r"DiagonalSystem: subtraction needs broadcastable batch shapes, got \(2,\) and \(3,\)"),
    (lambda: DiagonalSystem.stack([1, 2]), TypeError,
     r"DiagonalSystem.stack: systems must all be DiagonalSystems, got \['int'\]"),
    (lambda: DiagonalSystem.stack(_sys().flat() * 2, (5,)), ValueError,
     r"DiagonalSystem.stack: batch_shape \(5,\) holds 5 systems, got 2"),
])
def test_system_construction_checks(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
