"""S4 (DPLR) layers: their channels as dense systems (the C~ of l_max solved out), reduced by balancing
on accurate square-root factors and only then diagonalised into an S4D-form layer (bilinear, like S4)
that convolves, scans and steps. Against dense BT of the materialised system (scipy's Lyapunov solvers)
and the bounds."""
import numpy as np
import pytest
import scipy.linalg as sl
import torch

from dssm_kernels.nn import S4, S4D
from dssm_kernels.reduction import (DenseSystem, DiagonalSystem, balanced_singular_perturbation, balanced_truncation,
                                    from_layer, hankel_singular_values, hinf_norm, to_layer)
from testing import dense_lyapunov_hsv

RANKS = (4, 8, 11)


def _layer(l_max, dtype=torch.float64, seed=0):
    return S4(3, 16, l_max=l_max, seed=seed, dtype=dtype)


@pytest.mark.parametrize("l_max", [None, 64])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dense_form_is_the_layer(l_max, dtype):
    """The dense system's kernel is the layer's kernel (Cauchy / Woodbury at the roots of unity, the
    C~ trick) plus D at lag 0: to 1e-12 of the largest sample in float64 (two O(n^3) computations of
    a 16-state system), to float32's 1e-5 for a float32 layer (read in float64)."""
    layer = _layer(l_max, dtype)
    sys = from_layer(layer)
    assert isinstance(sys, DenseSystem) and sys.batch_shape == (3,) and sys.n_states == 16
    L = 64 if l_max else 100
    with torch.no_grad():
        K = layer.kernel(L).double()
        K[:, 0] += layer.D.double()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(sys.kernel(L), K.numpy(), rtol=0, atol=tol * K.abs().max().item())


def _dense_bt(A, B, C, D, r):
    """Textbook square-root BT from scipy's Lyapunov solutions (Cholesky factors through eigh, negative
    rounding clipped): the oracle."""
    P, Q = sl.solve_discrete_lyapunov(A, B @ B.T), sl.solve_discrete_lyapunov(A.T, C.T @ C)
    fac = lambda M: (lambda w, V: V * np.sqrt(np.maximum(w, 0)))(*np.linalg.eigh((M + M.T) / 2))  # noqa: E731
    Zp, Zq = fac(P), fac(Q)
    U, s, Vt = np.linalg.svd(Zq.T @ Zp)
    V_r, W_r = Zp @ Vt[:r].T / np.sqrt(s[:r]), Zq @ U[:, :r] / np.sqrt(s[:r])
    return W_r.T @ A @ V_r, W_r.T @ B, C @ V_r, D


@pytest.mark.parametrize("l_max", [None, 64])
def test_against_dense_bt(l_max):
    """HSVs against dense Lyapunov + eig(P Q) to the latter's accuracy (~sqrt(eps) sigma_1: 1e-7 sigma_1);
    the reduced S4D-form system's transfer function against the textbook BT of the materialised system
    to 1e-6 of ||G||_inf (the textbook factors carry the sqrt(eps) error); the BT bound."""
    layer = _layer(l_max)
    sys = from_layer(layer)
    hsv = hankel_singular_values(sys)
    w = np.linspace(0, np.pi, 401)
    z = np.exp(1j * w)
    for h in range(3):
        A, B, C, D = sys[h].realization()
        assert np.max(np.abs(hsv[h] - dense_lyapunov_hsv(A, B, C, True))) <= 1e-7 * hsv[h, 0]
        g = hinf_norm(sys[h])
        for r in RANKS:
            red, info = balanced_truncation(sys[h], rank=r)
            assert isinstance(red, DiagonalSystem) and red.disc == "bilinear" and np.all(red.lam.real < 0)
            Ar, Br, Cr, Dr = _dense_bt(A, B, C, D, r)
            want = np.array([(Cr @ np.linalg.solve(zi * np.eye(r) - Ar, Br) + Dr).item() for zi in z])
            assert np.max(np.abs(red.frequency_response(w) - want)) <= 1e-6 * g
            err = hinf_norm(sys[h] - red)
            assert hsv[h, r] <= err * (1 + 1e-6) + 1e-11 * g and err <= info.error_bound + 1e-11 * g


@pytest.mark.parametrize("reduce", [balanced_truncation, balanced_singular_perturbation])
def test_reduced_layer_is_an_s4d_that_convolves_scans_and_steps(reduce):
    """to_layer gives an S4D (bilinear, the S4's step per channel): its kernel is the reduced system's,
    scan and step agree with forward, and it trains (finite gradients)."""
    layer = _layer(64)
    red, info = reduce(from_layer(layer), rank=6, max_modes=3)
    new = to_layer(layer, red)
    assert type(new) is S4D and new.disc == "bilinear" and new.d_state == 6 and new.l_max == 64
    with torch.no_grad():
        K = new.kernel(64)
        K[:, 0] += new.D
    np.testing.assert_allclose(K.numpy(), red.kernel(64), rtol=0, atol=1e-10 * np.abs(red.kernel(64)).max())
    u = torch.randn(2, 40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = new(u)
        torch.testing.assert_close(new.scan(u)[0], y, rtol=1e-9, atol=1e-9)
        state, ys = None, []
        for t in range(u.shape[1]):
            yt, state = new.step(u[:, t], state)
            ys.append(yt)
        torch.testing.assert_close(torch.stack(ys, 1), y, rtol=1e-9, atol=1e-9)
    new(u).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in new.parameters())


def test_modal_methods_on_s4_warn_and_give_no_bound():
    """The modal form of a LegS S4 channel (its balanced realisation diagonalised) is exact only to ~1e-4:
    the modal methods warn and report no guaranteed bound there."""
    from dssm_kernels.reduction import modal_truncation
    sys = from_layer(_layer(None))
    with pytest.warns(RuntimeWarning, match="modal form of the dense system"):
        red, info = modal_truncation(sys, 6)
    assert info.error_bound is None and np.all(info.rank <= 6)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(lam=np.ones((2, 2)) * -1, B=np.ones((3, 2)), C=np.ones((3, 2))), ValueError,
     r"S4.with_modal_form: lam must be \(H=3, N\)"),
    (dict(lam=-np.ones((3, 2)), B=np.ones((3, 2)), C=np.ones((3, 2)), dt=np.zeros(3)), ValueError,
     r"S4.with_modal_form: dt must be > 0"),
])
def test_with_modal_form_checks(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _layer(None).with_modal_form(**kwargs)
