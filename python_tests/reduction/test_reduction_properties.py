"""Property-based tests of the reductors (hypothesis): random stable diagonal systems, continuous and
discrete (ZOH, bilinear), batched, with real poles, lightly damped and clustered modes, extreme
magnitudes; every rank; bad arguments.

Properties, for every drawn system and rank r:
- Hankel singular values are finite, non-negative and descending;
- balanced truncation: the reduced system is stable and sigma_{r+1} <= ||G - G_r||_inf <= 2 sum_{i>r}
  sigma_i (the grid norm under-estimates by < 1e-6 relative; both sides carry rounding of at most
  ~1e3 eps ||G||, test_reduction_bt.py measures it: slack 1e-10 ||G||);
- modal truncation: ||G - G_r||_inf <= its bound, same slack;
- balanced singular perturbation: the BT bound, and the DC gain kept;
- modal singular perturbation: its bound;
- on MIMO systems (S5, LRU), every bounded method (bt, bsp, modal, msp): its bound;
- h2 reduction: its h2 error is never above BT's at the same rank (its start), up to rounding;
- a bad argument gives a TypeError / ValueError naming it, never another exception.
"""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dssm_kernels import reduction as R
from testing import deadline, raises_clear_error, random_mimo

SETTINGS = dict(deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@st.composite
def systems(draw, max_modes=5, batch=True):
    """A stable DiagonalSystem: N modes (some real), decays over 4 decades, frequencies clustered or
    spread, B and C over 12 decades, continuous or discrete."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    N = draw(st.integers(1, max_modes))
    shape = (draw(st.sampled_from([(), (2,), (2, 2)])) if batch else ()) + (N,)
    n_real = draw(st.integers(0, N))
    decay = 10.0 ** rng.uniform(-3, 1, shape)
    spread = draw(st.sampled_from([0.01, 1.0, 10.0]))        # 0.01: clustered frequencies
    im = 1.0 + spread * rng.standard_normal(shape)
    im[..., N - n_real:] = 0.0
    lam = -decay + 1j * im
    scale_b, scale_c = 10.0 ** draw(st.integers(-6, 6)), 10.0 ** draw(st.integers(-6, 6))
    cn = lambda s: s * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))  # noqa: E731
    kind = draw(st.sampled_from([(None, "zoh"), (0.05, "zoh"), (0.5, "zoh"), (0.3, "bilinear")]))
    dt, disc = kind
    if dt is not None:   # keep dt Im lam inside (-pi, pi): the discrete poles stay distinct
        lam = lam.real + 1j * np.clip(lam.imag, -3.0 / dt, 3.0 / dt)
    D = rng.standard_normal(shape[:-1])
    return R.DiagonalSystem(lam, cn(scale_b), cn(scale_c), D, dt=dt, disc=disc)


def _max_rank(sys):
    """The reductors keep 1 .. 2N - 1 real states (2N, the whole real system, reduces nothing)."""
    return max(1, 2 * sys.n_modes - 1)


@settings(max_examples=40, **SETTINGS)
@given(systems())
def test_hankel_singular_values_are_sorted_and_non_negative(sys):
    hsv = R.hankel_singular_values(sys)
    assert hsv.shape == (*sys.batch_shape, 2 * sys.n_modes)
    assert np.all(np.isfinite(hsv)) and np.all(hsv >= 0)
    assert np.all(np.diff(hsv, axis=-1) <= 0)


@settings(max_examples=40, **SETTINGS)
@given(systems(batch=False), st.data())
def test_balanced_truncation_bounds(sys, data):
    r = data.draw(st.integers(1, _max_rank(sys)))
    red, info = R.balanced_truncation(sys, rank=r)
    g = R.hinf_norm(sys)
    err = R.hinf_norm(sys - red)
    slack = 1e-10 * g
    assert np.all(red.lam.real < 0)
    assert err <= info.error_bound + slack, (err, info.error_bound)
    if info.rank < info.hsv.shape[-1]:
        assert info.hsv[info.rank] <= err * (1 + 1e-6) + slack, (err, info.hsv)


@settings(max_examples=30, **SETTINGS)
@given(systems(batch=False), st.data())
def test_modal_truncation_bound(sys, data):
    r = data.draw(st.integers(1, _max_rank(sys)))
    red, info = R.modal_truncation(sys, r)
    g = R.hinf_norm(sys)
    assert R.hinf_norm(sys - red) <= info.error_bound + 1e-10 * g


@settings(max_examples=25, **SETTINGS)
@given(systems(batch=False), st.data())
def test_balanced_singular_perturbation_bound_and_dc_gain(sys, data):
    """BSP: the BT bound (same slack) and the DC gain (s = 0 / z = 1) kept to the rounding of the
    balancing (a relative 1e-9 of the sum of the terms' magnitudes covers ~1e3 eps cond on these)."""
    r = data.draw(st.integers(1, _max_rank(sys)))
    red, info = R.balanced_singular_perturbation(sys, rank=r)
    g = R.hinf_norm(sys)
    assert np.all(red.lam.real < 0)
    assert R.hinf_norm(sys - red) <= info.error_bound + 1e-10 * g
    x = np.array([1.0 + 0j]) if sys.discrete else np.array([0j])
    s = sys.std
    terms = 2 * np.sum(np.abs(s.r) / np.abs(x[0] - s.p)) + abs(float(s.d[..., 0, 0]))
    assert abs(red.std.response(x)[0, 0, 0] - s.response(x)[0, 0, 0]) <= 1e-9 * terms + 1e-10 * g


@settings(max_examples=15, **SETTINGS)
@given(systems(max_modes=4, batch=False), st.data())
def test_h2_never_worse_than_bt(sys, data):
    r = data.draw(st.integers(1, _max_rank(sys)))
    bt, _ = R.balanced_truncation(sys, rank=r)
    h2, _ = R.h2_reduction(sys, r, max_iter=30)
    n2 = R.h2_norm(sys)
    e_bt, e_h2 = R.h2_norm(sys - bt) / n2, R.h2_norm(sys - h2) / n2
    # the relative h2 error is the root of a quadratic form over n = 2 (N + N_r) modes: exact to
    # ~n^2 eps / (2 e) (test_reduction_h2_modal.py); 1e3 covers the constant
    n = 2 * (sys.n_modes + bt.n_modes)
    assert e_h2 <= e_bt + 1e3 * n * n * np.finfo(float).eps / max(e_bt, 1e-300)


@st.composite
def mimo_systems(draw, max_modes=4):
    """A stable MimoSystem (S5 / LRU layers' form): N modes (some real), 1-3 inputs and outputs, continuous
    or discrete, B and C over 6 decades."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    N, m, p = draw(st.integers(1, max_modes)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dt, disc = draw(st.sampled_from([(None, "zoh"), (0.1, "zoh"), (0.3, "bilinear")]))
    sys = random_mimo(rng, N, m, p, dt=dt, disc=disc, n_real=draw(st.integers(0, N)),
                      decay=(10.0 ** draw(st.integers(-3, -1)), 1.0))
    scale = 10.0 ** draw(st.integers(-3, 3))
    return R.MimoSystem(sys.lam, scale * sys.B, sys.C, sys.D, dt=dt, disc=disc)


BOUNDED = {"bt": R.balanced_truncation, "bsp": R.balanced_singular_perturbation,
           "modal": R.modal_truncation, "msp": R.modal_singular_perturbation}


@settings(max_examples=12, **SETTINGS)
@given(st.sampled_from(sorted(BOUNDED)), mimo_systems(), st.data())
def test_mimo_bounds(method, sys, data):
    """Every bounded method on MIMO systems: ||G - G_r||_inf (the peak of the largest singular value) within
    its bound, with the SISO tests' slack 1e-10 ||G||_inf for the grid and rounding."""
    r = data.draw(st.integers(1, _max_rank(sys)))
    red, info = BOUNDED[method](sys, rank=r)
    assert np.all(red.lam.real < 0)
    assert R.hinf_norm(sys - red) <= info.error_bound + 1e-10 * R.hinf_norm(sys), (method, info.error_bound)


@settings(max_examples=20, **SETTINGS)
@given(systems(batch=False), st.data())
def test_modal_singular_perturbation_bound(sys, data):
    r = data.draw(st.integers(1, _max_rank(sys)))
    red, info = R.modal_singular_perturbation(sys, r)
    assert R.hinf_norm(sys - red) <= info.error_bound + 1e-10 * R.hinf_norm(sys)


# ------------------------------------------------------------------------------------------ bad arguments
BAD_RANKS = [0, -1, 2.5, True, "3", None, 10**9, float("nan")]
BAD_TOLS = [0.0, -1.0, float("nan"), float("inf"), "0.1", True]
BAD_HORIZONS = [0, -5, 2.5, True, "10", float("nan"), float("inf")]


@settings(max_examples=40, **SETTINGS)
@given(systems(max_modes=3, batch=False), st.sampled_from(BAD_RANKS))
def test_bad_rank_is_refused(sys, rank):
    for call in (lambda: R.balanced_truncation(sys, rank=rank), lambda: R.modal_truncation(sys, rank),
                 lambda: R.h2_reduction(sys, rank, max_iter=1)):
        if rank is None:   # balanced_truncation needs rank or tol; the others need a rank
            assert raises_clear_error(call, ["rank", "tol"])
        else:
            assert raises_clear_error(call, ["rank"]), rank


@settings(max_examples=20, **SETTINGS)
@given(systems(max_modes=3, batch=False), st.sampled_from(BAD_TOLS))
def test_bad_tol_is_refused(sys, tol):
    assert raises_clear_error(lambda: R.balanced_truncation(sys, tol=tol), ["tol"]), tol


@settings(max_examples=30, **SETTINGS)
@given(systems(max_modes=3, batch=False), st.sampled_from(BAD_HORIZONS))
def test_bad_horizon_is_refused(sys, horizon):
    if sys.dt is None and isinstance(horizon, float) and np.isfinite(horizon) and horizon > 0:
        return   # a positive float is a valid continuous-time horizon
    for call in (lambda: R.hankel_singular_values(sys, horizon), lambda: R.h2_norm(sys, horizon),
                 lambda: R.balanced_truncation(sys, rank=1, horizon=horizon)):
        assert raises_clear_error(call, ["horizon"]), horizon


@settings(max_examples=30, **SETTINGS)
@given(st.sampled_from(["lam", "B", "C", "D", "dt", "disc"]),
       st.sampled_from(["nan", "inf", "shape", "type", "unstable_dt"]))
def test_bad_system_arguments(name, kind):
    args = {"lam": np.array([-0.1 + 1j, -1.0]), "B": np.ones(2), "C": np.ones(2), "D": 0.5, "dt": 0.1,
            "disc": "zoh"}
    bad = {"nan": np.array([np.nan, 1.0]), "inf": np.array([np.inf, 1.0]), "shape": np.ones(3),
           "type": "abc", "unstable_dt": -0.1 if name == "dt" else np.ones(3)}[kind]
    if (name in ("dt", "D") and kind == "shape") or (name == "D" and kind == "unstable_dt"):
        return   # batch-shaped arguments: any shape broadcasts with an unbatched system (a legal batch)
    if name == "disc":
        bad = "foh" if kind != "type" else 3
    args[name] = bad
    lam, B, C = args.pop("lam"), args.pop("B"), args.pop("C")
    assert raises_clear_error(lambda: R.DiagonalSystem(lam, B, C, **args), [name]), (name, kind)


def test_huge_horizon_costs_no_more_than_a_short_one():
    """The finite-horizon Gramians have a closed form in the horizon: 10**12 steps must not loop."""
    sys = R.DiagonalSystem(np.array([-0.01 + 1j, -0.5 + 0.2j]), np.ones(2), np.ones(2), dt=0.1)
    with deadline(60, "hankel_singular_values(horizon=10**12)"):
        near = R.hankel_singular_values(sys, 10**12)
    inf = R.hankel_singular_values(sys)
    np.testing.assert_allclose(near, inf, rtol=1e-9, atol=1e-12 * inf[0])
