"""S4D / DSS layers whose channels keep different numbers of modes (channel_modes, what a model-wide
state budget gives): stored flat and run in groups of equal count, they equal the uniform layer whose
extra modes are switched off (C = 0) in every view and on every backend; their state is (B, M); they
rebuild from a model's config and train; bad layouts are refused."""
import pytest
import torch

from dssm_kernels.nn import DSS, S4D, SequenceClassifier
from dssm_kernels.nn._base import MAX_BUCKETS, ChannelModes, _bucket_ranges

COUNTS = [1, 4, 2, 4, 1]
MAKERS = {
    "s4d-zoh": lambda **k: S4D(5, 8, seed=0, **k),
    "s4d-bilinear": lambda **k: S4D(5, 8, disc="bilinear", seed=0, **k),
    "dss-exp": lambda **k: DSS(5, 8, seed=0, **k),
    "dss-softmax": lambda **k: DSS(5, 8, variant="softmax", l_max=40, seed=0, **k),
}


def _pair(kind, dtype=torch.float64, backend="auto"):
    """(uniform layer with the modes beyond COUNTS switched off, the per-channel layer holding the rest)."""
    return _split(MAKERS[kind](dtype=dtype, backend=backend), COUNTS)


def _split(full, counts):
    f = full.modal_form()
    C = f["C"].clone()
    for h, n in enumerate(counts):
        C[h, n:] = 0
    return full.with_modal_form(f["lam"], f["B"], C), full.with_modal_form(f["lam"], f["B"], f["C"], channel_modes=counts)


def _steps(m, u):
    state, ys = None, []
    for t in range(u.shape[1]):
        y, state = m.step(u[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


# Triton runs interpreted on a CPU (seconds per call): one kind covers its bucket-by-bucket path
@pytest.mark.parametrize("kind,backend", [(k, b) for k in MAKERS for b in ("reference", "cpp")] + [("s4d-zoh", "triton")])
def test_equals_the_uniform_layer_with_modes_switched_off(kind, backend):
    """conv, scan and step of the per-channel layer against the uniform one's forward, float64: the same
    sums over fewer (zero) terms, so to rounding (1e-12 of the output's scale)."""
    ref, rag = _pair(kind, backend=backend)
    assert rag.layout.M == sum(COUNTS) and rag.d_state == ChannelModes.d_state(COUNTS) == 6
    last = _views_equal(ref, rag, torch.randn(2, 45, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    assert last.shape == rag.default_state(2).shape == (2, sum(COUNTS))


def _views_equal(ref, rag, u):
    """conv, scan and step of `rag` equal `ref`'s forward to 1e-12 of the output's scale; the last state."""
    with torch.no_grad():
        y = ref(u)
        tol = 1e-12 * y.abs().max().item()
        torch.testing.assert_close(rag(u), y, rtol=0, atol=tol)
        ys, last = rag.scan(u)
        torch.testing.assert_close(ys, y, rtol=0, atol=tol)
        steps, state = _steps(rag, u)
        torch.testing.assert_close(steps, y, rtol=0, atol=tol)
        torch.testing.assert_close(last, state, rtol=0, atol=tol)
    return last


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_more_counts_than_buckets(backend):
    """Seven distinct counts run as MAX_BUCKETS padded blocks (inert padding: every coefficient 0): conv,
    scan and step still equal the uniform layer with the modes switched off, to 1e-12 of the output."""
    counts = [1, 2, 3, 4, 5, 6, 8]
    ref, rag = _split(S4D(7, 16, seed=0, dtype=torch.float64, backend=backend), counts)
    assert len(rag.layout.groups) == 7 and len(rag.layout.buckets) == MAX_BUCKETS
    assert sum(counts) < rag.layout.padded_modes < 7 * max(counts)
    _views_equal(ref, rag, torch.randn(2, 33, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))


def test_bucket_ranges_minimise_the_padding():
    """The dynamic programme against every split of 6 groups into 3 ranges."""
    import itertools
    counts, sizes = [1, 2, 3, 8, 9, 30], [10, 5, 5, 2, 2, 1]
    got = _bucket_ranges(counts, sizes, k=3)

    def padded(ranges):
        return sum(sum(sizes[lo:hi]) * counts[hi - 1] for lo, hi in ranges)
    splits = [[(0, a), (a, b), (b, 6)] for a, b in itertools.combinations(range(1, 6), 2)]
    assert len(got) == 3 and padded(got) == min(padded(r) for r in splits)


@pytest.mark.parametrize("kind", list(MAKERS))
def test_modal_form_is_padded_with_inert_modes(kind):
    ref, rag = _pair(kind)
    f, g = ref.modal_form(), rag.modal_form()
    for h, n in enumerate(COUNTS):
        torch.testing.assert_close(g["lam"][h, :n], f["lam"][h, :n], rtol=1e-12, atol=0)
        assert torch.all(g["C"][h, n:] == 0)
    with torch.no_grad():
        torch.testing.assert_close(rag.kernel(30), ref.kernel(30), rtol=0, atol=1e-12)


def test_rebuilds_from_the_model_config_and_trains():
    model = SequenceClassifier(3, vocab_size=7, layer="s4d", d_model=5, d_state=8, n_layers=2, seed=0,
                               dtype=torch.float64)
    layer = model.blocks[1].layer
    f = layer.modal_form()
    model.blocks[1].layer = layer.with_modal_form(f["lam"], f["B"], f["C"], channel_modes=COUNTS)
    cfg = model.current_config()
    assert cfg["d_state"] == [8, 6] and cfg["blocks"][0] is None
    assert cfg["blocks"][1]["layer"] == "s4d" and cfg["blocks"][1]["channel_modes"] == COUNTS
    again = SequenceClassifier.from_config(cfg)
    again.load_state_dict(model.state_dict())
    x = torch.randint(0, 7, (2, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
        torch.testing.assert_close(again(x, mode="scan"), model(x), rtol=1e-10, atol=1e-12)
    model(x).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("kwargs,match", [
    (dict(d_state=6, channel_modes=[1, 2]), r"S4D: channel_modes must be a list of d_model=5 ints"),
    (dict(d_state=6, channel_modes=[1, 2, 0, 1, 1]), r"S4D: channel_modes must be a list of d_model=5 ints in \[1"),
    (dict(d_state=6, channel_modes=[1, 2, 1.5, 1, 1]), r"S4D: channel_modes must be a list"),
    (dict(d_state=8, channel_modes=COUNTS), r"S4D: with channel_modes \(M = 12 modes over 5 channels\), d_state must "
                                            r"be 2 ceil\(M / d_model\) = 6, got 8"),
    (dict(d_state=6, channel_modes=[1, 1, 1, 1, 1 << 20]), r"ints in \[1, 65536\]"),
])
def test_bad_layouts(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S4D(5, **kwargs)


def test_bad_blocks_config():
    with pytest.raises(ValueError, match=r"SequenceClassifier: blocks\[0\]\['layer'\] must be one of"):
        SequenceClassifier(3, vocab_size=5, d_model=4, d_state=8, n_layers=1, blocks=[{"layer": "rnn"}])
    with pytest.raises(TypeError, match=r"SequenceClassifier: blocks\[0\]\['channel_modes'\] must be a number, str"):
        SequenceClassifier(3, vocab_size=5, d_model=4, d_state=8, n_layers=1,
                           blocks=[{"layer": "s4d", "channel_modes": [1.5]}])
    with pytest.raises(ValueError, match=r"SequenceClassifier: blocks must be None or a list of n_layers=2 entries"):
        SequenceClassifier(3, vocab_size=5, d_model=4, d_state=8, n_layers=2, blocks=[None])
