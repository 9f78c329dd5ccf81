"""S4D layer: step equals forward, shapes, gradients, state_dict, optimizer groups, bad arguments."""
import pytest
import torch

from cases import backends_under_test
from dssm_kernels.nn import S4D, param_groups
from dssm_kernels.nn.s4d import INITS


def _step_through(m, u):
    state = m.default_state(u.shape[0])
    ys = []
    for t in range(u.shape[1]):
        y_t, state = m.step(u[:, t], state)
        ys.append(y_t)
    return torch.stack(ys, 1)


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
@pytest.mark.parametrize("init", list(INITS))
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("L", [1, 7, 1000])
def test_step_equals_forward(disc, init, dtype, tol, L):
    m = S4D(3, 16, init=init, disc=disc, dtype=dtype, seed=1)
    u = torch.randn(2, L, 3, dtype=dtype, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y, y_rec = m(u), _step_through(m, u)
    assert ((y_rec - y).norm() / y.norm()).item() <= tol


@pytest.mark.parametrize("backend", ["reference"] + backends_under_test())
def test_backends_agree(backend):
    m = S4D(4, 8, seed=3)
    u = torch.randn(2, 50, 4, generator=torch.Generator().manual_seed(4))
    want = S4D(4, 8, seed=3, backend="reference")(u)
    m.backend = backend
    got = m(u)
    assert ((got - want).norm() / want.norm()).item() <= 1e-5


def test_transposed_shapes_and_gradients():
    m = S4D(5, 8, transposed=True, seed=0)
    u = torch.randn(2, 5, 33, requires_grad=True)
    y = m(u)
    assert y.shape == u.shape
    y.square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert u.grad is not None


def test_state_dict_round_trip():
    a, b = S4D(3, 8, seed=0), S4D(3, 8, seed=9)
    b.load_state_dict(a.state_dict())
    u = torch.randn(1, 20, 3)
    torch.testing.assert_close(a(u), b(u), rtol=0, atol=0)


def test_param_groups_give_ssm_parameters_their_own_lr_and_no_decay():
    m = torch.nn.Sequential(S4D(3, 8, ssm_lr=1e-3), torch.nn.Linear(3, 3))
    groups = param_groups(m, lr=1e-2, weight_decay=0.1)
    by_lr = {g["lr"]: g for g in groups}
    assert {id(p) for p in by_lr[1e-3]["params"]} == {id(p) for p in (m[0].log_A_real, m[0].A_imag, m[0].log_dt, m[0].B)}
    assert by_lr[1e-3]["weight_decay"] == 0.0 and by_lr[1e-2]["weight_decay"] == 0.1
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))
    torch.optim.AdamW(groups)  # accepted as is


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(d_model=3, d_state=7), ValueError, r"S4D: d_state must be even \(conjugate pairs: N = d_state / 2 modes\), got 7"),
    (dict(d_model=3, d_state=0), ValueError, r"S4D: d_state must be an int >= 1, got 0"),
    (dict(d_model=0, d_state=8), ValueError, r"S4D: d_model must be an int >= 1, got 0"),
    (dict(d_model=3, d_state=8, init="hippo"), ValueError, r"S4D: init must be one of .*got 'hippo'"),
    (dict(d_model=3, d_state=8, disc="euler"), ValueError, r"S4D: disc must be one of \('zoh', 'bilinear'\), got 'euler'"),
    (dict(d_model=3, d_state=8, dt_min=0.1, dt_max=0.01), ValueError, r"S4D: need 0 < dt_min <= dt_max"),
    (dict(d_model=3, d_state=8, dtype=torch.float16), TypeError, r"S4D: dtype must be torch.float32 or torch.float64"),
])
def test_bad_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        S4D(**kwargs)


def test_bad_input():
    m = S4D(3, 8)
    with pytest.raises(ValueError, match=r"S4D: input has 4 channels, the layer d_model=3"):
        m(torch.randn(2, 10, 4))
    with pytest.raises(ValueError, match=r"S4D: input must be \(B, L, H\)"):
        m(torch.randn(10, 3))


@pytest.mark.parametrize("backend", ["reference"] + [b for b in backends_under_test() if b == "cpp"])
def test_torch_compile_fullgraph(backend):
    """The layer compiles without graph breaks (aot_eager traces forward and backward) and matches eager."""
    torch._dynamo.reset()
    m = S4D(3, 8, seed=0, backend=backend)
    u = torch.randn(2, 16, 3, generator=torch.Generator().manual_seed(0))
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    y = compiled(u)
    torch.testing.assert_close(y, m(u), rtol=1e-6, atol=1e-6)
    y.square().sum().backward()
    assert all(p.grad is not None for p in m.parameters())
