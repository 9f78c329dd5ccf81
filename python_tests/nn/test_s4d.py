"""S4D specifics (the generic layer behaviour is in test_nn_layers.py): step equals forward for every
initialisation, every backend gives the same layer, the SSM parameters' optimiser groups, and a
fullgraph compile on the C++ ops."""
import pytest
import torch

from testing import backends_under_test, rel, run_steps
from dssm_kernels.nn import S4D, param_groups
from dssm_kernels.nn.s4d import INITS


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
@pytest.mark.parametrize("init", list(INITS))
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("L", [1, 7, 1000])
def test_step_equals_forward(disc, init, dtype, tol, L):
    m = S4D(3, 16, init=init, disc=disc, dtype=dtype, seed=1)
    u = torch.randn(2, L, 3, dtype=dtype, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert rel(run_steps(m, u), m(u)) <= tol


@pytest.mark.parametrize("backend", ["reference"] + backends_under_test())
def test_backends_agree(backend):
    m = S4D(4, 8, seed=3)
    u = torch.randn(2, 50, 4, generator=torch.Generator().manual_seed(4))
    want = S4D(4, 8, seed=3, backend="reference")(u)
    m.backend = backend
    assert rel(m(u), want) <= 1e-5


def test_param_groups_give_ssm_parameters_their_own_lr_and_no_decay():
    m = torch.nn.Sequential(S4D(3, 8, ssm_lr=1e-3), torch.nn.Linear(3, 3))
    groups = param_groups(m, lr=1e-2, weight_decay=0.1)
    by_lr = {g["lr"]: g for g in groups}
    assert {id(p) for p in by_lr[1e-3]["params"]} == {id(p) for p in (m[0].log_A_real, m[0].A_imag, m[0].log_dt, m[0].B)}
    assert by_lr[1e-3]["weight_decay"] == 0.0 and by_lr[1e-2]["weight_decay"] == 0.1
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))
    torch.optim.AdamW(groups)  # accepted as is


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
