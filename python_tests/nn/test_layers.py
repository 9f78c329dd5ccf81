"""Every layer, the residual block and the classifier: step equals forward, kernels equal a dense
reference, shapes, transposed, gradients, state_dict, float64, torch.compile, bad arguments."""
import pytest
import torch

from dssm_kernels.nn import DSS, S4, S4D, S5, ResidualBlock, SequenceClassifier, param_groups
from testing import LAYER_CASES, STEP_TOL, rel, run_steps


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("L", [1, 7, 1000])
@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_step_equals_forward(case, L, dtype):
    """Recurrent decoding reproduces the convolution / scan view (L = 1000 runs past DSS-softmax's and
    S4's l_max = 64, so the run-time length path is covered)."""
    m = LAYER_CASES[case](d_model=3, d_state=16, dtype=dtype, seed=1)
    u = torch.randn(2, L, 3, dtype=dtype, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert rel(run_steps(m, u), m(u)) <= STEP_TOL[dtype]


@pytest.mark.parametrize("layer", ["s4d", "dss", "s4", "s5", "lru"])
@pytest.mark.parametrize("prenorm", [True, False])
def test_block_and_model_step_equal_forward(layer, prenorm):
    block = ResidualBlock(LAYER_CASES[{"s4d": "s4d-zoh", "dss": "dss-exp", "s4": "s4-legs", "s5": "s5-legs-zoh",
                                     "lru": "lru"}[layer]](
        d_model=4, d_state=8, dtype=torch.float64, seed=0), prenorm=prenorm, activation="glu" if prenorm else "gelu")
    u = torch.randn(2, 40, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert rel(run_steps(block, u), block(u)) <= 1e-10
    for pool in ("mean", "last"):
        model = SequenceClassifier(5, vocab_size=11, layer=layer, d_model=4, d_state=8, n_layers=2, pool=pool,
                                   prenorm=prenorm, dtype=torch.float64, seed=0)
        x = torch.randint(0, 11, (3, 40), generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            assert rel(run_steps(model, x)[:, -1], model(x)) <= 1e-10


# --- kernels against a dense reference --------------------------------------------------------------
def dense_kernel(lam, P, B, C, dt, disc, L):
    """K[h, l] = C_f dA^l dB_f for the materialised system of size 2N: A_f = diag([lam, conj lam]) -
    P_f^T conj(P_f) (P (H, r, N); P = 0 for a diagonal layer), discretised with matrix exponentials
    (ZOH) or the bilinear transform, powered step by step. Independent of the layers' code paths."""
    full = lambda x: torch.cat([x, x.conj()], -1)  # noqa: E731
    A = torch.diag_embed(full(lam)) - full(P).transpose(-1, -2) @ full(P).conj()
    I = torch.eye(A.shape[-1], dtype=A.dtype)
    dtA = dt[:, None, None] * A
    if disc == "zoh":
        dA = torch.linalg.matrix_exp(dtA)
        dB = torch.linalg.solve(A, ((dA - I) @ full(B).unsqueeze(-1))).squeeze(-1)
    else:
        dA = torch.linalg.solve(I - dtA / 2, I + dtA / 2)
        dB = torch.linalg.solve(I - dtA / 2, dt[:, None] * full(B))
    ks, x = [], dB
    for _ in range(L):
        ks.append((full(C) * x).sum(-1))
        x = (dA @ x.unsqueeze(-1)).squeeze(-1)
    K = torch.stack(ks, -1)
    assert K.imag.abs().max() <= 1e-12 * K.abs().max()  # conjugate symmetry makes it real
    return K.real


@pytest.mark.parametrize("L", [1, 31, 64, 200])
@pytest.mark.parametrize("init,l_max", [("legs", None), ("legs", 64), ("legt", None), ("fout", 64)])
def test_s4_kernel_equals_dense_reference(init, l_max, L):
    """Even and odd L, with the Nyquist node (even L) and without; with the C~ trick (l_max) and
    without, shorter and longer than l_max; rank 1 (legs, fout) and rank 2 (legt)."""
    m = S4(3, 16, init=init, l_max=l_max, dtype=torch.float64, seed=5, dt_min=0.01, dt_max=0.2)
    with torch.no_grad():
        lam = torch.complex(-m.log_lam_real.exp(), m.lam_imag)
        P, B = torch.view_as_complex(m.P), torch.view_as_complex(m.B)
        want = dense_kernel(lam, P, B, m.output_vector(), m.log_dt.exp(), "bilinear", L)
        assert rel(m.kernel(L), want) <= 1e-10


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
def test_s4d_and_dss_kernels_equal_dense_reference_with_no_low_rank(disc):
    for m in (S4D(3, 16, disc=disc, init="s4d-lin", dtype=torch.float64, seed=6),
              DSS(3, 16, dtype=torch.float64, seed=6), DSS(3, 16, variant="softmax", l_max=90, dtype=torch.float64, seed=6)):
        if isinstance(m, DSS) and disc == "bilinear":
            continue  # DSS is ZOH by definition
        f = m.modal_form()
        P = torch.zeros(3, 1, 8, dtype=torch.complex128)
        with torch.no_grad():
            assert rel(m.kernel(90), dense_kernel(f["lam"], P, f["B"], f["C"], f["dt"], f["disc"], 90)) <= 1e-10


def test_dss_softmax_growing_modes_match_the_recurrence():
    """DSS-softmax may learn Re lam > 0; its kernel is read backwards for those, and must still be the
    impulse response of the recurrence step() runs (also past l_max)."""
    m = DSS(2, 8, variant="softmax", l_max=200, dtype=torch.float64, seed=1)
    with torch.no_grad():
        m.lam_real[:, :2] = 0.05
        u = torch.randn(2, 260, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        assert rel(run_steps(m, u), m(u)) <= 1e-10


@pytest.mark.parametrize("cls", [S4D, DSS])
def test_modal_form_round_trip(cls):
    m = cls(3, 8, dtype=torch.float64, seed=0)
    f = m.modal_form()
    m2 = m.with_modal_form(f["lam"][:, :3], 2 * f["B"][:, :3], f["C"][:, :3] / 2)
    assert m2.d_state == 6
    f2 = m2.modal_form()
    torch.testing.assert_close(f2["lam"], f["lam"][:, :3], rtol=1e-12, atol=0)
    torch.testing.assert_close(f2["C"] * f2["B"], f["C"][:, :3] * f["B"][:, :3], rtol=1e-12, atol=1e-15)


# --- generic module behaviour -----------------------------------------------------------------------
@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_shapes_transposed_gradients(case):
    m = LAYER_CASES[case](d_model=5, d_state=8, transposed=True, seed=0)
    u = torch.randn(2, 5, 33, requires_grad=True)
    y = m(u)
    assert y.shape == u.shape and y.dtype == u.dtype
    y.square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert u.grad is not None and u.grad.abs().sum() > 0
    m.transposed = False
    torch.testing.assert_close(m(u.detach().transpose(1, 2)).transpose(1, 2), y.detach())


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_state_dict_round_trip(case):
    a, b = LAYER_CASES[case](d_model=3, d_state=8, seed=0), LAYER_CASES[case](d_model=3, d_state=8, seed=9)
    u = torch.randn(1, 20, 3)
    assert not torch.equal(a(u), b(u))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(u), b(u), rtol=0, atol=0)


def test_model_state_dict_from_config_and_param_groups():
    model = SequenceClassifier(4, d_input=2, layer="dss", d_model=6, d_state=8, seed=3)
    copy = SequenceClassifier.from_config(model.config)
    copy.load_state_dict(model.state_dict())
    x = torch.randn(2, 30, 2)
    torch.testing.assert_close(copy(x), model(x), rtol=0, atol=0)
    groups = param_groups(model, lr=1e-2, weight_decay=0.05)
    ssm = {id(p) for g in groups if g["lr"] == 1e-3 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in ssm}
    assert names == {f"blocks.{i}.layer.{k}" for i in range(2) for k in ("log_lam_real", "lam_imag", "log_dt")}
    assert all(g["weight_decay"] == 0.0 for g in groups if g["lr"] == 1e-3)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_seeded_models_are_deterministic_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = SequenceClassifier(3, vocab_size=5, layer="s5", d_model=4, d_state=8, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = SequenceClassifier(3, vocab_size=5, layer="s5", d_model=4, d_state=8, seed=1)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n


@pytest.mark.parametrize("layer", ["s4d", "dss", "s4", "s5"])
def test_torch_compile_of_a_model(layer):
    """A whole model compiles (aot_eager traces forward and backward) on the reference backend and
    matches eager."""
    torch._dynamo.reset()
    model = SequenceClassifier(3, d_input=2, layer=layer, d_model=4, d_state=8, backend="reference", seed=0,
                               layer_kwargs={"l_max": 16} if layer == "s4" else None)
    x = torch.randn(2, 16, 2, generator=torch.Generator().manual_seed(0))
    compiled = torch.compile(model, backend="aot_eager")
    y = compiled(x)
    torch.testing.assert_close(y, model(x), rtol=1e-5, atol=1e-6)
    y.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("cls", [S4D, DSS, S4, S5])
@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(d_model=3, d_state=7), ValueError, r"{}: d_state must be even \(conjugate pairs: N = d_state / 2 modes\), got 7"),
    (dict(d_model=3, d_state=0), ValueError, r"{}: d_state must be an int >= 1, got 0"),
    (dict(d_model=0, d_state=8), ValueError, r"{}: d_model must be an int >= 1, got 0"),
    (dict(d_model=3, d_state=8, init="hippo"), ValueError, r"{}: init must be one of .*got 'hippo'"),
    (dict(d_model=3, d_state=8, dt_min=0.1, dt_max=0.01), ValueError, r"{}: need dt_min <= dt_max"),
    (dict(d_model=3, d_state=8, dtype=torch.float16), TypeError, r"{}: dtype must be torch.float32 or torch.float64"),
    (dict(d_model=3, d_state=8, backend="cuda"), ValueError, r"{}: backend must be one of .*got 'cuda'"),
    (dict(d_model=3, d_state=8, l_max=0), ValueError, r"{}: l_max must be an int >= 1, got 0"),
])
def test_bad_constructor_arguments(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match.format(cls.__name__)):
        cls(**kwargs)


def test_bad_layer_specific_arguments():
    with pytest.raises(ValueError, match=r"DSS: variant='softmax' needs l_max"):
        DSS(3, 8, variant="softmax")
    with pytest.raises(ValueError, match=r"DSS: variant must be one of 'exp', 'softmax', got 'tanh'"):
        DSS(3, 8, variant="tanh")
    with pytest.raises(ValueError, match=r"S5: disc must be one of 'zoh', 'bilinear', got 'euler'"):
        S5(3, 8, disc="euler")
    with pytest.raises(ValueError, match=r"SequenceClassifier: give exactly one of d_input and vocab_size"):
        SequenceClassifier(3)
    with pytest.raises(ValueError, match=r"SequenceClassifier: layer must be one of 's4d', 'dss', 's4', 's5', 'lru', got 'lstm'"):
        SequenceClassifier(3, d_input=2, layer="lstm")
    with pytest.raises(ValueError, match=r"ResidualBlock: the layer must take \(B, L, H\) input"):
        ResidualBlock(S4D(3, 8, transposed=True))
    with pytest.raises(TypeError, match=r"ResidualBlock: layer must be an SSM layer of dssm_kernels.nn, got Linear"):
        ResidualBlock(torch.nn.Linear(3, 3))


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_bad_input(case):
    m = LAYER_CASES[case](d_model=3, d_state=8)
    name = type(m).__name__
    with pytest.raises(ValueError, match=rf"{name}: u has 4 channels, the layer d_model=3"):
        m(torch.randn(2, 10, 4))
    with pytest.raises(ValueError, match=rf"{name}: u must be \(B, L, H\)"):
        m(torch.randn(10, 3))
    with pytest.raises(ValueError, match=rf"{name}.step: u_t must be \(B, H=3\), got \(2, 4\)"):
        m.step(torch.randn(2, 4), m.default_state(2))
    model = SequenceClassifier(3, vocab_size=5, d_model=4, d_state=8)
    with pytest.raises(TypeError, match=r"SequenceClassifier: x must hold int64/int32 token ids, got torch.float32"):
        model(torch.randn(2, 10))
    with pytest.raises(ValueError, match=r"SequenceClassifier: x must be \(B, L\) token ids, got shape \(2, 10, 1\)"):
        model(torch.zeros(2, 10, 1, dtype=torch.long))


@pytest.mark.parametrize("layer", ["s4d", "dss", "s5"])
def test_scan_mode_equals_conv_mode(layer):
    """The recurrent view over a whole sequence (ssm_scan / diag_scan) gives the convolution's output, and
    its last state continues with step() as a longer forward would."""
    model = SequenceClassifier(3, d_input=2, layer=layer, d_model=4, d_state=[8, 6], pool="mean",
                               dtype=torch.float64, seed=0, layer_kwargs={"l_max": 50} if layer == "dss" else None)
    x = torch.randn(2, 50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert rel(model(x, mode="scan"), model(x)) <= 1e-10
        m = model.blocks[0].layer
        u = torch.randn(2, 50, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        _, state = m.scan(u[:, :30])
        y_rest = run_steps_from(m, u[:, 30:], state)
        assert rel(y_rest, m(u)[:, 30:]) <= 1e-10
    assert model.current_config()["d_state"] == [8, 6]
    with pytest.raises(NotImplementedError, match="S4: no scan view"):
        S4(2, 4).scan(torch.randn(1, 5, 2))


def run_steps_from(m, u, state):
    ys = []
    for t in range(u.shape[1]):
        y, state = m.step(u[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1)


def test_param_groups_survive_deepcopy():
    """copy.deepcopy (the demo's and bt-init's retraining copies) keeps the SSM parameters' own
    learning rate: the copy's groups are the original's, parameter for parameter."""
    import copy
    model = SequenceClassifier(4, d_input=2, layer="s4d", d_model=6, d_state=8, seed=3)
    twin = copy.deepcopy(model)

    def shape(m):
        names = {id(p): n for n, p in m.named_parameters()}
        return sorted((g["lr"], g["weight_decay"], sorted(names[id(p)] for p in g["params"]))
                      for g in param_groups(m, lr=1e-2, weight_decay=0.05))

    assert shape(twin) == shape(model)
    assert any(lr == 1e-3 for lr, _, _ in shape(twin))
