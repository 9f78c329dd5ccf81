"""Singular perturbation, balanced (BSP) and modal (MSP), on SISO systems: the reduced DC gain is the full
one (G(0) continuous, G(1) discrete) to rounding, the error bounds hold (BSP: the BT bound 2 sum of the
discarded HSVs; MSP: its per-mode bound), BSP is the steady-state elimination of BT's discarded states,
and BSP beats BT at low frequency where BT beats it at high."""
import numpy as np
import pytest

from dssm_kernels.reduction import (DiagonalSystem, balanced_singular_perturbation, balanced_truncation, hinf_norm,
                                    modal_singular_perturbation, modal_truncation)
from dssm_kernels.reduction.modal import _moebius_peak
from dssm_kernels.reduction.reductor import SystemContext
from testing import accumulated, random_system

KINDS = [(None, "zoh"), (0.1, "zoh"), (0.5, "bilinear")]


def _dc(sys) -> complex:
    """G at s = 0 (continuous) or z = 1 (discrete), from the standard form."""
    return complex(sys.std.response(np.array([1.0 + 0j if sys.discrete else 0j]))[0, 0, 0])


def _dc_rounding(sys) -> float:
    """G(DC) sums 2N terms r / (x - p): exact to ~2N eps times the largest term (plus d)."""
    s = sys.std
    terms = np.abs(s.r) / np.abs((1.0 if s.discrete else 0.0) - s.p)
    return accumulated(2 * sys.n_modes + 1) * (2 * terms.sum() + abs(float(s.d[..., 0, 0])))


def test_bsp_bound_and_dc_gain_on_120_random_systems():
    """||G - G_r||_inf <= 2 sum_{i>r} sigma_i (slack 1e-11 ||G|| for rounding, test_reduction_bt.py) and
    G_r(DC) = G(DC) to the rounding of both sums, plus the balancing's own (~cond * eps |G(DC)|: the
    reduced realisation is exact to ~1e3 eps ||G|| on these systems, test_reduction_bt.py)."""
    rng = np.random.default_rng(77)
    worst = 0.0
    for i in range(120):
        N = int(rng.integers(2, 7))
        dt, disc = KINDS[i % 3]
        sys = random_system(rng, N, dt=dt, disc=disc, n_real=int(rng.integers(0, 3)))
        r = int(rng.integers(1, 2 * N))
        red, info = balanced_singular_perturbation(sys, rank=r)
        g = hinf_norm(sys)
        err = hinf_norm(sys - red)
        assert np.all(red.lam.real < 0)
        assert err <= info.error_bound + 1e-11 * g, (i, err, info.error_bound)
        assert abs(_dc(red) - _dc(sys)) <= _dc_rounding(sys) + _dc_rounding(red) + 1e-11 * g, i
        if info.error_bound > 1e-6 * g:
            worst = max(worst, err / info.error_bound)
    assert 0.5 < worst <= 1 + 1e-5                     # the bound is nearly attained somewhere


@pytest.mark.parametrize("dt,disc", KINDS)
def test_bsp_is_the_steady_state_elimination(dt, disc):
    """Against the formula applied by hand to the minimal balanced realisation (order 11: the real mode's
    twin has HSV 0): continuous A11 - A12 A22^-1 A21 ..., discrete with (I - A22)^-1; transfer functions
    agree to 1e-9."""
    sys = random_system(np.random.default_rng(3), 6, dt=dt, disc=disc, n_real=1)
    bal = SystemContext(sys, None, "test").balancing
    n = 11
    assert bal.numerical_rank == n
    A, B, C = bal.truncation(n)
    d = bal.d
    w = np.linspace(0, np.pi if dt else 20, 201)
    x = np.exp(1j * w) if dt else 1j * w
    for r in (2, 5, 9):
        A11, A12, A21, A22 = A[:r, :r], A[:r, r:], A[r:, :r], A[r:, r:]
        X = np.linalg.inv(np.eye(n - r) - A22) if dt else -np.linalg.inv(A22)
        Ar, Br, Cr, dr = A11 + A12 @ X @ A21, B[:r] + A12 @ X @ B[r:], C[:, :r] + C[:, r:] @ X @ A21, \
            d + C[:, r:] @ X @ B[r:]
        want = np.array([(Cr @ np.linalg.solve(xi * np.eye(r) - Ar, Br) + dr).item() for xi in x])
        red, _ = balanced_singular_perturbation(sys, rank=r)
        assert np.max(np.abs(red.frequency_response(w) - want)) <= 1e-9 * np.max(np.abs(want))


def test_bsp_matches_low_frequencies_bt_high_ones():
    """The trade the two make (continuous): BSP keeps G(0) and changes D = G(inf); BT keeps D and
    misses G(0)."""
    sys = random_system(np.random.default_rng(4), 6, n_real=1)
    bt, _ = balanced_truncation(sys, rank=4)
    bsp, _ = balanced_singular_perturbation(sys, rank=4)
    assert abs(_dc(bsp) - _dc(sys)) < 1e-6 * abs(_dc(bt) - _dc(sys))
    assert abs(float(bt.D) - float(sys.D)) <= 1e-12 * (1 + abs(float(sys.D))) < abs(float(bsp.D) - float(sys.D))


@pytest.mark.parametrize("dt,disc", KINDS)
def test_msp_bound_and_dc_gain(dt, disc):
    """MSP keeps the modes of largest bound, the others' DC gain added to D: bound and DC gain as above;
    the same kept modes' lam, B, C as they are."""
    rng = np.random.default_rng(5)
    for _ in range(8):
        sys = random_system(rng, 6, dt=dt, disc=disc, n_real=2)
        g = hinf_norm(sys)
        for rank in (1, 3, 6, 9):
            red, info = modal_singular_perturbation(sys, rank)
            assert hinf_norm(sys - red) <= info.error_bound + 1e-11 * g
            assert abs(_dc(red) - _dc(sys)) <= _dc_rounding(sys) + _dc_rounding(red)
            kept = info.extra["kept"][info.extra["kept"] >= 0]
            live = np.abs(red.C) > 0
            np.testing.assert_array_equal(red.lam[live], sys.lam[kept])
            np.testing.assert_array_equal(red.C[live], sys.C[kept])


def test_msp_discrete_bound_is_the_moebius_peak():
    """sup_{|z|=1} |1 - z| / |z - p| in closed form against a dense sweep of the circle (2e5 points; the
    peak is smooth at this damping, so the sweep is within 1e-6 of it) and never above the crude
    2 / (1 - |p|)."""
    rng = np.random.default_rng(6)
    p = rng.uniform(0.2, 0.98, 40) * np.exp(1j * rng.uniform(-np.pi, np.pi, 40))
    z = np.exp(1j * np.linspace(-np.pi, np.pi, 200_001))
    sweep = np.max(np.abs(1 - z[:, None]) / np.abs(z[:, None] - p), 0)
    got = _moebius_peak(p)
    assert np.all(got >= sweep * (1 - 1e-12)) and np.all(got <= sweep * (1 + 1e-6))
    assert np.all(got <= 2 / (1 - np.abs(p)) * (1 + 1e-12))


def test_msp_beats_modal_truncation_at_dc():
    sys = random_system(np.random.default_rng(8), 6, dt=0.1, n_real=1)
    mt, _ = modal_truncation(sys, 4)
    msp, _ = modal_singular_perturbation(sys, 4)
    assert abs(_dc(msp) - _dc(sys)) < 1e-6 * abs(_dc(mt) - _dc(sys))


@pytest.mark.parametrize("call,match", [
    (lambda s: balanced_singular_perturbation(s), r"give rank or tol \(or both\), got neither"),
    (lambda s: balanced_singular_perturbation(s, rank=6), r"rank must satisfy 1 <= rank < 6"),
    (lambda s: modal_singular_perturbation(s, 0), r"rank must satisfy 1 <= rank < 6"),
    (lambda s: modal_singular_perturbation(s, None), r"rank is required"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(random_system(np.random.default_rng(0), 3, dt=0.1))


def test_tol_picks_the_smallest_rank_meeting_the_bound():
    sys = random_system(np.random.default_rng(9), 6)
    bt, info_bt = balanced_truncation(sys, tol=0.05)
    bsp, info = balanced_singular_perturbation(sys, tol=0.05)
    assert info.rank == info_bt.rank and info.error_bound <= 0.05
    assert hinf_norm(sys - bsp) <= 0.05 * (1 + 1e-9)
    assert isinstance(bsp, DiagonalSystem)
