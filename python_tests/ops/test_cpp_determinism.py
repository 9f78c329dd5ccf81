"""The C++ backward kernels are bitwise reproducible, run to run and across thread counts: each work
item (a row, a row group, a tile of modes) is summed by one thread in a fixed order, whatever the
team size. Same computation, same code path: bitwise equality is the right check here. Sizes put
every kernel on its parallel path (above its kMinParallelWork / kStepParallelWork thresholds, and
more work items than threads)."""
import pytest
import torch

from testing import crandn, gen, stable_modes
from dssm_kernels._backend import cpp_unavailable_reason
from dssm_kernels.ops import _primitives

pytestmark = pytest.mark.skipif(cpp_unavailable_reason() is not None, reason=str(cpp_unavailable_reason()))


def _backward_calls():
    """name -> a call of one C++ backward primitive on fixed complex64/float32 inputs."""
    g = gen(5)
    c64 = torch.complex64
    R, N, L = 5, 33, 1000
    B, H = 4, 10  # ssm_scan: B * H = 40 rows, three 16-row groups
    x = stable_modes(R, N, g=g).to(c64)
    w = torch.randn(R, L, generator=g)
    z = crandn(257, g=g).to(c64)
    cg = crandn(R, 257, g=g).to(c64)
    v, wm = crandn(R, N, g=g).to(c64), stable_modes(R, N, g=g, decay=(0.1, 1.0)).to(c64)
    dA, dB, C = torch.exp(stable_modes(H, N, g=g)).to(c64), crandn(H, N, g=g).to(c64), crandn(H, N, g=g).to(c64)
    u, D = torch.randn(B, H, L, generator=g), torch.randn(H, generator=g)
    state = crandn(B, H, N, g=g).to(c64)
    prims = _primitives.REGISTRY

    def ops(name, *args):
        return prims[name](*args, backend="cpp")
    _, _, ckpt = ops("ssm_scan_fwd", u, dA, dB, C, D, state, True, 256)
    gy, g_last = torch.randn(B, H, L, generator=g), crandn(B, H, N, g=g).to(c64)
    vs, dA1 = crandn(B, 300, 100, g=g).to(c64), torch.exp(stable_modes(100, g=g)).to(c64)
    xs, _ = ops("diag_scan_fwd", vs, dA1, None)
    g_xs = crandn(B, 300, 100, g=g).to(c64)
    su, sgy = torch.randn(13, H, generator=g), torch.randn(13, H, generator=g)
    sstate = crandn(13, H, N, g=g).to(c64)
    return {
        "power_sums (vandermonde backward)": lambda: ops("power_sums", w, x, False, True),
        "vandermonde_rows (vandermonde_transpose backward)": lambda: ops("vandermonde_rows", v, x, L, 1.0, True),
        "cauchy_modes (cauchy backward)": lambda: ops("cauchy_modes", cg, v, z, wm, True, True),
        "cauchy_rows squared (cauchy backward, z)": lambda: ops("cauchy_rows", v, z, wm, True),
        "ssm_scan_bwd": lambda: ops("ssm_scan_bwd", u, dA, dB, C, D, ckpt, 256, gy, g_last),
        "ssm_step_bwd": lambda: ops("ssm_step_bwd", su, sstate, dA, dB, C, D, sgy, sstate),
        "diag_scan_bwd": lambda: ops("diag_scan_bwd", dA1, None, xs, g_xs, None, True, True),
    }


@pytest.mark.parametrize("name", list(_backward_calls()))
def test_cpp_backward_is_bitwise_reproducible(name):
    call = _backward_calls()[name]
    threads = torch.get_num_threads()
    try:
        runs = []
        for n in (1, 1, 2, 3):
            torch.set_num_threads(n)
            out = call()
            runs.append(out if isinstance(out, (tuple, list)) else (out,))
    finally:
        torch.set_num_threads(threads)
    first = runs[0]
    assert all(t.numel() > 0 and not t.isnan().any() for t in first)
    for n, run in zip((1, 2, 3), runs[1:]):
        for a, b in zip(run, first):
            assert torch.equal(a, b), f"{name}: {n} thread(s) differ from the first run"
