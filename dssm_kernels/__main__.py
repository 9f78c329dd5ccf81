from dssm_kernels.cli import run

run()
