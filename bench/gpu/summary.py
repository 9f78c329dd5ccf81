"""The check lines of a GPU-check JSON (one per check, with its target and verdict), the table that
prints them, and the JSON's schema.

Verdicts: "met" / "missed" against a target; "not run" when the check did not run (section failed
or out of budget, out of memory at every size, or a performance target in dry mode: the CPU
interpreter gives no GPU figure); "reported" for figures without a target.

    python -m bench.gpu.summary gpu_check.json      # print the table (and any schema problem)
"""
from __future__ import annotations

import json
import math
import sys

SCHEMA = "dssm-gpu-check/1"
SECTIONS = ("env", "models_prepare", "suite", "parity", "bench_ops", "bench_models")
SECTION_STATUSES = ("ok", "failed", "timeout", "not run")
RECORD_STATUSES = ("ok", "failed", "oom", "not run")
VERDICTS = ("met", "missed", "not run", "reported")
DRY_NOTE = "dry run: CPU interpreter at tiny sizes, not a GPU figure"


def verdict(value: float | None, minimum: float) -> str:
    """'met' if value >= minimum, 'missed' if below, 'not run' without a value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not run"
    return "met" if value >= minimum else "missed"


def _size(size: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in (size or {}).items())


def _line(name, value, target, verdict_, note="") -> dict:
    return {"name": name, "value": value, "target": target, "verdict": verdict_, "note": note}


def _section_lines(doc: dict) -> list[dict]:
    lines = []
    for name in SECTIONS:
        sec = doc["sections"].get(name, {"status": "not run"})
        status = sec.get("status", "not run")
        spent = [r for r in sec.get("records", []) if r.get("status") == "not run"]
        note = sec.get("error") or ""
        if spent:
            note = (note + "; " if note else "") + f"{len(spent)} case(s) not run (budget or memory)"
        v = {"ok": "met", "not run": "not run"}.get(status, "missed")
        lines.append(_line(f"section {name}", f"{status}, {sec.get('wall_s', 0):.0f} s", "runs to its end", v, note))
    return lines


def _suite_lines(doc: dict) -> list[dict]:
    sec = doc["sections"].get("suite", {})
    meta = sec.get("meta", {})
    counts = meta.get("counts", {})
    failed = counts.get("failed", 0) + counts.get("error", 0)
    ran = sum(counts.values())
    value = ", ".join(f"{counts[k]} {k}" for k in sorted(counts)) or "no test ran"
    what = "test suite, Triton " + ("interpreted (first test per file)" if doc["dry"] else "compiled")
    if failed:
        v, note = "missed", "failed: " + ", ".join(r["test"] for r in sec.get("records", [])
                                                   if r.get("outcome") in ("failed", "error"))[:600]
    elif meta.get("completed") and meta.get("returncode") == 0 and ran:
        v, note = "met", ""
    elif ran and meta.get("stopped"):
        v, note = "not run", f"stopped at its budget after {ran} tests, none failed"
    elif sec.get("status") in (None, "not run"):
        v, note = "not run", "the suite section did not run"
    else:
        v, note = "missed", f"pytest return code {meta.get('returncode')}; see the suite's shard_results in the JSON"
    return [_line(what, value, "all pass", v, note)]


def _parity_lines(doc: dict) -> list[dict]:
    groups: dict = {}
    for r in doc["sections"].get("parity", {}).get("records", []):
        groups.setdefault((r.get("op"), r.get("precision"), r.get("group")), []).append(r)
    lines = []
    for (op, precision, group), rows in groups.items():
        done = [r for r in rows if r["status"] == "ok"]
        sizes = {_size(r.get("size")) for r in (done or rows)}
        name = f"parity {op} {precision} ({', '.join(sorted(sizes))})"
        target = "error <= tolerance, all finite"
        if not done:
            failed = [r for r in rows if r["status"] == "failed"]
            if failed:
                lines.append(_line(name, None, target, "missed", failed[0].get("error", "")[:300]))
            else:
                why = "; ".join(sorted({r["status"] + (": " + r["reason"] if r.get("reason") else "") for r in rows}))
                lines.append(_line(name, None, target, "not run", why[:300]))
            continue
        worst, worst_q = 0.0, ""
        for r in done:
            err, tol = r.get("error"), r.get("tolerance")
            ratio = math.inf if err is None else (err / tol if tol else (0.0 if err == 0 else math.inf))
            if ratio >= worst:
                worst, worst_q = ratio, r.get("quantity")
        ok = all(r.get("pass") for r in done)
        lines.append(_line(name, f"worst error/tolerance {worst:.3g} ({worst_q})", target, "met" if ok else "missed",
                           "" if ok else "failing: " + ", ".join(r["quantity"] for r in done if not r.get("pass"))))
    return lines


def _figure(doc: dict, value: float) -> float | None:
    """A performance figure for the table; none in dry mode (the JSON keeps the dry timings, the table
    shows no number that could pass for a GPU figure)."""
    return None if doc["dry"] else round(value, 3)


def _target_line(doc: dict, r: dict, what: str, by_impl: dict, key) -> dict:
    """The check line of a record that carries one of the issue's targets (whatever its status)."""
    target = r["target"]
    if target["metric"] == "speedup":
        name = f"{what}: speedup over {target['baseline']}"
        base = by_impl.get((target["baseline"], *key(r)))
        value = base["time_ms"] / r["time_ms"] if base and r["status"] == "ok" else None
    else:
        name = f"{what}: fraction of {target['of']}"
        value = r.get("fraction") if r["status"] == "ok" else None
    if r["status"] == "failed":
        return _line(name, None, target["text"], "missed", r.get("error", "")[:300])
    if r["status"] != "ok":
        why = f"{r['status']}: {r.get('reason') or r.get('error', '')}"
        return _line(name, None, target["text"], "not run", why[:300])
    if doc["dry"]:
        return _line(name, None, target["text"], "not run", DRY_NOTE)
    if value is None:
        note = "no baseline time or no device limit to compare with"
    elif target["metric"] == "speedup":
        note = f"peak memory {r.get('peak_mem_mib')} MiB, {target['baseline']} {base.get('peak_mem_mib')} MiB"
    else:
        note = f"{r['time_ms']:.4g} ms"
    shown = round(value, 3) if value is not None else None
    return _line(name, shown, target["text"], verdict(value, target["min"]), note)


def _ops_lines(doc: dict) -> list[dict]:
    records = doc["sections"].get("bench_ops", {}).get("records", [])
    key = lambda r: (r.get("op"), r.get("direction"), r.get("dtype"), _size(r.get("size")))  # noqa: E731
    by_impl = {(r.get("impl"), *key(r)): r for r in records if r["status"] == "ok"}
    note = DRY_NOTE if doc["dry"] else ""
    lines = []
    for r in records:
        if r.get("impl") != "triton":
            continue
        what = f"{r.get('op')} {r.get('direction')} {r.get('dtype')} {_size(r.get('size'))}"
        target = r.get("target")
        if target:
            lines.append(_target_line(doc, r, what, by_impl, key))
        if r["status"] != "ok":
            continue
        for impl in ("reference", "rfft_conv"):
            base = by_impl.get((impl, *key(r)))
            if base is not None and not (target and target.get("baseline") == impl):
                memory = "" if doc["dry"] else \
                    f"peak memory {r.get('peak_mem_mib')} MiB, {impl} {base.get('peak_mem_mib')} MiB"
                lines.append(_line(f"{what}: speedup over {impl}", _figure(doc, base["time_ms"] / r["time_ms"]), "-",
                                   "reported", note or memory))
        if not target and r.get("fraction") is not None:
            lines.append(_line(f"{what}: fraction of {r.get('fraction_of')}", _figure(doc, r["fraction"]), "-",
                               "reported", note))
        if r["direction"] == "forward+backward":
            fwd = by_impl.get(("triton", r["op"], "forward", r["dtype"], _size(r.get("size"))))
            if fwd:
                lines.append(_line(f"{what}: time over forward's", _figure(doc, r["time_ms"] / fwd["time_ms"]), "-",
                                   "reported", note))
    return lines


def _model_lines(doc: dict) -> list[dict]:
    rows = [r for r in doc["sections"].get("bench_models", {}).get("records", []) if r["status"] == "ok"]
    found = {(r["layer"], r["mode"], r["variant"]): r for r in rows}
    lines = []
    for (layer, mode, variant), full in found.items():
        small = found.get((layer, mode, "reduced"))
        if variant != "full" or small is None:
            continue
        note = DRY_NOTE if doc["dry"] else f"full {full['time_ms']:.3g} ms, reduced {small['time_ms']:.3g} ms"
        lines.append(_line(f"{layer} model {mode}: d_state {full['d_state']} over {small['d_state']} "
                           f"({small.get('reduction', '')})", _figure(doc, full["time_ms"] / small["time_ms"]), "-",
                           "reported", note))
    return lines


def checks(doc: dict) -> list[dict]:
    """Every check line of a merged GPU-check document, in table order."""
    return (_section_lines(doc) + _suite_lines(doc) + _parity_lines(doc) + _ops_lines(doc) + _model_lines(doc))


def table(doc: dict) -> str:
    """The summary: device, then one markdown row per check."""
    dev = doc.get("device", {})
    head = [f"GPU check ({'DRY RUN on the CPU, Triton interpreted' if doc['dry'] else 'GPU'}): device {dev.get('name')}, "
            f"{doc.get('wall_s', 0):.0f} s of {doc.get('global_budget_s')} s",
            "", "| check | value | target | verdict | note |", "|---|---|---|---|---|"]
    rows = [f"| {c['name']} | {'-' if c['value'] is None else c['value']} | {c['target']} | {c['verdict']} | "
            f"{str(c['note']).replace('|', '/')} |" for c in doc.get("checks", [])]
    tally = {v: sum(c["verdict"] == v for c in doc.get("checks", [])) for v in VERDICTS}
    return "\n".join(head + rows + ["", "verdicts: " + ", ".join(f"{n} {v}" for v, n in tally.items())])


def _need(problems: list, where: str, obj: dict, key: str, types) -> None:
    if key not in obj:
        problems.append(f"{where}: missing {key!r}")
    elif not isinstance(obj[key], types):
        problems.append(f"{where}: {key!r} is {type(obj[key]).__name__}, expected {types}")


NUM = (int, float)
OPT_NUM = (int, float, type(None))
RECORD_FIELDS = {
    "parity": {"op": str, "precision": str, "quantity": str, "error": OPT_NUM, "tolerance": NUM, "pass": bool,
               "size": dict},
    "bench_ops": {"op": str, "impl": str, "direction": str, "dtype": str, "size": dict, "time_ms": NUM,
                  "time_ms_q20": NUM, "time_ms_q80": NUM, "timer": str, "peak_mem_mib": OPT_NUM},
    "bench_models": {"layer": str, "variant": str, "mode": str, "d_state": int, "time_ms": NUM, "timer": str,
                     "peak_mem_mib": OPT_NUM, "tokens_per_s": NUM},
    "suite": {"test": str, "outcome": str, "duration_s": NUM},
    "models_prepare": {"layer": str, "reduce_s": NUM, "params_before": int, "params_after": int},
}


def validate(doc: dict) -> list[str]:
    """Schema problems of a merged document (empty when it conforms)."""
    p: list[str] = []
    _need(p, "top", doc, "schema", str)
    if doc.get("schema") != SCHEMA:
        p.append(f"top: schema {doc.get('schema')!r}, expected {SCHEMA!r}")
    for key, types in (("dry", bool), ("device", dict), ("versions", dict), ("limits", dict), ("started", str),
                       ("wall_s", NUM), ("global_budget_s", NUM), ("budgets", dict), ("sections", dict),
                       ("checks", list)):
        _need(p, "top", doc, key, types)
    if p:
        return p
    _need(p, "device", doc["device"], "name", str)
    for name in SECTIONS:
        sec = doc["sections"].get(name)
        if not isinstance(sec, dict):
            p.append(f"sections: missing {name!r}")
            continue
        if sec.get("status") not in SECTION_STATUSES:
            p.append(f"{name}: status {sec.get('status')!r} not in {SECTION_STATUSES}")
        _need(p, name, sec, "records", list)
        _need(p, name, sec, "wall_s", NUM)
        for i, r in enumerate(sec.get("records", [])):
            where = f"{name}.records[{i}]"
            _need(p, where, r, "case", str)
            _need(p, where, r, "wall_s", NUM)
            if r.get("status") not in RECORD_STATUSES:
                p.append(f"{where}: status {r.get('status')!r} not in {RECORD_STATUSES}")
            if r.get("status") in ("failed", "oom"):
                _need(p, where, r, "error", str)
                _need(p, where, r, "traceback", str)
            if r.get("status") == "ok":
                for key, types in RECORD_FIELDS.get(name, {}).items():
                    _need(p, where, r, key, types)
    for i, c in enumerate(doc["checks"]):
        for key, types in (("name", str), ("target", str), ("verdict", str), ("note", str)):
            _need(p, f"checks[{i}]", c, key, types)
        if c.get("verdict") not in VERDICTS:
            p.append(f"checks[{i}]: verdict {c.get('verdict')!r} not in {VERDICTS}")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m bench.gpu.summary GPU_CHECK_JSON", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        doc = json.load(f)
    print(table(doc))
    problems = validate(doc)
    for problem in problems:
        print(f"schema: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
