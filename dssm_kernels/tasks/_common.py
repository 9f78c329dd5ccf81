"""The Task record and the size bounds every task shares (argument checks: dssm_kernels._validate)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

Split = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Task:
    """A sequence classification task with train / validation / test splits.

    Fields:
        name: the registry name.   seq_len: L.   n_classes: K; labels are 0 .. K-1.
        vocab_size: the number of token ids (ids 0 .. vocab_size-1) for token inputs, else None.
        d_input: the features per position (>= 1) for real-valued inputs, else None.
        train, val, test: (x, y) pairs; x is long (n, L) for token tasks, float32 (n, L, d_input) for
            real ones; y is long (n,).
        options: everything that generated the task (seed, split sizes, each option with its value),
            so load(name, **options) rebuilds it.
    """

    name: str
    seq_len: int
    n_classes: int
    vocab_size: int | None
    d_input: int | None
    train: Split
    val: Split
    test: Split
    options: dict = field(default_factory=dict)

    def describe(self) -> str:
        """One line: name, classes, input kind, L and split sizes."""
        kind = f"tokens (vocab {self.vocab_size})" if self.vocab_size is not None else f"real (d_input {self.d_input})"
        sizes = " / ".join(f"{s} {len(getattr(self, s)[1])}" for s in ("train", "val", "test"))
        return f"{self.name}: {self.n_classes} classes, {kind}, L={self.seq_len}; {sizes}"


# Bounds on what a task may generate, checked before anything is allocated: its options may come from a
# file (a checkpoint's task), and n_train=10**12 must be an error, not a 7 TiB allocation.
MAX_SAMPLES = 1_000_000        # sequences over the three splits
MAX_VALUES = 2 ** 27           # input values over the three splits (n L d_input): 1 GiB as int64 tokens
MAX_VOCAB = 2 ** 16            # classes or noise ids of a generated token task


def check_size(where: str, sizes, L: int, d_input: int = 1) -> None:
    """The splits (n_train, n_val, n_test) of sequences of length L with d_input values per step must hold at
    most MAX_SAMPLES sequences and MAX_VALUES values; else ValueError with the sizes."""
    n = sum(sizes)
    if n > MAX_SAMPLES:
        raise ValueError(f"{where}: n_train + n_val + n_test must be at most {MAX_SAMPLES:,}, got "
                         f"{' + '.join(map(str, sizes))} = {n:,}")
    if n * L * d_input > MAX_VALUES:
        raise ValueError(f"{where}: the splits would hold {n:,} sequences x L={L:,} x {d_input} = {n * L * d_input:,} "
                         f"input values, more than the limit {MAX_VALUES:,}; ask for fewer or shorter sequences")
