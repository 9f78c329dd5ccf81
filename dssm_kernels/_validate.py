"""Argument checks every layer of the package shares (ops, nn, reduction, tasks, workflows).

One error type per kind of mistake, whoever is called:
- TypeError: the argument has the wrong type (a float where an int is needed, a bool where a number
  is, a list where a tensor is, a complex tensor where a real one is);
- ValueError: the type is right but the value is not (out of range, NaN, an unknown choice, a shape
  or device that does not fit).
Every message starts with `where` (the function or class called), names the argument, says what
was expected and what came. Nothing here imports the rest of the package.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch

_REAL_FOR_COMPLEX = {torch.complex64: torch.float32, torch.complex128: torch.float64}
COMPLEX_DTYPES = tuple(_REAL_FOR_COMPLEX)


def real_dtype_of(complex_dtype: torch.dtype) -> torch.dtype:
    """float32 for complex64, float64 for complex128."""
    return _REAL_FOR_COMPLEX[complex_dtype]


def complex_dtype_of(real_dtype: torch.dtype) -> torch.dtype:
    """complex64 for float32, complex128 for float64."""
    return torch.complex64 if real_dtype == torch.float32 else torch.complex128


# ------------------------------------------------------------------------------------------ plain values
def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(where: str, name: str, value, minimum: int | None = 1, maximum: int | None = None, *,
              allow_none: bool = False) -> int | None:
    """An int (numpy integers too, never a bool) in [minimum, maximum] (either end may be None)."""
    if value is None and allow_none:
        return None
    if not _is_int(value):
        raise TypeError(f"{where}: {name} must be an int{' or None' if allow_none else ''}, "
                        f"got {type(value).__name__} ({value!r})")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{where}: {name} must be an int {_range(minimum, maximum)}{_or_none(allow_none)}, got {value}")
    return int(value)


def check_number(where: str, name: str, value, minimum: float | None = None, maximum: float | None = None, *,
                 positive: bool = False, allow_none: bool = False) -> float | None:
    """A finite real number (int or float, numpy scalars too, never a bool) in [minimum, maximum];
    with `positive`, > 0."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a number{' or None' if allow_none else ''}, "
                        f"got {type(value).__name__} ({value!r})")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0) or \
            (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if positive:
            want = "a finite number > 0" if maximum is None else f"a finite number in (0, {maximum:g}]"
        else:
            want = f"a finite number {_range(minimum, maximum)}".rstrip()
        raise ValueError(f"{where}: {name} must be {want}{_or_none(allow_none)}, got {value!r}")
    return value


def _or_none(allow_none: bool) -> str:
    return " (or None)" if allow_none else ""


def _range(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f"in [{minimum}, {maximum}]"
    if minimum is not None:
        return f">= {minimum}"
    if maximum is not None:
        return f"<= {maximum}"
    return ""


def check_bool(where: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be True or False, got {type(value).__name__} ({value!r})")
    return value


def check_choice(where: str, name: str, value, choices: Sequence):
    """value must be one of `choices` (compared with ==): ValueError listing them."""
    try:
        known = value in choices
    except TypeError:   # an unhashable value asked of a set or dict
        known = False
    if not known:
        raise ValueError(f"{where}: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_seed(where: str, seed, name: str = "seed") -> int | None:
    """None (the global RNG) or an int in [0, 2^63), what torch.Generator.manual_seed takes without
    wrapping."""
    seed = check_int(where, name, seed, 0, allow_none=True)
    if seed is not None and seed >= 2 ** 63:
        raise ValueError(f"{where}: {name} must be an int in [0, 2^63) (or None), got {seed}")
    return seed


# ------------------------------------------------------------------------------------------ tensors
def check_tensor(where: str, name: str, t, *, ndim: int | None = None, min_ndim: int = 0) -> torch.Tensor:
    """A torch.Tensor (TypeError otherwise) with `ndim` (or at least `min_ndim`) dimensions."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{where}: {name} must have {ndim} dimension(s), got shape {tuple(t.shape)}")
    if t.dim() < min_ndim:
        raise ValueError(f"{where}: {name} must have at least {min_ndim} dimension(s), got shape {tuple(t.shape)}")
    return t


def check_complex(where: str, name: str, t: torch.Tensor) -> None:
    if t.dtype not in COMPLEX_DTYPES:
        raise TypeError(f"{where}: {name} must be complex64 or complex128, got {t.dtype}")


def check_dtype_in(where: str, name: str, t: torch.Tensor, allowed: Sequence[torch.dtype]) -> None:
    if t.dtype not in allowed:
        names = " or ".join(str(d).replace("torch.", "") for d in allowed)
        raise TypeError(f"{where}: {name} must be {names}, got {t.dtype}")


def check_same_dtype(where: str, names: Sequence[str], tensors: Sequence[torch.Tensor]) -> None:
    if len({t.dtype for t in tensors}) > 1:
        got = ", ".join(f"{n}: {t.dtype}" for n, t in zip(names, tensors))
        raise TypeError(f"{where}: {', '.join(names)} must share one dtype, got {got}")


def check_same_device(where: str, names: Sequence[str], tensors: Sequence[torch.Tensor]) -> torch.device:
    if len({t.device for t in tensors}) > 1:
        got = ", ".join(f"{n} on {t.device}" for n, t in zip(names, tensors))
        raise ValueError(f"{where}: all tensors must be on one device, got {got}")
    return tensors[0].device


def check_shape(where: str, name: str, t: torch.Tensor, expected: Sequence[int]) -> None:
    if tuple(t.shape) != tuple(expected):
        raise ValueError(f"{where}: {name} must have shape {tuple(expected)}, got {tuple(t.shape)}")
