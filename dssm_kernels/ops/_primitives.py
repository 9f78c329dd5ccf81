"""Kernel primitives, each declared once and dispatched by backend through one torch.library op.

A primitive is a kernel-level computation an op's autograd.Function is built from (vandermonde_rows,
power_sums, cauchy_rows, ssm_scan_fwd, ...). One call of `declare` defines it completely:

    VANDERMONDE_ROWS = declare(
        "vandermonde_rows(Tensor c, Tensor x, int L, float scale, bool reverse) -> Tensor",
        fake=_rows_fake, triton=_rows_triton, cpp=True)

- the signature is written once, here: it becomes the schema of the custom op dssm::<name>, with a
  trailing `str backend` argument;
- `fake` gives torch.compile the outputs' shapes and dtypes (meta tensors), so a compiled graph holds
  the op and never traces into a launcher;
- each implementation takes exactly the signature's arguments, by the signature's names: the Triton
  launcher (a Python function that launches @triton.jit kernels with keyword arguments) and, with
  cpp=True, the function of the same name in the C++ extension dssm_kernels._C (a pybind11 function
  on at::Tensor, with no schema of its own). The names are checked: the launcher's and the fake's
  Python signatures here, the C++ functions' pybind signatures by python_tests/ops/test_primitives.py;
- the op's kernel, registered for the CPU and CUDA dispatch keys, runs the implementation of the
  `backend` it is given, from one table {backend: implementation}.

The caller resolved the backend first (dssm_kernels._backend.resolve_backend, from the backends all
of the op's primitives implement: `kernel_backends`), so a backend that cannot run has already
raised its RuntimeError; the table is never a fallback. Adding a backend means adding its
implementation to the declarations (and its availability rule to _backend); adding an op means
declaring its primitives in its module.

Why the backend is an argument of the schema rather than a dispatch key per backend: the C++ kernels
and the Triton interpreter both run CPU tensors, so the device alone cannot choose. Why the schema
is defined in Python: it is then the only place a signature is written, and the C++ extension is a
set of plain functions. Conventions of the signatures: absent inputs are `Tensor?` (None; a Triton
launcher passes None for the pointer, and the kernel's constexpr HAS_* flag keeps it unread), and an
output a call did not ask for is an empty (0,) tensor (a schema cannot return None). The dispatcher
hands the implementations tensors with conjugation and negation resolved.

Cost: the dispatcher calls the op's Python kernel, which calls the implementation: a few
microseconds per call (measured for ssm_step's decoding step in docs/architecture.md).
"""
from __future__ import annotations

import importlib
import inspect
import re
from typing import Callable, Iterable

import torch

from dssm_kernels._backend import cpp_unavailable_reason
from dssm_kernels.ops import _launch

NAMESPACE = "dssm"
_LIB = torch.library.Library(NAMESPACE, "DEF")
REGISTRY: dict[str, "Primitive"] = {}

_SIGNATURE = re.compile(r"^(\w+)\((.*)\)\s*->\s*(.+)$")


def parse_signature(signature: str) -> tuple[str, str, list[str], str]:
    """(name, parameters, argument names, returns) of "name(Type arg, ...) -> returns"."""
    match = _SIGNATURE.match(signature.strip())
    if match is None:
        raise ValueError(f"primitive signature must read 'name(Type arg, ...) -> returns', got {signature!r}")
    name, params, returns = match.groups()
    args = [p.strip().split()[-1] for p in params.split(",") if p.strip()]
    return name, params, args, returns


def _python_arg_names(fn: Callable) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()]


class Primitive:
    """A declared primitive: call it with the signature's arguments and `backend=`."""

    def __init__(self, name: str, signature: str, args: list[str], impls: dict[str, Callable]):
        self.name = name
        self.signature = signature
        self.args = args
        self.impls = impls
        self.op = getattr(getattr(torch.ops, NAMESPACE), name).default

    @property
    def backends(self) -> frozenset[str]:
        return frozenset(self.impls)

    def __call__(self, *args, backend: str):
        return self.op(*args, backend)

    def __repr__(self) -> str:
        return f"Primitive({self.signature!r}, backends={sorted(self.impls)})"


def _cpp_function(name: str) -> Callable:
    """dssm_kernels._C.<name>, or a function raising why the extension cannot provide it (never
    reached through an op: resolve_backend rejects "cpp" without the extension first)."""
    reason = cpp_unavailable_reason()
    if reason is None:
        fn = getattr(importlib.import_module("dssm_kernels._C"), name, None)
        if fn is not None:
            return fn
        reason = (f"the C++ extension dssm_kernels._C has no function {name}: it was built from older "
                  "sources; rebuild it (`bash scripts/setup.sh`)")

    def unavailable(*args):
        raise RuntimeError(f"{name}: backend 'cpp' is unavailable: {reason}")
    return unavailable


def _dispatching_kernel(name: str, impls: dict[str, Callable]) -> Callable:
    def kernel(*args):
        impl = impls.get(args[-1])
        if impl is None:
            raise RuntimeError(f"{NAMESPACE}::{name} has no implementation for backend {args[-1]!r} "
                               f"(it has {sorted(impls)})")
        return impl(*args[:-1])
    return kernel


def declare(signature: str, *, fake: Callable, triton: Callable | None = None, cpp: bool = False,
            doc: str = "") -> Primitive:
    """Define the custom op dssm::<name> from `signature` (see the module docstring) and register its
    fake and its implementations; `doc` says what it computes. Raises ValueError if a Python
    implementation's or the fake's argument names differ from the signature's."""
    name, params, args, returns = parse_signature(signature)
    if name in REGISTRY:
        raise ValueError(f"primitive {name} is declared twice")
    for role, fn in (("fake", fake), ("triton", triton)):
        if fn is not None and _python_arg_names(fn) != args:
            raise ValueError(f"{name}: the {role} implementation takes {_python_arg_names(fn)}, the signature "
                             f"{args}")
    # defined before the extension is first loaded: an old build that still registers schemas of
    # its own then fails to load (and "cpp" says so) instead of breaking this definition
    _LIB.define(f"{name}({params}, str backend) -> {returns}")
    impls: dict[str, Callable] = {}
    if triton is not None:
        impls["triton"] = triton
    if cpp:
        impls["cpp"] = _cpp_function(name)
    kernel = _dispatching_kernel(name, impls)
    for key in ("CPU", "CUDA"):
        _LIB.impl(name, kernel, key)
    torch.library.register_fake(f"{NAMESPACE}::{name}", lambda *a: fake(*a[:-1]), lib=_LIB)
    prim = REGISTRY[name] = Primitive(name, signature.strip(), args, impls)
    prim.__doc__ = doc
    return prim


def kernel_backends(*primitives: Primitive) -> frozenset[str]:
    """The backends that implement every one of `primitives`: those an op built from them can run."""
    return frozenset.intersection(*(p.backends for p in primitives))


def fill_outputs_with_nan(on: bool) -> None:
    """Tests: every kernel output, Triton's and C++'s, starts as NaN, so an element a kernel forgets
    to write shows."""
    _launch.FILL_OUTPUTS_WITH_NAN = on
    if cpp_unavailable_reason() is None:
        importlib.import_module("dssm_kernels._C").set_fill_outputs_with_nan(on)


def empty_unless(flag: bool, like: torch.Tensor, shape: Iterable[int],
                 dtype: torch.dtype | None = None) -> torch.Tensor:
    """An output of `shape` when `flag`, else the empty (0,) stand-in for an output not asked for."""
    return like.new_empty(tuple(shape) if flag else (0,), dtype=dtype)
