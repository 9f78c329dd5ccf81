"""Turn a bench/test_bench_cpu.py or bench/test_bench_decode.py JSON into tables and a plot.

    python bench/summarize_cpu.py bench/results/<name>.json   [writes <name>-scaling.png or <name>.png beside it]

Kernels (test_bench_cpu.py): C++ against the reference, rates, and the fraction of the FMA peak each
forward / backward reaches (work/s x FMA-pipe operations per work item / (threads x FMA slots per
core per second)); the state-size sweep and the small-state scan against the memory floor (a copy of u).
Decoding (test_bench_decode.py): per path, kind and d_state the time per token call (median and
interquartile range), tokens/s, the FLOP count per token, time over the FLOP limit (flops x batch /
the one-core peak x threads), speedups over eager step and of reduced over full models against
their work ratios.
The peak and its factors (lanes, clock, FMA units: bench/conftest.py measures them) are printed first.
"""
import json
import sys
from pathlib import Path


def load(path):
    data = json.loads(Path(path).read_text())
    return data["machine_info"], data["benchmarks"]


def machine_line(machine) -> str:
    peak = machine.get("fma_peak") or {}
    line = (f"machine: {machine.get('cpu_model') or machine.get('cpu', {}).get('brand_raw')}, "
            f"{machine.get('cpu', {}).get('count', '?')} logical CPUs, torch {machine.get('torch')}, "
            f"{machine.get('extension', 'extension ?')}")
    if peak:
        line += (f"\nFMA peak per core (measured, bench/conftest.py): {peak['lanes']} float lanes x "
                 f"{peak['fma_units']} FMA unit(s) x {peak['clock_hz'] / 1e9:.2f} GHz x 2 FLOP = "
                 f"{peak['flops_per_core'] / 1e9:.1f} GFLOP/s (the FMA microbenchmark itself: "
                 f"{peak['flops_measured'] / 1e9:.1f} GFLOP/s)")
    return line


def _iqr(b) -> str:
    s = b["stats"]
    return f"{s['q1'] * 1e3:.3f}-{s['q3'] * 1e3:.3f}"


# --- kernels ----------------------------------------------------------------------------------------
def kernel_rows(benchmarks):
    rows = {}
    for b in benchmarks:
        info = b["extra_info"]
        key = (info["op"], info["direction"], info["backend"], info.get("sweep", False), info["N"])
        rows[key] = (b["stats"]["median"], info, b)
    return rows


def peak_fraction(info, t):
    ops, peak = info.get("fma_ops_per_work"), info.get("peak_flops_per_core")
    if not ops or not peak:
        return "-"
    slots_per_s = peak / 2 * info.get("threads", 1)
    return f"{info['work'] / t * ops / slots_per_s:.0%}"


def kernel_table(rows):
    lines = ["| op | sizes | pass | reference | cpp (IQR, ms) | cpp vs reference | cpp rate (work / s) | backward / forward "
             "| FMA peak reached |", "|---|---|---|---|---|---|---|---|---|"]
    for (op, direction, backend, sweep, N), (t, info, b) in sorted(rows.items()):
        if sweep or backend != "cpp":
            continue
        ref = rows.get((op, direction, "reference", False, N))
        fwd = rows.get((op, "forward", "cpp", False, N))
        ratio = f"{ref[0] / t:.0f}x" if ref else "-"
        bwd_ratio = f"{t / fwd[0]:.2f}" if direction == "backward" and fwd else "-"
        ref_t = f"{ref[0] * 1e3:.2f} ms" if ref else "-"
        lines.append(f"| {op} | {info['sizes']} | {direction} | {ref_t} | {t * 1e3:.3f} ({_iqr(b)}) | {ratio} | "
                     f"{info['work'] / t:.2e} | {bwd_ratio} | {peak_fraction(info, t)} |")
    return "\n".join(lines)


def sweep_plot(rows, out_png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = next((t for (op, *_), (t, info, _) in rows.items() if info.get("floor")), None)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    lines = ["| op | N | time | time / time at the smallest N | time / memory floor (copy of u) |",
             "|---|---|---|---|---|"]
    for op in ("vandermonde", "ssm_scan"):
        pts = sorted((N, t) for (o, d, b, sweep, N), (t, _, _) in rows.items() if sweep and o == op)
        if not pts:
            continue
        Ns, ts = zip(*pts)
        ax.plot(Ns, [t * 1e3 for t in ts], "o-", label=op)
        for N, t in pts:
            vs_floor = f"{t / floor:.1f}" if floor and op == "ssm_scan" else "-"
            lines.append(f"| {op} | {N} | {t * 1e3:.2f} ms | {t / ts[0]:.2f} | {vs_floor} |")
    if floor:
        ax.axhline(floor * 1e3, color="gray", ls="--", label="copy of u (scan's memory floor)")
        lines.append(f"\nmemory floor (copy of u, B=8 H=256 L=4096 float32): {floor * 1e3:.2f} ms")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("complex modes N (state size 2N)")
    ax.set_ylabel("forward time (ms)")
    ax.set_title("C++ backend: time against state size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    return "\n".join(lines)


# --- decoding ---------------------------------------------------------------------------------------
def decode_tables(benchmarks, out_png):
    rows = {}
    for b in benchmarks:
        i = b["extra_info"]
        rows[(i["kind"], i["batch"], i["path"], i["d_state"])] = (b["stats"]["median"] / i["tokens_per_round"], i, b)
    lines = ["| kind | batch | path | d_state | us per call (IQR) | tokens/s | MFLOP/token | time / FLOP limit | "
             "time / memory floor | speedup vs eager | speedup vs full (work ratio) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    full_state = max(k[3] for k in rows)
    for (kind, batch, path, ds), (t, i, b) in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2],
                                                                                   -kv[0][3])):
        s = b["stats"]
        n = i["tokens_per_round"]
        iqr = f"{s['q1'] / n * 1e6:.1f}-{s['q3'] / n * 1e6:.1f}"
        peak = i.get("peak_flops_per_core")
        limit = i["flops_per_token"] * batch / (peak * i.get("threads", 1)) if peak else None
        eager = rows.get((kind, batch, "eager", ds))
        mem = rows.get((kind, batch, "memory", ds))
        vs_mem = f"{t / mem[0]:.1f}x" if mem else "-"
        full = rows.get((kind, batch, path, full_state))
        vs_full = "-"
        if full and ds != full_state:
            work_ratio = full[1]["flops_per_token"] / i["flops_per_token"]
            vs_full = f"{full[0] / t:.2f} ({work_ratio:.2f})"
        lines.append(f"| {kind} | {batch} | {path} | {ds} | {t * 1e6:.1f} ({iqr}) | {batch / t:.3g} | "
                     f"{i['flops_per_token'] / 1e6:.3f} | {t / limit:.1f}x | {vs_mem} | "
                     f"{eager[0] / t if eager else float('nan'):.1f} | {vs_full} |" if limit else "")
    _decode_plot(rows, out_png)
    return "\n".join(lines)


def _decode_plot(rows, out_png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({k[0] for k in rows})
    batches = sorted({k[1] for k in rows})
    fig, axes = plt.subplots(len(batches), len(kinds), figsize=(4 * len(kinds), 3.2 * len(batches)), squeeze=False)
    for bi, batch in enumerate(batches):
        for ki, kind in enumerate(kinds):
            ax = axes[bi][ki]
            for path in sorted({k[2] for k in rows}):
                pts = sorted((k[3], v[0]) for k, v in rows.items() if k[0] == kind and k[1] == batch and k[2] == path)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] * 1e6 for p in pts], "o-", label=path)
            lim = sorted((k[3], v[1]["flops_per_token"] * batch / (v[1]["peak_flops_per_core"] * v[1].get("threads", 1)))
                         for k, v in rows.items() if k[0] == kind and k[1] == batch and v[1].get("peak_flops_per_core"))
            if lim:
                ax.plot([p[0] for p in dict(lim).items()], [p[1] * 1e6 for p in dict(lim).items()], "k--",
                        label="FLOP limit")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{kind}, batch {batch}")
            ax.set_xlabel("d_state")
            ax.set_ylabel("us per token call")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)


def interleaved_table(benchmarks) -> str:
    """The decoder at each d_state, timed round-robin: speedup over the full model against the work ratio
    (FLOPs) and the bytes ratio, and the target (>= 80% of the work ratio)."""
    lines = ["| kind | batch | d_state | us per call (IQR) | time / FLOP limit | speedup vs full | work ratio | "
             "bytes ratio | >= 80% of the work ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for b in benchmarks:
        i = b["extra_info"]
        inter = {int(k): v for k, v in i["interleaved"].items()}
        full = inter[max(inter)]
        for ds in sorted(inter, reverse=True):
            v = inter[ds]
            limit = v["flops_per_token"] * i["batch"] / (i["peak_flops_per_core"] * i["threads"])
            sp, work = full["median"] / v["median"], full["flops_per_token"] / v["flops_per_token"]
            met = "-" if ds == max(inter) else ("met" if sp >= 1 + 0.8 * (work - 1) else "**missed**")
            lines.append(f"| {i['kind']} | {i['batch']} | {ds} | {v['median'] * 1e6:.1f} ({v['q1'] * 1e6:.1f}-"
                         f"{v['q3'] * 1e6:.1f}) | {v['median'] / limit:.1f}x | {sp:.2f} | {work:.2f} | "
                         f"{full['bytes_per_call'] / v['bytes_per_call']:.2f} | {met} |")
    return "\n".join(lines)


def main(path):
    machine, benchmarks = load(path)
    print(machine_line(machine))
    decode = [b for b in benchmarks if b["extra_info"].get("suite") == "decode"]
    inter = [b for b in benchmarks if b["extra_info"].get("suite") == "decode-interleaved"]
    if decode or inter:
        if decode:
            png = Path(path).with_suffix(".png")
            print(decode_tables(decode, png))
            print(f"\nplot: {png}")
        if inter:
            print("\nthe decoder, d_states interleaved round by round:")
            print(interleaved_table(inter))
        return
    rows = kernel_rows(benchmarks)
    print(kernel_table(rows))
    png = Path(path).with_name(Path(path).stem + "-scaling.png")
    print()
    print(sweep_plot(rows, png))
    print(f"\nplot: {png}")


if __name__ == "__main__":
    main(sys.argv[1])
