"""What the Triton launchers share: kernel lookup, real views, outputs, grids and block sizes
(tuning per op is the GPU issue's work)."""
from __future__ import annotations

import torch

from dssm_kernels._backend import triton_interpreted, triton_module

# Tests set this so that any element a kernel forgets to write shows up as NaN.
FILL_OUTPUTS_WITH_NAN = False


def new_output(shape, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Allocate a kernel output: uninitialised, or NaN-filled when FILL_OUTPUTS_WITH_NAN is set."""
    if FILL_OUTPUTS_WITH_NAN:
        return torch.full(shape, complex("nan+nanj") if dtype.is_complex else float("nan"),
                          dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


# A CUDA grid's first dimension (the only one the kernels use) holds at most 2^31 - 1 programs.
MAX_PROGRAMS = 2**31 - 1


def grid(op: str, programs: int) -> tuple[int]:
    """The one-dimensional grid of `programs` programs, or a ValueError naming `op` if it is too long."""
    if programs > MAX_PROGRAMS:
        raise ValueError(f"{op}: the Triton kernel would need {programs} programs, more than a grid holds "
                         f"({MAX_PROGRAMS}); split the batch")
    return (programs,)


def kernel(family: str, name: str):
    """The @triton.jit kernel dssm_kernels.triton.<family>.<name> (imported on first use)."""
    return getattr(triton_module(family), name)


def real_view(t: torch.Tensor | None) -> torch.Tensor | None:
    """The (..., 2) real view a Triton kernel reads of a complex tensor; None (an absent input, whose
    pointer the kernel's constexpr HAS_* flag keeps unread) stays None. A lazily conjugated tensor
    (conj bit set, e.g. x.conj()) is materialised first: its memory holds the unconjugated values."""
    return None if t is None else torch.view_as_real(t.resolve_conj())


def pow2_block(n: int, lo: int, hi: int) -> int:
    """The smallest power of two >= n, clamped to [lo, hi]."""
    b = 1 << max(0, (max(1, n) - 1).bit_length())
    return max(lo, min(hi, b))


def interpreted(device: torch.device) -> bool:
    """True when kernels will run in the Triton interpreter (bigger blocks: fewer Python-level steps)."""
    return device.type == "cpu" and triton_interpreted()


# Caps of (BLOCK_N, BLOCK_L) for the (mode, position) tiles of the Cauchy and Vandermonde kernels, by
# the loop a program runs (compiled, interpreted): "rows" programs own positions and loop over modes
# (cauchy_rows, vandermonde_rows), "modes" programs own modes and loop over positions (cauchy_modes,
# power_sums).
_TILE_CAPS = {"rows": ((16, 128), (64, 1024)), "modes": ((32, 64), (64, 512))}


def tile_blocks(loop: str, N: int, L: int, device: torch.device) -> tuple[int, int]:
    """(BLOCK_N, BLOCK_L) of a (mode, position) tile for a "rows" or "modes" program (_TILE_CAPS)."""
    cap_n, cap_l = _TILE_CAPS[loop][interpreted(device)]
    return pow2_block(N, 16, cap_n), pow2_block(L, 16, cap_l)
