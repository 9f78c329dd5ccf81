"""StreamingDecoder against forward: every layer kind, full and reduced, at L = 1, 7, 1000, at every
position; streams fed in pieces; independent streams; bad input. Tolerances: testing.py, "deploy models"."""
import copy

import pytest
import torch

from testing import (DEPLOY_KINDS, classifier_inputs, double_copy, float32_tolerance, outputs_every_position,
                     reduced_classifier, rel_rms, small_classifier)
from dssm_kernels._backend import cpp_unavailable_reason
from dssm_kernels.deploy import StreamingDecoder, bytes_per_call, flops_per_token, plan_model
from dssm_kernels.nn import DSS, S4, S4D, S5, ResidualBlock

needs_cpp = pytest.mark.skipif(cpp_unavailable_reason() is not None, reason=f"needs the C++ extension: "
                               f"{cpp_unavailable_reason()}")


def _check_against_forward(model, L, B=2, backend="cpp", with_step=True):
    x = classifier_inputs(model, B, L)
    oracle = outputs_every_position(double_copy(model), x if x.dtype == torch.int64 else x.double())
    got = StreamingDecoder(model, batch=B, backend=backend).run(x)
    assert got.shape == oracle.shape
    err, tol = rel_rms(got, oracle), float32_tolerance(model, x, oracle, with_step=with_step)
    assert err <= tol, f"decoder error {err:.3e} > tolerance {tol:.3e}"


@needs_cpp
@pytest.mark.parametrize("L", [1, 7, 1000])
@pytest.mark.parametrize("reduced", [False, True], ids=["full", "reduced"])
@pytest.mark.parametrize("kind", DEPLOY_KINDS)
def test_decoder_equals_forward(kind, reduced, L):
    model = (reduced_classifier if reduced else small_classifier)(kind)
    if reduced and kind in ("s4d", "dss", "s4"):   # the budget left its channels different mode counts
        assert all(b.layer.layout is not None for b in model.blocks)
    _check_against_forward(model, L, with_step=L <= 7 or kind != "s4")


@needs_cpp
@pytest.mark.parametrize("kind", DEPLOY_KINDS)
def test_decoder_float64(kind):
    """In float64 the decoder is the model's arithmetic to rounding: 1e-10 over 300 tokens."""
    model = small_classifier(kind, dtype=torch.float64)
    x = classifier_inputs(model, 2, 300)
    err = rel_rms(StreamingDecoder(model, batch=2).run(x), outputs_every_position(model, x))
    assert err <= 1e-10, err


@needs_cpp
@pytest.mark.parametrize("variant", [
    dict(tokens=True), dict(pool="last"), dict(norm="none"), dict(activation="gelu"), dict(prenorm=False),
    dict(layer_kwargs=dict(variant="softmax", l_max=64)), dict(layer_kwargs=dict(disc="bilinear")),
], ids=["tokens", "pool-last", "no-norm", "gelu-map", "postnorm", "dss-softmax", "bilinear"])
def test_decoder_model_options(variant):
    kind = "dss" if "variant" in variant.get("layer_kwargs", {}) else "s4d"
    _check_against_forward(small_classifier(kind, **variant), 64)


@needs_cpp
@pytest.mark.parametrize("kind", ["s4", "s5"])
def test_decoder_layer_options(kind):
    kw = dict(init="legt", l_max=64) if kind == "s4" else dict(init="ptd", disc="bilinear")
    _check_against_forward(small_classifier(kind, layer_kwargs=kw), 64)


@needs_cpp
@pytest.mark.parametrize("layer", [S4D, DSS, S4, S5])
def test_decoder_block_and_bare_layer(layer):
    """A ResidualBlock and a bare layer stream (B, L, H) -> (B, L, H) like their forward."""
    g = torch.Generator().manual_seed(3)
    for model in (ResidualBlock(layer(12, 8, seed=0)).eval(), layer(12, 8, seed=0)):
        x = torch.randn(2, 50, 12, generator=g)
        oracle = double_copy(model)(x.double())
        got = StreamingDecoder(model, batch=2).run(x)
        tol = 2 * rel_rms(model(x), oracle) + 1e-6
        assert rel_rms(got, oracle) <= tol


@needs_cpp
@pytest.mark.parametrize("kind", DEPLOY_KINDS)
def test_streams_fed_in_pieces(kind):
    """The state carries over between calls: pieces of 1, 3 and 16 tokens and single steps give the
    outputs of one call over the whole input (same arithmetic per token: to float32 rounding)."""
    model = small_classifier(kind)
    x = classifier_inputs(model, 3, 24)
    whole = StreamingDecoder(model, batch=3).run(x)
    dec = StreamingDecoder(model, batch=3)
    parts = [dec.run(x[:, :1]), dec.run(x[:, 1:4]), dec.step(x[:, 4]).unsqueeze(1), dec.run(x[:, 5:21])]
    parts += [dec.step(x[:, t]).unsqueeze(1) for t in range(21, 24)]
    assert rel_rms(torch.cat(parts, 1), whole) <= 1e-6


@needs_cpp
def test_streams_are_independent_and_reset():
    """Each stream of the batch is its own sequence; reset([i]) restarts stream i alone."""
    model = small_classifier("s4d", tokens=True)
    x = classifier_inputs(model, 3, 20)
    dec = StreamingDecoder(model, batch=3)
    dec.run(x[:, :10])
    dec.reset([1])
    out = dec.run(x[:, 10:])
    for b in range(3):
        single = StreamingDecoder(model, batch=1)
        ref = single.run(x[b:b + 1, 10:] if b == 1 else x[b:b + 1])[:, -10:]
        assert rel_rms(out[b:b + 1], ref) <= 1e-6
    dec.reset()
    assert rel_rms(dec.run(x), StreamingDecoder(model, batch=3).run(x)) <= 1e-6


@needs_cpp
def test_batch_64_two_threads():
    """A wide batch on the threaded paths (OpenMP over streams, BLAS over rows) equals forward."""
    model = small_classifier("s5")
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _check_against_forward(model, 40, B=64, with_step=False)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("kind", DEPLOY_KINDS)
def test_reference_backend(kind):
    """The plain-torch step (what ONNX holds) equals forward too, without the extension."""
    model = reduced_classifier(kind)
    _check_against_forward(model, 7, backend="reference")


@needs_cpp
def test_reference_backend_long():
    _check_against_forward(small_classifier("s4d"), 1000, B=1, backend="reference", with_step=False)


@needs_cpp
def test_decoder_does_not_follow_the_model():
    """Built once: training the model further changes nothing in a decoder built before."""
    model = small_classifier("s4d")
    x = classifier_inputs(model, 1, 5)
    dec = StreamingDecoder(model, batch=1)
    before = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    got = dec.run(x)
    assert rel_rms(got, outputs_every_position(before, x)) <= 1e-5


def test_flops_per_token_counts_the_dense_maps_and_modes():
    """The issue's model: two GLU maps 256 -> 512 (2 x 262144), 2 x 256 x 32 modes, norms, head."""
    from dssm_kernels.nn import SequenceClassifier
    model = SequenceClassifier(n_classes=10, d_input=1, layer="s4d", d_model=256, d_state=64, n_layers=2, seed=0)
    full = flops_per_token(plan_model(model))
    assert 2 * 262144 + 2 * 256 * 32 * 11 < full < 0.8e6
    small = SequenceClassifier(n_classes=10, d_input=1, layer="s4d", d_model=256, d_state=8, n_layers=2, seed=0)
    assert full - flops_per_token(plan_model(small)) == 2 * 256 * (32 - 4) * 11
    # bytes: the two GLU maps' weights dominate at batch 1; each layer's (dA, 2 C dB) planes and state
    # (read and written) are 4 x 2 x H x N floats
    weights = 2 * (256 * 512 + 512) * 4
    assert bytes_per_call(plan_model(model), 1) - bytes_per_call(plan_model(small), 1) == 2 * 4 * 2 * 256 * 28 * 4
    assert weights < bytes_per_call(plan_model(model), 1) < 1.05 * weights + 2 * 4 * 2 * 256 * 32 * 4 + 30000


@needs_cpp
def test_bad_input():
    model = small_classifier("s4d")
    dec = StreamingDecoder(model, batch=2)
    with pytest.raises(TypeError, match="x must be torch.float32"):
        dec.run(torch.zeros(2, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"x must be \(B, T, 3\) with B = batch = 2"):
        dec.run(torch.zeros(3, 3, 3))
    with pytest.raises(ValueError, match=r"x must be \(B, 3\)"):
        dec.step(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="T >= 1"):
        dec.run(torch.zeros(2, 0, 3))
    with pytest.raises(ValueError, match="feed the stream in shorter chunks"):
        dec.run(torch.zeros(1, 1, 1).expand(2, 1 << 26, 3))   # a view: nothing large allocated
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        dec.step([0.0, 1.0])
    tok = StreamingDecoder(small_classifier("s4d", tokens=True), batch=1)
    with pytest.raises(ValueError, match=r"token ids in \[0, vocab_size=11\), got 11"):
        tok.run(torch.tensor([[1, 11]]))
    with pytest.raises(TypeError, match="int64/int32 token ids"):
        tok.step(torch.zeros(1))
    with pytest.raises(ValueError, match=r"StreamingDecoder: batch must be an int in \[1, "):
        StreamingDecoder(model, batch=0)
    with pytest.raises(TypeError, match=r"StreamingDecoder: batch must be an int, got str"):
        StreamingDecoder(model, batch="2")
    with pytest.raises(ValueError, match="backend must be one of"):
        StreamingDecoder(model, backend="gpu")
    with pytest.raises(TypeError, match="model must be a SequenceClassifier"):
        StreamingDecoder(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="transposed=True"):
        StreamingDecoder(S4D(4, 8, transposed=True))
    with pytest.raises(ValueError, match=r"streams must be indices in \[0, batch=2\)"):
        dec.reset([2])
