"""Turn a bench/test_bench_cpu.py JSON into the table of ratios and rates, and the N-sweep plot.

    python bench/summarize_cpu.py bench/results/<machine>.json   [writes <machine>-scaling.png beside it]
"""
import json
import sys
from pathlib import Path


def load(path):
    data = json.loads(Path(path).read_text())
    rows = {}
    for b in data["benchmarks"]:
        info = b["extra_info"]
        key = (info["op"], info["direction"], info["backend"], info.get("sweep", False), info["N"])
        rows[key] = (b["stats"]["median"], info)
    return data["machine_info"], rows


def table(rows):
    lines = ["| op | sizes | pass | reference | cpp | cpp vs reference | cpp rate (work / s) | backward / forward |",
             "|---|---|---|---|---|---|---|---|"]
    for (op, direction, backend, sweep, N), (t, info) in sorted(rows.items()):
        if sweep or backend != "cpp":
            continue
        ref = rows.get((op, direction, "reference", False, N))
        fwd = rows.get((op, "forward", "cpp", False, N))
        ratio = f"{ref[0] / t:.0f}x" if ref else "-"
        bwd_ratio = f"{t / fwd[0]:.2f}" if direction == "backward" and fwd else "-"
        ref_t = f"{ref[0] * 1e3:.2f} ms" if ref else "-"
        lines.append(f"| {op} | {info['sizes']} | {direction} | {ref_t} | {t * 1e3:.3f} ms | {ratio} | "
                     f"{info['work'] / t:.2e} | {bwd_ratio} |")
    return "\n".join(lines)


def sweep_plot(rows, out_png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    lines = ["| op | N | time | time / time at N=4 |", "|---|---|---|---|"]
    for op in ("vandermonde", "ssm_scan"):
        pts = sorted((N, t) for (o, d, b, sweep, N), (t, _) in rows.items() if sweep and o == op)
        if not pts:
            continue
        Ns, ts = zip(*pts)
        ax.plot(Ns, [t * 1e3 for t in ts], "o-", label=op)
        lines += [f"| {op} | {N} | {t * 1e3:.2f} ms | {t / ts[0]:.2f} |" for N, t in pts]
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("complex modes N (state size 2N)")
    ax.set_ylabel("forward time (ms)")
    ax.set_title("C++ backend: time against state size")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    return "\n".join(lines)


def main(path):
    machine, rows = load(path)
    print(f"machine: {machine.get('cpu', {}).get('brand_raw', machine.get('processor'))}, "
          f"{machine.get('cpu', {}).get('count', '?')} logical CPUs, torch {machine.get('torch')}")
    print(table(rows))
    png = Path(path).with_name(Path(path).stem + "-scaling.png")
    print()
    print(sweep_plot(rows, png))
    print(f"\nplot: {png}")


if __name__ == "__main__":
    main(sys.argv[1])
