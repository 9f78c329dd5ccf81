"""The Hankel-singular-value penalty (reduction.penalty) against independent references: dense Lyapunov
solutions from scipy (infinite horizon) or explicit finite sums (S4's finite horizon) with eig(P Q);
its gradient against finite differences in float64; float32 models, devices, the error messages, and
that training with it lowers the HSV sum (what it is for)."""
import copy

import numpy as np
import pytest
import scipy.linalg as sl
import torch

from dssm_kernels import nn as dnn
from dssm_kernels.reduction import penalty as P
from testing import EPS64, SAFETY, assert_clear_error

KINDS = ["s4d", "dss", "s5", "s4"] + (["lru"] if hasattr(dnn, "LRU") else [])
S4_STEPS = 24          # the S4 layers' l_max: their Gramians are the first 24 steps'


def make(kind, d_model=3, d_state=6, dtype=torch.float64, seed=0):
    kw = {"l_max": S4_STEPS} if kind == "s4" else {}
    return dnn.make_layer(kind, d_model, d_state, dtype=dtype, seed=seed, **kw)


def augmented_systems(layer):
    """[(A, B, C, horizon)]: each system of the layer as a dense complex realisation of the real system
    (conjugate-augmented), in numpy float64, read from the layer's discrete() / dense() directly."""
    with torch.no_grad():
        if isinstance(layer, dnn.S4):
            _, dA, dB = layer.dense()
            C = layer.output_vector()
            Cf = torch.cat([C, C.conj()], -1)
            return [(dA[h].numpy(), dB[h, :, None].numpy(), (Cf[h] @ dA[h])[None].numpy(), S4_STEPS)
                    for h in range(dA.shape[0])]
        if isinstance(layer, dnn.DSS) or isinstance(layer, dnn.S4D):
            dA, dB, C, _ = (t.to(torch.complex128).numpy() for t in layer.discrete())
            systems = [(dA[h], dB[h, :, None], (C[h] * dA[h])[None]) for h in range(dA.shape[0])]
        else:
            dA, dB, C = (t.to(torch.complex128).numpy() for t in layer.discrete())
            C = C / 2 if type(layer).__name__ == "LRU" else C
            systems = [(dA, dB, C * dA)]
    out = []
    for p, b, c in systems:
        A = np.diag(np.concatenate([p, p.conj()]))
        out.append((A, np.concatenate([b, b.conj()], 0), np.concatenate([c, c.conj()], 1), None))
    return out


def reference(A, B, C, horizon):
    """(HSVs descending, ||P||, ||Q||, error bound of the HSVs from eig(P Q) in float64)."""
    if horizon is None:
        Pg = sl.solve_discrete_lyapunov(A, B @ B.conj().T)
        Qg = sl.solve_discrete_lyapunov(A.conj().T, C.conj().T @ C)
    else:
        Pg = np.zeros_like(A)
        Qg = np.zeros_like(A)
        Ak = np.eye(A.shape[0], dtype=A.dtype)
        for _ in range(horizon):
            Pg += Ak @ B @ B.conj().T @ Ak.conj().T
            Qg += Ak.conj().T @ C.conj().T @ C @ Ak
            Ak = A @ Ak
    n = A.shape[0]
    lam = np.linalg.eigvals(Pg @ Qg)
    nP, nQ = np.linalg.norm(Pg, 2), np.linalg.norm(Qg, 2)
    # eig of the n x n product: the eigenvalues move by about n eps ||P|| ||Q|| (for the modest
    # eigenvector conditioning of these small random systems; SAFETY covers it), and the Lyapunov solve
    # adds its own n eps relative; sigma = sqrt(lambda) then moves by at most the square root of that
    ref_err = np.sqrt(SAFETY * 2 * n * EPS64 * nP * nQ * 4)
    return np.sort(np.sqrt(np.abs(lam)))[::-1], nP, nQ, ref_err


def jitter_bound(n, nP, nQ, sigma, jitter=P.JITTER):
    """penalty's documented shift of each value: sqrt(dQ ||P||) + sqrt(f), dQ = jitter trace(Q) / n <=
    jitter ||Q||, f = jitter trace(M) / n with trace(M) = sum sigma^2 (+ n dQ ||P||)."""
    dQ = jitter * nQ
    return np.sqrt(dQ * nP) + np.sqrt(jitter * (np.sum(sigma ** 2) + n * dQ * nP) / n)


@pytest.mark.parametrize("kind", KINDS)
def test_hsv_sum_matches_dense_lyapunov_reference(kind):
    """layer_hsv_sum = sum of sqrt(eig(P Q)) of scipy's Gramians of each system, to the jitter's documented
    bias plus the reference's own rounding, summed over the 2N values."""
    layer = make(kind)
    got = P.layer_hsv_sum(layer).detach().numpy()
    systems = augmented_systems(layer)
    assert got.shape == (len(systems),)
    for value, (A, B, C, horizon) in zip(got, systems):
        sigma, nP, nQ, ref_err = reference(A, B, C, horizon)
        n = A.shape[0]
        tol = n * (jitter_bound(n, nP, nQ, sigma) + ref_err)
        assert abs(value - sigma.sum()) <= tol, (kind, value, sigma.sum(), tol)
        assert tol <= 1e-3 * sigma.sum()          # the check is not vacuous


def test_diagonal_hsv_values_and_order():
    """diagonal_hsv's individual values, descending, against the reference for a MIMO system (2 inputs,
    3 outputs), and a finite horizon against the explicit sum."""
    g = torch.Generator().manual_seed(1)
    N = 4
    p = 0.9 * torch.exp(torch.complex(torch.zeros(N, dtype=torch.float64), torch.rand(N, generator=g, dtype=torch.float64) * 3))
    p = p * (0.5 + 0.5 * torch.rand(N, generator=g, dtype=torch.float64))
    b = torch.randn(N, 2, generator=g, dtype=torch.complex128)
    c = torch.randn(3, N, generator=g, dtype=torch.complex128)
    for horizon in (None, 9):
        got = P.diagonal_hsv(p, b, c, horizon).numpy()
        pn, bn, cn = p.numpy(), b.numpy(), c.numpy()
        A = np.diag(np.concatenate([pn, pn.conj()]))
        sigma, nP, nQ, ref_err = reference(A, np.concatenate([bn, bn.conj()]), np.concatenate([cn, cn.conj()], 1),
                                           horizon)
        assert np.all(np.diff(got) <= 0)
        assert np.abs(got - sigma).max() <= jitter_bound(2 * N, nP, nQ, sigma) + ref_err


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_matches_finite_differences(kind):
    """torch.autograd.gradcheck of the penalty in every parameter of a small float64 layer (central
    differences, eps 1e-6: their truncation error ~eps^2 f''' and rounding ~eps64 f / eps ~1e-10 relative
    are far inside gradcheck's atol 1e-5 / rtol 1e-3)."""
    layer = make(kind, d_model=2, d_state=4)
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in layer.parameters())

    def f(*ps):
        return P.layer_hsv_sum(_with_params(layer, names, ps)).sum()

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-5, rtol=1e-3)


def _with_params(layer, names, ps):
    """A shallow copy of the layer whose parameters are the tensors ps (so that gradcheck's inputs flow)."""
    new = copy.copy(layer)
    new._parameters = dict(layer._parameters)
    for name, p in zip(names, ps):
        new._parameters[name] = p
    return new


def test_float32_model_gives_float32_penalty_of_the_same_systems():
    """A float32 layer's penalty is float32 and equals the float64 penalty of the same (rounded) parameters
    to what discretising in complex64 costs: a relative ~4 eps32 on each pole, amplified by the Gramians'
    1 / (1 - |p|^2) (computed here), on each of the 2N values."""
    layer32 = make("s4d", dtype=torch.float32)
    layer64 = make("s4d", dtype=torch.float64)
    with torch.no_grad():
        for p64, p32 in zip(layer64.parameters(), layer32.parameters()):
            p64.copy_(p32.double())
    got = P.hankel_penalty(layer32)
    want = P.hankel_penalty(layer64)
    assert got.dtype == torch.float32 and want.dtype == torch.float64
    dA = layer64.discrete()[0].detach()
    amp = float((1 / (1 - dA.abs() ** 2)).max())
    eps32 = float(np.finfo(np.float32).eps)
    assert abs(got.item() - want.item()) <= SAFETY * 4 * eps32 * amp * dA.shape[-1] * want.item()


def test_penalty_of_a_classifier_sums_its_layers():
    model = dnn.SequenceClassifier(3, d_input=1, layer="s4d", d_model=4, d_state=6, n_layers=2, seed=0,
                                   dtype=torch.float64)
    layers = P.ssm_layers(model)
    assert len(layers) == 2
    total = sum(P.layer_hsv_sum(m).sum() for m in layers)
    assert P.hankel_penalty(model).item() == pytest.approx(total.item(), rel=1e-12)


def test_gradient_steps_on_the_penalty_lower_it():
    """Twenty SGD steps on the penalty alone lower it (a sum of HSVs is driven towards 0 by its gradient);
    the check is against the starting value, far from rounding."""
    layer = make("s4d", d_model=4, d_state=8)
    opt = torch.optim.SGD(layer.parameters(), lr=1e-2)
    start = P.hankel_penalty(layer).item()
    for _ in range(20):
        opt.zero_grad()
        P.hankel_penalty(layer).backward()
        opt.step()
    assert P.hankel_penalty(layer).item() < 0.9 * start


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_matches_cpu(kind):
    """On a GPU: the same value as on the CPU (both float64 from the same parameters; the eigensolvers
    differ, so to the reference tolerance of the first test: 1e-9 relative covers n eps ||P|| ||Q||)."""
    layer = make(kind, dtype=torch.float32)
    cpu = P.hankel_penalty(layer).item()
    gpu = P.hankel_penalty(layer.cuda())
    gpu.backward()
    assert gpu.device.type == "cuda"
    assert abs(gpu.item() - cpu) <= 1e-6 * cpu


def test_errors_name_the_argument():
    with pytest.raises(TypeError) as e:
        P.hankel_penalty(torch.nn.Linear(2, 2))
    assert_clear_error(e.value, ["SSM layer"])
    with pytest.raises(TypeError) as e:
        P.hankel_penalty("model")
    assert_clear_error(e.value, ["model", "str"])
    with pytest.raises(ValueError) as e:
        P.layer_hsv_sum(make("s4d"), jitter=0.0)
    assert_clear_error(e.value, ["jitter"])
    with pytest.raises(TypeError) as e:
        P.layer_hsv_sum(torch.nn.Linear(2, 2))
    assert_clear_error(e.value, ["layer", "Linear"])
    unstable = torch.tensor([1.01 + 0j], dtype=torch.complex128)
    one = torch.ones(1, 1, dtype=torch.complex128)
    with pytest.raises(ValueError) as e:
        P.diagonal_hsv(unstable, one, one)
    assert_clear_error(e.value, ["horizon", "|p|"])
    with pytest.raises(ValueError) as e:
        P.diagonal_hsv(unstable, torch.ones(2, 1, dtype=torch.complex128), one)
    assert_clear_error(e.value, ["N"])
