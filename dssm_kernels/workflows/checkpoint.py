"""Checkpoints that carry everything needed to rebuild the model and its task: config, weights, the
task's name and options, and what produced them (training history, reduction report).

The file is torch.save's zip archive of one dict of plain values and tensors:

    {"format": "dssm-checkpoint-1", "config": model.current_config(), "state_dict": {name: tensor},
     "task": {"name": str, "options": {str: int | float | str}}, "meta": {str: plain values}}

Loading never runs code from the file and checks everything before it builds anything: the archive is
read with torch's weights-only unpickler (which admits tensors and plain containers, no other
class or function), then the config's fields and types, the task's name and options (tasks.check:
bounded sizes), and the config against the weights (the sizes the config asks for must be those of the
tensors the file holds, so building the model allocates about what the file holds); the model built
must have exactly the file's parameter names, shapes and dtypes, and the weights must be finite.
Every failure is a ValueError (TypeError for a wrong type) of one line naming the file and what is
wrong.
"""
from __future__ import annotations

import inspect
import math
import os
import re
import zipfile

import torch

from dssm_kernels import tasks
from dssm_kernels.nn import SequenceClassifier
from dssm_kernels.workflows import preflight

FORMAT = "dssm-checkpoint-1"
_TOP = ("format", "config", "state_dict", "task", "meta")
DTYPES = ("float32", "float64")
MAX_L_MAX = 2 ** 20            # a layer's l_max: kernels of that length are materialised at run time
MAX_SEED = 2 ** 62             # torch.manual_seed takes seed + 1 + layer index


def save(path: str, model: SequenceClassifier, task: tasks.Task, **meta) -> str:
    """Write model (config + state_dict), the task's (name, options) and `meta` (plain values: dicts,
    lists, str, numbers, None) to `path`, atomically: a temporary file in the same folder replaces
    `path` once complete, so an interrupted save leaves no truncated checkpoint."""
    if not isinstance(model, SequenceClassifier):
        raise TypeError(f"checkpoint.save: model must be a SequenceClassifier, got {type(model).__name__}")
    preflight.writable_file(path, "checkpoint.save: path")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # opened like any new file (not mkstemp's 0600), so the checkpoint gets the usual permissions
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, "config": model.current_config(), "state_dict": model.state_dict(),
                        "task": {"name": task.name, "options": dict(task.options)}, "meta": meta}, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load(path: str):
    """(model in eval mode, task, meta) from a checkpoint written by save(); ValueError / TypeError of one
    line for anything else (see the module docstring for what is checked, and in which order)."""
    where = f"checkpoint.load({path!r})"
    ck = _read(path, where)
    config = _check_config(ck["config"], where)
    task_name, task_options = _check_task(ck["task"], where)
    state = _check_state_dict(ck["state_dict"], where)
    if not isinstance(ck["meta"], dict):
        raise TypeError(f"{where}: meta must be a dict, got {type(ck['meta']).__name__}")
    _check_sizes_against_weights(config, state, where)
    try:
        model = SequenceClassifier.from_config(config)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: its config does not build a model: {e}") from None
    _check_same_parameters(model.state_dict(), state, where)
    model.load_state_dict(state)
    model.eval()
    task = tasks.load(task_name, **task_options)
    return model, task, ck["meta"]


def _read(path, where: str) -> dict:
    """The checkpoint dict, read with the weights-only unpickler after checks on the archive."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint.load: path must be a str, got {type(path).__name__}")
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint.load: no checkpoint file at {os.fspath(path)!r}")
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"{where}: the file is empty")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{where}: not a checkpoint (expected the zip archive torch.save writes)")
    try:
        with zipfile.ZipFile(path) as z:
            records = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ValueError(f"{where}: not a readable zip archive ({e})") from None
    # torch.save stores records uncompressed: a compressed one could expand past the file's size
    # (a zip bomb) when torch reads it
    if any(r.compress_type != zipfile.ZIP_STORED for r in records) or sum(r.file_size for r in records) > size:
        raise ValueError(f"{where}: holds compressed or oversized records, which torch.save never writes")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an untrusted file can fail to parse in any way; each is bad input
        raise ValueError(f"{where}: cannot be read as a checkpoint: {_unpickling_reason(e)}") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"{where}: not a {FORMAT} file")
    missing = [k for k in _TOP if k not in ck]
    unknown = sorted(map(str, set(ck) - set(_TOP)))
    if missing or unknown:
        raise ValueError(f"{where}: a {FORMAT} file holds exactly {', '.join(_TOP)}; "
                         f"missing {missing or 'none'}, unknown {unknown or 'none'}")
    return ck


def _unpickling_reason(e: Exception) -> str:
    """One line for why torch.load failed. The weights-only unpickler's message is several lines: advice to
    load with weights_only=False (exactly what must not be done with an untrusted file), the reason
    ('Trying to load unsupported GLOBAL posix.system ...'), a pointer to the docs; keep the reason."""
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        rest = [s for s in lines[1:] if "weights_only" not in s and not s.startswith("Check the documentation")]
        reason = rest[0].removeprefix("WeightsUnpickler error:").strip() if rest else \
            "it holds objects other than tensors and plain values"
        return f"refused by the weights-only unpickler (no code from the file is run): {reason}"
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_config(cfg, where: str) -> dict:
    """The config's keys (SequenceClassifier's arguments) and their types; sizes >= 1 (their upper bound is
    the weights: _check_sizes_against_weights)."""
    if not isinstance(cfg, dict):
        raise TypeError(f"{where}: config must be a dict, got {type(cfg).__name__}")
    params = inspect.signature(SequenceClassifier.__init__).parameters
    accepted = [p for p in params if p != "self"]
    unknown = sorted(map(repr, set(cfg) - set(accepted)))
    if unknown:
        raise ValueError(f"{where}: config has unknown field(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    for key in ("n_classes", "layer", "d_model", "d_state", "n_layers"):
        if key not in cfg:
            raise ValueError(f"{where}: config lacks {key!r}")

    def bad(key, expected):
        return TypeError(f"{where}: config {key} must be {expected}, got {type(cfg[key]).__name__} ({cfg[key]!r:.80})")

    for key in ("n_classes", "d_model", "n_layers"):
        if not _is_int(cfg[key]) or cfg[key] < 1:
            raise bad(key, "an int >= 1")
    for key in ("d_input", "vocab_size"):
        if cfg.get(key) is not None and (not _is_int(cfg[key]) or cfg[key] < 1):
            raise bad(key, "an int >= 1 or None")
    d_states = cfg["d_state"] if isinstance(cfg["d_state"], list) else [cfg["d_state"]]
    if not d_states or not all(_is_int(d) and d >= 2 for d in d_states):
        raise bad("d_state", "an int >= 2 or a list of them")
    if isinstance(cfg["d_state"], list) and len(d_states) != cfg["n_layers"]:
        raise ValueError(f"{where}: config d_state lists {len(d_states)} sizes for n_layers={cfg['n_layers']}")
    for key in ("layer", "norm", "activation", "pool", "backend"):
        if key in cfg and not isinstance(cfg[key], str):
            raise bad(key, "a str")
    if "dtype" in cfg and cfg["dtype"] not in DTYPES:
        raise ValueError(f"{where}: config dtype must be one of {DTYPES}, got {cfg['dtype']!r:.80}")
    if "prenorm" in cfg and not isinstance(cfg["prenorm"], bool):
        raise bad("prenorm", "a bool")
    if "dropout" in cfg and (isinstance(cfg["dropout"], bool) or not isinstance(cfg["dropout"], (int, float))):
        raise bad("dropout", "a float")
    if cfg.get("seed") is not None and (not _is_int(cfg["seed"]) or not 0 <= cfg["seed"] < MAX_SEED):
        raise ValueError(f"{where}: config seed must be None or an int in [0, 2**62), got {cfg['seed']!r:.80}")
    kw = cfg.get("layer_kwargs") or {}
    if not isinstance(kw, dict) or not all(isinstance(k, str) for k in kw):
        raise bad("layer_kwargs", "a dict with str keys")
    for k, v in kw.items():  # layer options are plain scalars; the layer checks their values
        if not (v is None or isinstance(v, (bool, int, float, str))):
            raise TypeError(f"{where}: config layer_kwargs[{k!r}] must be a plain number, str, bool or None, "
                            f"got {type(v).__name__}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{where}: config layer_kwargs[{k!r}] must be finite, got {v}")
    if kw.get("l_max") is not None and (not _is_int(kw["l_max"]) or not 1 <= kw["l_max"] <= MAX_L_MAX):
        raise ValueError(f"{where}: config layer_kwargs['l_max'] must be an int in [1, {MAX_L_MAX}], "
                         f"got {kw['l_max']!r:.80}")
    return cfg


def _check_task(task, where: str) -> tuple[str, dict]:
    """(name, options) after tasks.check: known name and options, right types, bounded sizes."""
    if not isinstance(task, dict) or set(task) != {"name", "options"}:
        raise ValueError(f"{where}: task must be a dict with exactly 'name' and 'options'")
    name, options = task["name"], task["options"]
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise TypeError(f"{where}: task options must be a dict with str keys, got {type(options).__name__}")
    try:
        tasks.check(name, **options)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{where}: its task: {e}") from None
    return name, options


def _check_state_dict(state, where: str) -> dict:
    if not isinstance(state, dict):
        raise TypeError(f"{where}: state_dict must be a dict, got {type(state).__name__}")
    for k, v in state.items():
        if not isinstance(k, str):
            raise TypeError(f"{where}: state_dict keys must be str, got {type(k).__name__}")
        if not isinstance(v, torch.Tensor) or v.layout != torch.strided:
            raise TypeError(f"{where}: state_dict[{k!r}] must be a dense tensor, got {type(v).__name__}")
    return state


def _check_sizes_against_weights(cfg: dict, state: dict, where: str) -> None:
    """The sizes the config asks for must be those of the weights the file holds, before the model is built:
    encoder and decoder shapes give vocab_size / d_input, d_model and n_classes, the block indices n_layers,
    and every SSM layer holds at least d_model * d_state real numbers (B or C: d_model x d_state / 2
    complex in S4D, DSS, S4 and S5 alike), so building the model allocates about what the file holds."""
    def shape(key):
        if key not in state:
            raise ValueError(f"{where}: state_dict lacks {key!r}")
        return tuple(state[key].shape)

    H = cfg["d_model"]
    encoder = (cfg["vocab_size"], H) if cfg.get("vocab_size") is not None else (H, cfg.get("d_input"))
    for key, want in (("encoder.weight", encoder), ("decoder.weight", (cfg["n_classes"], H))):
        if shape(key) != want:
            raise ValueError(f"{where}: config asks for {key} of shape {want}, the file holds {shape(key)}")
    blocks = {m.group(1) for k in state for m in [re.match(r"blocks\.(\d+)\.", k)] if m}
    if blocks != {str(i) for i in range(cfg["n_layers"])}:
        raise ValueError(f"{where}: config n_layers={cfg['n_layers']}, the file holds weights of "
                         f"{len(blocks)} block(s)")
    d_states = cfg["d_state"] if isinstance(cfg["d_state"], list) else [cfg["d_state"]] * cfg["n_layers"]
    for i, d in enumerate(d_states):
        held = sum(v.numel() for k, v in state.items() if k.startswith(f"blocks.{i}.layer."))
        if H * d > held:
            raise ValueError(f"{where}: config d_state={d} for block {i} needs at least d_model x d_state = {H * d} "
                             f"SSM weights, the file holds {held}")


def _check_same_parameters(expected: dict, state: dict, where: str) -> None:
    """state must hold exactly the model's keys with its shapes and dtypes, and finite values."""
    missing, unknown = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unknown:
        raise ValueError(f"{where}: weights do not match the model its config builds: missing {missing[:3] or 'none'}"
                         f"{' ...' if len(missing) > 3 else ''}, unexpected {unknown[:3] or 'none'}"
                         f"{' ...' if len(unknown) > 3 else ''}")
    for k, want in expected.items():
        got = state[k]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ValueError(f"{where}: state_dict[{k!r}] is {got.dtype} {tuple(got.shape)}, the model needs "
                             f"{want.dtype} {tuple(want.shape)}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise ValueError(f"{where}: state_dict[{k!r}] holds non-finite values")


def ssm_parameter_count(model: torch.nn.Module) -> int:
    """Parameters of the SSM layers (what reduction shrinks), counting a complex value as two."""
    from dssm_kernels.nn._base import SSMLayer
    return sum(p.numel() for m in model.modules() if isinstance(m, SSMLayer) for p in m.parameters())


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
