"""The C++ kernels build for any x86-64 CPU: an AVX2-only build (-march=x86-64-v3) and an Intel AVX-512
build (-march=cooperlake, where GCC would prefer 256-bit vectors) pass the C++ kernel tests where this
CPU can run them, and the cooperlake kernels use 512-bit FMAs without -mprefer-vector-width=512
(scripts/cpp_tests.sh arch; kernels/common.h asks for the width itself)."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("objdump") is None,
                    reason="needs cmake and objdump")
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86-64 builds")
def test_avx2_and_cooperlake_builds():
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "cpp_tests.sh"), "arch"], cwd=ROOT,
                          capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    # AVX2 runs on every x86-64-v3 machine (this suite's CI kind among them); cooperlake where AVX-512 BF16 is
    assert out.count("100% tests passed") >= 1, out[-6000:]
    for t in ("test_ssm", "test_vandermonde", "test_decode"):
        line = next(ln for ln in out.splitlines() if ln.startswith(f"{t} (-march=cooperlake)"))
        assert int(line.split(": ")[1].split()[0]) > 0, line
