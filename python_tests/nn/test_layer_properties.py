"""Property-based tests of the layers, the residual block and the classifier (hypothesis).

Hypothesis draws the layer kind and its variant, sizes (batch 0 included), precisions, layouts and
bad inputs and states. Properties:
- forward keeps the input's shape and dtype and gives finite outputs for finite inputs;
- step over the sequence, and scan where the layer has one, equal forward (float64: 1e-9 relative,
  the layer tests' 1e-10 at L = 1000 with margin for random variants; float32: 1e-3);
- a bad input (dtype, rank, channel count, token range) or state (shape, dtype, type) gives a
  TypeError / ValueError naming it, never another exception or a silently broadcast result;
- bad constructor arguments give a TypeError / ValueError naming the argument.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dssm_kernels.nn import DSS, LRU, S4, S4D, S5, ResidualBlock, SequenceClassifier
from testing import raises_clear_error

SETTINGS = dict(deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

VARIANTS = {
    "s4d": [dict(init=i, disc=d) for i in ("s4d-lin", "s4d-inv", "s4d-real", "s4d-legs") for d in ("zoh", "bilinear")],
    "dss": [dict(variant="exp", init=i) for i in ("skew-hippo", "s4d-lin", "s4d-inv")] + [dict(variant="softmax", l_max=16)],
    "s4": [dict(init="legs"), dict(init="legt", l_max=16), dict(init="fout")],
    "s5": [dict(init="legs", disc="zoh"), dict(init="ptd", disc="bilinear")],
    "lru": [dict(), dict(r_min=0.0, r_max=0.5), dict(r_min=0.99, r_max=0.9999, max_phase=0.01)],
}
CLASSES = {"s4d": S4D, "dss": DSS, "s4": S4, "s5": S5, "lru": LRU}
TOL = {torch.float64: 1e-9, torch.float32: 1e-3}


@st.composite
def layers(draw):
    kind = draw(st.sampled_from(sorted(CLASSES)))
    kw = draw(st.sampled_from(VARIANTS[kind]))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    H = draw(st.integers(1, 4))
    d_state = 2 * draw(st.integers(1, 4))
    layer = CLASSES[kind](H, d_state, dtype=dtype, seed=draw(st.integers(0, 100)), **kw)
    return kind, layer, dtype, H


def _rel(a, b):
    den = b.norm()
    return float((a - b).norm() / den) if den > 0 else float((a - b).norm())


def _steps(m, u, state):
    ys = []
    for t in range(u.shape[1]):
        y, state = m.step(u[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


@settings(max_examples=40, **SETTINGS)
@given(layers(), st.integers(0, 3), st.integers(1, 24), st.integers(0, 2**31 - 1))
def test_views_agree(layer_case, B, L, seed):
    kind, m, dtype, H = layer_case
    u = torch.randn(B, L, H, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    if B == 0:   # an empty batch is refused with a clear error (nn/_base.py), not computed
        assert raises_clear_error(lambda: m(u), ["u"])
        return
    with torch.no_grad():
        y = m(u)
        assert y.shape == u.shape and y.dtype == dtype and torch.isfinite(y).all()
        ys, _ = _steps(m, u, m.default_state(B))
        assert _rel(ys, y) <= TOL[dtype]
        if kind != "s4":
            y_scan, _ = m.scan(u)
            assert _rel(y_scan, y) <= TOL[dtype]


@settings(max_examples=60, **SETTINGS)
@given(layers(), st.sampled_from(["int64", "complex", "other_precision", "rank2", "rank4", "channels"]))
def test_bad_inputs_are_refused(layer_case, kind):
    _, m, dtype, H = layer_case
    u = torch.randn(2, 5, H, dtype=dtype)
    bad = {"int64": lambda: u.long(), "complex": lambda: u.to(torch.complex128 if dtype == torch.float64 else torch.complex64),
           "other_precision": lambda: u.to(torch.float32 if dtype == torch.float64 else torch.float64),
           "rank2": lambda: u[0], "rank4": lambda: u[None], "channels": lambda: torch.randn(2, 5, H + 1, dtype=dtype)}[kind]()
    assert raises_clear_error(lambda: m(bad), ["u", "x", "input"])
    if kind != "rank4":
        bad_t = bad[:, 0] if bad.dim() == 3 else bad[0]
        assert raises_clear_error(lambda: m.step(bad_t, m.default_state(2)), ["u", "x", "input"])


@settings(max_examples=60, **SETTINGS)
@given(layers(), st.sampled_from(["batch", "modes", "missing_dim", "real", "other_precision", "list"]))
def test_bad_states_are_refused(layer_case, kind):
    _, m, dtype, H = layer_case
    good = m.default_state(3)
    u_t = torch.randn(3, H, dtype=dtype)
    bad = {"batch": lambda: m.default_state(1), "modes": lambda: torch.cat([good, good], -1),
           "missing_dim": lambda: good[..., 0], "real": lambda: good.real.contiguous(),
           "other_precision": lambda: good.to(torch.complex64 if good.dtype == torch.complex128 else torch.complex128),
           "list": lambda: good.tolist()}[kind]()
    assert raises_clear_error(lambda: m.step(u_t, bad), ["state"])


@settings(max_examples=40, **SETTINGS)
@given(st.sampled_from(sorted(CLASSES)), st.sampled_from(["d_model", "d_state"]),
       st.sampled_from([0, -2, 3, 2.0, True, "8", None]))
def test_bad_sizes_are_refused(kind, name, value):
    if name == "d_model" and value == 3:
        return   # d_model may be odd
    args = {"d_model": 2, "d_state": 4, name: value}
    assert raises_clear_error(lambda: CLASSES[kind](args["d_model"], args["d_state"]), [name])


@settings(max_examples=30, **SETTINGS)
@given(st.sampled_from(sorted(CLASSES)), st.integers(1, 3), st.integers(-3, 12))
def test_classifier_token_range(kind, B, token):
    model = SequenceClassifier(3, vocab_size=10, layer=kind, d_model=4, d_state=4, n_layers=1, seed=0)
    x = torch.zeros(B, 6, dtype=torch.long)
    x[0, 2] = token
    if 0 <= token < 10:
        with torch.no_grad():
            assert torch.isfinite(model(x)).all()
    else:
        assert raises_clear_error(lambda: model(x), ["x", "token"])
        assert raises_clear_error(lambda: model.step(x[:, 2], model.default_state(B)), ["x", "token"])


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_block_step_checks_its_state(kind):
    block = ResidualBlock(CLASSES[kind](3, 4, seed=0))
    assert raises_clear_error(lambda: block.step(torch.randn(2, 3), block.default_state(5)), ["state"])
