"""MIMO diagonal systems (S5, LRU: one shared state, B (N, m), C (p, N)): closed-form Gramians, Hankel
singular values against a 60-digit oracle, trace-form h2 and sigma_max H-infinity norms against direct
computations, BT / BSP bounds on 200 random systems, modal truncation / MSP bounds, h2 reduction,
re-diagonalisation into a smaller MimoSystem, bad input."""
import mpmath as mp
import numpy as np
import pytest
import scipy.linalg as sl
from scipy.integrate import simpson

from dssm_kernels.reduction import (MimoSystem, balanced_singular_perturbation, balanced_truncation, gramians,
                                    h2_norm, h2_reduction, hankel_singular_values, hinf_norm, modal_singular_perturbation,
                                    modal_truncation)
from dssm_kernels.reduction.reductor import SystemContext
from dssm_kernels.reduction.system import augmented_to_real
from testing import accumulated, dense_lyapunov_hsv, random_mimo, rel

KINDS = [(None, "zoh"), (0.1, "zoh"), (0.5, "bilinear")]


@pytest.mark.parametrize("dt,disc", KINDS)
def test_gramians_solve_the_lyapunov_equations(dt, disc):
    """The closed form, mapped to the real realisation, against scipy's solvers: <= 1e-9 relative (the
    solvers' own backward error on these well-conditioned systems is ~1e-14)."""
    sys = random_mimo(np.random.default_rng(0), 5, 3, 2, dt=dt, disc=disc, n_real=1)
    A, B, C, _ = sys.realization()
    T = augmented_to_real(5)
    P, Q = (T @ G @ T.conj().T for G in gramians(sys))
    if dt:
        Ps, Qs = sl.solve_discrete_lyapunov(A, B @ B.T), sl.solve_discrete_lyapunov(A.T, C.T @ C)
    else:
        Ps, Qs = sl.solve_continuous_lyapunov(A, -B @ B.T), sl.solve_continuous_lyapunov(A.T, -C.T @ C)
    assert rel(P, Ps) <= 1e-9 and rel(Q, Qs) <= 1e-9
    # the factors of the GKO Cholesky (a Householder rotation per pivot) reproduce them
    Lp, Lq = SystemContext(sys, None, "test").factors
    P0, Q0 = gramians(sys)
    assert rel(Lp @ Lp.conj().T, P0) <= 1e-12 and rel(Lq @ Lq.conj().T, Q0) <= 1e-12


def _mp_hsv(sys: MimoSystem, dps: int = 60) -> np.ndarray:
    """sqrt(eig(P Q)) of the closed-form Gramians (trace form over the generator rows), in 60 digits."""
    mp.mp.dps = dps
    x, g, h = sys.std.augmented()
    X = [mp.mpc(v.real, v.imag) for v in x]
    G = [[mp.mpc(v.real, v.imag) for v in row] for row in g]
    H = [[mp.mpc(v.real, v.imag) for v in row] for row in h]
    dot = lambda a, b: mp.fsum(ai * mp.conj(bi) for ai, bi in zip(a, b))  # noqa: E731
    W = (lambda a, b: 1 / (1 - a * mp.conj(b))) if sys.discrete else (lambda a, b: -1 / (a + mp.conj(b)))
    n = len(X)
    P = mp.matrix([[dot(G[i], G[j]) * W(X[i], X[j]) for j in range(n)] for i in range(n)])
    Q = mp.matrix([[dot(H[i], H[j]) * W(mp.conj(X[i]), mp.conj(X[j])) for j in range(n)] for i in range(n)])
    ev = mp.eig(P * Q, left=False, right=False)
    return np.array(sorted((float(mp.sqrt(abs(mp.re(e)))) for e in ev), reverse=True))


@pytest.mark.parametrize("dt", [None, 0.05])
def test_hsv_accurate_on_lightly_damped_clustered_modes(dt):
    """S5-like (B over 2 inputs, C over 2 outputs), Re lam ~ -1e-2, ten modes clustered at
    Im lam = 1 + 1e-4 k: HSVs spanning > 7 decades. The square-root factors meet the SISO path's
    requirement, |error| <= max(1e-6 relative, 1e-9 of the largest) (test_reduction_gramians.py;
    measured: 2e-8 of it); dense Lyapunov + eig(P Q) misses it (its error is ~sqrt(eps) sigma_1;
    measured 5-9x)."""
    rng = np.random.default_rng(11)
    N = 10
    lam = -1e-2 * rng.uniform(0.5, 1.5, N) + 1j * (1 + 1e-4 * np.arange(N))
    sys = MimoSystem(lam, rng.normal(size=(N, 2)) + 0j, rng.normal(size=(2, N)) + 1j * rng.normal(size=(2, N)), dt=dt)
    ref = _mp_hsv(sys)
    assert ref[-1] < 1e-7 * ref[0]                     # where sqrt(eps) sigma_1 exceeds 1e-6 relative
    allowance = lambda got: float(np.max(np.abs(got - ref) / np.maximum(1e-6 * ref, 1e-9 * ref[0])))  # noqa: E731
    assert allowance(hankel_singular_values(sys)) <= 1.0
    A, B, C, _ = sys.realization()
    assert allowance(dense_lyapunov_hsv(A, B, C, dt is not None)) > 1.0


@pytest.mark.parametrize("dt,disc", KINDS)
def test_h2_is_the_trace_form(dt, disc):
    """Discrete: sqrt(sum_l ||K[l]||_F^2) of the kernel summed directly (1500 samples: the tail is below
    eps); continuous: the impulse response's energy by Simpson's rule (1e-9, the quadrature's error)."""
    sys = random_mimo(np.random.default_rng(1), 5, 3, 2, dt=dt, disc=disc, decay=(0.1, 1.0), n_real=1)
    if dt:
        K = sys.kernel(3000)                           # |dA|^3000 <= exp(-15) (zoh) ... far below eps^(1/2)
        ref = np.sqrt(np.sum(K ** 2))
        # 3000 samples of 2N + 1 terms each
        assert abs(h2_norm(sys) - ref) <= accumulated(3000 + 11) * ref
        assert abs(h2_norm(sys, 40) - np.sqrt(np.sum(K[..., :40] ** 2))) <= accumulated(40 + 11) * ref
    else:
        t = np.linspace(0, 300, 1_000_001)
        h = sys.impulse_response(t)                    # (p, m, len(t))
        ref = np.sqrt(simpson(np.sum(h ** 2, (0, 1)), x=t))
        assert abs(h2_norm(sys) - ref) <= 1e-9 * ref


@pytest.mark.parametrize("dt", [None, 0.1])
def test_hinf_is_the_peak_singular_value(dt):
    """At least the largest singular value on a dense sweep (40001 points) of the dense realisation's
    transfer function, and within the sweep's resolution of it: a step 5e-4 against resonances of width
    >= 1e-2 misses a peak by at most ~(5e-4 / 1e-2)^2 / 8 = 3e-4 relative."""
    sys = random_mimo(np.random.default_rng(2), 4, 3, 2, dt=dt, decay=(0.01, 0.3))
    A, B, C, D = sys.realization()
    w = np.linspace(0, np.pi if dt else 20, 40001)
    x = np.exp(1j * w) if dt else 1j * w
    G = C @ np.linalg.solve(x[:, None, None] * np.eye(len(A)) - A, np.broadcast_to(B, (len(x),) + B.shape)) + D
    sweep = np.linalg.norm(G, ord=2, axis=(-2, -1)).max()
    peak = hinf_norm(sys)
    assert sweep * (1 - 1e-12) <= peak <= sweep * (1 + 1e-3)


def test_bounds_on_200_random_systems():
    """sigma_{r+1} <= ||G - G_r||_inf <= 2 sum_{i>r} sigma_i for BT and BSP on 200 seeded random stable
    MIMO systems (continuous, ZOH, bilinear; N 2..5, up to 3 inputs and 3 outputs, some real modes;
    a random rank each). Tolerances as in test_reduction_bt.py: 1e-11 ||G|| for both sides' rounding,
    1e-6 relative for the polished grid's under-estimate."""
    rng = np.random.default_rng(2025)
    worst = {"bt": [0.0, 0.0], "bsp": [0.0, 0.0]}
    for i in range(200):
        N, m, p = (int(v) for v in rng.integers([2, 1, 1], [6, 4, 4]))
        dt, disc = KINDS[i % 3]
        sys = random_mimo(rng, N, m, p, dt=dt, disc=disc, n_real=int(rng.integers(0, 2)))
        r = int(rng.integers(1, 2 * N))
        g = hinf_norm(sys)
        for name, reduce in (("bt", balanced_truncation), ("bsp", balanced_singular_perturbation)):
            red, info = reduce(sys, rank=r)
            err = hinf_norm(sys - red)
            slack = 1e-11 * g
            assert isinstance(red, MimoSystem) and red.io_shape == (p, m)
            assert np.all(red.lam.real < 0)
            assert err <= info.error_bound + slack, (i, name, err, info.error_bound)
            assert info.hsv[info.rank] <= err * (1 + 1e-6) + slack, (i, name, err, info.hsv)
            if info.error_bound > 1e-6 * g:
                worst[name][0] = max(worst[name][0], err / info.error_bound)
                worst[name][1] = max(worst[name][1], info.hsv[info.rank] / err)
    for high, low in worst.values():          # both bounds nearly attained somewhere
        assert 0.5 < high <= 1 + 1e-5 and 0.5 < low <= 1 + 1e-5


@pytest.mark.parametrize("dt,disc", KINDS)
def test_bsp_keeps_the_dc_gain(dt, disc):
    """BSP of a MIMO system: G_r(0) (continuous) / G_r(1) (discrete) is G's, to the rounding of the two
    sums (2N terms each: accumulated(2N) times the largest term)."""
    sys = random_mimo(np.random.default_rng(6), 6, 3, 2, dt=dt, disc=disc, n_real=1)
    dc = np.array([1.0 + 0j]) if dt else np.array([0j])
    G = sys.std.response(dc)[0]
    scale = np.abs(sys.std.residues()).max() / np.min(np.abs((1 if dt else 0) - sys.std.p)) + np.abs(G).max()
    for r in (2, 5, 8):
        red, _ = balanced_singular_perturbation(sys, rank=r)
        assert np.max(np.abs(red.std.response(dc)[0] - G)) <= accumulated(4 * sys.n_modes) * 100 * scale


@pytest.mark.parametrize("dt,disc", KINDS)
def test_rediagonalised_into_a_smaller_mimo_system(dt, disc):
    """The modal form handed back has the transfer function of the balanced real truncation to 1e-9."""
    sys = random_mimo(np.random.default_rng(3), 6, 2, 3, dt=dt, disc=disc, n_real=1)
    for r in (3, 6, 9):
        A, B, C = SystemContext(sys, None, "test").balancing.truncation(r)
        red, info = balanced_truncation(sys, rank=r)
        w = np.linspace(0, np.pi if dt else 20, 201)
        x = np.exp(1j * w) if dt else 1j * w
        want = np.stack([C @ np.linalg.solve(xi * np.eye(r) - A, B) for xi in x], -1) + sys.std.d[..., None]
        assert np.max(np.abs(red.frequency_response(w) - want)) <= 1e-9 * np.max(np.abs(want))
        assert red.n_modes <= r and info.rank == r


@pytest.mark.parametrize("dt,disc", KINDS)
def test_modal_methods_bounds_and_dc_gain(dt, disc):
    """Modal truncation and modal singular perturbation: ||G - G_r||_inf <= their bounds; MSP keeps the
    DC gain (G(0) continuous, G(1) discrete) to rounding, modal truncation the feedthrough K[0]."""
    rng = np.random.default_rng(4)
    for _ in range(4):
        sys = random_mimo(rng, 6, 2, 3, dt=dt, disc=disc, n_real=1)
        g = hinf_norm(sys)
        dc = np.array([1.0 + 0j]) if dt else np.array([0j])
        G_dc = sys.std.response(dc)[0]
        for rank in (2, 5, 8):
            mt, info = modal_truncation(sys, rank)
            assert hinf_norm(sys - mt) <= info.error_bound + 1e-11 * g
            if dt:
                assert np.max(np.abs(mt.kernel(1)[..., 0] - sys.kernel(1)[..., 0])) <= 1e-12 * (1 + np.abs(G_dc).max())
            msp, info = modal_singular_perturbation(sys, rank)
            assert hinf_norm(sys - msp) <= info.error_bound + 1e-11 * g
            assert np.max(np.abs(msp.std.response(dc)[0] - G_dc)) <= accumulated(12) * np.abs(sys.std.residues()).max() \
                / np.min(np.abs((1 if dt else 0) - sys.std.p)) * 12


@pytest.mark.parametrize("dt,disc", [(None, "zoh"), (0.1, "zoh")])
def test_h2_reduction_at_most_bt(dt, disc):
    """The MIMO h2 reduction (poles and unit output vectors by L-BFGS, inputs by the linear solve) is no
    worse than BT at the same rank, and better on these systems."""
    rng = np.random.default_rng(5)
    for rank in (3, 6):
        sys = random_mimo(rng, 6, 3, 2, dt=dt, disc=disc, n_real=1)
        bt, _ = balanced_truncation(sys, rank=rank)
        h2, info = h2_reduction(sys, rank, max_iter=100)
        n2 = h2_norm(sys)
        e_bt, e_h2 = h2_norm(sys - bt) / n2, h2_norm(sys - h2) / n2
        n = 2 * (sys.n_modes + bt.n_modes)
        assert e_h2 <= e_bt + accumulated(n * n) / (2 * e_bt)
        assert e_h2 < (1 - 1e-3) * e_bt and info.rank == rank
        np.testing.assert_allclose(info.extra["h2_error"], e_h2, rtol=1e-9)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: MimoSystem(np.array([-1 + 1j]), np.ones((2, 3)), np.ones((2, 1))), ValueError,
     r"MimoSystem: B must be \(..., N=1, m\)"),
    (lambda: MimoSystem(np.array([-1 + 1j]), np.ones((1, 3)), np.ones((2, 2))), ValueError,
     r"MimoSystem: C must be \(..., p, N=1\)"),
    (lambda: MimoSystem(np.array([-1 + 1j]), np.ones((1, 3)), np.ones((2, 1)), D=np.ones(3)), ValueError,
     r"MimoSystem: D must be \(..., p=2, m=3\)"),
    (lambda: MimoSystem(np.array([-1 + 1j]), np.ones((1, 3)), np.ones((2, 1)), dt=0.0), ValueError,
     r"MimoSystem: dt must be > 0"),
    (lambda: random_mimo(np.random.default_rng(0), 2, 2, 2) - random_mimo(np.random.default_rng(0), 2, 3, 2),
     ValueError, r"subtraction needs equal \(outputs, inputs\)"),
    (lambda: balanced_truncation(random_mimo(np.random.default_rng(0), 2, 2, 2), rank=4), ValueError,
     r"rank must satisfy 1 <= rank < 4"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
