"""Inference timing of classifiers on a CPU, every model and mode measured side by side in one run.

Modes: "conv" (each layer's convolution view, forward(x)), "scan" (the recurrence over the whole
sequence, forward(x, mode="scan")), "step" (token-by-token decoding with the model's own step(), in
eager torch), "decode" (token-by-token decoding with deploy.StreamingDecoder, one fused C++ call per
token: the deployment loop, and what a removed state buys where the model is deployed).
"""
from __future__ import annotations

import math
import statistics
import time

import torch

from dssm_kernels._validate import check_int

MODES = ("conv", "scan", "step", "decode")


def _as_input(model, x: torch.Tensor) -> torch.Tensor:
    """x in the model's dtype when it holds features (token ids stay as they are)."""
    return x.to(next(model.parameters()).dtype) if x.is_floating_point() else x


def _decoder(model, batch: int, decoders: dict):
    """The model's StreamingDecoder for `batch` streams, built once per timing call and kept in
    `decoders` (its plan copies the weights: nothing trains while timing). NotImplementedError for a
    layer it cannot stream, as for a missing view."""
    from dssm_kernels.deploy import StreamingDecoder
    key = (id(model), batch)
    if key not in decoders:
        try:
            decoders[key] = StreamingDecoder(model, batch=batch)
        except TypeError as e:   # deploy names the layer kinds it streams
            raise NotImplementedError(str(e)) from e
    return decoders[key]


def _run(model, x, mode: str, decoders: dict) -> None:
    if mode == "decode":
        dec = _decoder(model, x.shape[0], decoders)
        dec.reset()
        for t in range(x.shape[1]):
            dec.step(x[:, t])
    elif mode == "step":
        state = model.default_state(x.shape[0])
        for t in range(x.shape[1]):
            _, state = model.step(x[:, t], state)
    else:
        model(x, mode=mode)


@torch.no_grad()
def supported_modes(model, x: torch.Tensor, modes=MODES) -> tuple[str, ...]:
    """The modes of `modes` that `model` runs, tried on the first two steps of the first sequence of the
    batch x. A layer without a view raises NotImplementedError for it (S4 has no scan): asking the model
    itself keeps this right when a layer gains or loses a view."""
    was_training = model.training
    model.eval()
    ok = []
    try:
        for mode in modes:
            try:
                _run(model, _as_input(model, x[:1, :2]), mode, {})
            except NotImplementedError:
                continue
            ok.append(mode)
    finally:
        model.train(was_training)
    return tuple(ok)


@torch.no_grad()
def time_models(models: dict, x: torch.Tensor, modes=MODES, repeats: int = 5, min_seconds: float = 0.05) -> dict:
    """{name: {mode: median seconds per call}} for every model and mode on the batch x.

    A warm-up call sizes each (model, mode) measurement to k calls lasting >= min_seconds (a single
    millisecond call is mostly timer and scheduler noise); each round then times k calls per model,
    the models interleaved round-robin so machine noise hits all of them alike; the median over
    `repeats` rounds of the per-call time is reported."""
    check_int("time_models", "repeats", repeats)
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"time_models: modes must be a non-empty selection of {MODES}, got {tuple(modes)!r}")
    if not models:
        raise ValueError("time_models: models is empty")
    for m in models.values():
        m.eval()
    xs = {name: _as_input(m, x) for name, m in models.items()}
    calls, decoders = {}, {}
    for mode in modes:
        for name, m in models.items():
            t0 = time.perf_counter()
            _run(m, xs[name], mode, decoders)
            calls[name, mode] = max(1, math.ceil(min_seconds / max(time.perf_counter() - t0, 1e-9)))
    times = {name: {mode: [] for mode in modes} for name in models}
    for _ in range(repeats):
        for mode in modes:
            for name, m in models.items():
                k = calls[name, mode]
                t0 = time.perf_counter()
                for _ in range(k):
                    _run(m, xs[name], mode, decoders)
                times[name][mode].append((time.perf_counter() - t0) / k)
    return {name: {mode: statistics.median(v) for mode, v in d.items()} for name, d in times.items()}
