"""Digits: scikit-learn's bundled 8x8 handwritten digits, read as pixel sequences.

sklearn.datasets.load_digits reads a file inside the scikit-learn wheel (1797 images, 10 classes):
no network. Each image is resized by `upsample` (8u x 8u pixels: "bilinear" interpolation, or "nearest",
which repeats each pixel in a u x u block), read row-major as a sequence of L = 64 u^2 scalars, and
normalised with fixed constants, the pixel mean and standard deviation of the whole set at u = 1:

    x = (pixel / 16 - MEAN) / STD,        x: float32 (n, L, 1),  y = the digit, long (n,)

(fixed rather than fitted to a split, so every split and seed sees the same transform and any image can
be mapped back). Splits: one permutation of the 1797 indices by the seed; test takes the first n_test,
validation the next n_val, train the next n_train (by default all the rest), so they are disjoint.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dssm_kernels._validate import check_choice, check_int
from dssm_kernels.tasks._common import Task, check_size

N_IMAGES = 1797
MEAN, STD = 0.30526, 0.37605     # of load_digits().data / 16
INTERPOLATIONS = ("bilinear", "nearest")

DEFAULTS = {"upsample": 2, "interpolation": "bilinear"}
SPLITS = (None, 180, 360)          # n_train None: every image the other splits leave


def images() -> tuple[np.ndarray, np.ndarray]:
    """(images float64 (1797, 8, 8) with values 0 .. 16, labels int64 (1797,)) as scikit-learn ships them."""
    from sklearn.datasets import load_digits  # imported here: it takes a second and only this task needs it

    data = load_digits()
    return data.images, data.target


def to_sequences(imgs: np.ndarray, upsample: int, interpolation: str) -> torch.Tensor:
    """(n, 8, 8) pixels 0..16 -> normalised float32 (n, 64 u^2, 1), row-major."""
    x = torch.as_tensor(imgs, dtype=torch.float32)[:, None] / 16
    if upsample > 1:
        kw = {"align_corners": False} if interpolation == "bilinear" else {}
        x = F.interpolate(x, scale_factor=upsample, mode=interpolation, **kw)
    return ((x - MEAN) / STD).reshape(len(imgs), -1, 1)


def check(n_train: int | None, n_val: int, n_test: int, *, upsample: int, interpolation: str) -> tuple[int, int, int]:
    """The options' types and ranges and the total size (ValueError / TypeError naming the option); the split
    sizes with n_train None resolved to every image the other splits leave."""
    where = "tasks.load('digits')"
    check_int(where, "upsample", upsample, 1, 64)
    check_choice(where, "interpolation", interpolation, INTERPOLATIONS)
    if n_train is None:
        n_train = N_IMAGES - n_val - n_test
    if n_train < 1 or n_train + n_val + n_test > N_IMAGES:
        raise ValueError(f"{where}: n_train + n_val + n_test must be at most {N_IMAGES} (the images shipped) "
                         f"with n_train >= 1, got {n_train} + {n_val} + {n_test}")
    check_size(where, (n_train, n_val, n_test), 64 * upsample ** 2)
    return n_train, n_val, n_test


def build(seed: int, n_train: int | None, n_val: int, n_test: int, *, upsample: int, interpolation: str) -> Task:
    n_train, n_val, n_test = check(n_train, n_val, n_test, upsample=upsample, interpolation=interpolation)
    imgs, labels = images()
    order = np.random.default_rng(seed).permutation(N_IMAGES)
    cuts = np.cumsum([n_test, n_val, n_train])
    parts = dict(zip(("test", "val", "train"), np.split(order[:cuts[-1]], cuts[:-1])))
    splits = {k: (to_sequences(imgs[i], upsample, interpolation), torch.as_tensor(labels[i], dtype=torch.long))
              for k, i in parts.items()}
    return Task("digits", 64 * upsample ** 2, 10, None, 1, splits["train"], splits["val"], splits["test"],
                {"seed": seed, "n_train": n_train, "n_val": n_val, "n_test": n_test, "upsample": upsample,
                 "interpolation": interpolation})
