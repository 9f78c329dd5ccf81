"""What a section of the GPU check shares: its device, timers, memory figures, and a recorder.

Each section runs in its own process (`python -m bench.gpu.harness SECTION --part FILE ...`, started
by bench.gpu.check), so that a hung kernel or a sticky CUDA error ends that section only. The
recorder keeps one JSON record per case and rewrites the part file after every case, so a section
killed at its time budget still leaves everything it measured; a case that raises is recorded with its
traceback (status "failed", or "oom" for an out-of-memory error) and the section goes on.

Timing: on a GPU `triton.testing.do_bench` (CUDA events, L2 flushed before every run), or
`do_bench_cudagraph` for launch-bound calls (the calls unrolled into one CUDA graph); median and the
20th / 80th percentiles, in milliseconds. In dry mode (CPU tensors, the Triton interpreter) a
`time.perf_counter` loop with the same output fields: the code path is exercised, the number means
nothing for a GPU (so one call, no warm-up).
"""
from __future__ import annotations

import argparse
import gc
import importlib
import inspect
import json
import os
import statistics
import sys
import time
import traceback
from typing import Callable

import torch

# section name -> (module, function taking the Section); bench.gpu.check schedules them (its PLAN)
SECTION_ENTRIES = {
    "env": ("bench.gpu.hardware", "run"),
    "models_prepare": ("bench.gpu.bench_models", "prepare"),
    "suite": ("bench.gpu.suite", "run"),
    "parity": ("bench.gpu.parity", "run"),
    "bench_ops": ("bench.gpu.bench_ops", "run"),
    "bench_models": ("bench.gpu.bench_models", "run"),
}
# A case is started only with at least this much of the section's budget left (seconds).
MIN_CASE_SECONDS = 3.0
QUANTILES = (0.5, 0.2, 0.8)


def write_json_atomic(path: str, doc) -> None:
    """Write `doc` so that a reader (or a kill) never sees half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, default=_jsonable)
    os.replace(tmp, path)


def _jsonable(x):
    if isinstance(x, torch.dtype):
        return str(x).removeprefix("torch.")
    if isinstance(x, torch.device):
        return str(x)
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


class Section:
    """One section's run: its device ("cuda", or "cpu" in dry mode), deadline and records.

    run_case() and guard() are the only ways a section records a result, so every record has "case",
    "status" ("ok" | "failed" | "oom" | "not run") and "wall_s", and failures carry "error" and
    "traceback". A case may return {"status": "not run", "reason": ...} itself (a size that cannot fit).
    """

    def __init__(self, name: str, part: str, deadline: float, dry: bool, workdir: str):
        self.name, self.part, self.deadline, self.dry, self.workdir = name, part, deadline, dry, workdir
        self.device = torch.device("cpu" if dry else "cuda")
        self.started = time.time()
        self.status = "running"
        self.meta: dict = {}
        self.records: list[dict] = []
        self.error = self.traceback = None
        self.flush()

    def left(self) -> float:
        """Seconds left of this section's budget."""
        return self.deadline - time.time()

    def doc(self) -> dict:
        return {"section": self.name, "status": self.status, "dry": self.dry, "device": str(self.device),
                "started": self.started, "wall_s": round(time.time() - self.started, 3),
                "error": self.error, "traceback": self.traceback, "meta": self.meta, "records": self.records}

    def flush(self) -> None:
        write_json_atomic(self.part, self.doc())

    def note(self, **meta) -> None:
        """Section-level facts (sizes, limits, versions): kept in the part file's "meta"."""
        self.meta.update(meta)
        self.flush()

    def run_case(self, case: str, fn: Callable[[], object], *, min_left: float = MIN_CASE_SECONDS,
                 **fields) -> list[dict]:
        """Run fn() and record what it returns (a dict, or a list of dicts: one record each), merged over
        `fields`. Not started when less than `min_left` seconds of the budget remain (status "not run").
        Returns the records added."""
        base = {"case": case, **fields}
        t0 = time.time()
        if self.left() < min_left:
            added = [self._not_run(base)]
        else:
            try:
                out = fn()
                rows = out if isinstance(out, list) else [out or {}]
                added = [{**base, "status": "ok", **row} for row in rows]
            except Exception as exc:  # recorded, and the section goes on with its next case
                added = [self._failure(base, exc)]
            wall = round(time.time() - t0, 3)
            for row in added:
                row.setdefault("wall_s", wall)
        self._add(added)
        return added

    def guard(self, case: str, fn: Callable[[], None], *, min_left: float = MIN_CASE_SECONDS, **fields) -> None:
        """Run fn(), which records its own cases through run_case; if fn itself raises (while building
        its inputs, say), record that as a failed case, so the section goes on with the next group."""
        base = {"case": case, **fields}
        if self.left() < min_left:
            self._add([self._not_run(base)])
            return
        try:
            fn()
        except Exception as exc:  # recorded, and the section goes on with its next group
            self._add([self._failure(base, exc)])

    def _not_run(self, base: dict) -> dict:
        return {**base, "status": "not run", "reason": f"section budget spent ({self.left():.0f} s left)", "wall_s": 0.0}

    @staticmethod
    def _failure(base: dict, exc: Exception) -> dict:
        oom = isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc)
        return {**base, "status": "oom" if oom else "failed", "error": f"{type(exc).__name__}: {exc}"[:2000],
                "traceback": traceback.format_exc()[-6000:]}

    def _add(self, rows: list[dict]) -> None:
        self.records.extend(rows)
        release_memory(self.device)
        self.flush()


def release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A seeded generator on `device`: inputs of production size are drawn where they are used."""
    return torch.Generator(device=device).manual_seed(seed)


def free_memory_bytes(device: torch.device) -> int | None:
    """Free device memory, or None on the CPU (dry sizes are tiny)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info()[0]
    return None


def time_ms(fn: Callable[[], object], device: torch.device, *, graph: bool = False, warmup_ms: int = 25,
            rep_ms: int = 100, cpu_reps: int = 1) -> dict:
    """Median and 20th / 80th percentile time of fn() in ms, and which timer measured it.

    graph=True: CUDA graphs (launch-bound calls); if fn cannot be captured, plain do_bench, with
    the capture error kept in "graph_error"."""
    if device.type == "cuda":
        from triton.testing import do_bench, do_bench_cudagraph
        fn()  # compile and allocate outside any graph capture
        torch.cuda.synchronize()
        extra = {}
        if graph:
            try:
                # a graph unrolls rep / (time of one call) calls: 25 ms keeps it to a few thousand nodes.
                # Captured on a side stream (older Tritons refuse the default one; newer ones make their own).
                with torch.cuda.stream(torch.cuda.Stream()):
                    if "quantiles" in inspect.signature(do_bench_cudagraph).parameters:
                        q = do_bench_cudagraph(fn, rep=min(rep_ms, 25), quantiles=list(QUANTILES))
                        return _timing(q, "triton.testing.do_bench_cudagraph")
                    mean = do_bench_cudagraph(fn, rep=min(rep_ms, 25))  # an older Triton: the mean only
                    return _timing([mean] * 3, "triton.testing.do_bench_cudagraph (mean)")
            except Exception as exc:  # e.g. a host synchronisation inside fn: measure without a graph
                torch.cuda.synchronize()
                extra = {"graph_error": f"{type(exc).__name__}: {exc}"[:500]}
        q = do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=list(QUANTILES))
        return {**_timing(q, "triton.testing.do_bench"), **extra}
    times = []  # dry run: no warm-up, the number is not a figure anyone reads
    for _ in range(cpu_reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else times * 9
    return _timing([statistics.median(times), q[1], q[7]], "time.perf_counter (dry run: CPU)")


def _timing(q, timer: str) -> dict:
    return {"time_ms": float(q[0]), "time_ms_q20": float(q[1]), "time_ms_q80": float(q[2]), "timer": timer}


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float | None:
    """Memory fn() allocates at its peak above what was allocated before it (MiB), from
    torch.cuda.max_memory_allocated; None on the CPU."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return round((torch.cuda.max_memory_allocated() - base) / 2 ** 20, 3)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Run one section of the GPU check (started by bench.gpu.check).")
    p.add_argument("section", choices=sorted(SECTION_ENTRIES))
    p.add_argument("--part", required=True, help="the section's JSON part file")
    p.add_argument("--deadline", type=float, required=True, help="epoch seconds by which the section stops")
    p.add_argument("--workdir", required=True, help="scratch folder shared by the sections")
    p.add_argument("--dry", action="store_true")
    a = p.parse_args(argv)
    if a.dry and torch.cuda.is_available():
        raise SystemExit("dry mode must run on the CPU: the orchestrator hides the GPUs (CUDA_VISIBLE_DEVICES='')")
    if not a.dry and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry on a machine without a GPU")
    sec = Section(a.section, a.part, a.deadline, a.dry, a.workdir)
    try:
        module, function = SECTION_ENTRIES[a.section]
        getattr(importlib.import_module(module), function)(sec)
        sec.status = "ok"
    except BaseException as exc:  # the section itself broke (not one case): record it, then exit non-zero
        sec.status = "failed"
        sec.error = f"{type(exc).__name__}: {exc}"[:2000]
        sec.traceback = traceback.format_exc()[-8000:]
    sec.flush()
    return 0 if sec.status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
