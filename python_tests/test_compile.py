"""torch.compile sees the C++ kernels as ops: fullgraph=True fails on any graph break.

The "aot_eager" compiler backend traces forward and backward through the fake kernels and runs
the real ones, so this checks the op registration and the fakes without a C++ code-generation step.
"""
import pytest
import torch

import dssm_kernels as dk
from dssm_kernels._backend import cpp_unavailable_reason

pytestmark = pytest.mark.skipif(cpp_unavailable_reason() is not None, reason=str(cpp_unavailable_reason()))


def _layer(u, log_dt, A, C, D):
    """A small S4D-style layer using every op with C++ kernels, end to end."""
    dtA = torch.exp(log_dt).unsqueeze(-1) * A
    dA = torch.exp(dtA)
    dB = (dA - 1) / A
    K = dk.vandermonde(C * dB, dtA, u.shape[-1], backend="cpp")
    y_scan, last = dk.ssm_scan(u, dA, dB, C, D, backend="cpp")
    y_step, _ = dk.ssm_step(u[..., -1], last, dA, dB, C, D, backend="cpp")
    s = dk.vandermonde_transpose(u, dB, dtA, backend="cpp")
    z = torch.exp(2j * torch.pi * torch.arange(5) / 9).to(A.dtype)
    k = dk.cauchy(C, z, dtA, backend="cpp")
    return (K.sum() + y_scan.sum() + y_step.sum() + s.abs().sum() + k.abs().sum())


def test_compiled_ops_match_eager_without_graph_breaks():
    torch.manual_seed(0)
    H, N, L = 3, 4, 16
    A = torch.complex(-0.5 * torch.ones(H, N), torch.pi * torch.arange(N).float().expand(H, N))
    params = [torch.log(torch.full((H,), 0.05)), A, torch.randn(H, N, dtype=torch.complex64), torch.randn(H)]
    u = torch.randn(2, H, L)

    def grads(fn):
        leaves = [p.clone().requires_grad_() for p in params]
        out = fn(u, *leaves)
        return [out, *torch.autograd.grad(out, leaves)]

    torch._dynamo.reset()
    eager = grads(_layer)
    compiled = grads(torch.compile(_layer, fullgraph=True, backend="aot_eager"))
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, rtol=1e-5, atol=1e-5)
