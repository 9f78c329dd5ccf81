"""DiagonalSystem: discretisation against the recurrence, responses against each other, the
standard form's round trip, batching, subtraction, bad inputs."""
import doctest

import numpy as np
import pytest
import torch

import dssm_kernels.reduction

from dssm_kernels.ops.ssm_scan import ssm_scan_ref
from dssm_kernels.reduction import DiagonalSystem
from testing import accumulated, random_system, rel


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_kernel_is_the_impulse_response_of_the_recurrence(disc):
    """K from the closed form equals running x_t = dA x_{t-1} + dB u_t, y_t = 2 Re(C x_t) + D u_t
    (the ops' float64 reference scan) on a unit impulse; dA, dB from the layer formulas in S4D."""
    sys = random_system(np.random.default_rng(0), 5, dt=0.07, disc=disc, batch=(3,))
    lam, dt = torch.as_tensor(sys.lam), torch.as_tensor(sys.dt)[:, None]
    if disc == "zoh":
        dA, dB = torch.exp(dt * lam), (torch.exp(dt * lam) - 1) / lam * torch.as_tensor(sys.B)
    else:
        dA = (1 + dt * lam / 2) / (1 - dt * lam / 2)
        dB = dt * torch.as_tensor(sys.B) / (1 - dt * lam / 2)
    u = torch.zeros(1, 3, 64, dtype=torch.float64)
    u[..., 0] = 1
    y, _ = ssm_scan_ref(u, dA, dB, torch.as_tensor(sys.C), torch.as_tensor(sys.D))
    assert rel(sys.kernel(64), y[0].numpy()) <= accumulated(64)   # 64 steps of a recurrence against powers


@pytest.mark.parametrize("dt", [None, 0.1])
def test_frequency_response_matches_the_dense_realization(dt):
    """G from the pole-residue sums equals C (xI - A)^-1 B + D of the real 2N-state realisation."""
    sys = random_system(np.random.default_rng(1), 4, dt=dt, n_real=1)
    A, B, C, D = sys.realization()
    assert np.allclose(A, A.real) and A.dtype == np.float64
    w = np.array([0.0, 0.3, 1.7, 3.0])
    x = np.exp(1j * w) if dt else 1j * w
    want = [(C @ np.linalg.solve(xi * np.eye(8) - A, B) + D).item() for xi in x]
    assert rel(sys.frequency_response(w), np.array(want)) <= 1e-12


def test_discrete_frequency_response_is_the_kernel_dtft():
    sys = random_system(np.random.default_rng(2), 4, dt=0.3, decay=(0.2, 1.0))
    K = sys.kernel(4000)
    w = np.array([0.0, 0.5, 2.0, np.pi])
    dtft = np.exp(-1j * np.outer(w, np.arange(4000))) @ K
    assert rel(sys.frequency_response(w), dtft) <= 1e-12


@pytest.mark.parametrize("dt,disc", [(None, "zoh"), (0.2, "zoh"), (0.2, "bilinear")])
def test_from_std_round_trip(dt, disc):
    """from_std(std) gives back the same lam, D and products C B, including a real discrete pole
    below zero (dt Im lam = pi)."""
    sys = random_system(np.random.default_rng(3), 5, dt=dt, disc=disc, n_real=1)
    lam = sys.lam.copy()
    if dt and disc == "zoh":
        lam[0] = -0.3 + 1j * np.pi / dt
    sys = DiagonalSystem(lam, sys.B, sys.C, sys.D, dt=dt, disc=disc)
    s = sys.std
    back = DiagonalSystem.from_std(s.p, s.r, s.d[..., 0, 0], dt=dt, disc=disc)
    assert rel(back.lam, sys.lam) <= 1e-13 and rel(back.C * back.B, sys.C * sys.B) <= 1e-12
    assert abs(back.D - sys.D) <= 1e-12 * (1 + abs(sys.D))
    assert np.allclose(np.abs(back.B), np.abs(back.C))   # the split is balanced
    if dt and disc == "zoh":
        assert s.real_modes()[0] and s.real_modes()[-1] and not s.real_modes()[1]


def test_batch_index_stack_and_subtract():
    sys = random_system(np.random.default_rng(4), 3, dt=0.1, batch=(2, 3))
    assert sys.batch_shape == (2, 3) and sys[1].batch_shape == (3,) and sys[1, 2].batch_shape == ()
    again = DiagonalSystem.stack(sys.flat(), (2, 3))
    assert np.array_equal(again.lam, sys.lam) and np.array_equal(again.dt, sys.dt)
    other = random_system(np.random.default_rng(5), 2, dt=0.1, batch=(2, 3))
    other = DiagonalSystem(other.lam, other.B, other.C, other.D, dt=sys.dt)
    diff = sys - other
    assert diff.n_modes == 5
    assert rel(diff.kernel(50), sys.kernel(50) - other.kernel(50)) <= accumulated(50)
    with pytest.raises(ValueError, match="subtraction needs both systems continuous, or discrete with one dt"):
        sys - random_system(np.random.default_rng(5), 2, batch=(2, 3))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(lam=[np.nan, -1], B=[1, 1], C=[1, 1]), ValueError, r"lam must be finite, got 1 non-finite"),
    (dict(lam="a", B=[1], C=[1]), TypeError, r"lam must be a torch.Tensor, numpy array or number, got str"),
    (dict(lam=[-1, -2], B=[1, 1, 1], C=[1, 1]), ValueError, r"lam, B, C must broadcast to one shape"),
    (dict(lam=np.zeros((2, 0)), B=1, C=1), ValueError, r"last \(mode\) dimension N >= 1"),
    (dict(lam=[-1], B=[1], C=[1], D=1j), TypeError, r"D must be real, got dtype complex128"),
    (dict(lam=[-1], B=[1], C=[1], dt=0.0), ValueError, r"dt must be > 0"),
    (dict(lam=[-1], B=[1], C=[1], dt=0.1, disc="euler"), ValueError, r"disc must be one of \('zoh', 'bilinear'\)"),
    (dict(lam=[[-1], [-2]], B=1, C=1, D=[1, 2, 3]), ValueError, r"must broadcast to the batch shape"),
])
def test_bad_inputs(kwargs, exc, match):
    kwargs = {k: np.asarray(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    with pytest.raises(exc, match=match):
        DiagonalSystem(**kwargs)


def test_accepts_torch_and_keeps_float64():
    lam = torch.tensor([-1 + 2j], dtype=torch.complex64)
    sys = DiagonalSystem(lam, torch.ones(1, dtype=torch.complex64), torch.ones(1, dtype=torch.complex64))
    assert sys.lam.dtype == np.complex128 and sys.D.dtype == np.float64 and sys.D.shape == ()
    with pytest.raises(ValueError, match="kernel: L must be an int >= 1"):
        DiagonalSystem(lam, 1, 1, dt=0.1).kernel(0)


def test_package_docstring_example():
    result = doctest.testmod(dssm_kernels.reduction, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
