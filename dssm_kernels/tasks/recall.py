"""Recall: name the class token seen near the start of a long noisy sequence.

Each sequence of length L holds one class token c in {0 .. K-1} (id 1 + c) at a position p drawn
uniformly from [0, max_position]; every other position holds a noise token drawn uniformly from
n_noise ids (1 + K .. K + n_noise), independently of c. The label is c.

The memory property: positions after max_position are noise independent of the label, so any
classifier that sees only a window of them (for example the last L - 1 - max_position positions) is at
chance, 1/K, while the whole sequence determines the label exactly. A causal model that reads its
output at the last position must carry c across at least L - 1 - max_position steps. (A model that
pools its outputs over all positions can see the class token's own position and needs no memory: use
the last position to test memory.)

Token ids: 0 padding (unused: every sequence has length L), 1 .. K the classes, K+1 .. K+n_noise the
noise; vocab_size = 1 + K + n_noise. Splits are drawn from one stream in the order test, validation,
train, so the test set depends only on the seed, the options and n_test.
"""
from __future__ import annotations

import numpy as np
import torch

from dssm_kernels._validate import check_int
from dssm_kernels.tasks._common import MAX_VOCAB, Task, check_size

DEFAULTS = {"seq_len": 64, "n_classes": 4, "n_noise": 8, "max_position": 0}
SPLITS = (2000, 500, 500)


def _draw(rng: np.random.Generator, n: int, L: int, K: int, n_noise: int, max_position: int):
    y = rng.integers(K, size=n)
    pos = rng.integers(max_position + 1, size=n)
    x = 1 + K + rng.integers(n_noise, size=(n, L))
    x[np.arange(n), pos] = 1 + y
    return torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))


def check(n_train: int, n_val: int, n_test: int, *, seq_len: int, n_classes: int, n_noise: int,
          max_position: int) -> tuple[int, int, int]:
    """The options' types and ranges and the total size (ValueError / TypeError naming the option); the split
    sizes, checked >= 0 by tasks.load."""
    where = "tasks.load('recall')"
    check_int(where, "seq_len", seq_len, 2)
    check_int(where, "n_classes", n_classes, 2, MAX_VOCAB)
    check_int(where, "n_noise", n_noise, 1, MAX_VOCAB)
    check_int(where, "max_position", max_position, 0, seq_len - 2)   # leaves at least one noise-only position
    check_size(where, (n_train, n_val, n_test), seq_len)
    return n_train, n_val, n_test


def build(seed: int, n_train: int, n_val: int, n_test: int, *, seq_len: int, n_classes: int, n_noise: int,
          max_position: int) -> Task:
    check(n_train, n_val, n_test, seq_len=seq_len, n_classes=n_classes, n_noise=n_noise, max_position=max_position)
    rng = np.random.default_rng(seed)
    splits = {name: _draw(rng, n, seq_len, n_classes, n_noise, max_position)
              for name, n in (("test", n_test), ("val", n_val), ("train", n_train))}
    return Task("recall", seq_len, n_classes, 1 + n_classes + n_noise, None, splits["train"], splits["val"],
                splits["test"], {"seed": seed, "n_train": n_train, "n_val": n_val, "n_test": n_test,
                                 "seq_len": seq_len, "n_classes": n_classes, "n_noise": n_noise,
                                 "max_position": max_position})
