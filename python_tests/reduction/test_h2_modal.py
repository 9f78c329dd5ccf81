"""h2_reduction (never worse than its start, <= BT in h2, time-limited) and modal_truncation (its
bound, modes kept as they are)."""
import warnings

import numpy as np
import pytest

from dssm_kernels.reduction import (DiagonalSystem, balanced_truncation, h2_norm, h2_reduction, hinf_norm,
                                    modal_truncation)
from dssm_kernels.reduction.h2 import P_MIN
from testing import accumulated, random_system


def _rel_h2(sys, red, horizon=None):
    return h2_norm(sys - red, horizon) / h2_norm(sys, horizon)


def _h2_rounding(sys, red, e_rel):
    """Rounding in a relative h2 error e = sqrt(q) / ||G||_2: q is a quadratic form over the
    n = 2 (N + N_r) augmented modes of sys - red, exact to ~n^2 eps ||G||^2 (its terms are of the
    order of ||G||^2 on these well-conditioned systems), so e is exact to ~n^2 eps / (2 e)."""
    n = 2 * (sys.n_modes + red.n_modes)
    return accumulated(n * n) / (2 * e_rel)


@pytest.mark.parametrize("dt,disc", [(None, "zoh"), (0.1, "zoh"), (0.3, "bilinear")])
def test_h2_error_at_most_bt(dt, disc):
    """Eight systems per kind (two batches of four) at ranks 2 and 5: the h2 error of h2_reduction is
    <= BT's at the same rank (the start), strictly smaller somewhere, and reported correctly."""
    rng = np.random.default_rng(0)
    improved = 0
    for rank in (2, 5):
        sys = random_system(rng, 6, dt=dt, disc=disc, n_real=1, batch=(4,))
        bt, _ = balanced_truncation(sys, rank=rank)
        h2, info = h2_reduction(sys, rank, max_iter=150)
        e_bt, e_h2 = _rel_h2(sys, bt), _rel_h2(sys, h2)
        assert np.all(e_h2 <= e_bt + _h2_rounding(sys, bt, e_bt))
        improved += int(np.sum(e_h2 < (1 - 1e-3) * e_bt))
        np.testing.assert_allclose(info.extra["h2_error"], e_h2, rtol=1e-6)
        np.testing.assert_allclose(info.extra["h2_error_init"], e_bt, rtol=1e-6)
        assert np.all(info.rank == rank) and np.all(h2.lam.real < 0) and info.error_bound is None
    assert improved >= 4


@pytest.mark.parametrize("dt,horizon", [(None, 3.0), (0.1, 60)])
def test_time_limited_h2_at_most_time_limited_bt(dt, horizon):
    sys = random_system(np.random.default_rng(1), 6, dt=dt, batch=(3,))
    bt, _ = balanced_truncation(sys, rank=4, horizon=horizon)
    h2, info = h2_reduction(sys, 4, horizon=horizon, max_iter=150)
    e_bt = _rel_h2(sys, bt, horizon)
    assert np.all(_rel_h2(sys, h2, horizon) <= e_bt + _h2_rounding(sys, bt, e_bt))
    assert np.all(h2.lam.real < 0)


def test_never_worse_than_its_start():
    """From the modal start (poor), and with no iterations at all (the start itself)."""
    sys = random_system(np.random.default_rng(2), 6, dt=0.1, batch=(3,))
    modal, _ = modal_truncation(sys, 4)
    h2, info = h2_reduction(sys, 4, init="modal", max_iter=20)
    e_modal = _rel_h2(sys, modal)
    assert np.all(_rel_h2(sys, h2) <= e_modal + _h2_rounding(sys, modal, e_modal))
    same, info0 = h2_reduction(sys, 4, init=modal, max_iter=0)
    K = modal.kernel(40)   # 40 steps of a recurrence, rebuilt from the same modes: rounding only
    np.testing.assert_allclose(same.kernel(40), K, rtol=0, atol=accumulated(40) * np.abs(K).max())
    assert not info0.extra["improved"].any()


def test_discrete_poles_stay_off_zero():
    """Regression: on this system (found by test_h2_never_worse_than_bt) the optimiser drove the pole to
    z = exp(-460); from_modal moved it to 1e-200 with a warning and the layer's B, C came out ~1e103
    (inf in a float32 layer) while the info reported an improvement. Now |z| >= P_MIN, nothing warns, the
    parameters fit float32, and the reported error is the realised system's, at most BT's."""
    sys = DiagonalSystem(np.array([-0.02230571 + 1.23616312j, -0.04015748 + 4.02332681j, -1.73272537 + 0j]),
                         np.array([64.27337439 + 90.07025231j, -6.44998868 + 141.16003862j, -141.7261766 + 94.73193305j]),
                         np.array([-24.67161226 + 6.16510774j, -11.65138752 + 26.55919166j, 11.10097461 + 3.83885212j]),
                         -0.00768888034853822, dt=0.05, disc="zoh")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h2, info = h2_reduction(sys, 1, max_iter=30)
    bt, _ = balanced_truncation(sys, rank=1)
    assert np.all(np.abs(h2.std.p) >= P_MIN * (1 - 1e-12))
    for x in (h2.lam, h2.B, h2.C):
        assert np.all(np.isfinite(x.astype(np.complex64)))
    e_bt, e_h2 = _rel_h2(sys, bt), _rel_h2(sys, h2)
    assert e_h2 <= e_bt + _h2_rounding(sys, bt, e_bt)
    np.testing.assert_allclose(info.extra["h2_error"], e_h2, rtol=1e-9)


def test_unstable_modes_warn_and_stay_finite():
    sys = random_system(np.random.default_rng(3), 5, dt=0.1)
    lam = sys.lam.copy()
    lam[0] = 0.03 + 1j
    sys = DiagonalSystem(lam, sys.B, sys.C, sys.D, dt=0.1)
    with pytest.warns(RuntimeWarning, match="unstable mode"):
        red, info = h2_reduction(sys, 4, max_iter=50)
    assert np.all(np.isfinite(red.lam)) and np.isfinite(info.extra["h2_error"])


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(rank=4, init="random"), ValueError, r"init must be one of \('bt', 'modal'\) or a DiagonalSystem"),
    (dict(rank=10), ValueError, r"rank must satisfy 1 <= rank < 10"),
    (dict(rank=None), ValueError, r"rank is required"),
    (dict(rank=4, max_iter=-1), ValueError, r"max_iter must be an int >= 0"),
])
def test_h2_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        h2_reduction(random_system(np.random.default_rng(0), 5), **kwargs)


def test_h2_init_must_match():
    sys = random_system(np.random.default_rng(0), 5, dt=0.1)
    with pytest.raises(ValueError, match="init must match sys's batch shape"):
        h2_reduction(sys, 4, init=random_system(np.random.default_rng(1), 2))


@pytest.mark.parametrize("dt", [None, 0.1])
def test_modal_bound_and_kept_modes(dt):
    rng = np.random.default_rng(4)
    for _ in range(10):
        sys = random_system(rng, 6, dt=dt, n_real=2)
        for rank in (1, 3, 6, 9):
            red, info = modal_truncation(sys, rank)
            # rounding of the grid norm of sys - red: ~n eps ||G|| (n <= 12 modes); 1e-11 ||G|| is 4.5e4 eps
            assert hinf_norm(sys - red) <= info.error_bound + 1e-11 * hinf_norm(sys)
            kept = info.extra["kept"][info.extra["kept"] >= 0]
            live = np.abs(red.C) > 0
            np.testing.assert_array_equal(red.lam[live], sys.lam[kept])
            np.testing.assert_array_equal(red.C[live], sys.C[kept])
            real = sys.std.real_modes()[kept]
            assert info.rank == np.sum(np.where(real, 1, 2)) <= rank
            if dt:
                assert abs(red.kernel(1)[0] - sys.kernel(1)[0]) <= 1e-12 * (1 + abs(sys.kernel(1)[0]))


def test_modal_keeps_the_dominant_mode_and_honours_max_modes():
    lam = np.array([-1 + 1j, -0.01 + 3j, -2.0 + 0j, -0.5 + 5j])
    C = np.array([1, 0.5, 1, 0.1], complex)
    sys = DiagonalSystem(lam, np.ones(4), C)
    red, info = modal_truncation(sys, 2)
    assert red.lam[0] == lam[1]                          # |cb| / |Re lam| = 50: by far the largest
    red, info = modal_truncation(sys, 6, max_modes=2)
    assert red.n_modes == 2 and set(info.extra["kept"]) == {0, 1}
    red, info = modal_truncation(sys, 3, horizon=2.0)    # by h2 over [0, 2]: no bound then
    assert info.error_bound is None and info.rank == 3


def test_modal_bad_rank():
    with pytest.raises(ValueError, match=r"rank must satisfy 1 <= rank < 6"):
        modal_truncation(random_system(np.random.default_rng(0), 3), 6)


def test_time_limited_h2_starts_from_a_stable_system():
    """Time-limited BT can return unstable poles (here |p| = 1.098 at horizon 4): time-limited h2 then
    starts that channel from infinite-horizon BT. Unfixed, such starts on a trained S4D's channels reached
    |p| = 4.5, and |p|^255 made reduce_model(method="tlh2", horizon=256) fail."""
    from dssm_kernels.reduction.h2 import H2
    from dssm_kernels.reduction.reductor import SystemContext
    sys = random_system(np.random.default_rng(0), 4, dt=0.5, decay=(0.001, 0.05))
    tl_bt, _ = balanced_truncation(sys, rank=1, horizon=4)
    assert np.abs(tl_bt.std.p).max() > 1                       # the case: an unstable time-limited start
    method = H2("test", 4, None, init="bt", max_iter=10)
    (start,) = method._start([SystemContext(sys, 4, "test")], [1])
    assert np.all(np.abs(start.p) < 1)
    red, _ = h2_reduction(sys, 1, horizon=4, max_iter=10)
    assert np.all(np.abs(red.std.p) < 1)
