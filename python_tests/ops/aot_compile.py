"""Compile every Triton kernel ahead of time for NVIDIA targets, with no GPU needed.

The interpreter accepts code that the compiler rejects (non-constexpr globals, dtype mismatches in
loops, unsupported ops), so CI compiles each kernel to PTX and cubin: float32 for sm_80 and sm_90,
float64 for sm_90. Run as a script in a process without TRITON_INTERPRET (test_triton_compile.py does):
    python python_tests/ops/aot_compile.py [name-filter]
"""
import os
import sys
import time

os.environ.pop("TRITON_INTERPRET", None)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

TARGETS = [GPUTarget("cuda", 80, 32), GPUTarget("cuda", 90, 32)]


def specs(fp):
    """(module, kernel, signature, constexprs) for every kernel, pointers of float type `fp`."""
    P = f"*{fp}"
    return [
        ("vandermonde", "vandermonde_rows_kernel",
         {"c_ptr": P, "x_ptr": P, "out_ptr": P, "N": "i32", "L": "i32", "scale": "fp32"},
         {"REVERSE": False, "BLOCK_N": 16, "BLOCK_L": 128}),
        ("vandermonde", "power_sums_kernel",
         {"w_ptr": P, "x_ptr": P, "s_ptr": P, "ds_ptr": P, "N": "i32", "L": "i32"},
         {"REVERSE": True, "WITH_DERIV": True, "BLOCK_N": 32, "BLOCK_L": 64}),
        ("cauchy", "cauchy_rows_kernel",
         {"v_ptr": P, "w_ptr": P, "z_ptr": P, "out_ptr": P, "N": "i32", "L": "i32"},
         {"SQUARE": True, "BLOCK_N": 16, "BLOCK_L": 128}),
        ("cauchy", "cauchy_modes_kernel",
         {"g_ptr": P, "v_ptr": P, "w_ptr": P, "z_ptr": P, "gv_ptr": P, "gw_ptr": P, "N": "i32", "L": "i32"},
         {"NEED_V": True, "NEED_W": True, "BLOCK_N": 32, "BLOCK_L": 64}),
        ("fftconv", "spectral_products_kernel",
         {"a_ptr": P, "k_ptr": P, "u_ptr": P, "out_ptr": P, "acc_ptr": P, "B": "i32", "H": "i32", "F": "i32"},
         {"CONJ": True, "WITH_OUT": True, "WITH_SUM": True, "BLOCK_F": 256}),
    ] + [
        # NATIVE=True is the compiled path (tl.associative_scan); NATIVE=False the interpreter's
        # Hillis-Steele scan, which the tests also run compiled on a GPU
        ("ssm_scan", "ssm_scan_fwd_kernel",
         {"u_ptr": P, "dA_ptr": P, "dB_ptr": P, "C_ptr": P, "D_ptr": P, "state_ptr": P, "y_ptr": P,
          "last_ptr": P, "ckpt_ptr": P, "H": "i32", "N": "i32", "L": "i32", "n_chunks": "i32"},
         {"HAS_D": True, "HAS_STATE": True, "SAVE_CKPT": True, "NATIVE": native, "BLOCK_N": 32, "BLOCK_T": 64})
        for native in (True, False)
    ] + [
        ("ssm_scan", "ssm_scan_bwd_kernel",
         {"u_ptr": P, "dA_ptr": P, "dB_ptr": P, "C_ptr": P, "D_ptr": P, "ckpt_ptr": P, "gy_ptr": P,
          "glast_ptr": P, "gu_ptr": P, "gstate_ptr": P, "gdA_ptr": P, "gdB_ptr": P, "gC_ptr": P, "gD_ptr": P,
          "H": "i32", "N": "i32", "L": "i32", "n_chunks": "i32"},
         {"HAS_D": True, "HAS_GLAST": True, "NATIVE": native, "BLOCK_N": 32, "BLOCK_T": 64})
        for native in (True, False)
    ] + [
        ("diag_scan", "diag_scan_fwd_kernel",
         {"v_ptr": P, "dA_ptr": P, "state_ptr": P, "xs_ptr": P, "last_ptr": P, "L": "i32", "N": "i32",
          "n_chunks": "i32", "dA_stride": "i32"},
         {"HAS_STATE": True, "NATIVE": native, "BLOCK_N": 32, "BLOCK_T": 64})
        for native in (True, False)
    ] + [
        ("diag_scan", "diag_scan_bwd_kernel",
         {"dA_ptr": P, "state_ptr": P, "xs_ptr": P, "gxs_ptr": P, "glast_ptr": P, "gv_ptr": P, "gdA_ptr": P,
          "gstate_ptr": P, "L": "i32", "N": "i32", "n_chunks": "i32", "dA_stride": "i32"},
         {"HAS_STATE": True, "HAS_GXS": True, "HAS_GLAST": True, "NEED_GV": True, "NEED_GDA": True,
          "NATIVE": native, "BLOCK_N": 32, "BLOCK_T": 64})
        for native in (True, False)
    ] + [
        ("ssm_step", "ssm_step_fwd_kernel",
         {"u_ptr": P, "state_ptr": P, "dA_ptr": P, "dB_ptr": P, "C_ptr": P, "D_ptr": P, "y_ptr": P,
          "new_ptr": P, "R": "i32", "H": "i32", "N": "i32"},
         {"HAS_D": True, "HAS_STATE": True, "BLOCK_R": 16, "BLOCK_N": 32}),
        ("ssm_step", "ssm_step_bwd_kernel",
         {"u_ptr": P, "state_ptr": P, "dA_ptr": P, "dB_ptr": P, "C_ptr": P, "D_ptr": P, "gy_ptr": P,
          "gnew_ptr": P, "gu_ptr": P, "gstate_ptr": P, "gdA_ptr": P, "gdB_ptr": P, "gC_ptr": P,
          "R": "i32", "H": "i32", "N": "i32"},
         {"HAS_D": True, "HAS_STATE": True, "HAS_GNEW": True, "BLOCK_R": 16, "BLOCK_N": 32}),
    ] + [
        # the epilogue writes the dtype of u: every one the contract allows
        ("fftconv", "epilogue_kernel",
         {"z_ptr": P, "x_ptr": f"*{io}", "d_ptr": "*fp32", "out_ptr": f"*{io}", "H": "i32", "Z_STRIDE": "i32",
          "N_VALID": "i32", "L_OUT": "i32"},
         {"HAS_D": True, "BLOCK_L": 512})
        for io in ((fp, "bf16", "fp16") if fp == "fp32" else (fp,))
    ]


def absent_specs(fp):
    """The launchers pass None for an absent input or unwanted output, with its HAS_* / NEED_* flag
    off: each kernel once with every optional pointer None (a constexpr None in the signature)."""
    variants = {
        ("vandermonde", "power_sums_kernel"): {"ds_ptr": None, "WITH_DERIV": False},
        ("cauchy", "cauchy_modes_kernel"): {"gv_ptr": None, "NEED_V": False},
        ("fftconv", "spectral_products_kernel"): {"u_ptr": None, "acc_ptr": None, "WITH_SUM": False},
        ("fftconv", "epilogue_kernel"): {"x_ptr": None, "d_ptr": None, "HAS_D": False},
        ("ssm_scan", "ssm_scan_fwd_kernel"): {"D_ptr": None, "state_ptr": None, "ckpt_ptr": None, "HAS_D": False,
                                              "HAS_STATE": False, "SAVE_CKPT": False},
        ("ssm_scan", "ssm_scan_bwd_kernel"): {"D_ptr": None, "glast_ptr": None, "HAS_D": False, "HAS_GLAST": False},
        ("diag_scan", "diag_scan_fwd_kernel"): {"state_ptr": None, "HAS_STATE": False},
        ("diag_scan", "diag_scan_bwd_kernel"): {"state_ptr": None, "gxs_ptr": None, "glast_ptr": None, "gv_ptr": None,
                                                "gdA_ptr": None, "HAS_STATE": False, "HAS_GXS": False,
                                                "HAS_GLAST": False, "NEED_GV": False, "NEED_GDA": False},
        ("ssm_step", "ssm_step_fwd_kernel"): {"state_ptr": None, "D_ptr": None, "HAS_STATE": False, "HAS_D": False},
        ("ssm_step", "ssm_step_bwd_kernel"): {"state_ptr": None, "D_ptr": None, "gnew_ptr": None, "gstate_ptr": None,
                                              "gdA_ptr": None, "HAS_STATE": False, "HAS_D": False, "HAS_GNEW": False},
    }
    out, done = [], set()
    for mod, name, sig, consts in specs(fp):
        change = variants.get((mod, name))
        if change is None or (mod, name) in done or (consts.get("NATIVE") is False):
            continue
        done.add((mod, name))
        out.append((mod, name, {k: v for k, v in sig.items() if k not in change},
                    {**consts, **change}))
    return out


def _compile(job):
    """Compile one (fp, spec index, target index); returns an error line or None."""
    import importlib
    fp, i, t = job
    mod, name, sig, consts = (specs(fp) + absent_specs(fp))[i]
    target = TARGETS[t]
    fn = getattr(importlib.import_module(f"dssm_kernels.triton.{mod}"), name)
    full_sig = dict(sig, **{k: "constexpr" for k in consts})
    try:
        k = triton.compile(ASTSource(fn=fn, signature=full_sig, constexprs=consts), target=target)
        assert k.asm.get("cubin"), "no cubin produced"
    except Exception as exc:  # report every kernel that fails, then fail once
        cause = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        return f"{mod}.{name} [{fp}, {consts}, sm_{target.arch}]: {type(cause).__name__}: {str(cause)[-800:]}"
    return None


def main(pattern=""):
    from concurrent.futures import ProcessPoolExecutor
    # float32 for every target; float64 (the oracle's precision, rarely run on GPUs) for the newest
    # the absent-pointer variants: float32 for the newest target
    newest = len(TARGETS) - 1
    jobs = [(fp, i, t) for fp in ("fp32", "fp64") for i, (mod, name, _, _) in enumerate(specs(fp) + absent_specs(fp))
            if pattern in f"{mod}.{name}" for t in range(len(TARGETS))
            if (fp == "fp32" or t == newest) and (i < len(specs(fp)) or (fp == "fp32" and t == newest))]
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        failures = [f for f in pool.map(_compile, jobs) if f]
    for f in failures:
        print("FAILED", f)
    print(f"compiled {len(jobs) - len(failures)}/{len(jobs)} kernel variants in {time.time() - t0:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
