"""How each layer's error reaches a network's output: the weights w_l of the composed bound sum_l w_l e_l.

For a stack of residual blocks (SequenceClassifier: x_(l+1) = x_l + M_l(G_l(LN_l(x_l))), M_l the output
map GELU -> Linear (or Linear -> GLU)), reducing layer l changes the block's output by at most
Lip(M_l) e_l ||z_l|| on the same input z_l = LN_l(x_l) (e_l: the l2 gain of G_l - G_l,r, i.e. its
H-infinity norm), and a change d in x_j reaches x_(j+1) amplified by at most 1 + Lip(M_j) ||G_j||_inf Lip(LN_j)
(seed 002's composition: per-layer errors times the Lipschitz constants of what follows). With mean
pooling and the decoder, the logits move by at most

    ||W_dec||_2 * sum_l  s_l Lip(M_l) e_l  prod_{j > l} (1 + Lip(M_j) ||G_j||_inf Lip(LN_j)),

s_l bounding ||z_l|| per time step (the mean over time divides the sequence's l2 norm by L and the
sqrt(L) of the time steps cancels it). The parts:
  s_l = sqrt(H) ||gamma_l||_inf + ||beta_l||: LayerNorm's output, whatever its input (per step);
  Lip(M_l) = 1.13 ||W_l||_2 (GELU's slope <= 1.13); for GLU, 1.13 (||W_a||_2 + ||W_b||_2 / 4), the GLU's
      Jacobian diag(sigmoid(b)) W_a + diag(a sigmoid'(b)) W_b at activations a of unit scale;
  Lip(LN_j) = ||gamma_j||_inf / sigma: taken at a residual stream of unit scale (sigma = 1).
The last two are estimates (a GLU and a LayerNorm have no global Lipschitz constant), so the composed
number is a bound under them; the allocation needs only the weights' ratios. Layers outside such a
stack get weight 1 (their errors add).
"""
from __future__ import annotations

import math

import torch
from torch import nn

GELU_LIP = 1.13       # max |GELU'(x)| = 1.1289 (at x ~ 0.75)


def _spectral(W: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(W.detach().double(), 2))


def block_constants(block) -> tuple[float, float, float]:
    """(s, Lip(M), Lip(LN)) of a ResidualBlock (module docstring)."""
    H = block.layer.d_model
    norm = block.norm
    if isinstance(norm, nn.LayerNorm) and norm.elementwise_affine:
        gamma = float(norm.weight.detach().abs().max())
        beta = float(norm.bias.detach().norm()) if norm.bias is not None else 0.0
    else:
        gamma, beta = 1.0, 0.0
    s = math.sqrt(H) * gamma + beta if block.prenorm else math.sqrt(H)
    out = block.out
    if isinstance(out, nn.Sequential):        # Linear(H, 2H) -> GLU
        W = out[0].weight
        lip = GELU_LIP * (_spectral(W[:H]) + _spectral(W[H:]) / 4)
    else:
        lip = GELU_LIP * _spectral(out.weight)
    return s, lip, gamma


def weights(model: nn.Module, names: list, gains: dict) -> tuple[dict, float]:
    """({layer name: w_l}, head factor ||W_dec||_2 (1 without a decoder)) of the composed bound (module
    docstring). gains: {name: ||G_l||_inf of the full layer}."""
    blocks = getattr(model, "blocks", None)
    by_name = {}
    if isinstance(blocks, nn.ModuleList):
        for i, b in enumerate(blocks):
            if hasattr(b, "layer") and hasattr(b, "out"):
                by_name[f"blocks.{i}.layer"] = (i, b)
    if not by_name:
        return {n: 1.0 for n in names}, 1.0
    consts = {i: block_constants(b) for i, b in by_name.values()}
    layer_of = {i: n for n, (i, _) in by_name.items()}
    w = {}
    for n in names:
        if n not in by_name:
            w[n] = 1.0
            continue
        i, _ = by_name[n]
        s, lip, _ = consts[i]
        amp = 1.0
        for j in sorted(consts):
            if j > i:
                _, lip_j, ln_j = consts[j]
                amp *= 1 + lip_j * float(gains.get(layer_of[j], 0.0)) * ln_j
        w[n] = s * lip * amp
    head = getattr(model, "decoder", None)
    return w, (_spectral(head.weight) if isinstance(head, nn.Linear) else 1.0)


__all__ = ["weights", "block_constants", "GELU_LIP"]
