"""The GPU check (scripts/gpu_check.sh, bench/gpu/): its dry mode end to end, so that it never rots
before a GPU comes, and the pieces whose failure would make a GPU run lie: the verdicts, the parity
check's power to fail, the budgets and kills, the device limits.

The dry run is the script itself on the CPU (Triton interpreted, tiny sizes): the same processes,
code and JSON schema as on a GPU, checked here against the schema and for every section and check
having run. No GPU figure is produced or asserted anywhere here.
"""
import json
import math
import os
import subprocess
import sys
import time
import types

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:  # bench/ is not an installed package: import it from the checkout
    sys.path.insert(0, REPO)

from bench.gpu import check, hardware, parity, suite, summary  # noqa: E402
from bench.gpu.harness import Section  # noqa: E402

OPS = ["vandermonde", "vandermonde_transpose", "cauchy", "fftconv", "ssm_scan", "ssm_step", "diag_scan"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """Run `bash scripts/gpu_check.sh --dry` once; (completed process, the JSON, wall seconds)."""
    out = tmp_path_factory.mktemp("gpu_check")
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("DSSM_BACKEND", None)
    t0 = time.time()
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=480)
    wall = time.time() - t0
    with open(out / "gpu_check.json") as f:
        doc = json.load(f)
    return proc, doc, wall, out


def test_dry_run_writes_valid_json_and_table(dry_run):
    proc, doc, wall, out = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert summary.validate(doc) == []
    assert doc["dry"] is True and doc["device"]["name"] == "cpu"
    assert doc["limits"]["fp32_flops"] is None and doc["limits"]["mem_bytes_per_s"] is None  # no CPU figure claimed
    assert doc["wall_s"] <= doc["global_budget_s"]
    table = (out / "gpu_check_summary.md").read_text()
    assert "| check | value | target | verdict | note |" in table and "DRY RUN" in table
    assert table.strip() in proc.stdout
    assert (out / "gpu_check.log").stat().st_size > 0


def test_dry_run_every_section_ran(dry_run):
    _, doc, _, _ = dry_run
    for name in summary.SECTIONS:
        sec = doc["sections"][name]
        assert sec["status"] == "ok", (name, sec.get("error"), sec.get("log_tail"))
        assert sec["records"], name
        bad = [(r["case"], r["status"], r.get("error")) for r in sec["records"] if r["status"] != "ok"]
        assert not bad, (name, bad)


def test_dry_run_parity_covers_every_op_and_precision(dry_run):
    _, doc, _, _ = dry_run
    rows = doc["sections"]["parity"]["records"]
    ran = {(r["op"], r["precision"]) for r in rows}
    want = {(op, p) for op in OPS for p in ("float32", "float64")} | {("fftconv", "float16"), ("fftconv", "bfloat16")}
    assert want <= ran
    for op in OPS:  # forward outputs and gradients, and the full-size finiteness count
        quantities = {r["quantity"] for r in rows if r["op"] == op}
        assert "nonfinite" in quantities and any(q.startswith("grad_") for q in quantities), op
        assert len(quantities) >= 4, (op, quantities)
    failing = [(r["op"], r["precision"], r["quantity"], r["error"], r["tolerance"]) for r in rows if not r["pass"]]
    assert not failing
    # the reference saw a strict subset of rows, the backend the whole problem
    assert all(r["rows_checked"]["h"] < r["size"]["H"] for r in rows if r["op"] == "vandermonde")


def test_dry_run_benchmarks_and_models(dry_run):
    _, doc, _, _ = dry_run
    ops = doc["sections"]["bench_ops"]["records"]
    have = {(r["op"], r["impl"], r["direction"]) for r in ops}
    for op, base in (("vandermonde", "reference"), ("cauchy", "reference"), ("fftconv", "rfft_conv")):
        for direction in ("forward", "forward+backward"):
            assert {(op, "triton", direction), (op, base, direction)} <= have
    assert {("ssm_scan", "triton", "forward"), ("ssm_step", "triton", "forward"),
            ("ssm_step", "reference", "forward")} <= have
    assert {r["dtype"] for r in ops if r["op"] == "fftconv"} == {"float32", "bfloat16"}
    assert all(r["time_ms"] > 0 and r["timer"].startswith("time.perf_counter") for r in ops)
    models = doc["sections"]["bench_models"]["records"]
    assert {(r["layer"], r["variant"], r["mode"]) for r in models} == {
        (layer, variant, mode) for layer in ("s4d", "dss", "s5") for variant in ("full", "reduced")
        for mode in ("train_step", "decode_step")}
    for r in models:
        if r["variant"] == "reduced":
            full = next(m for m in models if m["layer"] == r["layer"] and m["variant"] == "full")
            assert r["d_state"] < full["d_state"]
    prepared = doc["sections"]["models_prepare"]["records"]
    assert {r["layer"] for r in prepared} == {"s4d", "dss"} and all(r["params_after"] < r["params_before"] for r in prepared)


def test_dry_run_checks_have_verdicts_and_no_gpu_figures(dry_run):
    _, doc, _, _ = dry_run
    lines = doc["checks"]
    assert lines == summary.checks(doc)
    assert not [c for c in lines if c["verdict"] == "missed"]
    performance = [c for c in lines if c["target"] != "-" and not c["name"].startswith(("section", "parity", "test suite"))]
    for target in ("50% of FP32 peak", "60% of memory bandwidth", "1.5x rfft"):  # every target of the issue appears
        assert any(target in c["target"] for c in performance), target
    assert all(c["verdict"] == "not run" and c["note"] == summary.DRY_NOTE for c in performance)  # none judged on a CPU
    assert any(c["name"].startswith("test suite") and c["verdict"] == "met" for c in lines)


def _gpu_doc(ops_records=(), parity_records=(), dry=False):
    """A minimal merged document as a GPU run would write it (for the verdict logic only)."""
    sections = {name: {"status": "ok", "records": [], "wall_s": 1.0, "meta": {}} for name in summary.SECTIONS}
    sections["bench_ops"]["records"] = list(ops_records)
    sections["parity"]["records"] = list(parity_records)
    return {"dry": dry, "sections": sections}


def _op(impl, time_ms, target=None, fraction=None, op="fftconv", direction="forward"):
    return {"case": "x", "status": "ok", "op": op, "impl": impl, "direction": direction, "dtype": "float32",
            "size": {"L": 4096}, "time_ms": time_ms, "fraction": fraction, "fraction_of": "memory bandwidth",
            **({"target": target} if target else {})}


def test_verdicts_against_targets():
    assert summary.verdict(1.5, 1.5) == "met" and summary.verdict(1.49, 1.5) == "missed"
    assert summary.verdict(None, 1.5) == "not run" and summary.verdict(math.nan, 1.5) == "not run"
    from bench.gpu.bench_ops import FFTCONV_TARGET, STEP_TARGET
    for rfft_ms, expected in ((20.0, "met"), (12.0, "missed")):  # speedup 2.0 and 1.2 against a 1.5x target
        doc = _gpu_doc([_op("triton", 10.0, FFTCONV_TARGET), _op("rfft_conv", rfft_ms)])
        [line] = [c for c in summary.checks(doc) if "speedup over rfft_conv" in c["name"]]
        assert line["verdict"] == expected and line["value"] == pytest.approx(rfft_ms / 10.0)
    for fraction, expected in ((0.7, "met"), (0.3, "missed"), (None, "not run")):
        doc = _gpu_doc([_op("triton", 1.0, STEP_TARGET, fraction, op="ssm_step")])
        [line] = [c for c in summary.checks(doc) if "fraction of" in c["name"]]
        assert line["verdict"] == expected
    doc = _gpu_doc([_op("triton", 10.0, FFTCONV_TARGET), _op("rfft_conv", 20.0)], dry=True)
    assert [c["verdict"] for c in summary.checks(doc) if "speedup" in c["name"]] == ["not run"]
    # a targeted case that crashed is missed, one that ran out of memory or budget did not run
    for status, expected in (("failed", "missed"), ("oom", "not run"), ("not run", "not run")):
        broken = {"case": "x", "status": status, "op": "ssm_step", "impl": "triton", "direction": "forward",
                  "dtype": "float32", "size": {"B": 64}, "target": STEP_TARGET, "error": "RuntimeError: boom"}
        [line] = [c for c in summary.checks(_gpu_doc([broken])) if "fraction of memory bandwidth" in c["name"]]
        assert line["verdict"] == expected and line["value"] is None


def test_parity_verdict_follows_each_quantity():
    row = {"case": "x", "status": "ok", "op": "cauchy", "precision": "float32", "group": "main", "size": {"H": 8}}
    good = [dict(row, quantity="k", error=1e-7, tolerance=1e-6, **{"pass": True}),
            dict(row, quantity="nonfinite", error=0, tolerance=0, **{"pass": True})]
    bad = good + [dict(row, quantity="grad_w", error=3e-6, tolerance=1e-6, **{"pass": False})]
    assert [c["verdict"] for c in summary._parity_lines(_gpu_doc(parity_records=good))] == ["met"]
    [line] = summary._parity_lines(_gpu_doc(parity_records=bad))
    assert line["verdict"] == "missed" and "grad_w" in line["note"] and line["value"].startswith("worst error/tolerance 3")
    oom = [dict(row, status="oom", error="OutOfMemoryError", traceback="...")]
    assert [c["verdict"] for c in summary._parity_lines(_gpu_doc(parity_records=oom))] == ["not run"]


def test_parity_check_fails_a_wrong_kernel(device, monkeypatch):
    """The production-size check must fail an op that is off by 1e-3 on the rows it checks, and one that
    writes NaN into a row the reference never sees; and pass the real kernel."""
    import dssm_kernels as dk
    problem = lambda: parity.build("vandermonde", {"H": 3, "N": 5, "L": 40}, {"h": 2}, device, seed=7)  # noqa: E731
    picks = problem().picks["h"].tolist()
    assert picks == [0, 2]  # the first and the last row: row 1 is left to the finiteness count
    rows, _ = parity.check(problem(), "float32", seed=7)
    assert all(r["pass"] for r in rows)
    real = dk.vandermonde
    monkeypatch.setattr(dk, "vandermonde", lambda *a, **k: real(*a, **k) * (1 + 1e-3))
    rows, _ = parity.check(problem(), "float32", seed=7)
    assert {r["quantity"] for r in rows if not r["pass"]} >= {"K"}

    def nan_in_unchecked_row(*a, **k):
        out = real(*a, **k)
        mask = torch.zeros_like(out, dtype=torch.bool)
        mask[1] = True
        return torch.where(mask, torch.full_like(out, float("nan")), out)
    monkeypatch.setattr(dk, "vandermonde", nan_in_unchecked_row)
    rows, _ = parity.check(problem(), "float32", seed=7)
    assert [r["quantity"] for r in rows if not r["pass"]] == ["nonfinite"]
    assert all(r["pass"] for r in rows if r["quantity"] != "nonfinite")


def test_float64_tolerance_scales_with_the_float32_reference_error(device):
    """float64: max(1e-10, 2 * 8 * 2^-29 * error(float32 reference)), the suite's 1e-10 until the problem
    is worse conditioned than that."""
    problem = lambda: parity.build("cauchy", {"H": 3, "N": 4, "L": 20}, {"h": 2}, device, seed=3)  # noqa: E731
    rows, own = parity.check(problem(), "float32", seed=3)
    assert set(own) == {r["quantity"] for r in rows} - {"nonfinite"}
    worse = {q: 1.0 for q in own}  # a float32 reference error of 100%: 2.98e-8 in float64
    for ref32, expected in ((own, 1e-10), (worse, 16 * 2.0 ** -29)):
        rows, _ = parity.check(problem(), "float64", seed=3, ref32_errors=ref32)
        tolerances = [r["tolerance"] for r in rows if r["quantity"] != "nonfinite"]
        assert tolerances == pytest.approx([expected] * len(tolerances)) and all(r["pass"] for r in rows)


def test_scan_loop_is_the_reference_recurrence():
    """parity.ssm_scan_loop (dk.ssm_scan_ref over u.unbind, for a backward linear in L) computes the
    same recurrence: float64 outputs and gradients agree to rounding (tolerance: rounding.accumulated
    over the L steps, relative to the magnitudes)."""
    from testing import accumulated
    import dssm_kernels as dk
    g = torch.Generator().manual_seed(4)
    B, H, N, L = 2, 3, 5, 50
    cplx = lambda *s: torch.complex(torch.randn(*s, generator=g, dtype=torch.float64),  # noqa: E731
                                    torch.randn(*s, generator=g, dtype=torch.float64))
    real = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    inputs = {"u": real(B, H, L), "dA": 0.9 * torch.exp(1j * real(H, N)), "dB": cplx(H, N), "C": cplx(H, N),
              "D": real(H), "state": cplx(B, H, N)}
    results = []
    for fn in (dk.ssm_scan_ref, parity.ssm_scan_loop):
        leaves = {k: t.clone().requires_grad_() for k, t in inputs.items()}
        y, last = fn(**leaves)
        grads = torch.autograd.grad(y.sum() + last.real.sum(), list(leaves.values()))
        results.append([y, last, *grads])
    for a, b in zip(*results):
        assert parity.rel_rms(a, b) <= accumulated(L)


def test_section_records_failures_budget_and_oom(tmp_path):
    sec = Section("parity", str(tmp_path / "p.json"), time.time() + 60, True, str(tmp_path))

    def boom():
        raise ValueError("bad input")

    def oom():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")
    assert sec.run_case("fine", lambda: [{"x": 1}, {"x": 2}])[1]["x"] == 2
    [failed] = sec.run_case("broken", boom)
    assert failed["status"] == "failed" and "bad input" in failed["error"] and "boom" in failed["traceback"]
    assert sec.run_case("big", oom)[0]["status"] == "oom"
    sec.guard("set-up", boom)
    sec.deadline = time.time()  # budget spent: nothing more starts
    calls = []
    assert sec.run_case("late", lambda: calls.append(1))[0]["status"] == "not run" and not calls
    saved = json.loads((tmp_path / "p.json").read_text())  # rewritten after every case
    assert [r["status"] for r in saved["records"]] == ["ok", "ok", "failed", "oom", "failed", "not run"]


def test_runner_kills_an_overrunning_section_and_keeps_its_records(tmp_path, monkeypatch):
    """A section past its budget is killed; what it recorded stays; the JSON is still valid."""
    monkeypatch.setattr(check, "KILL_GRACE_S", 0.5)
    runner = check.Runner(str(tmp_path), dry=True, global_budget=60)
    partial = {"section": "parity", "status": "running", "records": [{"case": "vandermonde float32", "status": "ok",
               "wall_s": 1.0, "op": "vandermonde", "precision": "float32", "quantity": "K", "error": 1e-7,
               "tolerance": 1e-6, "pass": True, "size": {"H": 3}, "group": "main"}], "wall_s": 1.0, "meta": {}}
    with open(runner.part("parity"), "w") as f:
        json.dump(partial, f)
    hung = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    runner.procs["parity"] = (hung, time.time() + 0.5, open(runner.log("parity"), "w"))
    t0 = time.time()
    runner.wait("parity")
    assert time.time() - t0 < 15 and hung.poll() is not None
    sec = runner.sections["parity"]
    assert sec["status"] == "timeout" and "killed" in sec["error"] and len(sec["records"]) == 1
    doc = runner.finish()
    assert summary.validate(doc) == []
    lines = {c["name"]: c for c in doc["checks"]}
    assert lines["section parity"]["verdict"] == "missed" and lines["section env"]["verdict"] == "not run"
    assert any(name.startswith("parity vandermonde float32") and c["verdict"] == "met" for name, c in lines.items())


def test_suite_files_put_the_ops_first_and_leave_out_cpu_only(tmp_path):
    for name in ("reduction/test_bt.py", "nn/test_layers.py", "ops/test_cauchy.py", "ops/test_vandermonde.py",
                 "cli/test_cli.py", "tools/test_gpu_check.py", "ops/test_zzz_new.py", "nn/test_learning.py",
                 "helpers.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    names = [os.path.relpath(p, tmp_path) for p in suite.test_files(str(tmp_path))]
    assert names == ["ops/test_vandermonde.py", "ops/test_cauchy.py", "nn/test_layers.py", "nn/test_learning.py",
                     "ops/test_zzz_new.py"]
    assert suite.shards(names, 3) == [["ops/test_vandermonde.py", "nn/test_learning.py"],
                                      ["ops/test_cauchy.py", "ops/test_zzz_new.py"], ["nn/test_layers.py"]]
    dry = [os.path.relpath(p, tmp_path) for p in suite.test_files(str(tmp_path), dry=True)]
    assert "nn/test_learning.py" not in dry


def test_suite_shards_worst_errors_merge_to_the_worst_ratio():
    row = lambda err, tol: {"op": "cauchy", "backend": "triton", "dtype": "complex64", "quantity": "k",  # noqa: E731
                            "error": err, "tolerance": tol}
    merged = suite._merge_worst([[row(1e-7, 1e-6)], [row(3e-7, 2e-6), dict(row(1e-8, 1e-6), quantity="grad_v")], []])
    assert [(r["quantity"], r["error"]) for r in merged] == [("grad_v", 1e-8), ("k", 3e-7)]


def test_device_limits_table_agrees_with_the_derived_peak():
    """The datasheet FP32 figures and SMs x lanes x 2 x clock are two sources: they must agree (1%)."""
    assert hardware.table_peaks("NVIDIA H100 80GB HBM3")["mem_tbs"] == 3.35
    assert hardware.table_peaks("NVIDIA H100 PCIe")["fp32_tflops"] == 51.0
    assert hardware.table_peaks("NVIDIA H200")["mem_tbs"] == 4.8
    assert hardware.table_peaks("NVIDIA H200 NVL")["fp32_tflops"] == 60.0
    assert hardware.table_peaks("NVIDIA GeForce RTX 4090") is None
    for name, sms, clock_mhz, cap in (("NVIDIA H100 80GB HBM3", 132, 1980, (9, 0)), ("NVIDIA H100 PCIe", 114, 1755, (9, 0)),
                                      ("NVIDIA H200", 132, 1980, (9, 0)), ("NVIDIA A100-SXM4-80GB", 108, 1410, (8, 0))):
        props = types.SimpleNamespace(major=cap[0], minor=cap[1], multi_processor_count=sms)
        derived = hardware.derived_fp32_tflops(props, clock_mhz)
        assert derived == pytest.approx(hardware.table_peaks(name)["fp32_tflops"], rel=0.01), name
