"""What the layers, the residual block and the classifier accept: inputs of the layer's real dtype,
shape and device only (forward, scan, step), recurrent states exactly as default_state gives them
(None standing for that zero state), token ids within the vocabulary. Everything else is refused
with a TypeError / ValueError that names the argument, what was expected and what came."""
import re

import pytest
import torch

from dssm_kernels.nn import S4, ResidualBlock, SequenceClassifier, param_groups
from testing import LAYER_CASES

B, H, L = 2, 3, 5
OTHER = {torch.float32: torch.float64, torch.float64: torch.float32}


def _make(case, dtype=torch.float64):
    return LAYER_CASES[case](d_model=H, d_state=8, dtype=dtype, seed=0)


def _entry_points(m):
    """(who, argument name, call, input shape) for forward, scan (where there is one) and step."""
    name = type(m).__name__
    out = [(name, "u", lambda u: m(u), (B, L, H)), (f"{name}.step", "u_t", lambda u: m.step(u, None), (B, H))]
    if not isinstance(m, S4):
        out.append((f"{name}.scan", "u", lambda u: m.scan(u), (B, L, H)))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_inputs_of_another_kind_are_refused(case, dtype):
    """Integer, boolean, complex, half and other-precision inputs, wrong rank or channel count and
    another device: S5 returned zeros for an int64 input and a complex output for a complex one."""
    m = _make(case, dtype)
    for who, name, call, shape in _entry_points(m):
        for bad in (torch.int64, torch.int32, torch.bool, torch.complex64, torch.complex128):
            with pytest.raises(TypeError, match=rf"{re.escape(who)}: {name} must be a real floating-point tensor of "
                                                rf"the layer's dtype {dtype}, got {bad}"):
                call(torch.ones(shape, dtype=bad))
        for bad in (OTHER[dtype], torch.float16, torch.bfloat16):
            with pytest.raises(TypeError, match=rf"{re.escape(who)}: {name} has dtype {bad} but the layer's "
                                                rf"parameters are {dtype}: convert \({name}.to\({dtype}\)"):
                call(torch.ones(shape, dtype=bad))
        with pytest.raises(TypeError, match=rf"{re.escape(who)}: {name} must be a torch.Tensor, got list"):
            call([[0.0] * H] * B)
        with pytest.raises(ValueError, match=rf"{re.escape(who)}: {name} is on meta, the layer's parameters on cpu"):
            call(torch.ones(shape, dtype=dtype, device="meta"))
        with pytest.raises(ValueError, match=rf"{re.escape(who)}: {name} (must be|has)"):
            call(torch.ones(shape[:-1], dtype=dtype))                      # a dimension short
        with pytest.raises(ValueError, match=rf"{re.escape(who)}: {name} (must be|has 4 channels)"):
            call(torch.ones(shape[:-1] + (H + 1,), dtype=dtype))           # one channel too many


def _bad_states(good):
    """States that arithmetic would broadcast (or shapes that would fail deep inside an op)."""
    return [good[..., :1],                           # (B, H, 1) / (B, 1): one mode
            good[:1],                                # a batch of 1 for a batch of B
            good[0],                                 # no batch dimension
            good.unsqueeze(0),                       # one dimension too many
            torch.cat([good, good])]                 # a batch of 2B


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_step_and_scan_refuse_a_state_unlike_default_state(case):
    m = _make(case)
    name = type(m).__name__
    u_t, u = torch.randn(B, H, dtype=torch.float64), torch.randn(B, L, H, dtype=torch.float64)
    good = m.default_state(B)
    calls = [(f"{name}.step", lambda s: m.step(u_t, s))]
    if not isinstance(m, S4):
        calls.append((f"{name}.scan", lambda s: m.scan(u, s)))
    for who, call in calls:
        w = re.escape(who)
        for bad in _bad_states(good):
            with pytest.raises(ValueError, match=rf"{w}: state must have shape {re.escape(str(tuple(good.shape)))} "
                                                 rf"\(as default_state\({B}\) gives for the input's batch of {B}\), "
                                                 rf"got {re.escape(str(tuple(bad.shape)))}"):
                call(bad)
        with pytest.raises(TypeError, match=rf"{w}: state must be torch.complex128 \(what default_state gives\), "
                                            r"got torch.complex64"):
            call(good.to(torch.complex64))
        with pytest.raises(TypeError, match=rf"{w}: state must be torch.complex128 .*got torch.float64"):
            call(good.real.contiguous())
        with pytest.raises(TypeError, match=rf"{w}: state must be a torch.Tensor like default_state\(batch\) "
                                            r"\(or None for the zero state\), got list"):
            call(good.tolist())
        with pytest.raises(ValueError, match=rf"{w}: state is on meta, the layer's parameters on cpu"):
            call(torch.zeros(good.shape, dtype=good.dtype, device="meta"))


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_none_is_the_zero_state(case):
    """step(u_t, None) and scan(u, None) start from default_state(B) (S4 and S5 raised TypeError:
    unsupported operand). Both sides run the same arithmetic on the same zero state: equal exactly."""
    m = _make(case)
    u_t, u = torch.randn(B, H, dtype=torch.float64), torch.randn(B, L, H, dtype=torch.float64)
    with torch.no_grad():
        y0, s0 = m.step(u_t, None)
        y1, s1 = m.step(u_t, m.default_state(B))
        assert torch.equal(y0, y1) and torch.equal(s0, s1) and s0.shape == m.default_state(B).shape
        if not isinstance(m, S4):
            (y0, s0), (y1, s1) = m.scan(u, None), m.scan(u, m.default_state(B))
            assert torch.equal(y0, y1) and torch.equal(s0, s1)


@pytest.mark.parametrize("layer", ["s4d", "s5"])
def test_block_checks_its_input_mode_and_state(layer):
    block = ResidualBlock(_make({"s4d": "s4d-zoh", "s5": "s5-legs-zoh"}[layer]))
    name = type(block.layer).__name__
    x = torch.randn(B, L, H, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"ResidualBlock: mode must be one of 'conv', 'scan', got 'recurrent'"):
        block(x, mode="recurrent")                    # was run as "scan" silently
    with pytest.raises(TypeError, match=r"ResidualBlock: x must be a real floating-point tensor of the layer's dtype "
                                        r"torch.float64, got torch.int64"):
        block(x.long())
    with pytest.raises(TypeError, match=r"ResidualBlock: x has dtype torch.float32 but the layer's parameters are "
                                        r"torch.float64"):
        block(x.float())
    with pytest.raises(ValueError, match=r"ResidualBlock: x must be \(B, L, H\) with H = d_model = 3, got \(2, 5, 4\)"):
        block(torch.randn(B, L, H + 1, dtype=torch.float64))      # LayerNorm raised a bare RuntimeError
    with pytest.raises(ValueError, match=r"ResidualBlock.step: x_t must be \(B, H\) with H = d_model = 3, "
                                         r"got \(2, 5, 3\)"):
        block.step(x, None)
    with pytest.raises(ValueError, match=rf"{name}.step: state must have shape"):
        block.step(x[:, 0], block.default_state(B)[:1])
    with torch.no_grad():
        assert torch.equal(block.step(x[:, 0], None)[0], block.step(x[:, 0], block.default_state(B))[0])


def _tokens_model():
    return SequenceClassifier(3, vocab_size=5, d_model=4, d_state=8, n_layers=2, seed=0, dtype=torch.float64)


def test_token_ids_outside_the_vocabulary_are_refused():
    """A bare IndexError from the embedding before; now a ValueError naming x, the valid range and the
    first offending id with its index."""
    model = _tokens_model()
    x = torch.randint(0, 5, (B, L), generator=torch.Generator().manual_seed(0))
    for value in (5, 17, -1):
        bad = x.clone()
        bad[1, 3] = value
        with pytest.raises(ValueError, match=rf"SequenceClassifier: x must hold token ids in \[0, vocab_size=5\), "
                                             rf"got {value} at index \(1, 3\) \(1 id\(s\) out of range\)"):
            model(bad)
        with pytest.raises(ValueError, match=rf"SequenceClassifier.step: x_t must hold token ids in "
                                             rf"\[0, vocab_size=5\), got {value} at index \(1,\)"):
            model.step(bad[:, 3], None)
    with pytest.raises(TypeError, match=r"SequenceClassifier.step: x_t must hold int64/int32 token ids, "
                                        r"got torch.float64"):
        model.step(torch.zeros(B, dtype=torch.float64), None)
    with pytest.raises(ValueError, match=r"SequenceClassifier.step: x_t must be \(B,\) token ids, got shape \(2, 5\)"):
        model.step(x, None)
    with pytest.raises(ValueError, match=r"SequenceClassifier: mode must be one of 'conv', 'scan', got 'fast'"):
        model(x, mode="fast")


def test_feature_inputs_are_checked():
    model = SequenceClassifier(3, d_input=2, d_model=4, d_state=8, n_layers=1, seed=0)
    with pytest.raises(ValueError, match=r"SequenceClassifier: x must be \(B, L, d_input\) features with d_input=2, "
                                         r"got shape \(2, 5, 3\)"):
        model(torch.randn(B, L, 3))                   # a bare matmul RuntimeError before
    with pytest.raises(ValueError, match=r"SequenceClassifier: x must be \(B, L, d_input\) features"):
        model(torch.randn(B, L))
    with pytest.raises(TypeError, match=r"SequenceClassifier: x has dtype torch.float64 but the layer's parameters "
                                        r"are torch.float32"):
        model(torch.randn(B, L, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"SequenceClassifier: x must be a real floating-point tensor "
                                        r".*got torch.int64"):
        model(torch.ones(B, L, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"SequenceClassifier.step: x_t must be \(B, d_input\) features with "
                                         r"d_input=2, got shape \(2, 3\)"):
        model.step(torch.randn(B, 3), None)


def test_classifier_state_none_and_bad_structure():
    model = _tokens_model()
    x_t = torch.tensor([1, 4])
    with torch.no_grad():
        y0, _ = model.step(x_t, None)
        y1, _ = model.step(x_t, model.default_state(B))
        assert torch.equal(y0, y1)
    states, total, count = model.default_state(B)
    with pytest.raises(TypeError, match=r"SequenceClassifier.step: state must be \(layer states, running sum, steps "
                                        r"read\) as default_state\(batch\) gives, or None, got list"):
        model.step(x_t, [states, total, count])
    with pytest.raises(ValueError, match=r"SequenceClassifier.step: state must hold 2 layer states \(one per block\), "
                                         r"got 1"):
        model.step(x_t, (states[:1], total, count))
    with pytest.raises(ValueError, match=r"SequenceClassifier.step: state\[1\] \(the running sum\) must have shape "
                                         r"\(2, 4\)"):
        model.step(x_t, (states, total[:1], count))
    with pytest.raises(ValueError, match=r"SequenceClassifier.step: state\[2\] \(the steps read\) must have "
                                         r"shape \(\)"):
        model.step(x_t, (states, total, count.reshape(1)))
    with pytest.raises(ValueError, match=r"S4D.step: state must have shape \(2, 4, 4\)"):
        model.step(x_t, ((states[0][:1], states[1]), total, count))


# --- constructor and method arguments that were accepted silently or failed inside torch --------------
LAYER_CLASSES = {"S4D": lambda **kw: LAYER_CASES["s4d-zoh"](**kw), "DSS": lambda **kw: LAYER_CASES["dss-exp"](**kw),
                 "S4": lambda **kw: LAYER_CASES["s4-legs"](**kw), "S5": lambda **kw: LAYER_CASES["s5-legs-zoh"](**kw)}


@pytest.mark.parametrize("cls", list(LAYER_CLASSES))
@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(ssm_lr=-1.0), ValueError, r"{}: ssm_lr must be a finite number > 0 \(or None\), got -1.0"),  # was accepted
    (dict(ssm_lr="fast"), TypeError, r"{}: ssm_lr must be a number or None, got str \('fast'\)"),
    (dict(dt_min=True, dt_max=2.0), TypeError, r"{}: dt_min must be a number, got bool \(True\)"),
    (dict(dt_max=float("inf")), ValueError, r"{}: dt_max must be a finite number > 0, got inf"),
    (dict(dt_min=0.1, dt_max=0.01), ValueError, r"{}: need dt_min <= dt_max, got dt_min=0.1, dt_max=0.01"),
    (dict(seed="x"), TypeError, r"{}: seed must be an int or None, got str \('x'\)"),   # RuntimeError before
    (dict(seed=1.5), TypeError, r"{}: seed must be an int or None, got float \(1.5\)"),
    (dict(seed=-1), ValueError, r"{}: seed must be an int >= 0 \(or None\), got -1"),
    (dict(transposed="yes"), TypeError, r"{}: transposed must be True or False, got str \('yes'\)"),
])
def test_layer_constructor_arguments(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match.format(cls)):
        LAYER_CLASSES[cls](d_model=H, d_state=8, **kwargs)


@pytest.mark.parametrize("case", [c for c in LAYER_CASES if not c.startswith(("s5", "lru"))])   # no kernel()
def test_kernel_length_is_checked(case):
    """DSS-softmax and S4 with l_max sliced their window silently: L = 0 gave an empty kernel, L = -1
    one of l_max - 1 samples, L = True one sample."""
    m = LAYER_CASES[case](d_model=H, d_state=8, seed=0)
    for L in (0, -1):
        with pytest.raises(ValueError, match=rf"{type(m).__name__}.kernel: L must be an int >= 1, got {L!r}"):
            m.kernel(L)
    for L in (True, 2.5):
        with pytest.raises(TypeError, match=rf"{type(m).__name__}.kernel: L must be an int, got {type(L).__name__}"):
            m.kernel(L)


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_empty_batches_and_sequences_are_refused_by_the_layer(case):
    """The ops' messages named their own arguments (vandermonde's L, cauchy's z) or S5 returned an
    empty output; the layer names u."""
    m = _make(case)
    name = type(m).__name__
    for shape in ((B, 0, H), (0, L, H)):
        with pytest.raises(ValueError, match=rf"{name}: u must hold B >= 1 sequences of L >= 1 steps, "
                                             rf"got shape {re.escape(str(shape))}"):
            m(torch.ones(shape, dtype=torch.float64))


@pytest.mark.parametrize("case", ["s4d-zoh", "dss-softmax"])
def test_with_modal_form_checks_its_system(case):
    """B or C of another shape, D of another length and dt <= 0 made a broken layer (or a bare size
    error from torch); NaN dt was accepted."""
    m = _make(case)
    f = m.modal_form()
    who = rf"{type(m).__name__}.with_modal_form"
    lam, Bm, C = f["lam"], f["B"], f["C"]
    for kwargs, match in [
        (dict(B=Bm[:, :2]), r"B must have shape \(3, 4\) \(like lam\), got \(3, 2\)"),
        (dict(C=C[:, :1]), r"C must have shape \(3, 4\) \(like lam\), got \(3, 1\)"),
        (dict(D=torch.ones(5)), r"D must have shape \(3,\) \(like lam\), got \(5,\)"),
        (dict(dt=-torch.ones(3)), r"dt must be > 0, got min -1.0"),
        (dict(dt=torch.full((3,), float("nan"))), r"dt must be finite, got 3 non-finite value\(s\)"),
        (dict(lam=lam * float("nan")), r"lam must be finite"),
        (dict(lam=lam[0]), r"lam must be \(H=3, N\) with N >= 1, got \(4,\)"),
    ]:
        args = dict(lam=lam, B=Bm, C=C) | kwargs
        with pytest.raises(ValueError, match=rf"{who}: {match}"):
            m.with_modal_form(**args)


def test_block_classifier_and_param_groups_arguments():
    with pytest.raises(TypeError, match=r"ResidualBlock: prenorm must be True or False, got str \('no'\)"):
        ResidualBlock(_make("s4d-zoh"), prenorm="no")
    with pytest.raises(TypeError, match=r"SequenceClassifier: layer_kwargs must be a dict \(or None\), got list"):
        SequenceClassifier(3, d_input=2, layer_kwargs=[("init", "s4d-lin")])
    with pytest.raises(TypeError, match=r"SequenceClassifier: seed must be an int or None, got str \('x'\)"):
        SequenceClassifier(3, d_input=2, seed="x")
    with pytest.raises(TypeError, match=r"SequenceClassifier: dtype must be torch.float32 or torch.float64, "
                                        r"got torch.float16"):
        SequenceClassifier(3, d_input=2, dtype=torch.float16)
    with pytest.raises(TypeError, match=r"param_groups: model must be a torch.nn.Module, got str"):
        param_groups("model", lr=1e-3)
    for kwargs, name in ((dict(lr=-1.0), "lr"), (dict(lr=float("nan")), "lr"), (dict(lr=1e-3, weight_decay=-0.1),
                                                                                  "weight_decay")):
        with pytest.raises(ValueError, match=rf"param_groups: {name} must be a finite number >= 0"):
            param_groups(_make("s4d-zoh"), **kwargs)
