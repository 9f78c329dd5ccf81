"""StreamingDecoder: a trained (or reduced) model decoded token by token, or chunk by chunk, for a batch
of independent streams, by one fused C++ call per call over the whole network.

Built once from a model (deploy.plan: the discretised SSMs and the weights in the layouts the kernels
read), it holds every layer's state between calls, so a stream can be fed as it arrives:

    dec = StreamingDecoder(model, batch=4)
    y_t = dec.step(x_t)      # x_t (4, d_input) features or (4,) token ids   -> (4, n_out)
    ys = dec.run(x)          # x (4, T, d_input) or (4, T) ids, T tokens       -> (4, T, n_out)
    dec.reset()              # all streams back to the zero state (or dec.reset([2]): stream 2 alone)

n_out is the number of classes for a SequenceClassifier (the logits of the prefix read so far, as
model.step gives: the running mean for pool="mean"), else d_model (a ResidualBlock or a bare layer:
its output at every position, as forward gives). After T tokens the outputs equal forward on those
tokens within the rounding of the model's dtype; dropout is off (the decoder is the model in eval mode).

A decoder is not thread-safe: one call at a time (its scratch buffers and state are shared); use one
decoder per thread, or one decoder with a batch of streams.

Backends: "cpp" (the fused step of csrc/cpu/decoder.cpp: dense products through torch's BLAS,
kernels/decode.h for the rest), "reference" (the plain-torch step of deploy.realnet, the graph the
ONNX export holds: slower, no extension needed), "auto" ("cpp" when the extension is built).
"""
from __future__ import annotations

import torch
from torch import nn

from dssm_kernels._backend import cpp_unavailable_reason
from dssm_kernels._validate import check_choice, check_int
from dssm_kernels.deploy.plan import NetworkPlan, plan_model

BACKENDS = ("auto", "cpp", "reference")
_SSM_CODES = {"diag": 0, "dplr": 1, "mimo": 2}
_ENCODER_CODES = {None: 0, "linear": 1, "embedding": 2}
_POOL_CODES = {None: 0, "mean": 1, "last": 2}
_HAS_NORM, _PRENORM, _GLU, _MIX = 1, 2, 4, 8
MAX_BATCH = 1 << 20
MAX_ELEMENTS = 1 << 31   # one activation buffer of a call (BLAS takes 32-bit sizes), checked before allocating


class StreamingDecoder:
    """Decode `model` (a SequenceClassifier, a ResidualBlock or a bare S4D / DSS / S4 / S5 / LRU layer, full or
    reduced) for `batch` independent streams. See the module docstring.

    Args:
        model: the trained model (not modified; later changes to it do not reach the decoder).
        batch: the number of streams, B >= 1.
        backend: "auto" | "cpp" | "reference".

    Example:
        >>> import torch
        >>> from dssm_kernels.nn import SequenceClassifier
        >>> from dssm_kernels.deploy import StreamingDecoder
        >>> model = SequenceClassifier(n_classes=3, d_input=2, d_model=8, d_state=8, seed=0)
        >>> dec = StreamingDecoder(model, batch=1)
        >>> x = torch.randn(1, 5, 2)
        >>> torch.allclose(dec.run(x)[:, -1], model(x), atol=1e-5)
        True
    """

    def __init__(self, model: nn.Module, batch: int = 1, *, backend: str = "auto"):
        check_int("StreamingDecoder", "batch", batch, 1, MAX_BATCH)
        check_choice("StreamingDecoder", "backend", backend, BACKENDS)
        plan = plan_model(model)
        if backend == "auto":
            backend = "cpp" if cpp_unavailable_reason() is None else "reference"
        elif backend == "cpp" and cpp_unavailable_reason() is not None:
            raise RuntimeError(f"StreamingDecoder: backend 'cpp' is unavailable: {cpp_unavailable_reason()}")
        self.plan, self.batch, self.backend = plan, batch, backend
        widths = [2 * plan.d_model, plan.n_out, plan.d_input or 1] + [2 * b.ssm.N for b in plan.blocks]
        self._widest = max(widths)
        dt = plan.dtype
        self.states = [torch.zeros(b.ssm.state_shape(batch), dtype=dt) for b in plan.blocks]
        self._total = torch.zeros(batch, plan.d_model, dtype=dt) if plan.pool == "mean" else torch.zeros(0, dtype=dt)
        self._count = torch.zeros(batch, dtype=dt) if plan.pool == "mean" else torch.zeros(0, dtype=dt)
        if backend == "cpp":
            self._impl = self._build_cpp(plan)
        else:
            from dssm_kernels.deploy.realnet import RealStep
            self._impl = RealStep(plan)

    # --- building ---------------------------------------------------------------------------------
    def _build_cpp(self, plan: NetworkPlan):
        from dssm_kernels import _C
        empty = torch.zeros(0, dtype=plan.dtype)
        kinds, flags, n_modes, ranks, eps, params = [], [], [], [], [], []
        order = {"diag": ("a", "cb", "D"), "dplr": ("a", "b", "c", "dinv", "P", "hP", "G", "E", "Minv", "D"),
                 "mimo": ("a", "bm", "cm", "D")}
        for blk in plan.blocks:
            s = blk.ssm
            kinds.append(_SSM_CODES[s.kind])
            n_modes.append(s.N)
            ranks.append(s.rank)
            f = (_MIX if blk.mix else 0) | (_GLU if blk.glu else 0) | (_PRENORM if blk.prenorm else 0)
            f |= _HAS_NORM if blk.norm is not None else 0
            flags.append(f)
            eps.append(blk.norm[2] if blk.norm is not None else 0.0)
            p = [s.params[k] for k in order[s.kind]]
            p += [blk.norm[0], blk.norm[1]] if blk.norm is not None else [empty, empty]
            p += [blk.out_w, blk.out_b] if blk.mix else [empty, empty]
            params.append(p)
        enc = [] if plan.encoder is None else list(plan.encoder[1:])
        head = [plan.head_w, plan.head_b] if plan.pool is not None else []
        return _C.Decoder(self.batch, plan.d_model, _ENCODER_CODES[plan.encoder[0] if plan.encoder else None], enc,
                          kinds, flags, n_modes, ranks, eps, params, self.states, _POOL_CODES[plan.pool], head,
                          self._total, self._count)

    # --- inputs -----------------------------------------------------------------------------------
    def _check_input(self, who: str, x, sequence: bool) -> torch.Tensor:
        """x as a contiguous (B, T, d_input) / (B, T) tensor: TypeError / ValueError naming x otherwise."""
        plan = self.plan
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"StreamingDecoder.{who}: x must be a torch.Tensor, got {type(x).__name__}")
        B = self.batch
        if plan.tokens:
            want = "(B, T)" if sequence else "(B,)"
            if x.dtype not in (torch.int64, torch.int32):
                raise TypeError(f"StreamingDecoder.{who}: x must hold int64/int32 token ids, got {x.dtype}")
            if x.dim() != (2 if sequence else 1) or x.shape[0] != B:
                raise ValueError(f"StreamingDecoder.{who}: x must be {want} token ids with B = batch = {B}, got shape "
                                 f"{tuple(x.shape)}")
            x = x.to(torch.int64)
            if self.backend == "reference":
                V = plan.vocab_size
                bad = (x < 0) | (x >= V)
                if bool(bad.any()):
                    raise ValueError(f"StreamingDecoder: x must hold token ids in [0, vocab_size={V}), got "
                                     f"{int(x[bad][0])}")
            x = x if sequence else x.unsqueeze(1)
        else:
            d = plan.d_input
            want = f"(B, T, {d})" if sequence else f"(B, {d})"
            if x.dtype != plan.dtype:
                raise TypeError(f"StreamingDecoder.{who}: x must be {plan.dtype} (the model's dtype), got {x.dtype}")
            if x.device.type != "cpu":
                raise ValueError(f"StreamingDecoder.{who}: x must be a CPU tensor, got one on {x.device}")
            if x.dim() != (3 if sequence else 2) or x.shape[0] != B or x.shape[-1] != d:
                raise ValueError(f"StreamingDecoder.{who}: x must be {want} with B = batch = {B}, got shape "
                                 f"{tuple(x.shape)}")
            x = x if sequence else x.unsqueeze(1)
        if x.shape[1] < 1:
            raise ValueError(f"StreamingDecoder.{who}: x must hold T >= 1 tokens, got shape {tuple(x.shape)}")
        rows = B * x.shape[1]
        if rows * self._widest >= MAX_ELEMENTS:
            raise ValueError(f"StreamingDecoder.{who}: x holds {x.shape[1]} tokens of {B} streams, whose activations "
                             f"({rows} rows of up to {self._widest} values) exceed {MAX_ELEMENTS} elements: feed the "
                             "stream in shorter chunks (the state carries over)")
        return x.contiguous()

    # --- decoding ---------------------------------------------------------------------------------
    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "cpp":
            out = torch.empty(self.batch, x.shape[1], self.plan.n_out, dtype=self.plan.dtype)
            self._impl.run(x, out)
            return out
        with torch.no_grad():
            outs = []
            for t in range(x.shape[1]):
                y, new = self._impl.step(x[:, t], self.states, self._total, self._count)
                for s, n in zip(self.states, new[0]):
                    s.copy_(n)
                if self.plan.pool == "mean":
                    self._total.copy_(new[1])
                    self._count.copy_(new[2])
                outs.append(y)
            return torch.stack(outs, 1)

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        """One token of every stream: x_t (B, d_input) features, (B,) token ids, or (B, H) for a block or
        a layer -> (B, n_out). Updates the state."""
        return self._run(self._check_input("step", x_t, sequence=False))[:, 0]

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """T tokens of every stream: x (B, T, d_input), (B, T) ids or (B, T, H) -> (B, T, n_out), the
        output after each token. Updates the state (the next call continues the streams)."""
        return self._run(self._check_input("run", x, sequence=True))

    def reset(self, streams=None) -> None:
        """Every stream (streams None) or the listed ones back to the zero state, as a new stream starts."""
        if streams is None:
            idx = slice(None)
        else:
            idx = torch.as_tensor(streams, dtype=torch.int64).reshape(-1)
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.batch):
                raise ValueError(f"StreamingDecoder.reset: streams must be indices in [0, batch={self.batch}), "
                                 f"got {streams!r}")
        for s in self.states:
            s[idx] = 0
        if self.plan.pool == "mean":
            self._total[idx] = 0
            self._count[idx] = 0

    @property
    def n_out(self) -> int:
        return self.plan.n_out

    def __repr__(self) -> str:
        src = self.plan.source
        return (f"StreamingDecoder({src.get('model')}, layers={src.get('layers')}, d_state={src.get('d_state')}, "
                f"batch={self.batch}, backend={self.backend!r}, dtype={self.plan.dtype})")
