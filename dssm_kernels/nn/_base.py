"""What every SSM layer shares: argument checks, the (B, L, H) / (B, H, L) layout, SSM parameters that
carry their own optimiser settings, and the convolution-mode forward of the SISO-per-channel layers."""
from __future__ import annotations

import abc
import math

import numpy as np
import torch
from torch import nn

import dssm_kernels as dk
from dssm_kernels._validate import check_bool, check_choice, check_int, check_number, check_seed, complex_dtype_of


def check_dt_range(cls: str, dt_min, dt_max) -> None:
    check_number(cls, "dt_min", dt_min, positive=True)
    check_number(cls, "dt_max", dt_max, positive=True)
    if dt_min > dt_max:
        raise ValueError(f"{cls}: need dt_min <= dt_max, got dt_min={dt_min!r}, dt_max={dt_max!r}")


def seeded_generator(cls: str, seed) -> torch.Generator | None:
    """A CPU generator seeded with `seed` (check_seed), or None for seed None (the global RNG)."""
    return None if check_seed(cls, seed) is None else torch.Generator().manual_seed(seed)


def check_dtype(cls: str, dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{cls}: dtype must be torch.float32 or torch.float64, got {dtype}")
    return dtype


def check_real_input(who: str, name: str, t, dtype: torch.dtype, device: torch.device) -> None:
    """t must be a real floating-point tensor of the module's dtype on its device: TypeError (type,
    dtype) or ValueError (device) naming `name`, with what was expected and what came. An integer
    input would be cast silently (S5 once returned zeros for one), a complex one would give a
    complex output, and a float64 input to a float32 layer a mixed-precision result."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{who}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_complex() or not t.is_floating_point():
        raise TypeError(f"{who}: {name} must be a real floating-point tensor of the layer's dtype {dtype}, "
                        f"got {t.dtype}")
    if t.dtype != dtype:
        fix = f"{name}.to({dtype}) or layer.to({t.dtype})" if t.dtype in (torch.float32, torch.float64) else \
            f"{name}.to({dtype}): layers compute in float32 or float64"
        raise TypeError(f"{who}: {name} has dtype {t.dtype} but the layer's parameters are {dtype}: convert ({fix})")
    if t.device != device:
        raise ValueError(f"{who}: {name} is on {t.device}, the layer's parameters on {device}")


def check_state(who: str, state, shape: tuple, dtype: torch.dtype, device: torch.device, name: str = "state") -> None:
    """A recurrent state must be exactly what default_state(batch) gives for the input's batch (same
    type, shape, dtype and device): TypeError / ValueError naming `name`. Arithmetic on a state of
    another shape would broadcast silently ((B, H, 1), a batch of 1, ...)."""
    if not isinstance(state, torch.Tensor):
        raise TypeError(f"{who}: {name} must be a torch.Tensor like default_state(batch) (or None for the zero "
                        f"state), got {type(state).__name__}")
    if state.dtype != dtype:
        raise TypeError(f"{who}: {name} must be {dtype} (what default_state gives), got {state.dtype}")
    if tuple(state.shape) != tuple(shape):
        hint = f" (as default_state({shape[0]}) gives for the input's batch of {shape[0]})" if shape else ""
        raise ValueError(f"{who}: {name} must have shape {tuple(shape)}{hint}, got {tuple(state.shape)}")
    if state.device != device:
        raise ValueError(f"{who}: {name} is on {state.device}, the layer's parameters on {device}")


def log_uniform(n: int, lo: float, hi: float, g: torch.Generator | None) -> torch.Tensor:
    """n values log-uniform in [lo, hi], float64: the per-channel (or per-mode) initial step."""
    return math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(n, generator=g, dtype=torch.float64)


def crandn(*shape, g: torch.Generator | None) -> torch.Tensor:
    """Complex standard normal (E|z|^2 = 1), complex128."""
    return torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                         torch.randn(shape, generator=g, dtype=torch.float64)) / math.sqrt(2)


def ssm_param(module: nn.Module, name: str, value: torch.Tensor, lr: float | None) -> None:
    """Register an SSM parameter (A, dt, B) that carries its own learning rate and no weight decay;
    dssm_kernels.nn.param_groups reads the tag. Complex values are stored as real views (..., 2) so
    every optimiser and state_dict handles them.

    The tag lives in the module's SSM_OPTIM dict, not on the Parameter: copy.deepcopy of a model makes
    new Parameters without their Python attributes (a copied model then trained its SSM parameters at
    the ordinary learning rate), while a module's own attributes are copied with it."""
    check_number(type(module).__name__, "ssm_lr", lr, positive=True, allow_none=True)
    if value.is_complex():
        value = torch.view_as_real(value)
    module.register_parameter(name, nn.Parameter(value.contiguous()))
    module.__dict__.setdefault(SSM_OPTIM, {})[name] = {"lr": lr, "weight_decay": 0.0}


def register_modal(module: nn.Module, lam_names: tuple[str, str], lam, B, C, D, dt, *, dtype, device) -> None:
    """(Re)register a modal layer's parameters from continuous modes lam (Re lam < 0), B, C complex, D, dt
    real: log(-Re lam) and Im lam under `lam_names` (Re lam = -exp(.) stays < 0 whatever the optimizer
    does), log_dt and B with the SSM learning rate module.ssm_lr; C (complex, as a real view) and D
    (through float64) as ordinary parameters, all of `dtype` (C, B: its complex type) on `device`."""
    kw = dict(dtype=dtype, device=device)
    ckw = dict(dtype=complex_dtype_of(dtype), device=device)
    log_re_name, im_name = lam_names
    ssm_param(module, log_re_name, torch.log(-lam.real).to(**kw), module.ssm_lr)
    ssm_param(module, im_name, lam.imag.clone().to(**kw), module.ssm_lr)
    ssm_param(module, "log_dt", torch.as_tensor(dt, dtype=torch.float64).log().to(**kw), module.ssm_lr)
    ssm_param(module, "B", B.to(**ckw), module.ssm_lr)
    module.C = nn.Parameter(torch.view_as_real(C.to(**ckw)).contiguous())
    module.D = nn.Parameter(torch.as_tensor(D, dtype=torch.float64).to(**kw))


SSM_OPTIM = "_ssm_optim"   # module attribute: {parameter name: {"lr": float | None, "weight_decay": 0.0}}


def ssm_optim_tags(model: nn.Module) -> dict[int, dict]:
    """{id(parameter): its optimiser settings} for every SSM parameter of `model` (see ssm_param)."""
    tags = {}
    for module in model.modules():
        for name, opts in module.__dict__.get(SSM_OPTIM, {}).items():
            p = module._parameters.get(name)
            if p is not None:
                tags[id(p)] = opts
    return tags


def modal_tensors(who: str, H: int, lam, B, C, D, dt):
    """A diagonal layer's continuous modes as complex128 lam, B, C (H, N) and float64 D, dt (H,), checked:
    shapes, finite values, dt > 0 (ValueError naming the argument)."""
    lam, B, C = (torch.as_tensor(t, dtype=torch.complex128) for t in (lam, B, C))
    if lam.dim() != 2 or lam.shape[0] != H or lam.shape[1] < 1:
        raise ValueError(f"{who}: lam must be (H={H}, N) with N >= 1, got {tuple(lam.shape)}")
    D = torch.as_tensor(D, dtype=torch.float64)
    dt = torch.as_tensor(dt, dtype=torch.float64)
    for name, t, shape in (("B", B, lam.shape), ("C", C, lam.shape), ("D", D, lam.shape[:1]), ("dt", dt, lam.shape[:1])):
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{who}: {name} must have shape {tuple(shape)} (like lam), got {tuple(t.shape)}")
    for name, t in (("lam", lam), ("B", B), ("C", C), ("D", D), ("dt", dt)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{who}: {name} must be finite, got {int((~torch.isfinite(t)).sum())} non-finite value(s)")
    if not bool((dt > 0).all()):
        raise ValueError(f"{who}: dt must be > 0, got min {dt.min().item()}")
    return lam, B, C, D, dt


def mimo_modal_tensors(who: str, layer, lam, B, C, D, dt):
    """A MIMO layer's with_modal_form arguments as complex128 lam (N,), B (N, H), C (H, N), float64 D (H,)
    and a float dt, checked (shapes, finite, dt > 0); D None: the layer's, dt None: 1."""
    H = layer.d_model
    lam, B, C = (torch.as_tensor(t, dtype=torch.complex128) for t in (lam, B, C))
    if lam.dim() != 1 or lam.shape[0] < 1:
        raise ValueError(f"{who}: lam must be (N,) with N >= 1, got {tuple(lam.shape)}")
    N = lam.shape[0]
    D = layer.D.detach().double() if D is None else torch.as_tensor(D, dtype=torch.float64)
    dt = torch.tensor(1.0, dtype=torch.float64) if dt is None else torch.as_tensor(dt, dtype=torch.float64)
    for name, t, shape in (("B", B, (N, H)), ("C", C, (H, N)), ("D", D, (H,)), ("dt", dt, ())):
        if tuple(t.shape) != shape:
            raise ValueError(f"{who}: {name} must have shape {shape}, got {tuple(t.shape)}")
    for name, t in (("lam", lam), ("B", B), ("C", C), ("D", D), ("dt", dt)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{who}: {name} must be finite, got {int((~torch.isfinite(t)).sum())} non-finite value(s)")
    if not float(dt) > 0:
        raise ValueError(f"{who}: dt must be > 0, got {float(dt)}")
    return lam, B, C, D, float(dt)


class SSMLayer(nn.Module, abc.ABC):
    """Base of the layers: H = d_model channels, d_state the real state size (even: N = d_state / 2
    complex modes in conjugate pairs). Subclasses set up their parameters and implement forward on
    (B, H, L) through `_channels_first` / `_restore`, `_state_shape` and `step`.

    Inputs (forward's u, scan's u, step's u_t) must be real floating-point tensors of the layer's
    dtype on its device (TypeError / ValueError naming them otherwise). A state passed to step() or
    scan() must be what default_state(batch) gives for the input's batch; None stands for that zero
    state everywhere (step(u_t, None) == step(u_t, default_state(B)))."""

    def __init__(self, d_model: int, d_state: int, *, transposed: bool, backend: str, dtype, l_max):
        super().__init__()
        cls = type(self).__name__
        check_int(cls, "d_model", d_model)
        check_int(cls, "d_state", d_state)
        if d_state % 2:
            raise ValueError(f"{cls}: d_state must be even (conjugate pairs: N = d_state / 2 modes), got {d_state}")
        check_choice(cls, "backend", backend, dk.BACKENDS)
        check_dtype(cls, dtype)
        check_bool(cls, "transposed", transposed)
        if l_max is not None:
            check_int(cls, "l_max", l_max)
        self.d_model, self.d_state, self.transposed, self.backend, self.l_max = d_model, d_state, transposed, backend, l_max

    @property
    def _float(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _channels_first(self, u: torch.Tensor, who: str | None = None) -> torch.Tensor:
        """u as (B, H, L), checked (forward's and scan's input)."""
        who = who or type(self).__name__
        check_real_input(who, "u", u, self._float, self._device)
        if u.dim() != 3:
            raise ValueError(f"{who}: u must be (B, L, H) (or (B, H, L) with transposed=True), got {tuple(u.shape)}")
        x = u if self.transposed else u.transpose(1, 2)
        if x.shape[1] != self.d_model:
            raise ValueError(f"{who}: u has {x.shape[1]} channels, the layer d_model={self.d_model} "
                             f"(shape {tuple(u.shape)}, transposed={self.transposed})")
        if x.shape[0] < 1 or x.shape[2] < 1:
            raise ValueError(f"{who}: u must hold B >= 1 sequences of L >= 1 steps, got shape {tuple(u.shape)} "
                             f"(transposed={self.transposed})")
        return x

    def _restore(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.transposed else y.transpose(1, 2)

    def _cached(self, name: str, compute):
        """compute() once per parameter version while no gradient is being recorded: step() would
        otherwise re-discretise (and S4 re-solve for C) at every time step of a decoding loop. Any
        in-place change of a parameter (optimizer step, load_state_dict) bumps its version and the key."""
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return compute()
        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        cache = self.__dict__.setdefault("_step_cache", {})
        if name not in cache or cache[name][0] != key:
            cache[name] = (key, compute())
        return cache[name][1]

    def scan(self, u: torch.Tensor, state=None):
        """The recurrent view over a whole sequence, (y, last state); layers that have one override this."""
        raise NotImplementedError(f"{type(self).__name__}: no scan view (its recurrence is not diagonal); "
                                  "use forward() or step()")

    @abc.abstractmethod
    def _state_shape(self, batch: int) -> tuple:
        """The shape of the recurrent state for a batch of `batch` sequences."""

    def default_state(self, batch: int) -> torch.Tensor:
        """The zero state, complex of shape _state_shape(batch) ((batch, H, N), or (batch, N) for S5)."""
        check_int(type(self).__name__, "batch", batch, 0)
        return torch.zeros(self._state_shape(batch), dtype=complex_dtype_of(self._float), device=self._device)

    def _check_state(self, state, batch: int, who: str) -> None:
        """state is None or what default_state(batch) gives (check_state)."""
        if state is not None:
            check_state(who, state, self._state_shape(batch), complex_dtype_of(self._float), self._device)

    def _check_step(self, u_t: torch.Tensor, state):
        """Check step()'s input u_t (B, H) and state; returns the state, the zero state for None."""
        who = f"{type(self).__name__}.step"
        check_real_input(who, "u_t", u_t, self._float, self._device)
        if u_t.dim() != 2 or u_t.shape[1] != self.d_model:
            raise ValueError(f"{who}: u_t must be (B, H={self.d_model}), got {tuple(u_t.shape)}")
        if state is None:
            return self.default_state(u_t.shape[0])
        self._check_state(state, u_t.shape[0], who)
        return state

    def config(self) -> dict:
        """The constructor options (besides d_model, d_state, backend, dtype, device, seed) that rebuild a
        layer of this structure, for SequenceClassifier's per-block configs: plain values only."""
        return {name: getattr(self, name) for name in self._config_options}

    _config_options: tuple = ("transposed", "l_max")

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}, transposed={self.transposed}, backend={self.backend!r}"


class ConvSSMLayer(SSMLayer):
    """A layer with one SISO system per channel, trained in convolution mode: subclasses give
    kernel(L) -> (H, L) and the feedthrough D (H,); forward is y = K * u + D u (dk.fftconv)."""

    @abc.abstractmethod
    def kernel(self, L: int) -> torch.Tensor:
        """The convolution kernel K (H, L)."""

    def _check_length(self, L) -> int:
        """kernel()'s L: an int >= 1 (a length read through l_max's window would otherwise be sliced
        silently: L = 0 gave an empty kernel, L = -1 one of l_max - 1)."""
        return check_int(f"{type(self).__name__}.kernel", "L", L)

    @property
    def _conv_backend(self) -> str:
        """fftconv has no C++ kernels (torch's FFTs are native): a "cpp" layer convolves on "auto"."""
        return "auto" if self.backend == "cpp" else self.backend

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x = self._channels_first(u)
        y = dk.fftconv(x, self.kernel(x.shape[-1]), self.D, backend=self._conv_backend)
        return self._restore(y)

    def _state_shape(self, batch: int) -> tuple:
        """(batch, H, N): one diagonal state per channel."""
        return (batch, self.d_model, self.d_state // 2)


MAX_CHANNEL_MODES = 1 << 16       # channel_modes entries (a count from a checkpoint is checked before allocating)
INERT_LAM = -0.5 + 0.0j           # the mode a per-channel layout's padded modal form fills in (with B 1, C 0)


class ChannelModes:
    """The modes of a SISO-per-channel layer whose channels keep different numbers of modes (what a
    model-wide state budget gives), stored flat: M = sum(counts) modes, grouped by count (ascending),
    within a group channel by channel.

    The ops run on at most MAX_BUCKETS blocks: consecutive groups merged into a bucket of H_b channels,
    each padded to the bucket's largest count n_b with inert modes (every coefficient 0), the buckets
    chosen to minimise the padded total sum H_b n_b. One op call per distinct count would cost a call's
    overhead for each of up to H counts (a budget over 64 channels gave 17: the reduced layer stepped 20x
    slower than the full one); padding everything to the largest count would cost H * max(counts).

    counts: H ints >= 1. groups: [(n_g, channels (H_g,) long tensor, offset into the flat modes)];
    buckets: [(channels (H_b,), gather index (H_b, n_b) into the flat modes, M marking padding)];
    mode_channel: (M,) the channel of each flat mode; inverse: the channel order undoing the grouping."""

    def __init__(self, who: str, counts, H: int):
        if not isinstance(counts, (list, tuple)) or len(counts) != H or not all(
                isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_CHANNEL_MODES for n in counts):
            raise ValueError(f"{who}: channel_modes must be a list of d_model={H} ints in [1, {MAX_CHANNEL_MODES}], got "
                             f"{counts!r:.80}")
        self.counts = [int(n) for n in counts]
        self.M = sum(self.counts)
        self.groups, order, off = [], [], 0
        for n in sorted(set(self.counts)):
            chans = [h for h in range(H) if self.counts[h] == n]
            self.groups.append((n, torch.tensor(chans), off))
            order += chans
            off += n * len(chans)
        self.inverse = torch.argsort(torch.tensor(order))
        self.mode_channel = torch.cat([ch.repeat_interleave(n) for n, ch, _ in self.groups])
        # (h, j) of each flat mode, to gather from / scatter to (H, max count) arrays
        self._rows = self.mode_channel
        self._cols = torch.cat([torch.arange(n).repeat(len(ch)) for n, ch, _ in self.groups])
        self.buckets = []
        for lo, hi in _bucket_ranges([n for n, _, _ in self.groups], [len(ch) for _, ch, _ in self.groups]):
            chans = torch.cat([ch for _, ch, _ in self.groups[lo:hi]])
            n_b = self.groups[hi - 1][0]
            rows = [torch.cat([off + k * n + torch.arange(n), torch.full((n_b - n,), self.M)])
                    for n, ch, off in self.groups[lo:hi] for k in range(len(ch))]
            self.buckets.append((chans, torch.stack(rows)))
        self.padded_modes = sum(idx.numel() for _, idx in self.buckets)

    @staticmethod
    def d_state(counts) -> int:
        """The layer's d_state: the mean real state per channel, rounded up to even (2 ceil(M / H))."""
        return 2 * -(-sum(counts) // len(counts))

    def to_flat(self, X: torch.Tensor) -> torch.Tensor:
        """(H, N) -> (M,): the first counts[h] modes of each row, in the flat order."""
        return X[self._rows, self._cols]

    def to_padded(self, flat: torch.Tensor, fill) -> torch.Tensor:
        """(M,) -> (H, max count), the missing modes filled with `fill`."""
        out = torch.full((len(self.counts), max(self.counts)), fill, dtype=flat.dtype, device=flat.device)
        out[self._rows.to(flat.device), self._cols.to(flat.device)] = flat
        return out

    def blocks(self, flat: torch.Tensor):
        """[(channels, (..., H_b, n_b) block)] of a flat (..., M) tensor, one per bucket, padding 0."""
        ext = torch.cat([flat, flat.new_zeros(flat.shape[:-1] + (1,))], -1)
        return [(ch.to(flat.device), ext[..., idx.to(flat.device)]) for ch, idx in self.buckets]

    def unblock(self, parts: list) -> torch.Tensor:
        """The inverse of blocks: per-bucket (..., H_b, n_b) tensors back to the flat (..., M), padding dropped."""
        return torch.cat([p.flatten(-2)[..., (idx < self.M).flatten().to(p.device)]
                          for p, (_, idx) in zip(parts, self.buckets)], -1)

    def merge(self, parts: list, dim: int) -> torch.Tensor:
        """Per-bucket results along `dim` (H_b channels each) back in channel order."""
        cat = torch.cat(parts, dim)
        return cat.index_select(dim, self.inverse.to(cat.device))


MAX_BUCKETS = 4   # op calls per view of a per-channel layout (ChannelModes)


def _bucket_ranges(counts: list, sizes: list, k: int = MAX_BUCKETS) -> list:
    """[(lo, hi)]: min(k, len(counts)) consecutive ranges of the groups (counts ascending, sizes channels
    each) minimising the padded total, sum over ranges of (its channels) x (its largest count): an exact
    dynamic programme. Using every range allowed is optimal: splitting a range never adds padding."""
    G = len(counts)
    cum = np.concatenate([[0.0], np.cumsum(sizes, dtype=float)])
    top = np.concatenate([[0.0], np.asarray(counts, dtype=float)])   # top[j]: a range ending at group j - 1
    cost = (cum[None, :] - cum[:, None]) * top[None, :]             # cost[i, j]: the range of groups [i, j)
    cost[np.tril_indices(G + 1)] = np.inf                           # empty ranges
    best = np.full(G + 1, np.inf)
    best[0] = 0.0
    choices = []
    for _ in range(min(k, G)):                                      # best[j]: groups [0, j) in t + 1 ranges
        total = best[:, None] + cost
        choices.append(total.argmin(0))
        best = total.min(0)
    ranges, j = [], G
    for choice in reversed(choices):
        i = int(choice[j])
        ranges.append((i, j))
        j = i
    return ranges[::-1]


class DiagonalConvLayer(ConvSSMLayer):
    """A diagonal SISO-per-channel layer (S4D, DSS): subclasses give discrete() -> (dA, dB, C, log dA),
    complex (H, N) each (flat (M,) when channels keep different numbers of modes: self.layout, a
    ChannelModes). The kernel is K[l] = 2 Re(sum_n C dB dA^l) = dk.vandermonde(C dB, log dA, L);
    step() is the same recurrence (dk.ssm_step), so the two agree."""

    layout: ChannelModes | None = None

    @abc.abstractmethod
    def discrete(self):
        """(dA, dB, C, log dA), complex (H, N) each (or (M,))."""

    def _set_layout(self, channel_modes, d_state: int) -> None:
        """channel_modes: None (every channel N = d_state / 2 modes) or H counts, whose d_state must then be
        ChannelModes.d_state(counts)."""
        self.channel_modes = None if channel_modes is None else list(channel_modes)
        if channel_modes is None:
            self.layout = None
            return
        who = type(self).__name__
        self.layout = ChannelModes(who, self.channel_modes, self.d_model)
        want = ChannelModes.d_state(self.channel_modes)
        if d_state != want:
            raise ValueError(f"{who}: with channel_modes (M = {self.layout.M} modes over {self.d_model} channels), "
                             f"d_state must be 2 ceil(M / d_model) = {want}, got {d_state}")

    def _initial_modes(self, init_fn, d_state: int) -> torch.Tensor:
        """An initialisation's modes, complex128 (H, N): init_fn(d_state) (N modes) in every channel, or,
        with a per-channel layout, init_fn(2 n) in each channel of n modes, padded with INERT_LAM."""
        if self.layout is None:
            return torch.as_tensor(init_fn(d_state), dtype=torch.complex128).expand(self.d_model, d_state // 2)
        lam = torch.cat([torch.as_tensor(init_fn(2 * n), dtype=torch.complex128).expand(len(ch), n).flatten()
                         for n, ch, _ in self.layout.groups])
        return self.layout.to_padded(lam, INERT_LAM)

    def _mode_dt(self) -> torch.Tensor:
        """Each mode's step: (H, 1) against (H, N) modes, or (M,) for a per-channel layout."""
        dt = torch.exp(self.log_dt)
        return dt.unsqueeze(-1) if self.layout is None else dt[self.layout.mode_channel.to(dt.device)]

    def _modal_tensors(self, lam, B, C, D, dt):
        """with_modal_form's arguments checked (modal_tensors), D and dt None meaning this layer's."""
        if D is None or dt is None:
            form = self.modal_form()
            D = form["D"] if D is None else D
            dt = form["dt"] if dt is None else dt
        return modal_tensors(f"{type(self).__name__}.with_modal_form", self.d_model, lam, B, C, D, dt)

    def _padded(self, x: torch.Tensor, fill) -> torch.Tensor:
        """A per-mode quantity as (H, N): as it is, or a per-channel layout's padded with `fill`."""
        return x if self.layout is None else self.layout.to_padded(x, fill)

    def _vandermonde(self, v: torch.Tensor, x: torch.Tensor, L: int) -> torch.Tensor:
        """dk.vandermonde (H, L) of per-mode v, x: (H, N), or (M,) run bucket by bucket (padding: v = 0)."""
        if self.layout is None:
            return dk.vandermonde(v, x, L, backend=self.backend)
        parts = [dk.vandermonde(vg, xg, L, backend=self.backend)
                 for (_, vg), (_, xg) in zip(self.layout.blocks(v), self.layout.blocks(x))]
        return self.layout.merge(parts, 0)

    def kernel(self, L: int) -> torch.Tensor:
        """The convolution kernel K (H, L)."""
        self._check_length(L)
        _, dB, C, log_dA = self.discrete()
        return self._vandermonde(C * dB, log_dA, L)

    def _state_shape(self, batch: int) -> tuple:
        """(batch, H, N), or (batch, M) for a per-channel layout."""
        return (batch, self.d_model, self.d_state // 2) if self.layout is None else (batch, self.layout.M)

    def step(self, u_t: torch.Tensor, state: torch.Tensor | None):
        """One recurrent step: u_t (B, H) -> (y_t (B, H), new state (B, H, N) or (B, M)). Equals forward()
        step by step. state: what default_state(B) or the previous step gave; None is the zero state."""
        state = self._check_step(u_t, state)
        dA, dB, C, _ = self._cached("discrete", self.discrete)
        if self.layout is None:
            return dk.ssm_step(u_t, state, dA, dB, C, self.D, backend=self.backend)
        # the parameters' padded blocks, like the discretisation, once per parameter version
        params = self._cached("discrete_blocks", lambda: [self.layout.blocks(t) for t in (dA, dB, C)])
        ys, states = [], []
        for (ch, s), (_, a), (_, b), (_, c) in zip(self.layout.blocks(state), *params):
            y, s = dk.ssm_step(u_t.index_select(1, ch), s, a, b, c, self.D.index_select(0, ch), backend=self.backend)
            ys.append(y)
            states.append(s)
        return self.layout.merge(ys, 1), self.layout.unblock(states)

    def scan(self, u: torch.Tensor, state: torch.Tensor | None = None):
        """The recurrent view over a whole sequence (dk.ssm_scan): (y like forward(u), last state as
        default_state). O(L N) per channel instead of the convolution's O(L log L): the cheaper one for
        small states. state: as default_state(B) gives, or None (zero)."""
        who = f"{type(self).__name__}.scan"
        x = self._channels_first(u, who)
        self._check_state(state, x.shape[0], who)
        dA, dB, C, _ = self.discrete()
        if self.layout is None:
            y, last = dk.ssm_scan(x, dA, dB, C, self.D, state, backend=self.backend)
            return self._restore(y), last
        st = self.layout.blocks(state) if state is not None else [(None, None)] * len(self.layout.buckets)
        ys, lasts = [], []
        for (ch, a), (_, b), (_, c), (_, s) in zip(*(self.layout.blocks(t) for t in (dA, dB, C)), st):
            y, last = dk.ssm_scan(x.index_select(1, ch), a, b, c, self.D.index_select(0, ch), s, backend=self.backend)
            ys.append(y)
            lasts.append(last)
        return self._restore(self.layout.merge(ys, 1)), self.layout.unblock(lasts)
