"""The layer protocol for every kind: from_layer gives the layer's system (its kernel is the layer's
impulse response), to_layer(from_layer) rebuilds the layer, and a reduced system held by a new layer
(S5 and LRU: a MimoSystem whose G_r(0) off-diagonal part a diagonal D cannot hold) is the reduced system
up to that part, whose norm is added to the bound."""
import numpy as np
import pytest
import torch

from dssm_kernels.nn import DSS, LRU, S4, S4D, S5
from dssm_kernels.reduction import (DenseSystem, DiagonalSystem, MimoSystem, balanced_singular_perturbation,
                                    balanced_truncation, from_layer, hinf_norm, modal_truncation, to_layer)
from dssm_kernels.reduction.layers import feedthrough_shift

LAYERS = {
    "s4d": lambda: S4D(3, 12, seed=0, dtype=torch.float64),
    "dss-softmax": lambda: DSS(3, 12, variant="softmax", l_max=50, seed=0, dtype=torch.float64),
    "s4": lambda: S4(3, 12, l_max=50, seed=0, dtype=torch.float64),
    "s5-zoh": lambda: S5(3, 12, seed=0, dtype=torch.float64),
    "s5-ptd-bilinear": lambda: S5(3, 12, init="ptd", disc="bilinear", seed=0, dtype=torch.float64),
    "lru": lambda: LRU(3, 12, seed=0, dtype=torch.float64),
}


def _impulse(layer, L=50):
    """The layer's response to unit impulses on each input: (out, in, L)."""
    H = layer.d_model
    imp = torch.zeros(H, L, H, dtype=torch.float64)
    imp[torch.arange(H), 0, torch.arange(H)] = 1.0
    with torch.no_grad():
        return layer(imp).permute(2, 0, 1).numpy()


def _as_mimo_kernel(sys, L=50):
    """A system's kernel as (out, in, L): the channels of a SISO batch on the diagonal."""
    K = sys.kernel(L)
    if isinstance(sys, MimoSystem):
        return K
    out = np.zeros((K.shape[0], K.shape[0], L))
    out[np.arange(K.shape[0]), np.arange(K.shape[0])] = K
    return out


@pytest.mark.parametrize("kind", list(LAYERS))
def test_from_layer_is_the_layer_and_to_layer_rebuilds_it(kind):
    layer = LAYERS[kind]()
    sys = from_layer(layer)
    want = {"s4": DenseSystem, "s5-zoh": MimoSystem, "s5-ptd-bilinear": MimoSystem, "lru": MimoSystem}.get(kind,
                                                                                                         DiagonalSystem)
    assert isinstance(sys, want)
    K = _impulse(layer)
    np.testing.assert_allclose(_as_mimo_kernel(sys), K, rtol=0, atol=1e-11 * np.abs(K).max())
    if kind != "s4":          # an S4 is held as an S4D only once reduced (its full system is not diagonal)
        again = to_layer(layer, sys)
        assert type(again) is type(layer) and again.d_state == layer.d_state
        np.testing.assert_allclose(_impulse(again), K, rtol=0, atol=1e-11 * np.abs(K).max())


@pytest.mark.parametrize("kind", ["s5-zoh", "s5-ptd-bilinear", "lru"])
@pytest.mark.parametrize("reduce", [balanced_truncation, balanced_singular_perturbation, modal_truncation])
def test_reduced_mimo_layer_is_the_reduced_system_up_to_the_feedthrough_shift(kind, reduce):
    """The new layer's kernel is the reduced system's except at lag 0, where it lacks offdiag(D_r); the
    layer's H-inf error is within the system bound plus ||offdiag(D_r)||_2."""
    layer = LAYERS[kind]()
    sys = from_layer(layer)
    red, info = reduce(sys, 6) if reduce is modal_truncation else reduce(sys, rank=6)
    new = to_layer(layer, red)
    assert type(new) is type(layer) and new.d_state <= 2 * red.n_modes
    Kr, Kn = red.kernel(50), _impulse(new)
    off = red.D - np.diag(np.diag(red.D))
    np.testing.assert_allclose(Kn[..., 1:], Kr[..., 1:], rtol=0, atol=1e-11 * np.abs(Kr).max())
    np.testing.assert_allclose(Kn[..., 0], Kr[..., 0] - off, rtol=0, atol=1e-11 * np.abs(Kr).max())
    shift = feedthrough_shift(red)
    assert shift == pytest.approx(np.linalg.norm(off, 2), rel=1e-12)
    held = from_layer(new)
    g = hinf_norm(sys)
    assert hinf_norm(sys - held) <= info.error_bound + shift + 1e-11 * g
