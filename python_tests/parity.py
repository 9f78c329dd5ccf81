"""Parity against the float64 reference, by relative RMS error.

For each case the inputs are drawn in float64/complex128. The oracle is the reference run on them
in float64. The backend under test runs on the inputs cast to the test precision (complex64 /
float32, or an explicit dtype such as bfloat16), and so does the same reference: its error sets the
bar. Tolerance (kernel-core issue): err(backend) <= 2 * err(reference at test precision) + 1e-6,
for every output and for the gradients of a random-weighted sum of the outputs.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

LOW = {torch.float64: torch.float32, torch.complex128: torch.complex64}
_WORST: dict = {}


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """sqrt(mean |a - b|^2) / sqrt(mean |b|^2), in float64; 0 when both are zero."""
    a = a.detach().to(torch.complex128 if (a.is_complex() or b.is_complex()) else torch.float64)
    b = b.detach().to(a.dtype)
    num = (a - b).abs().pow(2).mean().sqrt().item()
    den = b.abs().pow(2).mean().sqrt().item()
    if den == 0.0:
        return num
    return num / den


def worst_errors() -> dict:
    return _WORST


def _record(key, err, tol):
    old = _WORST.get(key)
    if old is None or err / tol > old[0] / old[1]:
        _WORST[key] = (err, tol)


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _weighted_sum(outputs, weights):
    total = 0.0
    for o, w in zip(outputs, weights):
        o = o.to(torch.complex128 if o.is_complex() else torch.float64)
        total = total + (o * w.conj()).real.sum() if o.is_complex() else total + (o * w).sum()
    return total


def _run(fn, inputs, grad_names):
    leaves = {k: (t.detach().clone().requires_grad_(k in grad_names) if isinstance(t, torch.Tensor) else t)
              for k, t in inputs.items()}
    outputs = _as_tuple(fn(**leaves))
    return leaves, outputs


def check_parity(op: str, backend: str, fn: Callable, ref: Callable, inputs: Mapping[str, object],
                 grad_names: Sequence[str], *, low_dtypes: Mapping[str, torch.dtype] | None = None,
                 seed: int = 0, tol64: float | None = None) -> dict:
    """Check `fn` (the backend) against `ref` (the reference), forward and backward.

    inputs: float64/complex128 tensors (and plain values) keyed by argument name.
    grad_names: inputs to differentiate.  low_dtypes: per-input test precision overriding LOW.
    tol64: when given, also run the backend in float64 and require err <= tol64.
    Returns the measured errors.
    """
    low_dtypes = dict(low_dtypes or {})

    def cast(k, t):
        if not isinstance(t, torch.Tensor):
            return t
        return t.to(low_dtypes.get(k, LOW.get(t.dtype, t.dtype)))

    # The oracle sees exactly the values the low-precision runs see.
    low = {k: cast(k, t) for k, t in inputs.items()}
    oracle_in = {k: (t.to(torch.complex128 if t.is_complex() else torch.float64) if isinstance(t, torch.Tensor)
                     and (t.is_floating_point() or t.is_complex()) else t) for k, t in low.items()}

    ref_leaves, ref_out = _run(ref, oracle_in, grad_names)
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(o.shape, dtype=torch.complex128 if o.is_complex() else torch.float64,
                           generator=gen).to(o.device) for o in ref_out]
    ref_grads = torch.autograd.grad(_weighted_sum(ref_out, weights), [ref_leaves[k] for k in grad_names])

    results = {}
    runs = [("low", low)] + ([("f64", oracle_in)] if tol64 is not None else [])
    for tag, run_in in runs:
        errs = {}
        for who, f in (("ref", ref), ("backend", fn)):
            leaves, out = _run(f, run_in, grad_names)
            assert len(out) == len(ref_out), f"{op}/{backend}: {len(out)} outputs, reference has {len(ref_out)}"
            for i, (o, r) in enumerate(zip(out, ref_out)):
                assert o.shape == r.shape, f"{op}/{backend}: output {i} shape {tuple(o.shape)} != {tuple(r.shape)}"
            grads = torch.autograd.grad(_weighted_sum(out, weights), [leaves[k] for k in grad_names],
                                        allow_unused=True)
            for i, (o, r) in enumerate(zip(out, ref_out)):
                errs[(who, f"out{i}")] = rel_rms(o, r)
            for k, g, r in zip(grad_names, grads, ref_grads):
                assert g is not None, f"{op}/{backend}: no gradient for {k}"
                assert g.shape == leaves[k].shape, f"{op}/{backend}: grad {k} shape {tuple(g.shape)}"
                errs[(who, f"grad_{k}")] = rel_rms(g, r)
        for (who, what), err in errs.items():
            if who != "backend":
                continue
            if tag == "low":
                tol = 2 * errs[("ref", what)] + 1e-6
                dtype = "/".join(sorted({str(t.dtype).replace("torch.", "") for t in low.values()
                                         if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())}))
            else:
                tol, dtype = tol64, "float64"
            _record((op, backend, dtype, what), err, tol)
            results[(tag, what)] = (err, tol)
            assert err <= tol, (f"{op}/{backend} [{tag}] {what}: relative RMS error {err:.3e} exceeds "
                                f"{tol:.3e} (reference at this precision: {errs[('ref', what)]:.3e})")
    return results
