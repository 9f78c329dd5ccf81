"""Inference timing of classifiers on a CPU, every model and mode measured side by side in one run.

Modes: "conv" (each layer's convolution view, forward(x)), "scan" (the recurrence over the whole
sequence, forward(x, mode="scan")), "step" (token-by-token decoding with step(), the deployment loop).
"""
from __future__ import annotations

import math
import statistics
import time

import torch

MODES = ("conv", "scan", "step")


def _run(model, x, mode: str) -> None:
    if mode == "step":
        state = model.default_state(x.shape[0])
        for t in range(x.shape[1]):
            _, state = model.step(x[:, t], state)
    else:
        model(x, mode=mode)


@torch.no_grad()
def time_models(models: dict, x: torch.Tensor, modes=MODES, repeats: int = 5, min_seconds: float = 0.05) -> dict:
    """{name: {mode: median seconds per call}} for every model and mode on the batch x.

    A warm-up call sizes each (model, mode) measurement to k calls lasting >= min_seconds (a single
    millisecond call is mostly timer and scheduler noise); each round then times k calls per model,
    the models interleaved round-robin so machine noise hits all of them alike; the median over
    `repeats` rounds of the per-call time is reported."""
    for m in models.values():
        m.eval()
    calls = {}
    for mode in modes:
        for name, m in models.items():
            t0 = time.perf_counter()
            _run(m, x, mode)
            calls[name, mode] = max(1, math.ceil(min_seconds / max(time.perf_counter() - t0, 1e-9)))
    times = {name: {mode: [] for mode in modes} for name in models}
    for _ in range(repeats):
        for mode in modes:
            for name, m in models.items():
                k = calls[name, mode]
                t0 = time.perf_counter()
                for _ in range(k):
                    _run(m, x, mode)
                times[name][mode].append((time.perf_counter() - t0) / k)
    return {name: {mode: statistics.median(v) for mode, v in d.items()} for name, d in times.items()}
