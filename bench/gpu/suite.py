"""The "suite" section: the project's own test suite, with Triton compiled (python_tests/conftest.py
leaves TRITON_INTERPRET unset when CUDA is present, and its `device` fixture gives CUDA tensors).

Every op forward and backward at the test sizes (odd N and L, float32 and float64, fftconv with
float16 / bfloat16 u), plus the production-size cases CI skips (DSSM_SLOW_TESTS=1), the layers and
the dispatch. The files are dealt round-robin to SHARDS pytest processes run side by side, each
in PRIORITY's order (the op tests first), so that a budget that runs out cuts the least important
files; files that only exercise the CPU (reduction, CLI, tasks, the C++ extension, ahead-of-time
compilation) are left out. Found by pattern, not by a fixed list, so files added or regrouped later
are picked up. Each test's outcome is kept as soon as it is known (bench.gpu.pytest_plugin).

Dry mode: the same command on the same files but DRY_SKIPPED's, the first test of each file
(interpreted, on the CPU).
"""
from __future__ import annotations

import fnmatch
import json
import os
import signal
import subprocess
import sys
import time

from bench.gpu.harness import Section

# Paths relative to the test folder (grouped by area: ops/, nn/, reduction/, ...).
# Run first, in this order: the ops, the production-size cases, then the layers and the dispatch.
PRIORITY = ["ops/test_vandermonde*", "ops/test_cauchy*", "ops/test_fftconv*", "ops/test_ssm_scan*",
            "ops/test_diag_scan*", "ops/test_large*", "nn/*", "ops/test_dispatch*", "ops/test_devices*",
            "ops/test_compile*"]
# Nothing here touches a GPU (or it is this check itself).
CPU_ONLY = ["reduction/*", "cli/*", "tasks/*", "workflows/*", "tools/*", "deploy/*", "nn/test_hippo*",
            "ops/test_triton_compile*", "ops/test_cpp_*", "ops/test_extension*", "test_docstrings*"]
# Left out of the dry run only: a training run and torch.compile take a minute under the interpreter.
DRY_SKIPPED = ["nn/test_learning*", "ops/test_compile*"]
TEST_DIR = "python_tests"
# pytest processes side by side: a test's time is mostly the host's (references looping over time,
# launches, compilation), and the GPU machine has 16 cores. One in the dry run (a few tests, and
# CI's two cores are busy with the parity section meanwhile).
SHARDS = 3
DRY_SHARDS = 1
# Seconds pytest gets, after SIGINT at the budget's end, to write its summary before it is killed.
INTERRUPT_GRACE = 15


def test_files(test_dir: str = TEST_DIR, dry: bool = False) -> list[str]:
    """The suite's test files that can touch a GPU: PRIORITY's first, in its order, then the rest sorted."""
    names = sorted(os.path.relpath(os.path.join(folder, n), test_dir).replace(os.sep, "/")
                   for folder, _, files in os.walk(test_dir) for n in files
                   if n.startswith("test_") and n.endswith(".py"))
    left_out = CPU_ONLY + (DRY_SKIPPED if dry else [])
    names = [n for n in names if not any(fnmatch.fnmatch(n, p) for p in left_out)]
    ordered = []
    for pattern in PRIORITY:
        ordered += [n for n in names if fnmatch.fnmatch(n, pattern) and n not in ordered]
    ordered += [n for n in names if n not in ordered]
    return [os.path.join(test_dir, n) for n in ordered]


def shards(files: list[str], n: int) -> list[list[str]]:
    """Round-robin over the priority order, so every shard starts with an op file."""
    return [files[i::n] for i in range(n) if files[i::n]]


def _read_results(path: str) -> tuple[list[dict], dict]:
    tests, summary = [], {}
    if not os.path.exists(path):
        return tests, summary
    with open(path) as f:
        for line in f:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:  # the last line of a killed run may be cut
                continue
            if "test" in obj:
                tests.append(obj)
            else:
                summary.update(obj)
    return tests, summary


def _tail(path: str, lines: int = 60) -> str:
    if not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def _stop(procs: list, deadline: float) -> list:
    """Wait for every process until `deadline`; then SIGINT (pytest writes its summary), then SIGKILL.
    Returns, per process, None or how it was stopped."""
    stopped = [None] * len(procs)
    for i, proc in enumerate(procs):
        try:
            proc.wait(timeout=max(0.5, deadline - time.time()))
        except subprocess.TimeoutExpired:
            stopped[i] = "budget: SIGINT"
            os.killpg(proc.pid, signal.SIGINT)
    for i, proc in enumerate(procs):
        if stopped[i]:
            try:
                proc.wait(timeout=INTERRUPT_GRACE)
            except subprocess.TimeoutExpired:
                stopped[i] = "budget: SIGINT, then SIGKILL"
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return stopped


def _merge_worst(tables: list[list[dict]]) -> list[dict]:
    """The shards' worst-error tables as one: per (op, backend, dtype, quantity) the worst error/tolerance."""
    worst: dict = {}
    for table in tables:
        for row in table:
            key = (row["op"], row["backend"], row["dtype"], row["quantity"])
            old = worst.get(key)
            if old is None or row["error"] / row["tolerance"] > old["error"] / old["tolerance"]:
                worst[key] = row
    return [worst[k] for k in sorted(worst)]


def run(sec: Section) -> None:
    files = test_files(dry=sec.dry)
    parts = shards(files, DRY_SHARDS if sec.dry else SHARDS)
    env = dict(os.environ, DSSM_NO_EXTENSION="1")
    env.pop("DSSM_BACKEND", None)
    if sec.dry:
        env["DSSM_GPU_CHECK_TESTS_PER_FILE"] = "1"
    else:
        env["DSSM_SLOW_TESTS"] = "1"
    base = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "-p", "bench.gpu.pytest_plugin"]
    sec.note(files=files, shards=parts, command=" ".join(base) + " FILES...", tests_per_file=1 if sec.dry else None,
             slow_tests=not sec.dry)

    def pytest_run():
        procs, outs, results, logs = [], [], [], []
        for i, part in enumerate(parts):
            results.append(os.path.join(sec.workdir, f"suite_results_{i}.jsonl"))
            logs.append(os.path.join(sec.workdir, f"suite_pytest_{i}.log"))
            for path in (results[i], logs[i]):
                if os.path.exists(path):
                    os.remove(path)
            outs.append(open(logs[i], "w"))
            procs.append(subprocess.Popen(base + part, stdout=outs[i], stderr=subprocess.STDOUT,
                                          env=dict(env, DSSM_GPU_CHECK_RESULTS=results[i]), start_new_session=True))
        try:
            stopped = _stop(procs, sec.deadline - INTERRUPT_GRACE - 5)
        finally:
            for out in outs:
                out.close()
        tests, counts, worst, shard_info = [], {}, [], []
        for i, proc in enumerate(procs):
            shard_tests, summary = _read_results(results[i])
            tests += shard_tests
            worst.append(summary.get("parity_worst", []))
            shard_info.append({"files": parts[i], "returncode": proc.returncode, "stopped": stopped[i],
                               "collected": summary.get("collected"),
                               "completed": "exitstatus" in summary and not stopped[i],
                               "log_tail": _tail(logs[i], 40)})
        for t in tests:
            counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
        # pytest's return code 5: a shard collected no test (all its tests deselected in the dry run)
        sec.note(shard_results=shard_info, counts=counts, parity_worst=_merge_worst(worst),
                 returncode=next((s["returncode"] for s in shard_info if s["returncode"] not in (0, 5)), 0),
                 stopped=next((s["stopped"] for s in shard_info if s["stopped"]), None),
                 completed=all(s["completed"] for s in shard_info),
                 collected=sum(s["collected"] or 0 for s in shard_info))
        return [{"test": t["test"], "outcome": t["outcome"], "duration_s": t["duration_s"], "message": t["message"]}
                for t in tests]

    sec.run_case("pytest", pytest_run)
