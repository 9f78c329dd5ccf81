"""Hankel-singular-value penalties for training compressible SSMs (Schwerdtner, Berman, Peherstorfer,
NeurIPS 2025): differentiable, batched over channels, in torch on any device.

    hankel_penalty(model, jitter=JITTER) -> scalar      sum over every SSM layer of layer_hsv_sum
    layer_hsv_sum(layer, jitter=JITTER) -> (H,) or (1,) one Hankel nuclear norm per system of the layer
    diagonal_hsv(p, b, c, horizon=None, jitter=JITTER) -> (..., 2N)     HSVs of diagonal systems, descending
    dense_hsv(A, b, c, horizon, jitter=JITTER) -> (..., n)              HSVs of dense ones (S4), descending

The penalty of a system is the sum of the Hankel singular values of the real system reduction sees
(the discrete standard realisation of system.py: poles dA, input dB, output C dA, one per channel of an
S4D / DSS / S4 layer, one MIMO system per S5 / LRU layer), i.e. the nuclear norm of its Hankel operator.
Balanced truncation to r states errs by at most 2 sum_{i>r} sigma_i, so pushing the sum down pushes
the tail down and makes the trained model truncatable (what the penalty is for).

How it is computed. The Gramians of a diagonal system have closed forms (gramians.py):
    P_ij = (g_i . conj g_j) / (1 - x_i conj x_j),   Q_ij = (h_i^H h_j) / (1 - conj x_i x_j)
over the conjugate-augmented poles x = [p, conj p], input rows g = [b; conj b] and output columns
h = [c, conj c], held in the real coordinates sqrt2 [Re s; Im s] where they are real (1 - x_i conj x_j
from the poles' logarithms, so nearly marginal pairs keep their digits; an unstable mode, possible only
in DSS's softmax variant, takes the layer's finite horizon l_max). A dense system (S4) has its
finite-horizon Gramians by doubling, P_2m = P_m + A^m P_m A^mH. Then, with Q + dQ I = Lq Lq^H
(Cholesky) and M = Lq^H P Lq, whose eigenvalues are sigma^2,

    sigma_i = sqrt(lambda_i(M) + f),      f = jitter trace(M) / n.

The shift dQ = jitter trace(Q) / n makes the Cholesky exist for Gramians that are numerically singular
(condition numbers of 1e12 and beyond are usual after training); f keeps the gradient of the square
root, 1 / (2 sigma), bounded where sigma -> 0 (the twin of a real pole has sigma = 0 exactly). Together
they move each sigma by at most sqrt(dQ ||P||) + sqrt(f) (Weyl on sigma^2 = eig(P^1/2 (Q + dQ) P^1/2);
|a - b| <= sqrt|a^2 - b^2| for a, b >= 0; sqrt(l + f) - sqrt(l) <= sqrt(f)): with jitter 1e-10 about
1e-5 sqrt(||P|| ||Q||) per value, a negligible bias on a penalty. (svdvals of Lq^H Lp, with a second
Cholesky, gives the same values at 1.6x the cost on a CPU.) Everything runs in float64 whatever the
model's dtype (a float32 Cholesky would need a jitter of ~1e-4 and bias every value by ~1e-2 sigma_1);
the result is cast to the model's real dtype. Cost: O(H n^3) per layer, n = d_state (the real state).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from dssm_kernels.nn import S4, S5
from dssm_kernels.nn._base import DiagonalConvLayer
from dssm_kernels.reduction.gramians import check_horizon

JITTER = 1e-10                    # relative diagonal shift of each Gramian before its Cholesky (module docstring)
DENSE_DEFAULT_STEPS = 1 << 16     # horizon of an S4 layer's Gramians when it has no l_max


def _check_jitter(who: str, jitter) -> float:
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
        raise TypeError(f"{who}: jitter must be a float, got {type(jitter).__name__}")
    if not 0 < jitter < 1:
        raise ValueError(f"{who}: jitter must be in (0, 1) (a relative diagonal shift), got {jitter}")
    return float(jitter)


def _factor(G: torch.Tensor, jitter: float) -> torch.Tensor:
    """A Cholesky factor of the Hermitian PSD (..., n, n) G + jitter trace(G)/n I (the shift detached:
    it is a numerical device, not part of the function being differentiated)."""
    n = G.shape[-1]
    shift = (jitter / n) * torch.diagonal(G, dim1=-2, dim2=-1).real.sum(-1).detach()
    shift = torch.clamp(shift, min=torch.finfo(torch.float64).tiny)
    eye = torch.eye(n, dtype=G.dtype, device=G.device)
    G = (G + G.mH) / 2 + shift[..., None, None] * eye
    return torch.linalg.cholesky(G)


def _weights(log_p: torch.Tensor, horizon) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_k (p_i conj p_j)^k, sum_k (p_i p_j)^k) over k < horizon (all k: None), (..., N, N), from the
    poles' logarithms (gramians.log_ratio's device: 1 - p_i conj p_j = -expm1(log p_i + conj log p_j) keeps
    its digits for nearly marginal pairs; the phase wrapped to (-pi, pi] so that expm1 sees the small
    argument it is accurate for)."""
    re = log_p.real[..., :, None] + log_p.real[..., None, :]
    out = []
    for im in (log_p.imag[..., :, None] - log_p.imag[..., None, :], log_p.imag[..., :, None] + log_p.imag[..., None, :]):
        lq = torch.complex(re, im - (2 * math.pi) * torch.round(im / (2 * math.pi)))
        out.append(-1 / torch.expm1(lq) if horizon is None else torch.expm1(horizon * lq) / torch.expm1(lq))
    return out[0], out[1]


def _outer(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sum_k u[..., i, k] v[..., j, k]: (..., n, n) from (..., n, m); a broadcast product when m = 1 (one
    input or output, a SISO channel), where a batched matmul of inner size 1 costs several times more."""
    return u * v.mT if u.shape[-1] == 1 else u @ v.mT


def _real_coordinates(X11: torch.Tensor, X12: torch.Tensor) -> torch.Tensor:
    """T X T^H (real, (..., 2N, 2N)) of the augmented X = [[X11, X12], [conj X12, conj X11]]."""
    plus, minus = X11 + X12, X11 - X12
    return torch.cat([torch.cat([plus.real, -minus.imag], -1), torch.cat([plus.imag, minus.real], -1)], -2)


def _hsv_from_gramians(P: torch.Tensor, Q: torch.Tensor, jitter: float) -> torch.Tensor:
    """sigma_i = sqrt(eig(Lq^H P Lq) + f), descending, with Lq = _factor(Q) and f = jitter trace(M) / n
    (module docstring: the shift bounds the gradient where sigma -> 0 and moves each value by <= sqrt(f))."""
    Lq = _factor(Q, jitter)
    M = Lq.mH @ P @ Lq
    M = (M + M.mH) / 2
    f = (jitter / M.shape[-1]) * torch.diagonal(M, dim1=-2, dim2=-1).real.sum(-1, keepdim=True).detach()
    return torch.sqrt(torch.linalg.eigvalsh(M).clamp(min=0) + f).flip(-1)


def diagonal_hsv(p: torch.Tensor, b: torch.Tensor, c: torch.Tensor, horizon=None, jitter: float = JITTER) -> torch.Tensor:
    """Hankel singular values (..., 2N), descending, float64, differentiable, of the discrete systems
    s_{t+1} = diag(p) s_t + b u_t,  y_t = 2 Re(c s_t) (their conjugate-augmented real form).

    p: complex (..., N) poles;  b: complex (..., N, m) (m inputs);  c: complex (..., q, N) (q outputs);
    a SISO channel has m = q = 1. horizon: None (infinite; every |p| < 1) or an int L (the first L
    steps). jitter: see the module docstring (each value is within sqrt(dP ||Q||) + sqrt(dQ ||P||) of the
    exact one)."""
    who = "diagonal_hsv"
    jitter = _check_jitter(who, jitter)
    horizon = check_horizon(who, True, horizon)
    for name, t, dims in (("p", p, 1), ("b", b, 2), ("c", c, 2)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{who}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < dims:
            raise ValueError(f"{who}: {name} must have at least {dims} dimension(s), got shape {tuple(t.shape)}")
    N = p.shape[-1]
    if b.shape[-2] != N or c.shape[-1] != N:
        raise ValueError(f"{who}: p (..., N), b (..., N, m), c (..., q, N) must share N; got {tuple(p.shape)}, "
                         f"{tuple(b.shape)}, {tuple(c.shape)}")
    p, b, c = (t.to(torch.complex128) for t in (p, b, c))
    if horizon is None and not bool((p.abs() < 1).all()):
        raise ValueError(f"{who}: a pole with |p| >= 1 has no infinite-horizon Gramian (max |p| = "
                         f"{p.abs().max().item():.6g}); give a finite horizon")
    # the augmented Gramians [[X11, X12], [conj X12, conj X11]] from their blocks, then in the real
    # coordinates sqrt2 [Re s; Im s] (the unitary T = [[I, I], [-iI, iI]] / sqrt2), where they are real:
    # T X T^H = [[Re(X11 + X12), Im(X12 - X11)], [Im(X11 + X12), Re(X11 - X12)]]. Real Cholesky and SVD
    # cost a third of complex ones of the same size. The weights of Q's blocks are the conjugates of P's.
    W11, W12 = _weights(torch.log(p), horizon)
    P = _real_coordinates(W11 * _outer(b, b.conj()), W12 * _outer(b, b))
    Q = _real_coordinates(W11.conj() * _outer(c.mT.conj(), c.mT), W12.conj() * _outer(c.mT.conj(), c.mT.conj()))
    return _hsv_from_gramians(P, Q, jitter)


def _dense_gramian(A: torch.Tensor, G: torch.Tensor, steps: int) -> torch.Tensor:
    """sum_{k<steps} A^k G G^H A^kH by doubling over the bits of `steps`: (P_m, A^m) -> (P_2m, A^2m)
    -> (P_2m+1, A^2m+1); O(n^3 log steps)."""
    GG = G @ G.mH
    P, Am = GG, A
    for bit in bin(steps)[3:]:
        P = P + Am @ P @ Am.mH
        Am = Am @ Am
        if bit == "1":
            P = GG + A @ P @ A.mH
            Am = A @ Am
    return P


def dense_hsv(A: torch.Tensor, b: torch.Tensor, c: torch.Tensor, horizon: int, jitter: float = JITTER) -> torch.Tensor:
    """Hankel singular values (..., n), descending, float64, differentiable, of the discrete systems
    s_{t+1} = A s_t + b u_t, y_t = c s_t over the first `horizon` steps. A (..., n, n), b (..., n, m),
    c (..., q, n), complex or real (a conjugate-augmented complex realisation has the real one's HSVs)."""
    who = "dense_hsv"
    jitter = _check_jitter(who, jitter)
    if horizon is None:
        raise ValueError(f"{who}: horizon must be an int number of steps (dense Gramians are finite-horizon sums)")
    horizon = check_horizon(who, True, horizon)
    A, b, c = (t.to(torch.complex128) for t in (A, b, c))
    return _hsv_from_gramians(_dense_gramian(A, b, horizon), _dense_gramian(A.mH, c.mH, horizon), jitter)


# ------------------------------------------------------------------------------------------ layers
def _lru_class():
    from dssm_kernels import nn as dnn
    return getattr(dnn, "LRU", None)


def _siso_blocks(layer):
    """[(poles (H_g, n_g), b, c)] of an S4D / DSS layer's standard forms: one block, or one per group of
    channels with the same number of modes (a per-channel layout)."""
    dA, dB, C, _ = layer.discrete()
    c = C * dA
    layout = getattr(layer, "layout", None)
    if layout is None:
        return [(dA, dB, c)]
    return [(p, b, cc) for (_, p), (_, b), (_, cc) in zip(layout.blocks(dA), layout.blocks(dB), layout.blocks(c))]


def layer_hsv_sum(layer: nn.Module, jitter: float = JITTER) -> torch.Tensor:
    """The sum of Hankel singular values of each system of `layer`, float64, differentiable:
    (H,) for S4D / DSS / S4 (one SISO system per channel, in channel order), (1,) for S5 / LRU (one MIMO
    system). The systems are those reduction sees (module docstring)."""
    who = "layer_hsv_sum"
    jitter = _check_jitter(who, jitter)
    lru = _lru_class()
    if isinstance(layer, S4):
        _, dA, dB = layer.dense()
        Cf = torch.cat([layer.output_vector(), layer.output_vector().conj()], -1)     # y = C_f s_f (conj pairs)
        c = (Cf.unsqueeze(-2) @ dA)                                                 # (H, 1, n): reads after the update
        horizon = layer.l_max if layer.l_max is not None else DENSE_DEFAULT_STEPS
        return dense_hsv(dA, dB.unsqueeze(-1), c, horizon, jitter).sum(-1)
    if isinstance(layer, S5) or (lru is not None and isinstance(layer, lru)):
        dA, dB, C = layer.discrete()
        if lru is not None and isinstance(layer, lru):
            C = C / 2                                   # the LRU reads Re(C x), the others 2 Re(C x)
        return diagonal_hsv(dA, dB, C * dA, None, jitter).sum(-1, keepdim=True)
    if isinstance(layer, DiagonalConvLayer):
        out = []
        for p, b, c in _siso_blocks(layer):
            # a growing mode (DSS softmax) has no infinite-horizon Gramian: its layer's window l_max instead
            stable = bool((p.abs() < 1).all())
            horizon = None if stable else getattr(layer, "l_max", None)
            if not stable and horizon is None:
                raise ValueError(f"{who}: {type(layer).__name__} has modes with |dA| >= 1 and no l_max to bound "
                                 "the horizon of its Gramians")
            out.append(diagonal_hsv(p, b.unsqueeze(-1), c.unsqueeze(-2), horizon, jitter).sum(-1))
        layout = getattr(layer, "layout", None)
        return out[0] if layout is None else layout.merge(out, 0)
    raise TypeError(f"{who}: layer must be one of the library's SSM layers (S4D, DSS, S4, S5, LRU), got "
                    f"{type(layer).__name__}")


def ssm_layers(model: nn.Module) -> list[nn.Module]:
    """The SSM layers of `model` (itself if it is one), in module order."""
    kinds = tuple(k for k in (S4, S5, DiagonalConvLayer, _lru_class()) if k is not None)
    return [m for m in model.modules() if isinstance(m, kinds)]


def hankel_penalty(model: nn.Module, jitter: float = JITTER) -> torch.Tensor:
    """sum over the SSM layers of `model` and over their systems of the sum of Hankel singular values
    (layer_hsv_sum), a scalar in the model's real dtype on its device, differentiable in the parameters.
    What `dssm train --hsv-reg LAMBDA` adds to the loss, times LAMBDA. TypeError for a model with no SSM
    layer."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"hankel_penalty: model must be an nn.Module, got {type(model).__name__}")
    layers = ssm_layers(model)
    if not layers:
        raise TypeError(f"hankel_penalty: {type(model).__name__} has no SSM layer (S4D, DSS, S4, S5, LRU)")
    total = sum(layer_hsv_sum(layer, jitter).sum() for layer in layers)
    return total.to(next(model.parameters()).dtype)
