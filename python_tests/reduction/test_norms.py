"""h2_norm against direct sums/integrals of the impulse response; hinf_norm against dense frequency sweeps."""
import numpy as np
import pytest
from scipy.integrate import simpson

from dssm_kernels.reduction import DiagonalSystem, h2_norm, hinf_norm
from testing import accumulated, mp_energy, random_system, rel


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_h2_discrete_is_the_kernel_norm(disc):
    """Against the kernel summed directly and against the closed form in 40 digits (_mp_energy), on
    both sides of the 1024 samples h2_norm sums directly (below them the direct reference is nearly
    h2_norm's own computation, so the 40-digit closed form is the independent one there).
    Tolerance (was 1e-12 relative, below the rounding of a 500-sample sum): every sample sums 2N + 1
    terms and the norm L squares, each with relative error ~eps, in magnitudes K_abs[l] = |D| [l = 0]
    + 2 sum_n |C_n dB_n| |dA_n|^l: accumulated(L + 2N + 1) ||K_abs|| / ||K|| relative; the closed-form
    tail past sample 1024 adds a (2N)^2-term quadratic form, covered by the same allowance."""
    sys = random_system(np.random.default_rng(0), 6, dt=0.1, disc=disc, decay=(0.05, 1.0), n_real=1)
    K = sys.kernel(20000)                                   # |dA|^20000 <= exp(-100): the tail is gone
    dA, dB = sys.discretized()
    k_abs = 2 * np.abs(sys.C * dB) @ (np.abs(dA)[:, None] ** np.arange(20000))
    k_abs[0] += abs(float(sys.D))
    for L in (1, 2, 37, 500, 1024, 1025, 5000, None):
        n = L or 20000
        tol = accumulated(n + 2 * sys.n_modes + 1) * np.linalg.norm(k_abs[:n]) / np.linalg.norm(K[:n])
        got = h2_norm(sys, L)
        assert abs(got - np.linalg.norm(K[:n])) <= tol * np.linalg.norm(K[:n]), L
        assert abs(got - mp_energy(sys, L)) <= tol * np.linalg.norm(K[:n]), L


def test_h2_continuous_is_the_impulse_response_energy():
    sys = random_system(np.random.default_rng(1), 5, decay=(0.1, 1.0), n_real=1)
    t = np.linspace(0, 300, 3_000_001)                      # exp(-2 * 0.1 * 300): the tail is gone
    h = sys.impulse_response(t)
    assert abs(h2_norm(sys) - np.sqrt(simpson(h ** 2, x=t))) <= 1e-9 * h2_norm(sys)
    m = t <= 4.0
    assert abs(h2_norm(sys, 4.0) - np.sqrt(simpson(h[m] ** 2, x=t[m]))) <= 1e-9 * h2_norm(sys, 4.0)


def test_h2_finite_horizon_of_unstable_system():
    """Unstable modes: finite horizon is well defined; no horizon -> warning and the default one."""
    sys = random_system(np.random.default_rng(2), 4, dt=0.1)
    lam = sys.lam.copy()
    lam[0] = 0.02 + 0.5j
    bad = DiagonalSystem(lam, sys.B, sys.C, sys.D, dt=0.1)
    K = bad.kernel(300)
    # 300 samples of 2N + 1 terms: the direct sum's rounding (1e-12 was below it)
    assert abs(h2_norm(bad, 300) - np.linalg.norm(K)) <= accumulated(300 + 2 * bad.n_modes + 1) * np.linalg.norm(K)
    with pytest.warns(RuntimeWarning, match="unstable mode"):
        v = h2_norm(bad)
    assert np.isfinite(v)
    with pytest.warns(RuntimeWarning, match="unstable mode"):
        assert hinf_norm(bad) == np.inf


@pytest.mark.parametrize("dt", [None, 0.1])
def test_hinf_at_least_a_dense_sweep_and_attained(dt):
    """The refined grid is never below a 10^6-point sweep, and its value is attained: |G(w*)| = norm."""
    sys = random_system(np.random.default_rng(3), 6, dt=dt, n_real=1)
    w = np.linspace(0, np.pi, 1_000_001) if dt else np.linspace(0, 30, 1_000_001)
    dense = np.abs(sys.frequency_response(w)).max()
    val, at = hinf_norm(sys, return_frequency=True)
    assert val >= dense * (1 - 1e-12)
    assert abs(abs(sys.frequency_response([at])[0]) - val) <= 1e-12 * val
    assert val <= dense * (1 + 1e-4)                        # and the sweep is close (no spurious peak)


def test_hinf_finds_a_very_sharp_peak():
    """Re lam = -1e-6: the resonance is 1e-6 wide, far below any uniform grid's spacing."""
    lam = np.array([-1e-6 + 7.3j, -0.5 + 1j])
    sys = DiagonalSystem(lam, np.ones(2), np.array([1e-3, 1.0]))
    peak = abs(sys.frequency_response([7.3])[0])            # ~ 1e-3 / 1e-6 = 1e3
    w = np.linspace(0, 30, 1_000_001)
    assert np.abs(sys.frequency_response(w)).max() < 0.5 * peak   # the dense sweep misses it
    assert hinf_norm(sys) >= peak * (1 - 1e-12)


def test_hinf_discrete_matches_fft_of_kernel():
    sys = random_system(np.random.default_rng(4), 5, dt=0.2, decay=(0.1, 1.0))
    K = sys.kernel(5000)
    assert rel(hinf_norm(sys), np.abs(np.fft.rfft(K, 1 << 22)).max()) <= 1e-9


def test_batched_norms():
    """Batched equals one by one up to rounding, not bitwise (was ==): the batched kernel and quadratic
    form run other einsum / BLAS paths than a single system's. h2: <= 1024 direct samples of 2N + 1
    terms plus a (2N)^2-term tail; hinf: each grid value sums 2N + 1 terms (the polished peak moves
    only to second order with them)."""
    sys = random_system(np.random.default_rng(5), 3, dt=0.1, batch=(2, 2))
    n = 2 * sys.n_modes
    for f, terms in ((h2_norm, 1024 + n + 1 + n * n), (hinf_norm, n + 1)):
        v = f(sys)
        one = f(sys[1, 0])
        assert v.shape == (2, 2) and abs(v[1, 0] - one) <= accumulated(terms) * one


@pytest.mark.parametrize("f", [h2_norm, hinf_norm])
def test_bad_system(f):
    with pytest.raises(TypeError, match="sys must be a DiagonalSystem.* got ndarray"):
        f(np.ones(3))
