"""A residual block around any SSM layer, and the layer registry the models build from."""
from __future__ import annotations

import torch
from torch import nn

from dssm_kernels._validate import check_bool, check_choice, check_number
from dssm_kernels.nn._base import SSMLayer, check_real_input
from dssm_kernels.nn.dss import DSS
from dssm_kernels.nn.lru import LRU
from dssm_kernels.nn.s4 import S4
from dssm_kernels.nn.s4d import S4D
from dssm_kernels.nn.s5 import S5

LAYERS = {"s4d": S4D, "dss": DSS, "s4": S4, "s5": S5, "lru": LRU}
NORMS = ("layer", "none")
ACTIVATIONS = ("glu", "gelu")
MODES = ("conv", "scan")


def make_layer(kind: str, d_model: int, d_state: int, **kwargs) -> SSMLayer:
    """LAYERS[kind](d_model, d_state, **kwargs), with the error naming the choices."""
    check_choice("make_layer", "kind", kind, LAYERS)
    return LAYERS[kind](d_model, d_state, **kwargs)


class ResidualBlock(nn.Module):
    """(B, L, H) -> (B, L, H):  z = norm(x) (prenorm) -> SSM layer -> GELU -> output map -> dropout -> x + z,
    the output map being Linear(H, 2H) + GLU ("glu") or Linear(H, H) ("gelu"); with prenorm=False the
    norm follows the residual sum. LayerNorm acts per time step, so step() runs the same block."""

    def __init__(self, layer: SSMLayer, *, norm: str = "layer", activation: str = "glu", dropout: float = 0.0,
                 prenorm: bool = True):
        super().__init__()
        if not isinstance(layer, SSMLayer):
            raise TypeError(f"ResidualBlock: layer must be an SSM layer of dssm_kernels.nn, got {type(layer).__name__}")
        if layer.transposed:
            raise ValueError("ResidualBlock: the layer must take (B, L, H) input (transposed=False)")
        check_choice("ResidualBlock", "norm", norm, NORMS)
        check_choice("ResidualBlock", "activation", activation, ACTIVATIONS)
        check_number("ResidualBlock", "dropout", dropout, 0, 1)
        check_bool("ResidualBlock", "prenorm", prenorm)
        H = layer.d_model
        kw = dict(dtype=layer._float, device=layer._device)
        self.layer, self.prenorm = layer, prenorm
        self.norm = nn.LayerNorm(H, **kw) if norm == "layer" else nn.Identity()
        self.out = nn.Sequential(nn.Linear(H, 2 * H, **kw), nn.GLU(-1)) if activation == "glu" else nn.Linear(H, H, **kw)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def _mix(self, y: torch.Tensor) -> torch.Tensor:
        return self.drop(self.out(self.act(y)))

    def _check_input(self, who: str, name: str, x, sequence: bool) -> None:
        """x: real, the layer's dtype and device, (B, L, H) (sequence) or (B, H)."""
        layer = self.layer
        check_real_input(who, name, x, layer._float, layer._device)
        if x.dim() != (3 if sequence else 2) or x.shape[-1] != layer.d_model:
            raise ValueError(f"{who}: {name} must be {'(B, L, H)' if sequence else '(B, H)'} with H = d_model = "
                             f"{layer.d_model}, got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor, mode: str = "conv") -> torch.Tensor:
        """x (B, L, H). mode "conv": the layer's forward (training); "scan": its recurrent view over the
        sequence (same output; the cheaper one at small state sizes on a CPU)."""
        check_choice("ResidualBlock", "mode", mode, MODES)
        self._check_input("ResidualBlock", "x", x, sequence=True)
        u = self.norm(x) if self.prenorm else x
        z = self._mix(self.layer(u) if mode == "conv" else self.layer.scan(u)[0])
        return x + z if self.prenorm else self.norm(x + z)

    def default_state(self, batch: int):
        return self.layer.default_state(batch)

    def step(self, x_t: torch.Tensor, state):
        """x_t (B, H) -> (y_t (B, H), new state). state: the layer's (default_state(B), a previous
        step's, or None for the zero state)."""
        self._check_input("ResidualBlock.step", "x_t", x_t, sequence=False)
        y, state = self.layer.step(self.norm(x_t) if self.prenorm else x_t, state)
        z = self._mix(y)
        return (x_t + z if self.prenorm else self.norm(x_t + z)), state
