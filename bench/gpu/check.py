"""The GPU check's orchestrator: runs the sections, each in its own process with its own time budget,
merges what they recorded into one JSON with the device named, and prints the summary table.

    python -m bench.gpu.check --out DIR [--dry]          (what scripts/gpu_check.sh runs)

Schedule (PHASES; the whole check stays within GLOBAL_BUDGET_S, the issue's 8 minutes less a margin):
  env                                 device, versions, limits, a first compiled Triton call
  models_prepare  (CPU, beside the    build and reduce the S4D / DSS models for bench_models
                   next two phases)
  suite + parity  (side by side)      correctness: neither is timed, so they share the GPU
  bench_ops                           alone on the GPU: timings
  bench_models                        alone on the GPU: timings

A section that overruns its budget is killed (what it recorded so far stays); one that fails is
recorded with its traceback; the others run regardless. SIGTERM (the shell's global timeout) stops
the running sections and still writes the JSON and the table. The merged JSON is rewritten after
every phase. Files written to DIR: gpu_check.json, gpu_check_summary.md, gpu_check.log (every
section's output).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bench.gpu import summary

GLOBAL_BUDGET_S = 450
# (phase, sections run side by side, budget in seconds, the least a phase is left when earlier ones overran)
PHASES = [("env", ["env"], 45, 20), ("correctness", ["suite", "parity"], 180, 60),
          ("bench_ops", ["bench_ops"], 120, 40), ("bench_models", ["bench_models"], 75, 30)]
BACKGROUND = ("models_prepare", 210)   # started with the first phase, waited for before bench_models
KILL_GRACE_S = 10                      # after its deadline, a section gets this long to exit by itself
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Terminated(Exception):
    """SIGTERM arrived: stop the sections, write what there is."""


def _on_sigterm(signum, frame):
    raise Terminated()


class Runner:
    """One run of the check: the section processes (each started with its deadline), their part files
    and logs in a scratch folder, and the merged document written to `out`."""

    def __init__(self, out: str, dry: bool, global_budget: float):
        self.out, self.dry = out, dry
        self.start = time.time()
        self.end = self.start + global_budget
        self.global_budget = global_budget
        self.work = tempfile.mkdtemp(prefix="dssm-gpu-check-")
        self.procs: dict = {}        # section -> (Popen, deadline, log file)
        self.sections: dict = {}     # section -> merged part
        self.budgets: dict = {}
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = REPO + (os.pathsep + self.env["PYTHONPATH"] if self.env.get("PYTHONPATH") else "")
        self.env.pop("DSSM_BACKEND", None)
        if dry:  # CPU tensors and the Triton interpreter, whatever machine this is
            self.env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
        else:  # compiled Triton: an interpreter left switched on would time Python
            self.env.pop("TRITON_INTERPRET", None)

    def part(self, name: str) -> str:
        return os.path.join(self.work, f"{name}.json")

    def log(self, name: str) -> str:
        return os.path.join(self.work, f"{name}.log")

    def launch(self, name: str, budget: float, reserve: float) -> None:
        deadline = min(time.time() + budget, self.end - reserve)
        self.budgets[name] = round(deadline - time.time(), 1)
        cmd = [sys.executable, "-m", "bench.gpu.harness", name, "--part", self.part(name), "--deadline",
               f"{deadline:.3f}", "--workdir", self.work] + (["--dry"] if self.dry else [])
        logf = open(self.log(name), "w")
        proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = (proc, deadline, logf)
        print(f"[gpu-check] {name}: started, budget {self.budgets[name]:.0f} s", flush=True)

    def wait(self, name: str) -> None:
        proc, deadline, logf = self.procs.pop(name)
        killed = None
        try:
            proc.wait(timeout=max(0.0, deadline + KILL_GRACE_S - time.time()))
        except subprocess.TimeoutExpired:
            killed = "its budget"
            self._kill(proc)
        finally:
            logf.close()
        self._collect(name, proc.returncode, killed)

    def kill_all(self, why: str) -> None:
        for name in list(self.procs):
            proc, _, logf = self.procs.pop(name)
            self._kill(proc)
            logf.close()
            self._collect(name, proc.returncode, why)

    @staticmethod
    def _kill(proc) -> None:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 30)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def _collect(self, name: str, returncode, killed: str | None) -> None:
        try:
            with open(self.part(name)) as f:
                sec = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            sec = {"section": name, "status": "failed", "records": [], "wall_s": 0.0, "meta": {},
                   "error": f"the section left no readable part file ({type(exc).__name__}); exit code {returncode}",
                   "traceback": None}
        if killed:
            sec["status"] = "timeout"
            sec["error"] = f"killed at {killed}" + (f"; {sec['error']}" if sec.get("error") else "")
        elif sec.get("status") == "running":
            sec["status"] = "failed"
            sec["error"] = f"the process exited (code {returncode}) before finishing"
        sec["returncode"] = returncode
        sec["budget_s"] = self.budgets.get(name)
        if sec["status"] != "ok":
            sec["log_tail"] = _tail(self.log(name))
        self.sections[name] = sec
        print(f"[gpu-check] {name}: {sec['status']} after {sec.get('wall_s', 0):.0f} s", flush=True)

    def document(self) -> dict:
        env_records = {r["case"]: r for r in self.sections.get("env", {}).get("records", []) if r["status"] == "ok"}
        device = env_records.get("device", {}).get("device") or {"name": "unknown: the env section did not run"}
        doc = {"schema": summary.SCHEMA, "dry": self.dry, "device": device,
               "versions": env_records.get("device", {}).get("versions", {}),
               "limits": env_records.get("limits", {}).get("limits", {}),
               "started": datetime.datetime.fromtimestamp(self.start, datetime.timezone.utc).isoformat(),
               "wall_s": round(time.time() - self.start, 1), "global_budget_s": self.global_budget,
               "budgets": self.budgets, "command": " ".join(sys.argv),
               "sections": {name: self.sections.get(name, {"status": "not run", "records": [], "wall_s": 0.0})
                            for name in summary.SECTIONS}}
        doc["checks"] = summary.checks(doc)
        return doc

    def write(self) -> dict:
        doc = self.document()
        tmp = os.path.join(self.out, "gpu_check.json.tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, os.path.join(self.out, "gpu_check.json"))
        return doc

    def finish(self) -> dict:
        doc = self.write()
        text = summary.table(doc)
        with open(os.path.join(self.out, "gpu_check_summary.md"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(self.out, "gpu_check.log"), "w") as out:
            for name in sorted(n for n in os.listdir(self.work) if n.endswith(".log")):
                out.write(f"===== {name} =====\n")
                with open(os.path.join(self.work, name), errors="replace") as f:
                    shutil.copyfileobj(f, out)
        shutil.rmtree(self.work, ignore_errors=True)
        return doc

    def reserve_after(self, index: int) -> float:
        return sum(p[3] for p in PHASES[index + 1:])

    def run(self, only: set | None = None) -> None:
        """All sections, or those in `only` and env (which names the device; models_prepare comes with
        bench_models)."""
        bg_name, bg_budget = BACKGROUND
        wanted = set(summary.SECTIONS) if not only else only | {"env"} | ({bg_name} if "bench_models" in only else set())
        for index, (phase, names, budget, _) in enumerate(PHASES):
            names = [n for n in names if n in wanted]
            if phase == "bench_models" and bg_name in self.procs:
                self.wait(bg_name)
            for name in names:
                self.launch(name, budget, self.reserve_after(index))
            if index == 0 and bg_name in wanted:
                self.launch(bg_name, bg_budget, self.reserve_after(len(PHASES) - 2))
            for name in names:
                self.wait(name)
            self.write()


def _tail(path: str, lines: int = 40) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Validate and time the compiled Triton kernels on a GPU (issue 17).")
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-check-out",
                   help="folder for gpu_check.json, gpu_check_summary.md, gpu_check.log "
                        "(default: $OUT, else ./gpu-check-out)")
    p.add_argument("--dry", action="store_true", default=os.environ.get("DSSM_GPU_CHECK_DRY", "0") == "1",
                   help="CPU tensors, the Triton interpreter, tiny sizes: the same code and JSON (what CI runs)")
    p.add_argument("--only", default="",
                   help="comma-separated sections to run (a rerun after a fix), e.g. parity,bench_ops (env always "
                        "runs: it names the device); the others are recorded as not run. Sections: "
                        + ", ".join(summary.SECTIONS))
    p.add_argument("--global-budget", type=float, default=GLOBAL_BUDGET_S, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    only = {s.strip() for s in a.only.split(",") if s.strip()}
    if only - set(summary.SECTIONS):
        p.error(f"--only: unknown section(s) {sorted(only - set(summary.SECTIONS))}; "
                f"choose from {', '.join(summary.SECTIONS)}")
    os.makedirs(a.out, exist_ok=True)
    signal.signal(signal.SIGTERM, _on_sigterm)
    runner = Runner(os.path.abspath(a.out), a.dry, a.global_budget)
    try:
        runner.run(only)
    except (Terminated, KeyboardInterrupt):
        runner.kill_all("the check's global timeout")
    finally:
        runner.kill_all("the check's end")
        doc = runner.finish()
    print(summary.table(doc), flush=True)
    problems = summary.validate(doc)
    for problem in problems:
        print(f"[gpu-check] schema: {problem}", file=sys.stderr)
    print(f"[gpu-check] wrote {os.path.join(runner.out, 'gpu_check.json')}", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
