"""LRU (Orvieto et al. 2023): step equals forward and scan, the kernel is the recurrence's impulse response
written out independently, the exponential parameterisation and gamma normalisation at init, training,
the classifier, and its modal form for reduction (round trip, modes of negative phase and real modes)."""
import math

import pytest
import torch

from dssm_kernels.nn import LRU, SequenceClassifier
from dssm_kernels.nn.lru import REAL_PHASE

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _steps(m, u, state=None):
    ys = []
    for t in range(u.shape[1]):
        y, state = m.step(u[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("L", [1, 7, 300])
def test_step_equals_forward_and_scan(L, dtype):
    m = LRU(3, 16, seed=1, dtype=dtype)
    u = torch.randn(2, L, 3, dtype=dtype, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = m(u)
        assert rel(_steps(m, u)[0], y) <= TOL[dtype]
        ys, last = m.scan(u)
        assert rel(ys, y) <= TOL[dtype]
        if L > 1:   # the scan's last state continues with step() as a longer forward would
            _, state = m.scan(u[:, : L // 2])
            assert rel(_steps(m, u[:, L // 2:], state)[0], y[:, L // 2:]) <= TOL[dtype]


def test_impulse_response_is_the_recurrence_written_out():
    """K[l] = Re(C diag(lambda^l) gamma B) + D [l = 0] from the parameters (float64, lambda by exp of the
    stored logs), against forward on unit impulses: to 1e-12 (the scan's 60-step rounding)."""
    m = LRU(3, 10, seed=3, dtype=torch.float64)
    with torch.no_grad():
        lam = torch.exp(torch.complex(-m.nu_log.exp(), m.theta_log.exp()))
        gB = m.gamma_log.exp()[:, None] * torch.view_as_complex(m.B)
        C = torch.view_as_complex(m.C)
        L = 60
        want = torch.stack([(C * lam ** l) @ gB for l in range(L)], -1).real     # (out, in, L)
        want[..., 0] += torch.diag(m.D)
        imp = torch.zeros(3, L, 3, dtype=torch.float64)
        imp[torch.arange(3), 0, torch.arange(3)] = 1.0
        got = m(imp).permute(2, 0, 1)
    assert (got - want).abs().max() <= 1e-12 * want.abs().max()


def test_initialisation():
    """|lambda| on the ring [r_min, r_max], phases in (0, max_phase], gamma = sqrt(1 - |lambda|^2)."""
    m = LRU(4, 400, r_min=0.5, r_max=0.9, max_phase=math.pi / 10, seed=0, dtype=torch.float64)
    with torch.no_grad():
        mod = torch.exp(-m.nu_log.exp())
        phase = m.theta_log.exp()
        assert mod.min() >= 0.5 - 1e-12 and mod.max() <= 0.9 + 1e-12
        assert phase.min() > 0 and phase.max() <= math.pi / 10 + 1e-12
        torch.testing.assert_close(m.gamma_log.exp(), torch.sqrt(1 - mod ** 2), rtol=1e-12, atol=0)
    # |lambda|^2 uniform on [r_min^2, r_max^2]: its mean is (0.25 + 0.81) / 2 (200 modes: +- 4 sigma = 0.03)
    assert abs(float((mod ** 2).mean()) - 0.53) < 0.03


def test_trains_and_runs_in_a_classifier():
    model = SequenceClassifier(3, vocab_size=7, layer="lru", d_model=4, d_state=8, n_layers=2, dtype=torch.float64,
                               seed=0)
    x = torch.randint(0, 7, (2, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert rel(_steps(model, x)[0][:, -1], model(x)) <= 1e-10
        assert rel(model(x, mode="scan"), model(x)) <= 1e-10
    model(x).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    again = SequenceClassifier.from_config(model.current_config())
    again.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def _impulse(m, L=60):
    imp = torch.zeros(m.d_model, L, m.d_model, dtype=torch.float64)
    imp[torch.arange(m.d_model), 0, torch.arange(m.d_model)] = 1.0
    with torch.no_grad():
        return m(imp).permute(2, 0, 1)


def test_modal_form_round_trip():
    """with_modal_form(**modal_form()) rebuilds the layer's impulse response (to 1e-12)."""
    m = LRU(3, 12, seed=4, dtype=torch.float64)
    f = m.modal_form()
    again = m.with_modal_form(f["lam"], f["B"], f["C"], f["D"], f["dt"])
    assert type(again) is LRU and again.d_state == 12
    K, K2 = _impulse(m), _impulse(again)
    assert (K - K2).abs().max() <= 1e-12 * K.abs().max()


def test_modes_of_negative_phase_and_real_modes():
    """A mode of negative phase is held conjugated (same output); a real mode gets the phase REAL_PHASE,
    which changes the response by ~REAL_PHASE / (1 - |lambda|) relative. Against the ZOH system written
    out: K[l] = 2 Re(C diag(exp(lam l)) dB)."""
    m = LRU(2, 6, seed=5, dtype=torch.float64)
    lam = torch.tensor([-0.1 - 0.7j, -0.3 + 0j, -0.05 + 2.0j], dtype=torch.complex128)
    g = torch.Generator().manual_seed(1)
    B = torch.randn(3, 2, dtype=torch.complex128, generator=g)
    C = torch.randn(2, 3, dtype=torch.complex128, generator=g)
    new = m.with_modal_form(lam, B, C, D=torch.zeros(2, dtype=torch.float64))
    dB = torch.expm1(lam)[:, None] / lam[:, None] * B
    want = torch.stack([2 * ((C * torch.exp(lam * l)) @ dB).real for l in range(60)], -1)
    got = _impulse(new)
    assert (got - want).abs().max() <= 10 * REAL_PHASE / (1 - math.exp(-0.3)) * want.abs().max() + 1e-13
    with torch.no_grad():
        assert torch.all(new.theta_log.exp() > 0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(r_min=-0.1), r"LRU: r_min must be a number in \[0, 1\), got -0.1"),
    (dict(r_max=1.0), r"LRU: r_max must be a number in \[0, 1\), got 1.0"),
    (dict(r_min=0.9, r_max=0.5), r"LRU: need r_min < r_max"),
    (dict(max_phase=0.0), r"LRU: max_phase must be a finite number > 0"),
    (dict(d_state=7), r"LRU: d_state must be even"),
])
def test_bad_arguments(kwargs, match):
    args = dict(d_model=3, d_state=8) | kwargs
    with pytest.raises(ValueError, match=match):
        LRU(**args)


def test_with_modal_form_checks():
    m = LRU(2, 4, seed=0)
    with pytest.raises(ValueError, match=r"LRU.with_modal_form: B must have shape \(2, 2\)"):
        m.with_modal_form(-torch.ones(2, dtype=torch.complex128), torch.ones(3, 2), torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"LRU.with_modal_form: every mode needs Re lam < 0"):
        m.with_modal_form(torch.tensor([0.1 + 1j, -1]), torch.ones(2, 2), torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"LRU.with_modal_form: dt must be > 0"):
        m.with_modal_form(-torch.ones(2, dtype=torch.complex128), torch.ones(2, 2), torch.ones(2, 2), dt=0.0)
