"""Decoding speed: per-token latency at batch 1 and tokens per second at batch 64, for each decoding path
(eager model.step, torch.compile(model.step), deploy.StreamingDecoder, onnxruntime on the exported
step graph; "memory": one pass summing as many bytes as a call must move, deploy.bytes_per_call), full (d_state 64) against reduced (32 / 16 / 8 / 4) models of every diagonal layer kind.
Run through `bash scripts/bench_cpu.sh decode`, which saves bench/results/decode-<machine>.json and
prints the table and the plot's path (bench/summarize_cpu.py).

The model: SequenceClassifier(n_classes=10, d_input=1, layer=KIND, d_model=256, n_layers=2). A reduced
model differs from the full one only in d_state (reduce_model changes nothing else), so each size is
built at that d_state: timing does not depend on the weights' values. Every test records in extra_info
the FLOPs per token (deploy.flops_per_token) and the machine's one-core FMA peak (bench/conftest.py:
fma_peak), so the summary gives each path's time against the FLOP limit, flops x batch / peak.

One thread (torch, OpenMP, onnxruntime) unless DSSM_DECODE_THREADS says otherwise. Narrow the grid with
DSSM_DECODE_KINDS="s4d dss", DSSM_DECODE_STATES="64 8", DSSM_DECODE_PATHS="decoder eager",
DSSM_DECODE_BATCHES="1" (torch.compile and the ONNX export take tens of seconds per model).
"""
from __future__ import annotations

import functools
import os
import time

import pytest
import torch

from conftest import fma_peak, timed_backends
from dssm_kernels.deploy import StreamingDecoder, bytes_per_call, flops_per_token, plan_model
from dssm_kernels.nn import LAYERS, SequenceClassifier

pytestmark = pytest.mark.skipif("cpp" not in timed_backends(), reason="needs the C++ extension on a CPU")


def _env_list(name: str, default: list, conv=str) -> list:
    raw = os.environ.get(name)
    return default if not raw else [conv(v) for v in raw.split()]


KINDS = _env_list("DSSM_DECODE_KINDS", [k for k in ("s4d", "dss", "s5", "lru") if k in LAYERS])
STATES = _env_list("DSSM_DECODE_STATES", [64, 32, 16, 8, 4], int)
PATHS = _env_list("DSSM_DECODE_PATHS", ["eager", "compile", "decoder", "onnxruntime", "memory"])
BATCHES = _env_list("DSSM_DECODE_BATCHES", [1, 64], int)
THREADS = int(os.environ.get("DSSM_DECODE_THREADS", "1"))
D_MODEL, N_LAYERS, N_CLASSES = 256, 2, 10
TOKENS_PER_ROUND = {1: 200, 64: 20}


@functools.lru_cache(maxsize=None)
def _model(kind: str, d_state: int):
    return SequenceClassifier(n_classes=N_CLASSES, d_input=1, layer=kind, d_model=D_MODEL, d_state=d_state,
                              n_layers=N_LAYERS, seed=0).eval()


@functools.lru_cache(maxsize=None)
def _onnx_step(kind: str, d_state: int, folder: str):
    import onnxruntime as ort
    from dssm_kernels.deploy.onnx import export_onnx
    path = os.path.join(folder, f"{kind}-{d_state}.step.onnx")
    export_onnx(_model(kind, d_state), path, graph="step")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _token_caller(path: str, kind: str, d_state: int, batch: int, tmp_folder: str):
    """A function that decodes one token of `batch` streams on `path`, carrying its state."""
    model = _model(kind, d_state)
    x = torch.randn(batch, 1, generator=torch.Generator().manual_seed(0))
    if path == "decoder":
        dec = StreamingDecoder(model, batch=batch, backend="cpp")
        return lambda: dec.step(x)
    if path in ("eager", "compile"):
        step = model.step if path == "eager" else torch.compile(model.step, dynamic=False, fullgraph=False)
        box = [model.default_state(batch)]

        def call():
            with torch.no_grad():
                y, box[0] = step(x, box[0])
            return y
        return call
    if path == "memory":
        # the floor: one pass over as many bytes as the call must move (bytes_per_call), summed
        buf = torch.ones(bytes_per_call(plan_model(model), batch) // 4)
        return lambda: buf.sum()
    if path == "onnxruntime":
        from dssm_kernels.deploy.onnx import initial_state, state_names
        sess = _onnx_step(kind, d_state, tmp_folder)
        names = state_names(plan_model(model))
        feed = dict(initial_state(plan_model(model), batch), x=x.numpy())

        def call():
            out = sess.run(None, feed)
            feed.update(zip(names, out[1:]))
            return out[0]
        return call
    raise ValueError(path)


@pytest.fixture(scope="module")
def onnx_folder(tmp_path_factory):
    return str(tmp_path_factory.mktemp("onnx"))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("d_state", STATES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", PATHS)
def test_decode(benchmark, path, kind, d_state, batch, onnx_folder):
    if path == "onnxruntime":
        pytest.importorskip("onnxruntime")
    old = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        call = _token_caller(path, kind, d_state, batch, onnx_folder)
        for _ in range(20 if path != "compile" else 3):   # warm-up (compiles, allocates, fills caches)
            call()
        n = TOKENS_PER_ROUND[batch]
        flops = flops_per_token(plan_model(_model(kind, d_state)))
        benchmark.extra_info.update(suite="decode", path=path, kind=kind, d_state=d_state, batch=batch,
                                    tokens_per_round=n, threads=THREADS, flops_per_token=flops,
                                    bytes_per_call=bytes_per_call(plan_model(_model(kind, d_state)), batch),
                                    peak_flops_per_core=fma_peak().get("flops_per_core"))
        benchmark.group = f"decode {kind} batch {batch}"

        def tokens():
            for _ in range(n):
                call()
        benchmark.pedantic(tokens, rounds=7, warmup_rounds=1)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("kind", KINDS)
def test_decoder_interleaved(benchmark, kind, batch):
    """The decoder at every d_state, interleaved round by round (machine noise hits all sizes alike):
    the reduced-against-full speedups the targets are about. extra_info["interleaved"] holds per
    d_state the median and quartiles of the time per call over the rounds; the benchmark itself times
    the full model's decoder."""
    import statistics
    old = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        calls = {ds: _token_caller("decoder", kind, ds, batch, "") for ds in STATES}
        n = TOKENS_PER_ROUND[batch]
        times = {ds: [] for ds in STATES}
        for ds in STATES:
            for _ in range(20):
                calls[ds]()
        for _ in range(15):
            for ds in STATES:
                t0 = time.perf_counter()
                for _ in range(n):
                    calls[ds]()
                times[ds].append((time.perf_counter() - t0) / n)
        inter = {}
        for ds, v in times.items():
            q = statistics.quantiles(v, n=4)
            inter[str(ds)] = dict(median=statistics.median(v), q1=q[0], q3=q[2],
                                  flops_per_token=flops_per_token(plan_model(_model(kind, ds))),
                                  bytes_per_call=bytes_per_call(plan_model(_model(kind, ds)), batch))
        benchmark.extra_info.update(suite="decode-interleaved", kind=kind, batch=batch, threads=THREADS,
                                    interleaved=inter, peak_flops_per_core=fma_peak().get("flops_per_core"))
        benchmark.group = f"decode {kind} batch {batch} interleaved"
        full = calls[max(STATES)]
        benchmark.pedantic(lambda: [full() for _ in range(n)], rounds=3, warmup_rounds=1)
    finally:
        torch.set_num_threads(old)
