"""Compile every Triton kernel ahead of time for NVIDIA targets, with no GPU needed.

The interpreter accepts code that the compiler rejects (non-constexpr globals, dtype mismatches in
loops, unsupported ops), so CI compiles each kernel for sm_80 and sm_90 in float32 and float64 to
PTX and cubin. Run as a script in a process without TRITON_INTERPRET (test_triton_compile.py does):
    python python_tests/aot_compile.py [name-filter]
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
        # the epilogue writes the dtype of u: every one the contract allows
        ("fftconv", "epilogue_kernel",
         {"z_ptr": P, "x_ptr": f"*{io}", "d_ptr": "*fp32", "out_ptr": f"*{io}", "H": "i32", "Z_STRIDE": "i32",
          "N_VALID": "i32", "L_OUT": "i32"},
         {"HAS_D": True, "BLOCK_L": 512})
        for io in ((fp, "bf16", "fp16") if fp == "fp32" else (fp,))
    ]


def main(pattern=""):
    import importlib
    failures = []
    n = 0
    t0 = time.time()
    for fp in ("fp32", "fp64"):
        for mod, name, sig, consts in specs(fp):
            if pattern not in f"{mod}.{name}":
                continue
            fn = getattr(importlib.import_module(f"dssm_kernels.triton.{mod}"), name)
            full_sig = dict(sig, **{k: "constexpr" for k in consts})
            for target in TARGETS:
                n += 1
                try:
                    k = triton.compile(ASTSource(fn=fn, signature=full_sig, constexprs=consts), target=target)
                    assert k.asm.get("cubin"), "no cubin produced"
                except Exception as exc:  # report every kernel that fails, then fail once
                    failures.append(f"{mod}.{name} [{fp}, {sig}, sm_{target.arch}]: {type(exc).__name__}: {exc}")
    for f in failures:
        print("FAILED", f)
    print(f"compiled {n - len(failures)}/{n} kernel variants in {time.time() - t0:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
