"""@triton.jit kernels, one file per op. Imported lazily by dssm_kernels.ops (see dssm_kernels._backend)."""
