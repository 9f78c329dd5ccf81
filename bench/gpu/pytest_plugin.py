"""pytest plugin of the GPU check's "suite" section (loaded with `-p bench.gpu.pytest_plugin`).

Appends each test's outcome to the JSON-lines file named by DSSM_GPU_CHECK_RESULTS as soon as it is
known, so a run stopped at its time budget keeps every result so far. DSSM_GPU_CHECK_TESTS_PER_FILE=k
keeps the first k tests of each file (the dry run: the same files and path, a few seconds of tests).
At the end it adds the suite's own worst-error table when the test helpers keep one (the `testing`
module of python_tests, if it is loaded and has worst_errors(); nothing otherwise).
"""
from __future__ import annotations

import json
import os
import sys

_RESULTS = os.environ.get("DSSM_GPU_CHECK_RESULTS")


def _write(obj: dict) -> None:
    if _RESULTS:
        with open(_RESULTS, "a") as f:
            f.write(json.dumps(obj, default=str) + "\n")


def pytest_collection_modifyitems(config, items):
    per_file = int(os.environ.get("DSSM_GPU_CHECK_TESTS_PER_FILE", "0") or 0)
    if per_file > 0:
        kept, dropped, seen = [], [], {}
        for item in items:
            path = str(item.path)
            seen[path] = seen.get(path, 0) + 1
            (kept if seen[path] <= per_file else dropped).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    _write({"collected": len(items)})


def pytest_runtest_logreport(report):
    """One line per test: its call outcome, or the setup/teardown failure or skip that replaced it."""
    if report.when == "call":
        outcome = report.outcome
    elif report.failed:
        outcome = "error"
    elif report.when == "setup" and report.skipped:
        outcome = "skipped"
    else:
        return
    message = None
    if report.failed:
        message = str(report.longrepr)[-3000:]
    elif report.skipped and isinstance(report.longrepr, tuple):
        message = str(report.longrepr[2])
    _write({"test": report.nodeid, "when": report.when, "outcome": outcome,
            "duration_s": round(report.duration, 4), "message": message})


def pytest_sessionfinish(session, exitstatus):
    rows = []
    helper = sys.modules.get("testing")
    worst = getattr(helper, "worst_errors", None)
    if callable(worst):
        try:
            for key, (err, tol) in sorted(worst().items()):
                op, backend, dtype, quantity = key
                rows.append({"op": op, "backend": backend, "dtype": dtype, "quantity": quantity,
                             "error": err, "tolerance": tol})
        except (TypeError, ValueError):  # another shape of table than this reader knows: leave it out
            rows = []
    _write({"exitstatus": int(exitstatus), "parity_worst": rows})
