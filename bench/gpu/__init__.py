"""The GPU check (issue 17): one command, `bash scripts/gpu_check.sh`, that validates and times the
compiled Triton kernels on the first NVIDIA GPU the project gets, and a dry mode of the same code
that CI runs on the CPU. See bench/gpu/README.md.

Modules: check (the orchestrator: sections in subprocesses, budgets, the merged JSON), harness (what
a section process shares: device, timers, the recorder), hardware (the device and its limits: the
"env" section), suite (the project's test suite with compiled Triton), parity (production-size
parity), bench_ops, bench_models, summary (checks, verdicts, the table, the schema).

Only the package's public API is used (`import dssm_kernels as dk`, dssm_kernels.nn,
dssm_kernels.reduction.reduce_model), so refactors behind it do not break the check.
"""
