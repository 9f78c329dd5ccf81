"""A trained (or reduced) model as a deployment plan: its network in the layouts the streaming decoder
and the ONNX graphs compute with, discretised once, in real arithmetic.

A plan is what every deployment path reads (the fused C++ step of decoder.py, the plain-torch step and
sequence modules of realnet.py that ONNX exports): the encoder, the blocks (norm, SSM, output map) and
the head, each SSM as its discrete recurrence with complex numbers split into (re, im) planes (ONNX
has no complex type). The discretisation runs in float64 on a float64 copy of each layer and is
rounded to the model's dtype once.

SSM kinds and their layouts (H channels, N complex modes, r the DPLR rank; "planes" stack re, im first):
    diag   S4D, DSS: x_t = dA x_{t-1} + dB u_t, y_t = 2 Re(C x_t) + D u_t per channel, run in the scaled
           state s = x / dB:  s_t = dA s_{t-1} + u_t,  y_t = Re(cb s_t) + D u_t,  cb = 2 C dB.
           a = dA, cb: (2, N, H) (mode-major: the loops run over channels);  D (H,);
           state (B, 2, N, H). A layer whose channels keep different numbers of modes (a model-wide
           budget's flat layout) is padded to N = the largest count with inert modes (cb = 0, and dA = 1/2
           so that their state stays bounded and dA^l has a logarithm): exact, but it costs H * N modes,
           not the layer's M.
    dplr   S4: the bilinear step by Woodbury (nn/s4.py): a = 1 + h lam, b = 2 h B, c = C, dinv =
           1 / (1 - h lam): (2, H, N);  P, hP = h P, G = conj(P) dinv, E = h dinv P: (2, r, H, N);
           Minv (H, r, r);  D (H,);  h = dt / 2;  state (B, 2, H, N).
    mimo   S5, LRU: x_t = dA x_{t-1} + dB u_t, y_t = g Re(C x_t) + D u_t with one state of N modes (g = 2
           for S5, whose conjugate modes are implicit; g = 1 for LRU, which reads Re(C x)):
           a = dA (2, N);  bm (H, 2N) = [Re dB^T | Im dB^T] (u bm = [Re | Im] of dB u);
           cm (2N, H) = [g Re C^T; -g Im C^T] ([Re x | Im x] cm = g Re(C x));  D (H,);  state (B, 2, N).
Dense maps are stored transposed, (in, out), so that rows of activations multiply them from the left.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from dssm_kernels.nn import DSS, LRU, S4, S4D, S5, ResidualBlock, SequenceClassifier
from dssm_kernels.nn._base import SSMLayer

SSM_KINDS = ("diag", "dplr", "mimo")


@dataclass
class SsmPlan:
    """One SSM layer's discrete recurrence. kind: one of SSM_KINDS; params: name -> tensor in the
    layout the module docstring gives; H, N: channels and complex modes; rank: the DPLR rank (0)."""
    kind: str
    layer: str
    params: dict
    H: int
    N: int
    rank: int = 0

    def state_shape(self, batch: int) -> tuple:
        """The decoder's state of this layer for `batch` streams (real, re and im planes)."""
        if self.kind == "diag":
            return (batch, 2, self.N, self.H)
        if self.kind == "dplr":
            return (batch, 2, self.H, self.N)
        return (batch, 2, self.N)


@dataclass
class BlockPlan:
    """A residual block (or a bare layer: mix False). norm: (gamma, beta, eps) or None; out_w (H, O),
    out_b (O,): the output map, O = 2H with glu (z[:, :H] * sigmoid(z[:, H:])), H without."""
    ssm: SsmPlan
    mix: bool = True
    norm: tuple | None = None
    prenorm: bool = True
    out_w: torch.Tensor | None = None
    out_b: torch.Tensor | None = None
    glu: bool = True


@dataclass
class NetworkPlan:
    """encoder: None (the input is (B, L, H) features), ("linear", W (d_in, H), b (H,)) or
    ("embedding", table (V, H)); pool: None (no head: the output is the last block's (B, L, H)),
    "mean" or "last", with head_w (H, C), head_b (C,). dtype: the model's."""
    kind: str
    d_model: int
    dtype: torch.dtype
    blocks: list
    encoder: tuple | None = None
    pool: str | None = None
    head_w: torch.Tensor | None = None
    head_b: torch.Tensor | None = None
    source: dict = field(default_factory=dict)

    @property
    def tokens(self) -> bool:
        return self.encoder is not None and self.encoder[0] == "embedding"

    @property
    def d_input(self) -> int | None:
        """Features per token (None for token ids)."""
        if self.encoder is None:
            return self.d_model
        return None if self.tokens else self.encoder[1].shape[0]

    @property
    def vocab_size(self) -> int | None:
        return self.encoder[1].shape[0] if self.tokens else None

    @property
    def n_out(self) -> int:
        """Outputs per token: the classes of a classifier, else d_model."""
        return self.d_model if self.pool is None else self.head_w.shape[1]


def _planes(z: torch.Tensor) -> torch.Tensor:
    """A complex tensor as (2, ...) real: re, im."""
    return torch.stack([z.real, z.imag])


def _double(layer: SSMLayer) -> SSMLayer:
    """A float64 copy of the layer (its parameters rounded as trained, its arithmetic from here in float64)."""
    return copy.deepcopy(layer).to(torch.float64)


def _d_or_zeros(layer: SSMLayer, H: int) -> torch.Tensor:
    D = getattr(layer, "D", None)
    return torch.zeros(H, dtype=torch.float64) if D is None else D.detach().double()


def plan_ssm(layer: SSMLayer, kernel_length: int | None = None) -> SsmPlan:
    """The layer's discrete recurrence in float64 (the caller rounds it to the model's dtype). With
    kernel_length, an S4 layer's plan also holds its convolution kernel K (H, kernel_length) (the
    sequence graph's: deploy.realnet)."""
    name = type(layer).__name__
    if layer.transposed:
        raise ValueError(f"deploy: the {name} layer takes (B, H, L) input (transposed=True); the decoder streams "
                         "(B, L, H) models: build the layer with transposed=False")
    H = layer.d_model
    with torch.no_grad():
        dl = _double(layer)
        if isinstance(layer, (S4D, DSS)):
            dA, dB, C, _ = dl.discrete()
            if dl.layout is not None:          # flat per-channel modes -> (H, largest count), inert padding
                dA, dB, C = (dl.layout.to_padded(x, fill) for x, fill in ((dA, 0.5), (dB, 0), (C, 0)))
            return SsmPlan("diag", name, dict(a=_planes(dA.T), cb=_planes((2 * C * dB).T), D=_d_or_zeros(dl, H)),
                           H, dA.shape[1])
        if isinstance(layer, S4):
            lam, P, B, C, h, Dinv, Minv = dl._step_system()   # what S4.step runs on, solved for the true C
            r = P.shape[1]
            hP = h.unsqueeze(-1) * P                                  # (H, r, N)
            extra = {} if kernel_length is None else dict(K=dl.kernel(kernel_length))
            return SsmPlan("dplr", name, dict(extra,
                a=_planes(1 + h * lam), b=_planes(2 * h * B), c=_planes(C), dinv=_planes(Dinv),
                P=_planes(P.transpose(0, 1)), hP=_planes(hP.transpose(0, 1)),
                G=_planes((P.conj() * Dinv.unsqueeze(1)).transpose(0, 1)),
                E=_planes((Dinv.unsqueeze(1) * hP).transpose(0, 1)), Minv=Minv.contiguous(),
                D=_d_or_zeros(dl, H)), H, lam.shape[1], r)
        if isinstance(layer, (S5, LRU)):
            dA, dB, C = dl.discrete()
            g = 2 if isinstance(layer, S5) else 1
            bm = torch.cat([dB.real.T, dB.imag.T], dim=1)            # (H, 2N)
            cm = torch.cat([g * C.real.T, -g * C.imag.T], dim=0)     # (2N, H)
            return SsmPlan("mimo", name, dict(a=_planes(dA), bm=bm, cm=cm, D=_d_or_zeros(dl, H)), H, dA.shape[0])
    raise TypeError(f"deploy: no streaming form for a {name} layer (supported: S4D, DSS, S4, S5, LRU)")


def _linear_t(lin: nn.Linear) -> tuple:
    """(W^T (in, out), b (out,)) in float64; a Linear without bias gets zeros."""
    W = lin.weight.detach().double()
    b = lin.bias.detach().double() if lin.bias is not None else torch.zeros(W.shape[0], dtype=torch.float64)
    return W.T.contiguous(), b


def _plan_block(block: ResidualBlock, kernel_length) -> BlockPlan:
    ssm = plan_ssm(block.layer, kernel_length)
    norm = None
    if isinstance(block.norm, nn.LayerNorm):
        ln = block.norm
        H = ssm.H
        gamma = ln.weight.detach().double() if ln.weight is not None else torch.ones(H, dtype=torch.float64)
        beta = ln.bias.detach().double() if ln.bias is not None else torch.zeros(H, dtype=torch.float64)
        norm = (gamma, beta, float(ln.eps))
    lin = block.out[0] if isinstance(block.out, nn.Sequential) else block.out
    W, b = _linear_t(lin)
    return BlockPlan(ssm, True, norm, block.prenorm, W, b, glu=isinstance(block.out, nn.Sequential))


def _cast(plan: NetworkPlan) -> NetworkPlan:
    """Every tensor of the plan rounded to plan.dtype, contiguous."""
    dt = plan.dtype
    c = lambda t: None if t is None else t.to(dt).contiguous()  # noqa: E731
    for blk in plan.blocks:
        blk.ssm.params = {k: c(v) for k, v in blk.ssm.params.items()}
        blk.out_w, blk.out_b = c(blk.out_w), c(blk.out_b)
        if blk.norm is not None:
            blk.norm = (c(blk.norm[0]), c(blk.norm[1]), blk.norm[2])
    if plan.encoder is not None:
        plan.encoder = (plan.encoder[0],) + tuple(c(t) for t in plan.encoder[1:])
    plan.head_w, plan.head_b = c(plan.head_w), c(plan.head_b)
    return plan


def plan_model(model: nn.Module, kernel_length: int | None = None) -> NetworkPlan:
    """The plan of a SequenceClassifier, a ResidualBlock or a bare SSM layer (S4D, DSS, S4, S5, LRU), full or
    reduced (each layer its own d_state). Dropout is left out (the plan is the model in eval mode).
    TypeError for anything else; ValueError for a layer that takes (B, H, L) input. kernel_length: see
    plan_ssm (S4 layers' kernels, for the whole-sequence graph)."""
    if isinstance(model, SequenceClassifier):
        if isinstance(model.encoder, nn.Embedding):
            enc = ("embedding", model.encoder.weight.detach().double())
        else:
            enc = ("linear",) + _linear_t(model.encoder)
        blocks = [_plan_block(b, kernel_length) for b in model.blocks]
        W, b = _linear_t(model.decoder)
        plan = NetworkPlan("classifier", blocks[0].ssm.H, model.decoder.weight.dtype, blocks, enc, model.pool, W, b)
    elif isinstance(model, ResidualBlock):
        blk = _plan_block(model, kernel_length)
        plan = NetworkPlan("block", blk.ssm.H, model.layer._float, [blk])
    elif isinstance(model, SSMLayer):
        ssm = plan_ssm(model, kernel_length)
        plan = NetworkPlan("layer", ssm.H, model._float, [BlockPlan(ssm, mix=False)])
    else:
        raise TypeError(f"deploy: model must be a SequenceClassifier, a ResidualBlock or an SSM layer of "
                        f"dssm_kernels.nn, got {type(model).__name__}")
    plan.source = dict(model=type(model).__name__, layers=[b.ssm.layer for b in plan.blocks],
                       d_state=[2 * b.ssm.N for b in plan.blocks])
    return _cast(plan)


def flops_per_token(plan: NetworkPlan) -> int:
    """Floating-point operations per token of one stream (a multiply-add counts 2), as the decoder
    evaluates the network: dense products 2 K N_out per row; per complex mode and channel of a diagonal
    layer 11 (the update dA s + u: 7, Re(cb s) summed: 4; the feedthrough D u: 2 per channel);
    DPLR adds 4 r per mode for each of its four rank-r products; S5 updates its N modes (8 each) between
    two dense maps; a layer norm 8 per element, GELU, GLU and the residual 4, 4 and 1, the running mean
    2. A lower bound on the work of any implementation of the same arithmetic."""
    H = plan.d_model
    total = 0
    if plan.encoder is not None and plan.encoder[0] == "linear":
        total += 2 * plan.encoder[1].shape[0] * H + H
    for blk in plan.blocks:
        s = blk.ssm
        if s.kind == "diag":
            total += 11 * s.N * H + 2 * H
        elif s.kind == "dplr":
            total += (11 + 16 * s.rank) * s.N * H + 2 * s.rank * s.rank * H + 2 * H
        else:
            total += 2 * H * 2 * s.N * 2 + 8 * s.N + 2 * H
        if blk.norm is not None:
            total += 8 * H
        if blk.mix:
            O = blk.out_w.shape[1]
            total += 4 * H + 2 * H * O + O + (5 * H if blk.glu else H)
    if plan.pool is not None:
        total += (2 * H if plan.pool == "mean" else 0) + 2 * H * plan.head_w.shape[1] + plan.head_w.shape[1]
    return int(total)


def bytes_per_call(plan: NetworkPlan, batch: int) -> int:
    """Bytes one decoding call of one token per stream must move at least: every parameter read once
    (the dense maps, the SSMs' planes, norms, head; an embedding's one row per stream) and each
    stream's SSM state read and written. Batch 1 streams more bytes per FLOP than a core's caches
    deliver at FMA speed: this, not the FLOP count, bounds its latency."""
    size = plan.dtype.itemsize
    n = 0
    if plan.encoder is not None:
        n += batch * plan.d_model if plan.tokens else sum(t.numel() for t in plan.encoder[1:])
    for blk in plan.blocks:
        n += sum(v.numel() for k, v in blk.ssm.params.items() if k != "K")
        n += 2 * batch * int(torch.Size(blk.ssm.state_shape(1)).numel())
        if blk.norm is not None:
            n += 2 * plan.d_model
        if blk.mix:
            n += blk.out_w.numel() + blk.out_b.numel()
    if plan.pool is not None:
        n += plan.head_w.numel() + plan.head_b.numel() + (2 * batch * plan.d_model if plan.pool == "mean" else 0)
    return int(n * size)
