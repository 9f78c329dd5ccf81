"""A small sequence classifier: encoder, a stack of residual SSM blocks, pooling over time, decoder."""
from __future__ import annotations

import torch
from torch import nn

from dssm_kernels._validate import check_choice, check_int, check_seed
from dssm_kernels.nn._base import check_dtype, check_real_input, check_state
from dssm_kernels.nn.block import LAYERS, MODES, ResidualBlock, make_layer

POOLS = ("mean", "last")


def _check_blocks(blocks, n_layers: int) -> list:
    """[None or (kind, options)] per block from the `blocks` argument (it may come from a checkpoint:
    plain values only, each checked here and by the layer it builds)."""
    who = "SequenceClassifier"
    if blocks is None:
        return [None] * n_layers
    if not isinstance(blocks, (list, tuple)) or len(blocks) != n_layers:
        raise ValueError(f"{who}: blocks must be None or a list of n_layers={n_layers} entries, got {blocks!r:.80}")
    out = []
    for i, b in enumerate(blocks):
        if b is None:
            out.append(None)
            continue
        if not isinstance(b, dict) or not all(isinstance(k, str) for k in b):
            raise TypeError(f"{who}: blocks[{i}] must be None or a dict with str keys, got {type(b).__name__}")
        check_choice(who, f"blocks[{i}]['layer']", b.get("layer"), LAYERS)
        for k, v in b.items():
            plain = v is None or isinstance(v, (bool, int, float, str)) or (
                isinstance(v, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in v))
            if not plain:
                raise TypeError(f"{who}: blocks[{i}][{k!r}] must be a number, str, bool, None or a list of ints, got "
                                f"{type(v).__name__}")
        out.append((b["layer"], {k: (list(v) if isinstance(v, tuple) else v) for k, v in b.items() if k != "layer"}))
    return out


class SequenceClassifier(nn.Module):
    """Tokens (B, L) long (vocab_size given) or features (B, L, d_input) -> logits (B, n_classes).

    encoder (Embedding or Linear) -> n_layers x ResidualBlock(layer(d_model, d_state)) -> pool over time
    ("mean" or "last") -> Linear. step() reads one time step and returns the logits of the prefix read
    so far (for pool="mean", the running mean), so after the whole sequence it equals forward().

    Args:
        n_classes: outputs.   d_input / vocab_size: exactly one of them (real features / token ids).
        layer: "s4d" | "dss" | "s4" | "s5" | "lru".   layer_kwargs: passed to each layer (init, disc, l_max, ...).
        d_model, d_state, n_layers, dropout, norm, activation, prenorm: the blocks'; d_state may be a list,
            one per layer (what a reduced model has).
        blocks: None, or one entry per block, None or {"layer": kind, **options}, which replaces (layer,
            layer_kwargs) for that block (what a reduced model has: an S4 reduced to an S4D, a layer whose
            channels keep different numbers of modes). Options are plain values: numbers, str, bool, None
            or lists of ints.
        seed: makes construction deterministic (layers and linear maps) without touching the global RNG.

    Example:
        >>> import torch
        >>> from dssm_kernels.nn import SequenceClassifier
        >>> model = SequenceClassifier(n_classes=10, vocab_size=16, d_model=8, d_state=8, seed=0)
        >>> model(torch.randint(0, 16, (2, 50))).shape
        torch.Size([2, 10])
    """

    def __init__(self, n_classes: int, *, d_input: int | None = None, vocab_size: int | None = None,
                 layer: str = "s4d", d_model: int = 64, d_state: int | list[int] = 64, n_layers: int = 2,
                 layer_kwargs: dict | None = None, dropout: float = 0.0, norm: str = "layer",
                 activation: str = "glu", prenorm: bool = True, pool: str = "mean", backend: str = "auto",
                 dtype: torch.dtype = torch.float32, seed: int | None = None, blocks: list | None = None):
        super().__init__()
        check_int("SequenceClassifier", "n_classes", n_classes)
        check_int("SequenceClassifier", "n_layers", n_layers)
        check_choice("SequenceClassifier", "layer", layer, LAYERS)
        check_choice("SequenceClassifier", "pool", pool, POOLS)
        check_dtype("SequenceClassifier", dtype)
        check_seed("SequenceClassifier", seed)
        if layer_kwargs is not None and not isinstance(layer_kwargs, dict):
            raise TypeError(f"SequenceClassifier: layer_kwargs must be a dict (or None), got {type(layer_kwargs).__name__}")
        if (d_input is None) == (vocab_size is None):
            raise ValueError(f"SequenceClassifier: give exactly one of d_input and vocab_size, got d_input={d_input!r}, "
                             f"vocab_size={vocab_size!r}")
        specs = _check_blocks(blocks, n_layers)
        self.config = dict(n_classes=n_classes, d_input=d_input, vocab_size=vocab_size, layer=layer, d_model=d_model,
                           d_state=d_state, n_layers=n_layers, layer_kwargs=dict(layer_kwargs or {}), dropout=dropout,
                           norm=norm, activation=activation, prenorm=prenorm, pool=pool, backend=backend,
                           dtype=str(dtype).removeprefix("torch."), seed=seed,
                           blocks=None if blocks is None else [None if b is None else dict(b) for b in blocks])
        d_states = list(d_state) if isinstance(d_state, (list, tuple)) else [d_state] * n_layers
        if len(d_states) != n_layers:
            raise ValueError(f"SequenceClassifier: d_state must be an int or a list of n_layers={n_layers} ints, got {d_state!r}")
        self.pool = pool
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            kw = dict(dtype=dtype)
            if vocab_size is not None:
                check_int("SequenceClassifier", "vocab_size", vocab_size)
                self.encoder = nn.Embedding(vocab_size, d_model, **kw)
            else:
                check_int("SequenceClassifier", "d_input", d_input)
                self.encoder = nn.Linear(d_input, d_model, **kw)
            lk = dict(layer_kwargs or {})
            kinds = [(layer, lk) if spec is None else spec for spec in specs]
            self.blocks = nn.ModuleList(
                ResidualBlock(make_layer(kinds[i][0], d_model, d_states[i], backend=backend, dtype=dtype,
                                         seed=None if seed is None else seed + 1 + i, **kinds[i][1]),
                              norm=norm, activation=activation, dropout=dropout, prenorm=prenorm)
                for i in range(n_layers))
            self.decoder = nn.Linear(d_model, n_classes, **kw)

    def current_config(self) -> dict:
        """config with each layer's present d_state and, where a block's layer is no longer what `layer` and
        `layer_kwargs` build (another kind, or per-channel mode counts), its `blocks` entry (which
        reduction changes): from_config(current_config()) builds a model that this one's state_dict
        loads into."""
        cfg = dict(self.config)
        d_states = [b.layer.d_state for b in self.blocks]
        cfg["d_state"] = d_states[0] if len(set(d_states)) == 1 else d_states
        kind_of = {cls: name for name, cls in LAYERS.items()}
        specs = [{"layer": kind_of[type(b.layer)], **b.layer.config()} for b in self.blocks]
        own = [spec["layer"] != cfg["layer"] or spec.get("channel_modes") is not None for spec in specs]
        cfg["blocks"] = [spec if o else None for spec, o in zip(specs, own)] if any(own) else None
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> "SequenceClassifier":
        """The model a checkpoint's `config` describes (state_dict loads into it)."""
        cfg = dict(config)
        cfg["dtype"] = getattr(torch, cfg.get("dtype", "float32"))
        return cls(**cfg)

    @property
    def _tokens(self) -> bool:
        return isinstance(self.encoder, nn.Embedding)

    def _encode(self, who: str, name: str, x: torch.Tensor, sequence: bool) -> torch.Tensor:
        """Check x ((B, L) token ids or (B, L, d_input) features; one time step without the L) and encode
        it. Token ids are range-checked (one host sync) except while torch.compile traces or a CUDA graph
        is captured, where a sync would break the graph or the capture: an out-of-range id then fails
        inside the embedding."""
        p = self.decoder.weight
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{who}: {name} must be a torch.Tensor, got {type(x).__name__}")
        if self._tokens:
            V = self.encoder.num_embeddings
            if x.dtype not in (torch.int32, torch.int64):
                raise TypeError(f"{who}: {name} must hold int64/int32 token ids, got {x.dtype}")
            if x.dim() != (2 if sequence else 1):
                raise ValueError(f"{who}: {name} must be {'(B, L)' if sequence else '(B,)'} token ids, "
                                 f"got shape {tuple(x.shape)}")
            if x.device != p.device:
                raise ValueError(f"{who}: {name} is on {x.device}, the model on {p.device}")
            capturing = x.is_cuda and torch.cuda.is_current_stream_capturing()
            if not (torch.compiler.is_compiling() or capturing):
                bad = (x < 0) | (x >= V)
                if bool(bad.any()):
                    at = tuple(int(i) for i in bad.nonzero()[0])
                    raise ValueError(f"{who}: {name} must hold token ids in [0, vocab_size={V}), got {int(x[at])} at "
                                     f"index {at} ({int(bad.sum())} id(s) out of range)")
        else:
            d_in = self.encoder.in_features
            check_real_input(who, name, x, p.dtype, p.device)
            if x.dim() != (3 if sequence else 2) or x.shape[-1] != d_in:
                raise ValueError(f"{who}: {name} must be {'(B, L, d_input)' if sequence else '(B, d_input)'} features "
                                 f"with d_input={d_in}, got shape {tuple(x.shape)}")
        return self.encoder(x)

    def forward(self, x: torch.Tensor, mode: str = "conv") -> torch.Tensor:
        """x: (B, L) token ids or (B, L, d_input) features -> logits (B, n_classes).
        mode: "conv" (each layer's training view) or "scan" (the recurrence over the whole sequence;
        layers without a scan, S4, raise)."""
        check_choice("SequenceClassifier", "mode", mode, MODES)
        h = self._encode("SequenceClassifier", "x", x, sequence=True)
        for block in self.blocks:
            h = block(h, mode)
        h = h.mean(1) if self.pool == "mean" else h[:, -1]
        return self.decoder(h)

    def default_state(self, batch: int):
        """(layer states, running sum of the last block's outputs (B, d_model), steps read (scalar tensor))."""
        p = self.decoder.weight
        return (tuple(b.default_state(batch) for b in self.blocks),
                torch.zeros(batch, p.shape[1], dtype=p.dtype, device=p.device),
                torch.zeros((), dtype=p.dtype, device=p.device))

    def step(self, x_t: torch.Tensor, state):
        """x_t: (B,) token ids or (B, d_input) -> (logits of the prefix (B, n_classes), new state).
        state: what default_state(B) or the previous step gave; None is default_state(B)."""
        who = "SequenceClassifier.step"
        h = self._encode(who, "x_t", x_t, sequence=False)
        state = self._check_state(who, state, h.shape[0])
        states, total, count = state
        new_states = []
        for block, s in zip(self.blocks, states):
            h, s = block.step(h, s)
            new_states.append(s)
        total, count = total + h, count + 1
        pooled = total / count if self.pool == "mean" else h
        return self.decoder(pooled), (tuple(new_states), total, count)

    def _check_state(self, who: str, state, batch: int):
        """None -> default_state(batch); else the structure default_state gives (each layer's own state
        is checked by its step)."""
        if state is None:
            return self.default_state(batch)
        if not (isinstance(state, tuple) and len(state) == 3 and isinstance(state[0], (tuple, list))):
            raise TypeError(f"{who}: state must be (layer states, running sum, steps read) as default_state(batch) "
                            f"gives, or None, got {type(state).__name__}")
        if len(state[0]) != len(self.blocks):
            raise ValueError(f"{who}: state must hold {len(self.blocks)} layer states (one per block), "
                             f"got {len(state[0])}")
        p = self.decoder.weight
        check_state(who, state[1], (batch, p.shape[1]), p.dtype, p.device, name="state[1] (the running sum)")
        check_state(who, state[2], (), p.dtype, p.device, name="state[2] (the steps read)")
        return state
