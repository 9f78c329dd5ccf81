"""Finite horizons: Gramians, Hankel singular values, h2 norms and the time-limited reductors at a
cost independent of the horizon, accurate from one step to 10**15 and beyond (against a direct sum,
against mpmath's closed form, against the infinite horizon), and the horizon argument's checks.

Rounding allowance used throughout (entry (i, j) of P_T = sum_{k<T} x_i^k g_i conj(x_j^k g_j), or the
integral over [0, T]), with r = |x_i x_j| (e^(Re(x_i + x_j)) continuous),
S0_ij = sum_{k<T} r^k and S1_ij = sum_{k<T} k r^k (integrals of e^(a t), t e^(a t) continuous):
  - the direct float64 sum: x^k by k multiplications (relative error <= 3 k eps, complex products),
    T additions: |error| <= 8 (T + 1) eps S0_ij |g_i g_j|;
  - ours: the exponent k log x of term k is formed with absolute error <= eps k (|l_i| + |l_j| + 2 pi)
    (l = log x, or x continuous: per-pole logs to ulps, one product, the phase wrap), which moves the
    entry by at most eps (|l_i| + |l_j| + 2 pi) S1_ij |g_i g_j| (first order: the conditioning of x^k
    in x, what an ulp of the poles does); plus at most 2 log2(T) + 2 QR compressions of 2n x n
    matrices, each columnwise backward stable (Higham, Thm 19.4: c n eps with c <= 8 here),
    i.e. 8 n eps (2 log2 T + 2) sqrt(S0_ii S0_jj) |g_i g_j|.
"""
from __future__ import annotations

import math
import tracemalloc
import warnings

import mpmath as mp
import numpy as np
import pytest
import torch

from dssm_kernels.nn import S4D
from dssm_kernels.reduction import (DiagonalSystem, balanced_truncation, gramians, h2_norm, h2_reduction,
                                    hankel_singular_values, modal_truncation, reduce_model)
from dssm_kernels.reduction.gramians import augmented, gram_factor
from testing import deadline, mp_energy, mpc, random_system

EPS = np.finfo(np.float64).eps


def _sums(x, T, discrete: bool):
    """(S0, S1) of the module docstring, (n, n) float, in 40-digit arithmetic."""
    mp.mp.dps = 40
    n = len(x)
    S0, S1 = np.zeros((n, n)), np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if discrete:
                r = abs(mpc(x[i])) * abs(mpc(x[j]))
                if T is None:
                    S0[i, j], S1[i, j] = 1 / (1 - r), r / (1 - r) ** 2
                elif r == 1:
                    S0[i, j], S1[i, j] = T, mp.mpf(T) * (T - 1) / 2
                else:
                    S0[i, j] = (1 - r ** T) / (1 - r)
                    S1[i, j] = r * (1 - T * r ** (T - 1) + (T - 1) * r ** T) / (1 - r) ** 2
            else:
                a = mp.mpf(float(x[i].real + x[j].real))
                if T is None:
                    S0[i, j], S1[i, j] = -1 / a, 1 / a ** 2
                elif a == 0:
                    S0[i, j], S1[i, j] = T, mp.mpf(T) ** 2 / 2
                else:
                    S0[i, j] = mp.expm1(a * T) / a
                    S1[i, j] = (mp.exp(a * T) * (a * T - 1) + 1) / a ** 2
    return S0, S1


def _allowance(x, g, T, discrete: bool, direct: bool) -> np.ndarray:
    """Entrywise rounding allowance (n, n) of the module docstring (with the direct sum's or without)."""
    S0, S1 = _sums(x, T, discrete)
    n = len(x)
    logx = np.abs(np.log(x)) if discrete else np.abs(x)
    if T is None:       # the pivoted Cholesky factor: its entries to a few ulps, n terms per entry of L L*
        steps = 1.0
    else:
        steps = 2 * math.log2(max(T, 2)) + 2 + (0 if discrete else max(0.0, math.log2(np.max(np.abs(x)) * T)))
    d = np.sqrt(np.diag(S0))
    ours = EPS * ((logx[:, None] + logx[None, :] + 2 * np.pi) * S1 + 8 * n * steps * np.outer(d, d))
    if direct:
        ours = ours + 8 * (T + 1) * EPS * S0
    return ours * np.outer(np.abs(g), np.abs(g))


def _mp_gram(x, g, T, discrete: bool) -> np.ndarray:
    """g_i conj(g_j) W_T(x_i, x_j), the closed form of gramians.py's docstring, in 40-digit arithmetic
    on the same float64 poles (so the data are exact and only our rounding is measured)."""
    mp.mp.dps = 40
    X, G = [mpc(v) for v in x], [mpc(v) for v in g]
    n = len(X)
    P = np.zeros((n, n), complex)
    for i in range(n):
        for j in range(n):
            if discrete:
                q = X[i] * mp.conj(X[j])
                w = 1 / (1 - q) if T is None else mp.mpf(T) if q == 1 else (1 - q ** T) / (1 - q)
            else:
                s = X[i] + mp.conj(X[j])
                w = -1 / s if T is None else mp.mpf(T) if s == 0 else mp.expm1(s * T) / s
            P[i, j] = complex(G[i] * mp.conj(G[j]) * w)
    return P


def _direct_sum(x, g, L: int) -> np.ndarray:
    P = np.zeros((len(x), len(x)), complex)
    v = g.astype(complex)
    for _ in range(L):
        P += np.outer(v, v.conj())
        v = x * v
    return P


def _marginal_system(dt):
    """Nearly marginal, clustered modes (memory up to 1e9 steps / time units), one real mode, and a
    well-damped one: what a long-memory layer learns."""
    lam = np.array([-1e-9 + 0.7j, -3e-8 + 0.7001j, -1e-6 + 2.0j, -2e-4 + 0j, -0.3 + 1.1j])
    return DiagonalSystem(lam, np.array([1, 1, 0.5, 1, 2]), np.array([1, 0.5j, 2, 1, 0.1 - 1j]), dt=dt)


# ------------------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("L", [1, 2, 3, 7, 64, 1000, 4097])
def test_discrete_gramian_equals_the_direct_sum(L):
    """Closed form (gramians) and factor (gram_factor: L L*) against sum_{k<L} (x^k g)(x^k g)*."""
    for sys in (random_system(np.random.default_rng(L), 5, dt=0.1, n_real=1), _marginal_system(1.0)):
        x, g, _ = augmented(sys.std)
        want = _direct_sum(x, g, L)
        allow = _allowance(x, g, L, True, direct=True)
        P, _ = gramians(sys, L)
        F = gram_factor(x, g, True, L)
        assert np.all(np.abs(P - want) <= allow)
        assert np.all(np.abs(F @ F.conj().T - want) <= allow)


@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
def test_long_horizon_gramian_against_mpmath(discrete):
    """Horizons 1 .. 10**15 (and 10**30, and infinite) on nearly marginal modes, where the horizon
    matters at every scale: the factor and the closed form against mpmath's closed form, entry by
    entry. (Before the Cauchy denominators 1 - x_i conj x_k went through log_ratio, the discrete
    infinite-horizon factor missed this allowance by 5x: 1 - |x|^2 = 2e-9 formed from the rounded
    product keeps only 7 digits.)"""
    sys = _marginal_system(1.0 if discrete else None)
    x, g, _ = augmented(sys.std)
    for T in (1, 10, 10**3, 10**6, 10**8, 10**9, 10**10, 10**12, 10**15, 10**30, None):
        h = T if (discrete or T is None) else float(T)
        want = _mp_gram(x, g, T, discrete)
        allow = _allowance(x, g, T, discrete, direct=False)
        with deadline(20, f"the Gramians over horizon={T}"):
            P, _ = gramians(sys, h)
            F = gram_factor(x, g, discrete, h)
        assert np.all(np.abs(P - want) <= allow), T
        assert np.all(np.abs(F @ F.conj().T - want) <= allow), T


@pytest.mark.parametrize("dt", [None, 0.1])
def test_hsv_grow_with_the_horizon_to_the_infinite_horizon_values(dt):
    """P_T and Q_T grow with T in the Loewner order, so every sigma_i(T) does; once every mode has
    decayed below sqrt(eps) the finite-horizon Gramians are the infinite ones to within eps relative
    per entry, and the values agree with the infinite horizon's to rounding (8 n eps sigma_1)."""
    sys = random_system(np.random.default_rng(3), 6, dt=dt, n_real=1, decay=(1e-3, 1.0))
    n = 12
    inf = hankel_singular_values(sys)
    steps = [1, 3, 10, 100, 10**3, 10**4, 10**5, 10**6, 10**9, 10**12, 10**15]
    with deadline(60, "hankel_singular_values over horizons up to 10**15"):
        hsv = [hankel_singular_values(sys, T if dt else 0.1 * T) for T in steps]
    slack = 8 * n * EPS * (2 * math.log2(10**15) + 2) * inf[0]
    for a, b in zip(hsv, hsv[1:]):
        assert np.all(b >= a - slack)
    assert np.all(hsv[-1] <= inf + slack)
    for T, h in zip(steps, hsv):
        # the slowest mode decays at >= 1e-3 per unit time, 0.1 T time units: exp(-2e-4 T) <= eps from T ~ 1.8e5
        if T >= 10**6:
            assert np.max(np.abs(h - inf)) <= 8 * n * EPS * inf[0], T
    assert np.max(np.abs(hsv[3] - inf)) > 1e-3 * inf[0]          # and a short horizon does differ


def test_h2_norm_of_an_error_system_is_not_lost_in_cancellation():
    """||K - K_r|| of a balanced truncation whose error is ~1e-11 ||K|| (a nearly unobservable mode
    dropped; the reduced poles differ from the full ones): the closed form alone cancels terms of size
    ||K||^2 and returned 0.0; h2_norm sums the first 1024 samples directly. Reference: the closed form
    in 40 digits. Allowance: each sample of the error kernel carries <= 4 eps K_abs[l] with K_abs[l] =
    2 sum_n |C_n dB_n| |dA_n|^l (+ |D| at l = 0) over the error system's modes, so the head's norm
    <= 4 eps ||K_abs||; the closed-form tail (|dA| <= e^-0.02, from sample 1024 on) cancels only its
    own terms: <= 8 n eps ||K_abs[1024:]||^2 / ||K - K_r|| (n = the error system's 2N states)."""
    full = random_system(np.random.default_rng(4), 6, dt=0.1, decay=(0.2, 1.0))
    C = full.C.copy()
    C[5] *= 1e-9
    full = DiagonalSystem(full.lam, full.B, C, full.D, dt=0.1)
    red, _ = balanced_truncation(full, rank=10)
    diff = full - red
    dA, dB = diff.discretized()
    k_abs = 2 * np.abs(diff.C * dB) @ (np.abs(dA)[:, None] ** np.arange(10**5))
    k_abs[0] += abs(float(diff.D))                    # |dA|^(10**5) <= e^-2000: nothing after
    for L in (300, 10**5, None):
        want = mp_energy(diff, L)
        head, tail = k_abs[:min(L or 10**5, 1024)], k_abs[1024:L or 10**5]
        allow = 4 * EPS * np.linalg.norm(head) + 8 * 2 * diff.n_modes * EPS * np.linalg.norm(tail) ** 2 / want
        got = h2_norm(diff, L)
        assert want < 1e-10 * h2_norm(full, L)
        assert abs(got - want) <= allow, (L, got, want, allow)


# ------------------------------------------------------------------------------------------ cost
def _layer():
    return S4D(3, 8, seed=0, dtype=torch.float64)


ENTRY_POINTS = {
    "hankel_singular_values": lambda s, h: hankel_singular_values(s, h),
    "gramians": lambda s, h: gramians(s, h),
    "h2_norm": lambda s, h: h2_norm(s, h),
    "balanced_truncation": lambda s, h: balanced_truncation(s, rank=4, horizon=h),
    "modal_truncation": lambda s, h: modal_truncation(s, 4, horizon=h),
    "h2_reduction": lambda s, h: h2_reduction(s, 4, horizon=h, max_iter=3),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("dt", [0.1, None], ids=["discrete", "continuous"])
def test_long_horizons_cost_what_short_ones_do(entry, dt):
    """horizon = 10**12 and 10**15 (10**30 too): no array of the horizon's size (numpy's peak traced
    memory stays below 16 MiB, a 5-mode system's factors are a few KiB), a wall-clock guard of 20 s
    (generous for a loaded machine: each call takes milliseconds), and no warning (the old continuous
    path fell back to an inaccurate eigendecomposition with a RuntimeWarning)."""
    sys = _marginal_system(dt)
    for T in (10**12, 10**15, 10**30):
        h = T if dt else float(T)
        tracemalloc.start()
        try:
            with warnings.catch_warnings(), deadline(20, f"{entry}(horizon={T})"):
                warnings.simplefilter("error")
                ENTRY_POINTS[entry](sys, h)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, (T, peak)


def test_reduce_model_with_a_long_horizon():
    """reduce_model(horizon=10**12): the report's kernel errors over 10**12 steps come from h2_norm
    (direct head, closed-form tail), not from a kernel of 10**12 samples."""
    model = _layer()
    tracemalloc.start()
    try:
        with deadline(60, "reduce_model(horizon=10**12)"):
            red, rep = reduce_model(model, d_state=4, horizon=10**12)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    layer = rep.layers[0]
    assert layer.measured_steps == 10**12 and np.isfinite(layer.kernel_error) and 0 < layer.kernel_error < 1
    # the layer's modes decay within ~1e4 steps: the error over 10**12 steps is the one over all time
    from dssm_kernels.reduction import from_layer
    full, small = from_layer(model), from_layer(red)
    want = np.linalg.norm(h2_norm(full - small)) / np.linalg.norm(h2_norm(full))
    assert abs(layer.kernel_error - want) <= 1e-9 * want


def test_kernel_refuses_a_size_it_cannot_hold():
    sys = random_system(np.random.default_rng(0), 3, dt=0.1)
    with pytest.raises(ValueError, match=r"kernel: L=1000000000000 .* use reduction.h2_norm\(sys, horizon=L\)"):
        sys.kernel(10**12)


def test_unstable_modes_overflowing_the_horizon_are_refused():
    """exp(0.05 * 10**5) overflows float64: a ValueError naming the horizon, not inf or NaN."""
    sys = random_system(np.random.default_rng(1), 3, dt=None)
    lam = sys.lam.copy()
    lam[0] = 0.05 + 1j
    bad = DiagonalSystem(lam, sys.B, sys.C)
    for f in (hankel_singular_values, h2_norm, gramians):
        with pytest.raises(ValueError, match=r"horizon=100000.0 is too long for the growth of the unstable modes"):
            f(bad, 1e5)
        f(bad, 100.0)       # a horizon they survive is fine


# ------------------------------------------------------------------------------- argument checks
BAD_HORIZONS = [
    (0.1, True, TypeError, r"horizon of a discrete system must be an int number of steps, got True"),
    (0.1, False, TypeError, r"horizon of a discrete system must be an int number of steps, got False"),
    (0.1, 100.0, TypeError, r"horizon of a discrete system must be an int number of steps, got 100.0"),
    (0.1, np.float64(5), TypeError, r"horizon of a discrete system must be an int number of steps"),
    (0.1, 0, ValueError, r"horizon must be >= 1 step, got 0"),
    (0.1, -3, ValueError, r"horizon must be >= 1 step, got -3"),
    (0.1, 10**400, ValueError, r"horizon must be <= 1e\+300 steps"),
    (0.1, "10", TypeError, r"horizon of a discrete system must be an int"),
    (None, True, TypeError, r"horizon of a continuous system must be a float time T, got True"),
    (None, 0.0, ValueError, r"horizon must be a finite time T > 0"),
    (None, -2, ValueError, r"horizon must be a finite time T > 0"),
    (None, float("nan"), ValueError, r"horizon must be a finite time T > 0"),
    (None, float("inf"), ValueError, r"horizon must be a finite time T > 0"),
]


BAD_IDS = [f"{'discrete' if dt else 'continuous'}-{type(h).__name__}-{str(h)[:8]}" for dt, h, _, _ in BAD_HORIZONS]


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("dt,horizon,exc,match", BAD_HORIZONS, ids=BAD_IDS)
def test_bad_horizon_is_refused_by_every_entry_point(entry, dt, horizon, exc, match):
    sys = random_system(np.random.default_rng(0), 3, dt=dt)
    with pytest.raises(exc, match=match), deadline(20, f"{entry}(horizon={horizon!r})"):
        ENTRY_POINTS[entry](sys, horizon)


@pytest.mark.parametrize("horizon,exc,match", [(h, e, m) for dt, h, e, m in BAD_HORIZONS if dt is not None],
                         ids=[i for (dt, *_), i in zip(BAD_HORIZONS, BAD_IDS) if dt is not None])
def test_reduce_model_refuses_a_bad_horizon(horizon, exc, match):
    with pytest.raises(exc, match=match), deadline(20, f"reduce_model(horizon={horizon!r})"):
        reduce_model(_layer(), d_state=4, horizon=horizon)


def test_gramians_checks_its_system():
    with pytest.raises(TypeError, match=r"gramians: sys must be a DiagonalSystem.* got dict"):
        gramians({})
