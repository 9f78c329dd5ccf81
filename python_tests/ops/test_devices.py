"""Mismatched devices raise a ValueError naming each argument's device, for every op.

A second device is simulated with "meta" tensors, so this runs on CPU-only CI too (validation
happens before any kernel or reference touches the data)."""
import pytest
import torch

import dssm_kernels as dk

C64 = torch.complex64
B, H, N, L = 2, 3, 4, 5


def _meta(t):
    return t.to("meta")


CASES = {
    "vandermonde": (dk.vandermonde, lambda: [torch.ones(N, dtype=C64), torch.ones(N, dtype=C64), L], 1, "x"),
    "vandermonde_transpose": (dk.vandermonde_transpose,
                              lambda: [torch.ones(L), torch.ones(N, dtype=C64), torch.ones(N, dtype=C64)], 0, "u"),
    "cauchy": (dk.cauchy, lambda: [torch.ones(N, dtype=C64), torch.ones(L, dtype=C64), torch.ones(N, dtype=C64)], 1, "z"),
    "fftconv": (dk.fftconv, lambda: [torch.ones(B, H, L), torch.ones(H, L), torch.ones(H)], 2, "D"),
    "ssm_scan": (dk.ssm_scan, lambda: [torch.ones(B, H, L)] + [torch.ones(H, N, dtype=C64)] * 3, 3, "C"),
    "ssm_step": (dk.ssm_step, lambda: [torch.ones(B, H), torch.ones(B, H, N, dtype=C64)]
                 + [torch.ones(H, N, dtype=C64)] * 3, 1, "state"),
    "diag_scan": (dk.diag_scan, lambda: [torch.ones(B, L, N, dtype=C64), torch.ones(N, dtype=C64)], 1, "dA"),
}


@pytest.mark.parametrize("op", list(CASES))
def test_mismatched_devices(op):
    fn, make, which, name = CASES[op]
    args = make()
    args[which] = _meta(args[which])
    with pytest.raises(ValueError, match=rf"{op}: all tensors must be on one device, got .*{name} on meta"):
        fn(*args)
