"""A deployment plan (deploy.plan) as plain-torch modules in real arithmetic: what the ONNX export holds
(ONNX has no complex type: every complex number is its (re, im) planes) and the streaming decoder's
"reference" backend.

    RealStep(plan)(x_t, *state)  -> (y_t, *new_state)    one token of B streams
    RealSequence(plan)(x)        -> model.forward(x)     a whole sequence

The state is the decoder's (StreamingDecoder.states, then for pool="mean" the running sum (B, H) and the
count (B,)): each diagonal layer's scaled state s = x / dB, (B, 2, N, H); S4's (B, 2, H, N); S5's
(B, 2, N). RealSequence runs each SSM as a causal convolution with its kernel, formed from the modes
for the input's length inside the graph (powers dA^l = exp(l log dA) with the phase l arg(dA) in
float64, reduced mod 2 pi there: a float32 phase l theta loses float32 accuracy once l theta ~ 1e3),
by real FFTs of length 2L (an S5 layer: one complex convolution per mode, then its output map). An
S4 layer's diagonalised form is too ill-conditioned for float32, so it convolves with its kernel,
computed by the layer in float64 up to the plan's kernel_length (plan_model(model, kernel_length=...)).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dssm_kernels.deploy.plan import BlockPlan, NetworkPlan, SsmPlan


def _buffers(module: nn.Module, prefix: str, tensors: dict) -> None:
    for k, v in tensors.items():
        module.register_buffer(f"{prefix}{k}", v.clone())


class _Ssm(nn.Module):
    """One SSM of a plan: step(u (B, H), state) -> (y (B, H), new state); sequence(u (B, L, H)) -> y."""

    def __init__(self, plan: SsmPlan):
        super().__init__()
        self.kind, self.N, self.H, self.rank = plan.kind, plan.N, plan.H, plan.rank
        _buffers(self, "", plan.params)
        if plan.kind == "diag":
            # log dA and arg dA in float64 for the sequence kernel: (N, H) each
            ar, ai = plan.params["a"].double()
            self.register_buffer("log_mag", 0.5 * torch.log(ar * ar + ai * ai))
            self.register_buffer("phase", torch.atan2(ai, ar))
        elif plan.kind == "mimo":
            ar, ai = plan.params["a"].double()
            self.register_buffer("log_mag", 0.5 * torch.log(ar * ar + ai * ai))
            self.register_buffer("phase", torch.atan2(ai, ar))

    def step(self, u: torch.Tensor, s: torch.Tensor):
        if self.kind == "diag":
            ar, ai = self.a[0], self.a[1]
            sr, si = s[:, 0], s[:, 1]                        # (B, N, H)
            uu = u.unsqueeze(1)
            xr = ar * sr - ai * si + uu
            xi = ar * si + ai * sr
            y = (self.cb[0] * xr - self.cb[1] * xi).sum(1) + self.D * u
            return y, torch.stack([xr, xi], 1)
        if self.kind == "dplr":
            xr, xi = s[:, 0], s[:, 1]                        # (B, H, N)
            uu = u.unsqueeze(-1)
            sk = 2 * (self.P[0] * xr.unsqueeze(1) + self.P[1] * xi.unsqueeze(1)).sum(-1)    # (B, r, H)
            sk = sk.unsqueeze(-1)
            wr = self.a[0] * xr - self.a[1] * xi + self.b[0] * uu - (self.hP[0] * sk).sum(1)
            wi = self.a[0] * xi + self.a[1] * xr + self.b[1] * uu - (self.hP[1] * sk).sum(1)
            q = 2 * (self.G[0] * wr.unsqueeze(1) - self.G[1] * wi.unsqueeze(1)).sum(-1)      # (B, r, H)
            t = (self.Minv * q.transpose(1, 2).unsqueeze(-2)).sum(-1).transpose(1, 2)        # (B, r, H)
            t = t.unsqueeze(-1)
            nr = self.dinv[0] * wr - self.dinv[1] * wi - (self.E[0] * t).sum(1)
            ni = self.dinv[0] * wi + self.dinv[1] * wr - (self.E[1] * t).sum(1)
            y = 2 * (self.c[0] * nr - self.c[1] * ni).sum(-1) + self.D * u
            return y, torch.stack([nr, ni], 1)
        v = u @ self.bm                                      # (B, 2N)
        N = self.N
        sr, si = s[:, 0], s[:, 1]
        xr = self.a[0] * sr - self.a[1] * si + v[:, :N]
        xi = self.a[0] * si + self.a[1] * sr + v[:, N:]
        y = torch.cat([xr, xi], -1) @ self.cm + self.D * u
        return y, torch.stack([xr, xi], 1)

    def _powers(self, L: int, like: torch.Tensor):
        """(re, im) of dA^l for l < L, (..., L) in the dtype of `like`: magnitude and reduced phase in float64."""
        pos = torch.arange(L, dtype=torch.float64, device=like.device)
        ph = self.phase.unsqueeze(-1) * pos
        ph = ph - 2 * math.pi * torch.round(ph / (2 * math.pi))
        mag = torch.exp(self.log_mag.unsqueeze(-1) * pos)
        return (mag * torch.cos(ph)).to(like.dtype), (mag * torch.sin(ph)).to(like.dtype)

    def _conv(self, u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """Causal y[t, h] = sum_{s <= t} K[h, s] u[t - s, h] + D[h] u[t, h], by real FFTs of length 2L."""
        L = u.shape[1]
        Kf = torch.fft.rfft(K, n=2 * L)                      # (H, F)
        Uf = torch.fft.rfft(u.transpose(1, 2), n=2 * L)      # (B, H, F)
        y = torch.fft.irfft(Uf * Kf, n=2 * L)[..., :L]
        return y.transpose(1, 2) + self.D * u

    def sequence(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, L, H) from the zero state -> y (B, L, H)."""
        B, L, H = u.shape
        n_fft = 2 * L
        if self.kind == "dplr":
            if not hasattr(self, "K"):
                raise ValueError("RealSequence: an S4 layer needs its kernel: build the plan with "
                                 "plan_model(model, kernel_length=...)")
            # index_select, not a slice: past the stored kernel it fails (out-of-range Gather in ONNX)
            K = self.K.index_select(1, torch.arange(L, device=u.device))
            return self._conv(u, K)
        pr, pi = self._powers(L, u)                          # (N, H, L) diag / (N, L) mimo
        if self.kind == "diag":
            K = torch.einsum("nh,nhl->hl", self.cb[0], pr) - torch.einsum("nh,nhl->hl", self.cb[1], pi)
            return self._conv(u, K)
        N = self.N
        v = (u @ self.bm).transpose(1, 2)                    # (B, 2N, L)
        vr, vi = v[:, :N], v[:, N:]
        Pr, Pi = torch.fft.rfft(pr, n=n_fft), torch.fft.rfft(pi, n=n_fft)     # (N, F) complex spectra
        Vr, Vi = torch.fft.rfft(vr, n=n_fft), torch.fft.rfft(vi, n=n_fft)
        # (pr + i pi) * (vr + i vi), each real convolution by the FFT of its real sequences
        xr = torch.fft.irfft(Pr * Vr - Pi * Vi, n=n_fft)[..., :L]
        xi = torch.fft.irfft(Pr * Vi + Pi * Vr, n=n_fft)[..., :L]
        x = torch.cat([xr, xi], 1).transpose(1, 2)           # (B, L, 2N)
        return x @ self.cm + self.D * u


class _Block(nn.Module):
    def __init__(self, plan: BlockPlan):
        super().__init__()
        self.ssm = _Ssm(plan.ssm)
        self.mix, self.prenorm, self.glu = plan.mix, plan.prenorm, plan.glu
        self.has_norm = plan.norm is not None
        if self.has_norm:
            self.register_buffer("gamma", plan.norm[0].clone())
            self.register_buffer("beta", plan.norm[1].clone())
            self.eps = plan.norm[2]
        if plan.mix:
            self.register_buffer("out_w", plan.out_w.clone())
            self.register_buffer("out_b", plan.out_b.clone())

    def _norm(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.gamma, self.beta, self.eps) if self.has_norm else x

    def _apply(self, x: torch.Tensor, ssm_out) -> tuple:
        """x (..., H) -> block output, with ssm_out(u) the layer on the (normed) input."""
        u = self._norm(x) if self.prenorm else x
        y, extra = ssm_out(u)
        if not self.mix:
            return y, extra
        z = F.gelu(y) @ self.out_w + self.out_b
        z = F.glu(z, -1) if self.glu else z
        return (x + z if self.prenorm else self._norm(x + z)), extra

    def step(self, x, s):
        return self._apply(x, lambda u: self.ssm.step(u, s))

    def sequence(self, x):
        return self._apply(x, lambda u: (self.ssm.sequence(u), None))[0]


class _Net(nn.Module):
    def __init__(self, plan: NetworkPlan):
        super().__init__()
        self.pool, self.kind = plan.pool, plan.kind
        self.encoder = None if plan.encoder is None else plan.encoder[0]
        if self.encoder is not None:
            _buffers(self, "enc_", {str(i): t for i, t in enumerate(plan.encoder[1:])})
        self.blocks = nn.ModuleList(_Block(b) for b in plan.blocks)
        if plan.pool is not None:
            self.register_buffer("head_w", plan.head_w.clone())
            self.register_buffer("head_b", plan.head_b.clone())

    def _encode(self, x):
        if self.encoder == "embedding":
            return F.embedding(x, self.enc_0)
        if self.encoder == "linear":
            return x @ self.enc_0 + self.enc_1
        return x


class RealStep(_Net):
    """forward(x_t, *state) -> (y_t, *new_state): one token of B streams. x_t: (B, d_input) features,
    (B,) int64 ids, or (B, H) (a block or a layer); state: one tensor per block (the decoder's layout),
    then for pool="mean" the running sum (B, H) and the tokens read (B,)."""

    def step(self, x, states, total, count):
        h = self._encode(x)
        new = []
        for blk, s in zip(self.blocks, states):
            h, s = blk.step(h, s)
            new.append(s)
        if self.pool is None:
            return h, (new, total, count)
        if self.pool == "mean":
            total = total + h
            count = count + 1
            pooled = total / count.unsqueeze(-1)
        else:
            pooled = h
        return pooled @ self.head_w + self.head_b, (new, total, count)

    def forward(self, x, *state):
        n = len(self.blocks)
        total, count = (state[n], state[n + 1]) if self.pool == "mean" else (None, None)
        y, (new, total, count) = self.step(x, list(state[:n]), total, count)
        return (y, *new) + ((total, count) if self.pool == "mean" else ())


class RealSequence(_Net):
    """forward(x) -> what model.forward(x) gives: logits (B, C) of a classifier, (B, L, H) of a block or
    a layer. x: (B, L, d_input) features, (B, L) int64 ids, or (B, L, H). S4 layers need the plan's
    kernels (plan_model(model, kernel_length=...)): inputs up to that length."""

    def forward(self, x):
        h = self._encode(x)
        for blk in self.blocks:
            h = blk.sequence(h)
        if self.pool is None:
            return h
        pooled = h.mean(1) if self.pool == "mean" else h[:, -1]
        return pooled @ self.head_w + self.head_b
