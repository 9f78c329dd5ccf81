"""What the workflows show and write, in one place for the demo, the experiments, `dssm train` and
`dssm reduce`: progress bars, the machine description, results as plain JSON values, Markdown tables,
matplotlib without a display, and one result written as NAME.json / NAME.md / NAME.png.

    progress_bar(iterable, enabled, **tqdm_kwargs)   # tqdm when enabled and installed, else the iterable
    machine() -> str                                 # "AMD EPYC (x86_64), 2 cores, torch 2.x, 1 threads"
    jsonable(obj)                                    # tensors, arrays, dataclasses -> lists and dicts
    md_table(head, rows) -> str
    pyplot()                                         # matplotlib.pyplot on the Agg backend
    write_outputs(out, name, res, markdown, plot) -> [json, md, png paths]
"""
from __future__ import annotations

import json
import os
import platform

import torch

try:  # progress bars when tqdm is there (a requirement); everything runs the same without
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover
    tqdm = None


def progress_bar(iterable, enabled: bool, **kw):
    """tqdm over `iterable` when `enabled` (and tqdm is installed), else `iterable` itself. Callers that set
    a postfix check for it: `if hasattr(bar, "set_postfix")`."""
    return tqdm(iterable, **kw) if enabled and tqdm is not None else iterable


def cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo; elsewhere what platform knows): results differ
    between an AMD EPYC and an Intel Xeon of the same machine kind, so every figure names it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """The processor, its core count, torch's version and its intra-op threads, on one line."""
    return f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads"


def jsonable(obj):
    """obj as plain JSON values: tensors and arrays become lists, dataclasses (reduction reports) dicts,
    dict keys str; anything else that JSON lacks becomes its str()."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        return {k: jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def md_table(head: list[str], rows: list[list]) -> str:
    """A Markdown table; every row must have len(head) cells."""
    for r in rows:
        if len(r) != len(head):
            raise ValueError(f"md_table: a row has {len(r)} cells, the header {len(head)}: {r!r}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def write_outputs(out: str, name: str, res: dict, markdown: str, plot) -> list[str]:
    """out/name.json (jsonable(res)), out/name.md (markdown) and out/name.png (plot(res, path)); the paths."""
    os.makedirs(out, exist_ok=True)
    paths = [os.path.join(out, f"{name}.{ext}") for ext in ("json", "md", "png")]
    with open(paths[0], "w") as f:
        json.dump(jsonable(res), f, indent=1)
    with open(paths[1], "w") as f:
        f.write(markdown.rstrip() + "\n")
    plot(res, paths[2])
    return paths
