"""Whole models on the GPU, full against reduced state: the "models_prepare" section (CPU) and the
"bench_models" section (GPU).

A SequenceClassifier of S4D, DSS or S5 layers: one training step (forward in convolution mode,
cross-entropy, backward, AdamW step) and one step of recurrent decoding (model.step, no autograd,
in a CUDA graph: a decoding step is many small kernels), each timed for the full model and for its
reduced-state version, side by side.

The S4D and DSS models are reduced by dssm_kernels.reduction.reduce_model (balanced truncation):
CPU work of tens of seconds at these widths, so "models_prepare" does it in its own CPU process while
the GPU runs the correctness sections, and saves both models (config and state_dict, loaded with
weights_only=True) for "bench_models". reduce_model does not reduce S5 (MIMO) layers: the S5 pair is
a full and a freshly initialised smaller-state model of the same shape, which costs the same to run
as a reduced one would (the records say which). Every layer runs on backend="triton" (interpreted
on the CPU in dry mode), whatever "auto" would pick.
"""
from __future__ import annotations

import os
import time

import torch
import torch.nn.functional as F

from bench.gpu.harness import Section, generator, peak_memory_mb, time_ms
from dssm_kernels.nn import SequenceClassifier, param_groups
from dssm_kernels.reduction import reduce_model

PROD = {"B": 16, "L": 4096, "d_model": 512, "n_layers": 2, "d_input": 16, "n_classes": 10,
        "d_state": {"s4d": (64, 16), "dss": (64, 16), "s5": (256, 64)}, "reduce_threads": 4}
DRY = {"B": 2, "L": 16, "d_model": 8, "n_layers": 1, "d_input": 3, "n_classes": 4,
       "d_state": {"s4d": (8, 4), "dss": (8, 4), "s5": (8, 4)}, "reduce_threads": 1}
REDUCED_BY_REDUCE_MODEL = ("s4d", "dss")


def _sizes(dry: bool) -> dict:
    return DRY if dry else PROD


def _model(cfg: dict, layer: str, d_state: int, backend: str) -> SequenceClassifier:
    return SequenceClassifier(cfg["n_classes"], d_input=cfg["d_input"], layer=layer, d_model=cfg["d_model"],
                              d_state=d_state, n_layers=cfg["n_layers"], backend=backend, seed=0)


def _path(sec: Section, layer: str, variant: str) -> str:
    return os.path.join(sec.workdir, f"model_{layer}_{variant}.pt")


def prepare(sec: Section) -> None:
    """models_prepare: build the full S4D and DSS models and reduce them, on the CPU; save both."""
    sec.device = torch.device("cpu")  # CPU work only: this process never touches the GPU
    cfg = _sizes(sec.dry)
    torch.set_num_threads(cfg["reduce_threads"])  # leave the cores to the sections running beside it
    sec.note(sizes=cfg)
    for layer in REDUCED_BY_REDUCE_MODEL:
        full_state, reduced_state = cfg["d_state"][layer]

        def one(layer=layer, full_state=full_state, reduced_state=reduced_state):
            full = _model(cfg, layer, full_state, backend="auto")
            t0 = time.time()
            reduced, report = reduce_model(full, d_state=reduced_state, method="bt")
            seconds = time.time() - t0
            for variant, m in (("full", full), ("reduced", reduced)):
                torch.save({"config": m.current_config(), "state": m.state_dict()}, _path(sec, layer, variant))
            return {"reduce_s": round(seconds, 2), "params_before": report.params_before,
                    "params_after": report.params_after,
                    "kernel_rel_error": [float(r.kernel_error) for r in report.layers],
                    "hinf_error_max": [float(r.hinf_error.max()) for r in report.layers],
                    "error_bound_max": [None if r.error_bound is None else float(r.error_bound.max())
                                        for r in report.layers]}
        sec.run_case(f"reduce {layer} d_state {full_state}->{reduced_state}", one, layer=layer,
                     d_state_full=full_state, d_state_reduced=reduced_state, method="bt")


def _load(path: str, device: torch.device) -> SequenceClassifier:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = SequenceClassifier.from_config({**saved["config"], "backend": "triton"})
    model.load_state_dict(saved["state"])
    return model.to(device)


def _pair(sec: Section, cfg: dict, layer: str):
    """(full, small, how the small one was made), on the device, backend "triton"."""
    full_state, small_state = cfg["d_state"][layer]
    if layer in REDUCED_BY_REDUCE_MODEL:
        paths = [_path(sec, layer, v) for v in ("full", "reduced")]
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(f"models_prepare did not save {missing} (see that section's records)")
        return _load(paths[0], sec.device), _load(paths[1], sec.device), "reduce_model, bt"
    full = _model(cfg, layer, full_state, backend="triton").to(sec.device)
    small = _model(cfg, layer, small_state, backend="triton").to(sec.device)
    return full, small, "fresh smaller model: reduce_model does not reduce S5"


def _train_step(model, x, y):
    opt = torch.optim.AdamW(param_groups(model, lr=1e-3, weight_decay=0.01))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def _decode_step(model, x_t, state):
    def step():
        with torch.no_grad():
            return model.step(x_t, state)
    return step


def run(sec: Section) -> None:
    """bench_models: for each layer kind, the training step and the decoding step, full and small."""
    cfg = _sizes(sec.dry)
    sec.note(sizes=cfg)
    B, L = cfg["B"], cfg["L"]
    g = generator(sec.device, 5)
    x = torch.randn(B, L, cfg["d_input"], device=sec.device, generator=g)
    y = torch.randint(0, cfg["n_classes"], (B,), device=sec.device, generator=g)
    for layer in cfg["d_state"]:
        def layer_cases(layer=layer):
            full, small, how = _pair(sec, cfg, layer)
            for variant, model in (("full", full), ("reduced", small)):
                d_state = model.blocks[0].layer.d_state
                fields = dict(layer=layer, variant=variant, d_state=d_state, reduction=how,
                              size={"B": B, "L": L, "d_model": cfg["d_model"], "n_layers": cfg["n_layers"]})

                def train(model=model):
                    step = _train_step(model, x, y)
                    t = time_ms(step, sec.device, rep_ms=200)
                    return {**t, "peak_mem_mib": peak_memory_mb(step, sec.device),
                            "tokens_per_s": B * L / (t["time_ms"] * 1e-3)}

                def decode(model=model):
                    step = _decode_step(model, x[:, 0], model.default_state(B))
                    t = time_ms(step, sec.device, graph=True)
                    return {**t, "peak_mem_mib": peak_memory_mb(step, sec.device),
                            "tokens_per_s": B / (t["time_ms"] * 1e-3)}
                sec.run_case(f"{layer} {variant} train_step", train, mode="train_step", **fields)
                sec.run_case(f"{layer} {variant} decode_step", decode, mode="decode_step", **fields)
        sec.guard(f"{layer} models", layer_cases, layer=layer)
