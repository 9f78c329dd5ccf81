"""Models and the forward oracle shared by the deploy tests (decoder, ONNX export).

Every model is small (d_model 12, two blocks) so that L = 1000 stays quick. `outputs_every_position`
is the model's forward evaluated at every prefix in one pass: the blocks are causal, so their
(B, L, H) output holds each prefix's; a classifier's pooled value at t is the mean (or the last) of
the first t + 1 block outputs, then the decoder Linear. At t = L - 1 it is model(x) itself.

Tolerances (relative RMS over all positions and outputs, against the float64 copy of the model):
a float32 path may be off by at most twice the worse of the float32 model's own two evaluations
(forward, and step by step), plus 1e-6 for outputs near zero: the decoder computes the same function
in another order (a recurrence, fused, another BLAS) and so carries a rounding error of the same size
(python_tests/rounding.py). A float64 decoder must match to 1e-10.
"""
from __future__ import annotations

import torch

from dssm_kernels.nn import SequenceClassifier

KINDS = ("s4d", "dss", "s4", "s5")
REDUCIBLE = ("s4d", "dss")   # what reduction.reduce_model reduces; S4 and S5 get per-layer d_state instead


def classifier(kind: str, *, d_state=8, tokens=False, pool="mean", seed=0, dtype=torch.float32, **kw):
    extra = dict(vocab_size=11) if tokens else dict(d_input=3)
    return SequenceClassifier(n_classes=5, layer=kind, d_model=12, d_state=d_state, n_layers=2, pool=pool,
                              seed=seed, dtype=dtype, **extra, **kw).eval()


def reduced_classifier(kind: str, **kw):
    """A reduced model of `kind`: BT-reduced to d_state 4 where reduce_model applies; else the shape a
    reduction leaves (one d_state per layer, smaller than the first's)."""
    if kind in REDUCIBLE:
        from dssm_kernels.reduction import reduce_model
        model = classifier(kind, d_state=12, **kw)
        small, _ = reduce_model(model, d_state=4, method="bt")
        return small.eval()
    return classifier(kind, d_state=[8, 4], **kw)


def inputs(model, B: int, L: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if isinstance(model.encoder, torch.nn.Embedding):
        return torch.randint(0, model.encoder.num_embeddings, (B, L), generator=g)
    return torch.randn(B, L, model.encoder.in_features, generator=g, dtype=model.decoder.weight.dtype)


@torch.no_grad()
def outputs_every_position(model, x: torch.Tensor) -> torch.Tensor:
    """(B, L, n_out): forward's output for every prefix of x (see the module docstring)."""
    if isinstance(model, SequenceClassifier):
        h = model.encoder(x)
        for block in model.blocks:
            h = block(h)
        if model.pool == "mean":
            steps = torch.arange(1, h.shape[1] + 1, dtype=h.dtype).view(1, -1, 1)
            h = h.cumsum(1) / steps
        return model.decoder(h)
    return model(x)


@torch.no_grad()
def step_outputs(model, x: torch.Tensor) -> torch.Tensor:
    """(B, L, n_out) from model.step token by token (the model's own recurrent evaluation)."""
    state, ys = None, []
    for t in range(x.shape[1]):
        y, state = model.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1)


def rel_rms(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double(), want.double()
    return float((got - want).norm() / want.norm().clamp_min(1e-300))


def double_copy(model):
    import copy
    return copy.deepcopy(model).double()


def float32_tolerance(model, x: torch.Tensor, oracle: torch.Tensor, with_step: bool = True,
                      last_only: bool = False) -> float:
    """2 x the worse of the float32 model's forward and step errors against the oracle, + 1e-6.
    last_only: the oracle is the output after the whole sequence (forward's), not every position's."""
    pick = (lambda y: y[:, -1]) if last_only else (lambda y: y)  # noqa: E731
    errs = [rel_rms(pick(outputs_every_position(model, x)), oracle)]
    if with_step:
        errs.append(rel_rms(pick(step_outputs(model, x)), oracle))
    return 2 * max(errs) + 1e-6
