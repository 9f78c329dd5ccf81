"""torch.compile sees every backend's kernels as ops: fullgraph=True fails on any graph break.

The "aot_eager" compiler backend traces forward and backward through the primitives' fake kernels
and runs the real ones, so this checks the op registration and the fakes without a code-generation
step.
"""
import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

import dssm_kernels as dk
from testing import OPS, backends_under_test, gen, tiny_call
from dssm_kernels._backend import cpp_unavailable_reason

needs_cpp = pytest.mark.skipif(cpp_unavailable_reason() is not None, reason=str(cpp_unavailable_reason()))


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


@needs_cpp
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


# The primitives each op's forward and backward graphs must hold on a kernel backend.
PRIMITIVES = {
    "vandermonde": ({"vandermonde_rows"}, {"power_sums"}),
    "vandermonde_transpose": ({"power_sums"}, {"vandermonde_rows"}),
    "cauchy": ({"cauchy_rows"}, {"cauchy_modes", "cauchy_rows"}),
    "fftconv": ({"fftconv_products", "fftconv_epilogue"}, {"fftconv_products", "fftconv_epilogue"}),
    "ssm_scan": ({"ssm_scan_fwd"}, {"ssm_scan_bwd"}),
    "ssm_step": ({"ssm_step_fwd"}, {"ssm_step_bwd"}),
    "diag_scan": ({"diag_scan_fwd"}, {"diag_scan_bwd"}),
}


def _dssm_ops(gm) -> set:
    """The dssm:: primitives a traced graph calls."""
    return {n.target.name().split("::")[1].split(".")[0] for n in gm.graph.nodes
            if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload)
            and n.target.namespace == "dssm"}


@pytest.mark.parametrize("backend", ["reference", *backends_under_test()])
@pytest.mark.parametrize("op", OPS)
def test_every_op_compiles_fullgraph(op, backend):
    """torch.compile(fullgraph=True) traces every op on every backend, forward and backward (aot_eager:
    the graphs run eagerly, through the fakes for tracing and the real kernels for values). On a
    kernel backend the graphs hold the op's primitives as single ops (the Triton launchers and C++
    calls stay opaque, under the interpreter too); the reference traces to plain torch ops. Values and
    gradients match eager to float64 rounding (the same kernels on the same inputs: 1e-12)."""
    if backend == "cpp" and op == "fftconv":
        pytest.skip("fftconv has no C++ kernels")
    call, args = tiny_call(op)
    weights = None

    def loss(*leaves):
        out = call(backend, *leaves)
        out = out if isinstance(out, tuple) else (out,)
        return sum(((o * w.conj()).real if o.is_complex() else o * w).sum() for o, w in zip(out, weights))

    out = call("reference", *args)
    g = gen(5)
    weights = [torch.randn(o.shape, dtype=o.dtype, generator=g) for o in (out if isinstance(out, tuple) else (out,))]
    graphs = {"forward": [], "backward": []}

    def recorder(kind):
        def compiler(gm, example_inputs):
            graphs[kind].append(gm)
            return make_boxed_func(gm.forward)
        return compiler

    def run(fn):
        leaves = [a.clone().requires_grad_() for a in args]
        value = fn(*leaves)
        return [value, *torch.autograd.grad(value, leaves)]

    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True,
                             backend=aot_autograd(fw_compiler=recorder("forward"), bw_compiler=recorder("backward")))
    for got, want in zip(run(compiled), run(loss)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    fwd = set().union(*map(_dssm_ops, graphs["forward"]))
    bwd = set().union(*map(_dssm_ops, graphs["backward"]))
    if backend == "reference":
        assert not fwd and not bwd
    else:
        assert (fwd, bwd) == PRIMITIVES[op], (fwd, bwd)
