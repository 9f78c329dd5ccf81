"""The device and its limits, and the "env" section that records them with the software versions.

Limits, used for "fraction of the hardware limit" (DESIGN.md: benchmarks report it where known):
- FP32 peak: NVIDIA's datasheet figure (non-tensor FP32, boost clock) for the devices in PEAKS,
  matched by name. Fallback: derived as SMs x FP32 lanes per SM x 2 (an FMA is two flops) x the
  maximum SM clock (nvidia-smi), which reproduces the datasheet figures (H100 SXM: 132 x 128 x 2 x
  1.98 GHz = 66.9 TFLOP/s). Not a timed fp32 matmul: cuBLAS may use TF32 tensor cores, or fall short
  of the FMA peak, so it measures a library, not the limit the kernels are held to.
- Memory bandwidth: the datasheet figure from PEAKS. Fallback: a timed device-to-device copy
  (read + write bytes / time), which reaches about 90% of the datasheet figure, so fractions against
  it read high; the copy is measured and recorded in every run, as a cross-check.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys

import torch

from bench.gpu.harness import Section, time_ms

# (name pattern, FP32 TFLOP/s, memory TB/s, source); the first pattern that matches the device name wins,
# so the more specific names come first.
_H100_SRC = "NVIDIA H100 Tensor Core GPU datasheet (FP32; GPU memory bandwidth)"
_H200_SRC = "NVIDIA H200 Tensor Core GPU datasheet (FP32; GPU memory bandwidth)"
_A100_SRC = "NVIDIA A100 Tensor Core GPU datasheet (FP32; GPU memory bandwidth)"
PEAKS = [
    (r"H200 NVL", 60.0, 4.8, _H200_SRC + ", H200 NVL column"),
    (r"H200", 67.0, 4.8, _H200_SRC + ", H200 SXM column"),
    (r"H100 NVL", 60.0, 3.9, _H100_SRC + ", H100 NVL column"),
    (r"H100.*PCIe", 51.0, 2.0, _H100_SRC + ", H100 PCIe column"),
    (r"H100", 67.0, 3.35, _H100_SRC + ", H100 SXM column"),
    (r"A100.*80GB.*PCIe|A100.*PCIe.*80GB", 19.5, 1.935, _A100_SRC + ", A100 80GB PCIe column"),
    (r"A100.*80GB", 19.5, 2.039, _A100_SRC + ", A100 80GB SXM column"),
    (r"A100", 19.5, 1.555, _A100_SRC + ", A100 40GB column"),
]
# FP32 lanes per SM by compute capability (CUDA C Programming Guide, "Arithmetic Instructions" table)
_FP32_LANES = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128}


def table_peaks(name: str) -> dict | None:
    """{"fp32_tflops", "mem_tbs", "source"} from PEAKS for a device name, or None."""
    for pattern, tflops, tbs, source in PEAKS:
        if re.search(pattern, name):
            return {"fp32_tflops": tflops, "mem_tbs": tbs, "source": source}
    return None


def _nvidia_smi(fields: str) -> list[str] | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return [f.strip() for f in out.stdout.strip().splitlines()[0].split(",")]


def derived_fp32_tflops(props, max_sm_clock_mhz: float | None) -> float | None:
    """SMs x FP32 lanes per SM x 2 flops per FMA x clock, in TFLOP/s; None when the clock or the lane
    count is unknown (capabilities after 9.0 are assumed to keep 128 lanes, as 8.6-9.0 have)."""
    if not max_sm_clock_mhz:
        return None
    cap = (props.major, props.minor)
    lanes = _FP32_LANES.get(cap, 128 if cap > (9, 0) else None)
    if lanes is None:
        return None
    return props.multi_processor_count * lanes * 2 * max_sm_clock_mhz * 1e6 / 1e12


def copy_bandwidth_tbs(device: torch.device, n_bytes: int) -> dict:
    """Device-to-device copy of n_bytes: (read + write) / median time, in TB/s."""
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    t = time_ms(lambda: dst.copy_(src), device)
    return {"copy_bytes": 2 * src.numel() * 4, **t, "tbs": 2 * src.numel() * 4 / (t["time_ms"] * 1e-3) / 1e12}


def limits(device: torch.device, measure_copy: bool = True) -> dict:
    """The limits fractions are taken against: fp32 FLOP/s and memory bytes/s, each with its source.

    On the CPU (dry mode) both are None: no figure is claimed for it."""
    if device.type != "cuda":
        return {"fp32_flops": None, "fp32_source": "none: dry run on a CPU", "mem_bytes_per_s": None,
                "mem_source": "none: dry run on a CPU"}
    props = torch.cuda.get_device_properties(device)
    table = table_peaks(props.name)
    if table is not None:
        return {"fp32_flops": table["fp32_tflops"] * 1e12, "fp32_source": table["source"],
                "mem_bytes_per_s": table["mem_tbs"] * 1e12, "mem_source": table["source"]}
    smi = _nvidia_smi("clocks.max.sm")
    clock = float(smi[0]) if smi and smi[0].replace(".", "", 1).isdigit() else None
    derived = derived_fp32_tflops(props, clock)
    out = {"fp32_flops": derived * 1e12 if derived else None,
           "fp32_source": (f"derived: {props.multi_processor_count} SMs x FP32 lanes x 2 x {clock} MHz (not in PEAKS)"
                           if derived else f"unknown: {props.name!r} is not in PEAKS and its clock is unknown")}
    if measure_copy:
        bw = copy_bandwidth_tbs(device, 1 << 30)
        out.update(mem_bytes_per_s=bw["tbs"] * 1e12,
                   mem_source="measured: device-to-device copy of 1 GiB (reads high against a datasheet peak)")
    else:
        out.update(mem_bytes_per_s=None, mem_source=f"unknown: {props.name!r} is not in PEAKS")
    return out


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None  # the device machine gets a copy of the working tree, without .git
    return out.stdout.strip() or None


def _versions() -> dict:
    import numpy
    try:
        import triton
        triton_version = triton.__version__
    except Exception as exc:  # recorded: the Triton backend then cannot run, which later sections show
        triton_version = f"not importable: {type(exc).__name__}: {exc}"
    return {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "triton": triton_version, "numpy": numpy.__version__,
            "git_commit": _git_commit(), "cpu_count": os.cpu_count(),
            "TRITON_INTERPRET": os.environ.get("TRITON_INTERPRET"),
            "DSSM_BACKEND": os.environ.get("DSSM_BACKEND")}


def describe(device: torch.device) -> dict:
    """Name, capability, memory, L2, SMs and clocks of the device ("cpu" in dry mode)."""
    if device.type != "cuda":
        return {"name": "cpu", "kind": "cpu", "processor": platform.processor() or platform.machine()}
    props = torch.cuda.get_device_properties(device)
    smi = _nvidia_smi("name,driver_version,clocks.max.sm,clocks.max.memory,power.limit")
    keys = ("smi_name", "driver", "max_sm_clock_mhz", "max_memory_clock_mhz", "power_limit_w")
    info = {"name": props.name, "kind": "cuda", "capability": f"{props.major}.{props.minor}",
            "sm_count": props.multi_processor_count, "memory_gib": round(props.total_memory / 2 ** 30, 2),
            "l2_cache_bytes": getattr(props, "L2_cache_size", None)}
    info.update(dict(zip(keys, smi)) if smi else {"nvidia_smi": "unavailable"})
    clock = info.get("max_sm_clock_mhz")
    known = clock and clock.replace(".", "", 1).isdigit()
    info["derived_fp32_tflops"] = derived_fp32_tflops(props, float(clock)) if known else None
    return info


def run(sec: Section) -> None:
    """The "env" section: device, versions, limits, the measured copy bandwidth, and a first compiled
    Triton call (so that a Triton that cannot compile for this device shows here, first)."""
    sec.run_case("device", lambda: {"device": describe(sec.device), "versions": _versions()})
    sec.run_case("limits", lambda: {"limits": limits(sec.device)})
    copy_bytes = (1 << 30) if sec.device.type == "cuda" else (16 << 20)
    sec.run_case("copy_bandwidth", lambda: copy_bandwidth_tbs(sec.device, copy_bytes))
    sec.run_case("first_triton_call", lambda: _first_triton_call(sec.device))


def _first_triton_call(device: torch.device) -> dict:
    """dk.vandermonde on the Triton backend at a tiny size against its reference: the compile time of one
    kernel and whether it runs at all (parity proper is the parity section's)."""
    import time

    import dssm_kernels as dk
    g = torch.Generator(device=device).manual_seed(0)
    v = torch.randn(4, 8, dtype=torch.complex64, device=device, generator=g)
    x = torch.complex(-torch.rand(4, 8, device=device, generator=g), torch.randn(4, 8, device=device, generator=g))
    t0 = time.time()
    out = dk.vandermonde(v, x, 100, backend="triton")
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.time() - t0
    ref = dk.vandermonde_ref(v.to(torch.complex128), x.to(torch.complex128), 100)
    rel = ((out.double() - ref).norm() / ref.norm()).item()
    return {"first_call_s": round(seconds, 3), "rel_error_vs_float64_reference": rel}
