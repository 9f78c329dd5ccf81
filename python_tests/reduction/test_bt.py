"""Balanced truncation: the error bounds on 200 random systems, re-diagonalisation that keeps the
transfer function, rank selection by tol, rank deficiency, finite horizons and unstable modes, bad input."""

import numpy as np
import pytest

from dssm_kernels.reduction import (DiagonalSystem, balanced_truncation, hankel_singular_values, hinf_norm,
                                    h2_norm)
from dssm_kernels.reduction.reductor import SystemContext
from testing import random_system


def test_bounds_on_200_random_systems():
    """sigma_{r+1} <= ||G - G_r||_inf <= 2 sum_{i>r} sigma_i on 200 seeded random stable systems
    (continuous, ZOH, bilinear; N in 2..6 with up to two real modes; every rank 1..2N-1 drawn).

    Tolerances. Upper bound: both sides carry rounding. The reduced realisation (balancing transform,
    then re-diagonalisation, conditioned up to ~1e3 on these systems) is exact to ~cond * eps * ||G||,
    and so is the grid norm of the difference; measured: at most 1.1e3 eps ||G|| where the bound is
    exactly 0 (only structurally zero HSVs discarded) and 10 eps ||G|| elsewhere. SLACK = 1e-11 ||G||
    (4.5e4 eps) keeps a 40x margin on any processor. Lower bound: the grid can only under-estimate
    the peak; polished, it misses by < 1e-6 relative."""
    rng = np.random.default_rng(2024)
    kinds = [(None, "zoh"), (0.1, "zoh"), (0.5, "bilinear")]
    worst_low, worst_high = 0.0, 0.0
    for i in range(200):
        N = int(rng.integers(2, 7))
        dt, disc = kinds[i % 3]
        sys = random_system(rng, N, dt=dt, disc=disc, n_real=int(rng.integers(0, 3)))
        r = int(rng.integers(1, 2 * N))
        red, info = balanced_truncation(sys, rank=r)
        err, g = hinf_norm(sys - red), hinf_norm(sys)
        assert np.all(red.lam.real < 0)
        slack = 1e-11 * g
        assert err <= info.error_bound + slack, (i, err, info.error_bound)
        assert info.hsv[info.rank] <= err * (1 + 1e-6) + slack, (i, err, info.hsv)
        if info.error_bound > 1e-6 * g:   # where the slack is at most 1e-5 of the bound
            worst_high = max(worst_high, err / info.error_bound)
            worst_low = max(worst_low, info.hsv[info.rank] / err)
    # both bounds nearly attained somewhere; the upper limits are the per-system ones above
    assert 0.5 < worst_high <= 1 + 1e-5 and 0.5 < worst_low <= 1 + 1e-6 + 1e-5


@pytest.mark.parametrize("dt,disc", [(None, "zoh"), (0.05, "zoh"), (0.3, "zoh"), (0.2, "bilinear")])
def test_rediagonalisation_keeps_the_transfer_function(dt, disc):
    """The modal form handed back (through the discrete-to-continuous mode conversion) has the transfer
    function of the balanced real truncation (A_r, B_r, C_r, d) to 1e-9 relative on a grid."""
    rng = np.random.default_rng(7)
    for _ in range(6):
        sys = random_system(rng, 7, dt=dt, disc=disc, n_real=int(rng.integers(0, 3)))
        for r in (1, 3, 6, 9):
            A, B, C = SystemContext(sys, None, "test").balancing.truncation(r)
            red, info = balanced_truncation(sys, rank=r)
            w = np.linspace(0, np.pi if dt else 20, 301)
            x = np.exp(1j * w) if dt else 1j * w
            want = np.array([(C @ np.linalg.solve(xi * np.eye(r) - A, B)).item() for xi in x]) + sys.std.d[..., 0, 0]
            got = red.frequency_response(w)
            assert np.max(np.abs(got - want)) <= 1e-9 * np.max(np.abs(want))
            n_real = int(np.sum(red.std.real_modes() & (np.abs(red.C) > 0)))
            assert (r - n_real) % 2 == 0 and red.n_modes >= (r + n_real) // 2


def test_discrete_reduction_keeps_k0():
    sys = random_system(np.random.default_rng(8), 6, dt=0.1)
    red, _ = balanced_truncation(sys, rank=3)
    assert abs(red.kernel(1)[0] - sys.kernel(1)[0]) <= 1e-12 * abs(sys.kernel(1)[0])


def test_tol_picks_the_smallest_rank_meeting_it():
    sys = random_system(np.random.default_rng(9), 6)
    hsv = hankel_singular_values(sys)
    tails = 2 * np.array([hsv[r:].sum() for r in range(13)])
    for tol in (tails[1] * 1.01, tails[4] * 1.0001, tails[7] * (1 + 1e-12)):
        red, info = balanced_truncation(sys, tol=tol)
        want = int(np.argmax(tails <= tol))
        assert info.rank == want and info.error_bound <= tol and tails[want - 1] > tol
        assert hinf_norm(sys - red) <= tol * (1 + 1e-9)
    _, info = balanced_truncation(sys, rank=2, tol=tails[7] * 1.01)    # both: the smaller
    assert info.rank == 2


def test_rank_above_the_numerical_rank_stops_there():
    """Modes with C = 0 are unobservable: the real order of the minimal system is 2 * 3."""
    sys = random_system(np.random.default_rng(10), 5)
    C = sys.C.copy()
    C[3:] = 0
    sys = DiagonalSystem(sys.lam, sys.B, C, sys.D)
    red, info = balanced_truncation(sys, rank=9)
    assert info.rank == 6 and np.all(info.hsv[6:] == 0)     # structural zeros, exactly
    assert hinf_norm(sys - red) <= 1e-10 * hinf_norm(sys)


def test_batched_matches_one_by_one_and_pads():
    sys = random_system(np.random.default_rng(11), 5, dt=0.1, n_real=1, batch=(2, 3))
    red, info = balanced_truncation(sys, rank=5)
    assert red.batch_shape == (2, 3) and info.hsv.shape == (2, 3, 10) and info.rank.shape == (2, 3)
    one, one_info = balanced_truncation(sys[1, 2], rank=5)
    w = np.linspace(0, np.pi, 50)
    np.testing.assert_allclose(red[1, 2].frequency_response(w), one.frequency_response(w), rtol=1e-12, atol=1e-12)
    assert one_info.error_bound == info.error_bound[1, 2]
    pad = np.abs(red.C) == 0
    assert pad.sum() > 0 and np.allclose(red.lam[pad], -0.5, rtol=1e-12) and np.all(red.B[pad] == 1)   # inert padding


@pytest.mark.parametrize("dt,horizon", [(None, 5.0), (0.1, 100)])
def test_finite_horizon(dt, horizon):
    """Time-limited BT: no guaranteed bound (None), but the error over the horizon is small and
    shrinks with the rank."""
    sys = random_system(np.random.default_rng(12), 6, dt=dt)
    errs = []
    for r in (2, 6, 10):
        red, info = balanced_truncation(sys, rank=r, horizon=horizon)
        assert info.error_bound is None and info.hsv_tail.shape == ()
        errs.append(h2_norm(sys - red, horizon) / h2_norm(sys, horizon))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-2


@pytest.mark.parametrize("dt", [None, 0.1])
def test_unstable_modes_take_the_finite_horizon_path(dt):
    rng = np.random.default_rng(13)
    sys = random_system(rng, 6, dt=dt)
    lam = sys.lam.copy()
    lam[:2] = [0.05 + 2j, 0.0]
    sys = DiagonalSystem(lam, sys.B, sys.C, sys.D, dt=dt)
    with pytest.warns(RuntimeWarning, match="unstable mode"):
        red, info = balanced_truncation(sys, rank=6)
    assert info.error_bound is None and info.options["horizon"] is not None
    assert np.all(np.isfinite(red.lam)) and np.all(np.isfinite(red.C)) and np.isfinite(red.D)
    h = info.options["horizon"]
    assert h2_norm(sys - red, h) < 0.5 * h2_norm(sys, h)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(rank=0), ValueError, r"rank must satisfy 1 <= rank < 8 \(the real order 2N"),
    (dict(rank=8), ValueError, r"rank must satisfy 1 <= rank < 8"),
    (dict(rank=2.0), TypeError, r"rank must be an int or None, got float"),
    (dict(), ValueError, r"give rank or tol \(or both\), got neither"),
    (dict(tol=-1.0), ValueError, r"tol must be a finite number > 0 \(or None\), got -1.0"),
    (dict(tol="x"), TypeError, r"tol must be a number or None, got str"),
    (dict(rank=2, horizon=3.5), TypeError, r"horizon of a discrete system must be an int"),
])
def test_bad_arguments(kwargs, exc, match):
    sys = random_system(np.random.default_rng(0), 4, dt=0.1)
    with pytest.raises(exc, match=match):
        balanced_truncation(sys, **kwargs)


def test_non_finite_parameters_are_refused():
    with pytest.raises(ValueError, match="C must be finite"):
        DiagonalSystem(np.array([-1.0 + 1j]), np.ones(1), np.array([np.inf + 0j]))
    with pytest.raises(TypeError, match="sys must be a DiagonalSystem"):
        balanced_truncation("sys", rank=1)
