"""UCR / UEA time-series classification: the data sets the `aeon` wheel ships, read with aeon's own loader.

aeon (pinned in requirements.txt) carries a few archive sets inside its package (aeon/datasets/data/NAME/
NAME_TRAIN.ts and NAME_TEST.ts); aeon.datasets.load_classification reads them when given that folder as
extract_path. Only the sets in BUNDLED are accepted: for any other name aeon would go to the network,
which this package never does, so the name is refused before aeon is called.

    tasks.load("ucr", dataset="ACSF1")        univariate, L = 1460, 10 classes
    tasks.load("ucr", dataset="BasicMotions") multivariate, 6 channels, L = 100

Splits: the archive's test split is the test split (n_test None: all of it; a number: its first n_test
after one seeded permutation); validation is taken from the archive's train split, stratified (a seeded
permutation within each class, then the classes interleaved, so that the first n_val hold every class in
proportion), n_val None meaning VAL_FRACTION of it (at least 1); train is the rest (or its first n_train).

Values: x = (value - mean_c) / std_c, float32 (n, L, channels), with one mean and standard deviation per
channel over every value of the archive's train split (fixed by the data, not by the seed, so that every
split and seed sees the same transform). Sets whose series differ in length (JapaneseVowels,
PickupGestureWiimoteZ) are zero-padded at the end, after normalisation, to the longest series of either
split. Labels: the archive's class names, ordered numerically when they are all numbers (else as
strings), mapped to 0 .. K-1.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from dssm_kernels._validate import check_choice
from dssm_kernels.tasks._common import Task, check_size

# name: (n_train, n_test, L (the longest series), channels, classes) as the aeon 1.6.0 wheel ships them
BUNDLED = {
    "ACSF1": (100, 100, 1460, 1, 10),
    "ArrowHead": (36, 175, 251, 1, 3),
    "BasicMotions": (40, 40, 100, 6, 4),
    "Covid3Month_disc": (140, 61, 84, 1, 3),
    "GunPoint": (50, 150, 150, 1, 2),
    "ItalyPowerDemand": (67, 1029, 24, 1, 2),
    "JapaneseVowels": (270, 370, 29, 12, 9),
    "OSULeaf": (200, 242, 427, 1, 6),
    "PickupGestureWiimoteZ": (50, 50, 361, 1, 10),
    "UnitTest": (20, 22, 24, 1, 2),
}
VAL_FRACTION = 0.2

DEFAULTS = {"dataset": "ArrowHead"}
SPLITS = (None, None, None)        # train: what validation leaves; val: VAL_FRACTION of the archive's train; test: all


def data_dir() -> str:
    """The folder inside the installed aeon package that holds its bundled data sets; ValueError saying
    how to install aeon when it is missing."""
    try:
        import aeon.datasets
    except ImportError as e:   # pragma: no cover - aeon is a requirement
        raise ValueError(f"tasks.load('ucr'): the aeon package is needed (pip install aeon; see requirements.txt): {e}") \
            from None
    return os.path.join(os.path.dirname(aeon.datasets.__file__), "data")


def check(n_train: int | None, n_val: int | None, n_test: int | None, *, dataset: str) -> tuple[int, int, int]:
    """The options and split sizes (ValueError / TypeError naming them); n_train / n_val / n_test None
    resolved (module docstring). Reads nothing."""
    where = "tasks.load('ucr')"
    name = check_choice(where, "dataset", dataset, tuple(BUNDLED))
    arch_train, arch_test, L, channels, _ = BUNDLED[name]
    if n_val is None:
        n_val = max(1, round(VAL_FRACTION * arch_train))
    if n_val >= arch_train:
        raise ValueError(f"{where}: n_val must leave at least one of {name}'s {arch_train} training series for "
                         f"training, got {n_val}")
    if n_train is None:
        n_train = arch_train - n_val
    if n_train + n_val > arch_train:
        raise ValueError(f"{where}: n_train + n_val must be at most {arch_train} ({name}'s training split), got "
                         f"{n_train} + {n_val}")
    if n_test is None:
        n_test = arch_test
    if n_test > arch_test:
        raise ValueError(f"{where}: n_test must be at most {arch_test} ({name}'s test split), got {n_test}")
    check_size(where, (n_train, n_val, n_test), L, channels)
    return n_train, n_val, n_test


def _read(name: str, split: str):
    from aeon.datasets import load_classification
    X, y = load_classification(name, split=split, extract_path=data_dir(), return_metadata=False)
    return X, np.asarray(y).astype(str)


def _padded(X, L: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(n, L, channels) float32: each (channels, length) series normalised, zero-padded at the end to L."""
    out = np.zeros((len(X), L, len(mean)), dtype=np.float32)
    for i, x in enumerate(X):
        x = np.asarray(x, dtype=np.float64)
        out[i, :x.shape[-1]] = ((x - mean[:, None]) / std[:, None]).T
    return out


def _class_order(labels) -> list[str]:
    names = sorted(set(labels))
    try:
        return sorted(names, key=float)
    except ValueError:
        return names


def _stratified(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of range(len(y)) in which every prefix holds the classes in proportion: within each
    class a random order, then all series sorted by their (rank within class / class size) (ties by class)."""
    key = np.empty(len(y))
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        key[rng.permutation(idx)] = (np.arange(len(idx)) + rng.random()) / len(idx)
    return np.argsort(key, kind="stable")


def build(seed: int, n_train: int | None, n_val: int | None, n_test: int | None, *, dataset: str) -> Task:
    n_train, n_val, n_test = check(n_train, n_val, n_test, dataset=dataset)
    name = dataset
    _, _, L, channels, n_classes = BUNDLED[name]
    (Xtr, ytr), (Xte, yte) = _read(name, "train"), _read(name, "test")
    classes = _class_order(np.concatenate([ytr, yte]))
    if len(classes) != n_classes or max(x.shape[-1] for x in list(Xtr) + list(Xte)) != L:
        raise ValueError(f"tasks.load('ucr'): {name} as the installed aeon ships it ({len(classes)} classes) does "
                         f"not match the {n_classes} classes and L = {L} this package expects; install the aeon "
                         "version requirements.txt pins")
    values = np.concatenate([np.asarray(x, dtype=np.float64) for x in Xtr], axis=-1)     # (channels, all steps)
    mean, std = values.mean(-1), values.std(-1)
    std = np.where(std > 0, std, 1.0)
    code = {c: i for i, c in enumerate(classes)}
    rng = np.random.default_rng(seed)
    ytr_i = np.array([code[c] for c in ytr])
    order = _stratified(ytr_i, rng)
    val_idx, train_idx = order[:n_val], order[n_val:n_val + n_train]
    test_idx = rng.permutation(len(yte))[:n_test] if n_test < len(yte) else np.arange(len(yte))

    def split(X, y, idx):
        return (torch.from_numpy(_padded([X[i] for i in idx], L, mean, std)),
                torch.as_tensor(np.array([code[c] for c in y[idx]]), dtype=torch.long))

    return Task("ucr", L, n_classes, None, channels, split(Xtr, ytr, train_idx), split(Xtr, ytr, val_idx),
                split(Xte, yte, test_idx), {"seed": seed, "n_train": n_train, "n_val": n_val, "n_test": n_test,
                                            "dataset": name})
