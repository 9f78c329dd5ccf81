"""reduce_model on S4D and DSS models: output errors within the per-layer bounds composed through
the network, the report against independent measurements, the reduced model as a model (conv, scan,
step, state_dict, training), tol, unstable DSS modes, bad input."""
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from dssm_kernels.nn import DSS, S4D, SequenceClassifier, param_groups
from dssm_kernels.reduction import DiagonalSystem, from_layer, hinf_norm, reduce_model

GELU_LIP = 1.13       # max |GELU'(x)| = 1.1289 (at x ~ 0.75)


class TwoLayer(nn.Module):
    """y = G2(W gelu(G1 u) + b): per-channel SSMs around a Lipschitz map, float64."""

    def __init__(self, layer, H=4, d_state=24):
        super().__init__()
        kw = dict(dtype=torch.float64)
        if layer is DSS:
            kw["init"] = "s4d-lin"
        self.l1, self.l2 = layer(H, d_state, seed=1, **kw), layer(H, d_state, seed=2, **kw)
        torch.manual_seed(0)
        self.mix = nn.Linear(H, H, dtype=torch.float64)

    def forward(self, u):
        return self.l2(self.mix(nn.functional.gelu(self.l1(u))))


def _layer_gain(layer) -> float:
    """max over channels of ||G_h||_inf (feedthrough included)."""
    return float(np.max(hinf_norm(from_layer(layer))))


@pytest.mark.parametrize("layer", [S4D, DSS])
@pytest.mark.parametrize("method", ["bt", "modal"])
def test_output_error_within_composed_bounds(layer, method):
    """With e_i the layers' guaranteed channel bounds (l2 gain of the error system), on any input:
        ||y - y_r|| <= e2 ||z_r|| + ||G2||_inf ||W||_2 Lip(gelu) e1 ||u||,   z_r = W gelu(G1r u) + b."""
    model = TwoLayer(layer)
    red, rep = reduce_model(model, d_state=8, method=method)
    e1, e2 = (float(np.max(r.error_bound)) for r in rep.layers)
    u = torch.randn(3, 400, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        y, yr = model(u), red(u)
        z_r = red.mix(nn.functional.gelu(red.l1(u)))
        mix_gain = torch.linalg.matrix_norm(model.mix.weight, 2)
        bound = e2 * z_r.norm() + _layer_gain(model.l2) * mix_gain * GELU_LIP * e1 * u.norm()
    err = (y - yr).norm()
    assert 0 < err <= bound
    # and each layer alone: ||G1 u - G1r u|| <= e1 ||u||
    with torch.no_grad():
        assert (model.l1(u) - red.l1(u)).norm() <= e1 * u.norm()


@pytest.mark.parametrize("layer", [S4D, DSS])
def test_report_against_independent_measurements(layer):
    model = TwoLayer(layer)
    with warnings.catch_warnings():   # time-limited BT may give an unstable mode: mirrored, with a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        red, rep = reduce_model(model, d_state=10, method="bt", horizon=300)
    assert [r.name for r in rep.layers] == ["l1", "l2"]
    assert rep.params_before == sum(p.numel() for p in model.parameters())
    assert rep.params_after == sum(p.numel() for p in red.parameters()) < rep.params_before
    for r, old, new in zip(rep.layers, (model.l1, model.l2), (red.l1, red.l2)):
        with torch.no_grad():   # the layers' own kernels (ops, float64) plus the feedthrough at lag 0
            K, Kr = old.kernel(300), new.kernel(300)
            K[:, 0] += old.D
            Kr[:, 0] += new.D
        assert abs(r.kernel_error - ((K - Kr).norm() / K.norm()).item()) <= 1e-9
        assert new.d_state == 10 and r.d_state_before == 24 and r.measured_steps == 300
        assert r.hsv.shape == (4, 24) and np.all(r.rank <= 10) and np.all(r.rank >= 5)
        assert r.error_bound is None                       # a finite horizon has no guaranteed bound
        assert r.params_after == sum(p.numel() for p in new.parameters())


LAYER_KINDS = [("s4d", {}), ("dss", {}), ("dss", dict(variant="softmax", l_max=32))]


def _classifier(layer, kw):
    return SequenceClassifier(3, vocab_size=9, layer=layer, d_model=8, d_state=16, n_layers=2, seed=0, layer_kwargs=kw)


X = torch.randint(0, 9, (2, 24), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("layer,kw", LAYER_KINDS)
@pytest.mark.parametrize("method", ["bt", "modal", "h2"])
def test_reduced_classifier_is_the_same_kind_of_model(layer, kw, method):
    """Same classes, the new d_state, the original untouched, conv == scan, state_dict round trip."""
    model = _classifier(layer, kw)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    red, rep = reduce_model(model, d_state=6, method=method, max_iter=30)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(type(b.layer) is type(a.layer) for a, b in zip(model.blocks, red.blocks))
    assert [b.layer.d_state for b in red.blocks] == [6, 6] and len(rep.layers) == 2
    with torch.no_grad():
        conv = red(X)
        assert torch.allclose(conv, red(X, mode="scan"), rtol=1e-4, atol=1e-5)
    again = SequenceClassifier.from_config(red.current_config())
    again.load_state_dict(red.state_dict())
    with torch.no_grad():
        assert torch.equal(again(X), conv)


@pytest.mark.parametrize("layer,kw", LAYER_KINDS)
def test_reduced_classifier_steps_and_trains(layer, kw):
    """step() through the sequence equals forward(); a few AdamW steps lower the loss on a fixed batch
    and every parameter (padding modes included) gets a finite gradient."""
    red, _ = reduce_model(_classifier(layer, kw), d_state=6)
    with torch.no_grad():
        state = red.default_state(2)
        for t in range(X.shape[1]):
            step, state = red.step(X[:, t], state)
        assert torch.allclose(red(X), step, rtol=1e-4, atol=1e-5)
    opt = torch.optim.AdamW(param_groups(red, lr=1e-2))
    yl = torch.tensor([0, 2])
    losses = []
    for _ in range(4):
        loss = nn.functional.cross_entropy(red(X), yl)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in red.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("method", ["bt", "modal"])
def test_tol_meets_the_bound_with_the_fewest_modes(method):
    model = TwoLayer(S4D, H=3, d_state=24)
    tol = 0.05
    red, rep = reduce_model(model, tol=tol, method=method)
    for r, new in zip(rep.layers, (red.l1, red.l2)):
        assert np.all(r.error_bound <= tol) and np.all(r.hinf_error <= tol * (1 + 1e-6))
        smaller, srep = reduce_model(model, d_state=new.d_state - 2, method=method)
        worse = srep.layers[0 if r.name == "l1" else 1]
        assert np.max(worse.error_bound) > tol or new.d_state == 2   # one pair fewer would not meet tol


def test_unstable_dss_modes_take_the_finite_horizon():
    """DSS-softmax may learn Re lam > 0: reduction warns, uses a finite horizon, and stays finite."""
    layer = DSS(3, 16, variant="softmax", l_max=64, seed=0, dtype=torch.float64)
    mf = layer.modal_form()
    lam = mf["lam"].clone()
    lam[:, :2] = lam[:, :2].imag * 1j + 0.05
    layer = layer.with_modal_form(lam, mf["B"], mf["C"])
    with pytest.warns(RuntimeWarning, match="unstable mode"):
        red, rep = reduce_model(layer, d_state=8)
    with torch.no_grad():
        K, Kr = layer.kernel(64), red.kernel(64)
    assert torch.isfinite(Kr).all() and ((K - Kr).norm() / K.norm()).item() < 0.5
    assert rep.layers[0].error_bound is None and math.isinf(np.max(rep.layers[0].hinf_error))


@pytest.mark.parametrize("model,kwargs,exc,match", [
    (nn.Linear(3, 3), dict(d_state=4), TypeError, r"holds no SSM layer of dssm_kernels.nn"),
    ("model", dict(d_state=4), TypeError, r"model must be a torch.nn.Module, got str"),
    (S4D(2, 8), dict(d_state=4, method="svd"), ValueError,
     r"method must be one of \('bt', 'bsp', 'modal', 'msp', 'h2', 'tlh2'\)"),
    (S4D(2, 8), dict(), ValueError, r"give exactly one of d_state, tol, budget and fraction, got none"),
    (S4D(2, 8), dict(d_state=4, tol=0.1), ValueError, r"give exactly one of d_state, tol, budget and fraction, got "
                                                       r"d_state, tol"),
    (S4D(2, 8), dict(d_state=5), ValueError, r"d_state must be even \(conjugate pairs\)"),
    (S4D(2, 8), dict(tol=0.1, method="h2"), ValueError, r"tol needs a method with a guaranteed bound"),
    (S4D(2, 8), dict(d_state=4, method="tlh2"), ValueError, r"method 'tlh2' \(time-limited h2\) needs horizon"),
    (S4D(2, 8), dict(budget=2.5), TypeError, r"budget must be an int or None, got float \(2.5\)"),
    (S4D(2, 8), dict(budget=0), ValueError, r"budget must be an int >= 2 \(or None\), got 0"),
    (S4D(2, 8), dict(fraction=1.5), ValueError, r"fraction must be a finite number in \(0, 1\] \(or None\), got 1.5"),
    (S4D(2, 8), dict(budget=2), ValueError, r"the budget allows 1 complex modes \(2 real states\), fewer than one per "
                                            r"system \(2 systems"),
    (S4D(2, 8), dict(budget=8, allocate="greedy"), ValueError, r"allocate must be one of \('bound', 'last', "),
    (S4D(2, 8), dict(d_state=4, horizon=2.5), TypeError, r"horizon of a discrete system must be an int"),
])
def test_bad_arguments(model, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        reduce_model(model, **kwargs)


def test_layer_already_small_is_kept():
    model = TwoLayer(S4D, H=2, d_state=8)
    red, rep = reduce_model(model, d_state=8)
    assert rep.layers == [] and red.l1.d_state == 8
    assert isinstance(from_layer(red.l1), DiagonalSystem)


@pytest.mark.parametrize("make", [
    lambda: S4D(3, 12, disc="zoh", seed=0, dtype=torch.float64),
    lambda: S4D(3, 12, disc="bilinear", init="s4d-inv", seed=0, dtype=torch.float64),
    lambda: DSS(3, 12, seed=0, dtype=torch.float64),
    lambda: DSS(3, 12, variant="softmax", l_max=50, seed=0, dtype=torch.float64),
])
def test_layer_round_trip(make):
    """from_layer's kernel is the layer's kernel plus D at lag 0; to_layer(from_layer) rebuilds it."""
    from dssm_kernels.reduction import to_layer
    layer = make()
    sys = from_layer(layer)
    assert sys.batch_shape == (3,) and sys.n_modes == 6
    with torch.no_grad():
        K = layer.kernel(80)
        K[:, 0] += layer.D
    np.testing.assert_allclose(sys.kernel(80), K.numpy(), rtol=1e-10, atol=1e-12 * K.abs().max().item())
    again = to_layer(layer, sys)
    assert type(again) is type(layer) and again.d_state == 12
    np.testing.assert_allclose(from_layer(again).kernel(80), sys.kernel(80), rtol=1e-10, atol=1e-12)
