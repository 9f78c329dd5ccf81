"""Built-in tasks: determinism, splits, shapes, labels against independent references, bad input."""
import doctest
import math
import statistics

import numpy as np
import pytest
import scipy.ndimage
import torch
from sklearn.datasets import load_digits
from sklearn.naive_bayes import CategoricalNB

from dssm_kernels import tasks
from dssm_kernels.tasks import digits, listops

SMALL = {"listops": {"n_train": 60, "n_val": 20, "n_test": 20},
         "digits": {"n_train": 60, "n_val": 20, "n_test": 20},
         "recall": {"n_train": 60, "n_val": 20, "n_test": 20},
         "ucr": {"n_train": 10, "n_val": 4, "n_test": 10, "dataset": "UnitTest"}}
SPLITS = ("train", "val", "test")


def _tensors(task):
    return [t for s in SPLITS for t in getattr(task, s)]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(_tensors(a), _tensors(b)))


def test_names():
    assert tasks.names() == ("listops", "digits", "recall", "ucr")


def test_docstring_example():
    result = doctest.testmod(tasks)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", tasks.names())
def test_deterministic_and_rebuilt_from_options(name):
    a, b = tasks.load(name, seed=3, **SMALL[name]), tasks.load(name, seed=3, **SMALL[name])
    assert _same(a, b) and a.options == b.options
    assert _same(a, tasks.load(a.name, **a.options))
    c = tasks.load(name, seed=4, **SMALL[name])
    assert not torch.equal(a.train[0], c.train[0]) and not torch.equal(a.test[0], c.test[0])


@pytest.mark.parametrize("name", tasks.names())
def test_shapes_dtypes_and_ranges(name):
    task = tasks.load(name, **SMALL[name])
    L = task.seq_len
    for split in SPLITS:
        x, y = getattr(task, split)
        n = SMALL[name][f"n_{split}"]
        assert y.dtype == torch.long and y.shape == (n,)
        assert int(y.min()) >= 0 and int(y.max()) < task.n_classes
        if task.vocab_size is not None:
            assert task.d_input is None and x.dtype == torch.long and x.shape == (n, L)
            assert int(x.min()) >= 0 and int(x.max()) < task.vocab_size
        else:
            assert task.d_input >= 1 and x.dtype == torch.float32 and x.shape == (n, L, task.d_input)
            assert torch.isfinite(x).all()
    assert task.describe().startswith(f"{name}: {task.n_classes} classes")


@pytest.mark.parametrize("name, opts", [("listops", {}), ("recall", {}),
                                        ("listops", {"max_length": 12, "min_length": 4, "max_depth": 3})],
                         ids=["listops", "recall", "listops-short"])
def test_token_splits_disjoint(name, opts):
    """Short ListOps expressions are drawn many times over: each is kept once, in one split."""
    task = tasks.load(name, n_train=500, n_val=100, n_test=100, **opts)
    rows = [{tuple(r.tolist()) for r in getattr(task, s)[0]} for s in SPLITS]
    assert [len(r) for r in rows] == [500, 100, 100]          # no repeats inside a split either
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])


@pytest.mark.parametrize("name", tasks.names())
def test_test_split_independent_of_train_size(name):
    """Scaling n_train up (a longer run) keeps the same held-out data."""
    opts = {"dataset": "ACSF1"} if name == "ucr" else {}      # ucr's default set has only 36 training series
    small = tasks.load(name, n_train=10, n_val=10, n_test=15, **opts)
    large = tasks.load(name, n_train=40, n_val=10, n_test=15, **opts)
    assert all(torch.equal(p, q) for p, q in zip(small.test + small.val, large.test + large.val))


# ---------------------------------------------------------------- listops

_OPS = {"[MIN": min, "[MAX": max, "[MED": lambda a: int(statistics.median(a)), "[SM": lambda a: sum(a) % 10}


def _evaluate(words):
    """Recursive-descent parse of a prefix expression; returns (value, depth, argument counts)."""
    pos = 0

    def node(depth):
        nonlocal pos
        w = words[pos]
        pos += 1
        if w.isdigit():
            return int(w), depth, []
        args, depths, counts = [], [depth], []
        while words[pos] != "]":
            v, d, c = node(depth + 1)
            args.append(v)
            depths.append(d)
            counts += c
        pos += 1
        return _OPS[w](args), max(depths), counts + [len(args)]

    value, depth, counts = node(1)
    assert pos == len(words), "tokens left after the expression"
    return value, depth, counts


@pytest.mark.parametrize("opts", [{}, {"max_length": 64, "min_length": 4, "max_depth": 4, "max_args": 3}],
                         ids=["defaults", "small"])
def test_listops_labels_match_independent_evaluator(opts):
    task = tasks.load("listops", n_train=300, n_val=50, n_test=50, **opts)
    o = task.options
    ops_seen = set()
    for x, y in (task.train, task.val, task.test):
        for row, label in zip(x, y.tolist()):
            n = int((row != listops.PAD).sum())
            assert (row[:n] != listops.PAD).all() and (row[n:] == listops.PAD).all()   # right padding only
            assert o["min_length"] <= n <= o["max_length"]
            words = listops.decode(row).split()
            value, depth, counts = _evaluate(words)
            assert value == label
            assert depth <= o["max_depth"] and all(2 <= c <= o["max_args"] for c in counts)
            ops_seen |= {w for w in words if w in _OPS}
    assert ops_seen == set(_OPS)
    assert len(set(task.train[1].tolist())) == 10


def test_listops_median_rounds_down_like_lra():
    """LRA labels MED with int(np.median): the mean of the two middle values, truncated."""
    assert listops.apply(listops.MED, [1, 4]) == 2 == int(np.median([1, 4]))
    assert listops.apply(listops.MED, [9, 0, 5]) == 5
    assert listops.apply(listops.SM, [9, 8, 7]) == 4


def test_listops_lra_scale():
    """LRA's own settings (lengths 500 .. 2000) run; sizes kept small for the test."""
    task = tasks.load("listops", n_train=20, n_val=5, n_test=5, max_length=2000, min_length=500)
    lengths = (task.train[0] != listops.PAD).sum(1)
    assert task.seq_len == 2000 and int(lengths.min()) >= 500


# ---------------------------------------------------------------- digits

def _digit_indices(x, images):
    """Map each upsample=1 sequence back to the index of the sklearn image it is (exact pixel match)."""
    pixels = (x[..., 0].double() * digits.STD + digits.MEAN) * 16
    assert (pixels - pixels.round()).abs().max() < 1e-3
    lookup = {img.astype(np.int64).tobytes(): i for i, img in enumerate(images.reshape(len(images), -1))}
    return [lookup[p.round().long().numpy().tobytes()] for p in pixels]


def test_digits_labels_match_sklearn_and_splits_disjoint():
    ref = load_digits()
    task = tasks.load("digits", seed=5, upsample=1)
    idx = {s: _digit_indices(getattr(task, s)[0], ref.images) for s in SPLITS}
    for s in SPLITS:
        assert getattr(task, s)[1].tolist() == ref.target[idx[s]].tolist()
    sets = [set(idx[s]) for s in SPLITS]
    assert sum(map(len, sets)) == len(set().union(*sets)) == len(ref.images)   # disjoint, all used by default


@pytest.mark.parametrize("upsample", [2, 3])
def test_digits_upsampling_against_scipy(upsample):
    """bilinear: scipy.ndimage.zoom, linear, pixel-edge aligned; nearest: each pixel repeated u x u."""
    base = tasks.load("digits", upsample=1, **SMALL["digits"]).train[0]
    img = (base[..., 0].double().reshape(-1, 8, 8) * digits.STD + digits.MEAN).numpy()
    side = 8 * upsample
    for interpolation in digits.INTERPOLATIONS:
        x = tasks.load("digits", upsample=upsample, interpolation=interpolation, **SMALL["digits"]).train[0]
        assert x.shape[1] == side * side
        got = x[..., 0].double().reshape(-1, side, side).numpy() * digits.STD + digits.MEAN
        if interpolation == "bilinear":
            want = np.stack([scipy.ndimage.zoom(i, upsample, order=1, grid_mode=True, mode="nearest") for i in img])
        else:
            want = img.repeat(upsample, axis=1).repeat(upsample, axis=2)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_digits_normalised():
    """The fixed constants standardise the whole set: mean ~0, std ~1 over all pixels at u = 1."""
    task = tasks.load("digits", upsample=1)
    x = torch.cat([task.train[0], task.val[0], task.test[0]])
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3


# ---------------------------------------------------------------- recall

@pytest.mark.parametrize("max_position", [0, 15])
def test_recall_needs_memory_of_the_whole_sequence(max_position):
    """The label sits at one position <= max_position; after it only label-independent noise, so a
    classifier on the window x[:, max_position + 1:] is at chance (1/K, within 4 binomial standard
    deviations) while the same classifier on the whole sequence is right."""
    K, n = 4, 2000
    task = tasks.load("recall", n_train=n, n_val=0, n_test=n, n_classes=K, max_position=max_position)
    for x, y in (task.train, task.test):
        is_class = (x >= 1) & (x <= K)
        assert (is_class.sum(1) == 1).all()
        pos = is_class.int().argmax(1)
        assert int(pos.max()) <= max_position
        assert torch.equal(x[torch.arange(len(x)), pos] - 1, y)
    (xtr, ytr), (xte, yte) = task.train, task.test

    def accuracy(lo):
        """A naive Bayes classifier on the token at each position of x[:, lo:]."""
        clf = CategoricalNB(min_categories=task.vocab_size).fit(xtr[:, lo:].numpy(), ytr.numpy())
        return clf.score(xte[:, lo:].numpy(), yte.numpy())

    assert accuracy(0) > 0.95
    band = 4 * math.sqrt((1 / K) * (1 - 1 / K) / n)
    assert abs(accuracy(max_position + 1) - 1 / K) < band


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("name, kwargs, error, match", [
    ("mnist", {}, ValueError, "name must be one of"),
    (3, {}, TypeError, "name must be a str"),
    ("recall", {"colour": 1}, ValueError, "unknown option.*'colour'"),
    ("recall", {"seed": -1}, ValueError, "seed must be an int >= 0"),
    ("recall", {"seed": 1.5}, TypeError, "seed must be an int"),
    ("recall", {"n_train": 0}, ValueError, "n_train must be an int >= 1"),
    ("recall", {"n_val": -1}, ValueError, "n_val must be an int >= 0"),
    ("recall", {"n_test": "5"}, TypeError, "n_test must be an int"),
    ("recall", {"max_position": 63}, ValueError, "max_position must be an int in"),
    ("recall", {"n_classes": 1}, ValueError, "n_classes must be an int in \\[2, 65536\\], got 1"),
    ("listops", {"min_length": 300}, ValueError, "min_length must be an int in"),
    ("listops", {"max_args": 1}, ValueError, "max_args must be an int >= 2"),
    ("listops", {"max_depth": True}, TypeError, "max_depth must be an int"),
    ("digits", {"upsample": 0}, ValueError, "upsample must be an int in"),
    ("digits", {"interpolation": "cubic"}, ValueError, "interpolation must be one of"),
    ("digits", {"n_train": 1500}, ValueError, "n_train \\+ n_val \\+ n_test must be at most 1797"),
    # sizes are bounded before anything is generated (options can come from a checkpoint file)
    ("recall", {"n_train": 10 ** 12}, ValueError, "n_train \\+ n_val \\+ n_test must be at most 1,000,000"),
    ("recall", {"seq_len": 10 ** 9}, ValueError, "input values, more than the limit"),
    ("recall", {"n_classes": 10 ** 9}, ValueError, "n_classes must be an int in \\[2, 65536\\]"),
    ("recall", {"n_noise": 10 ** 9}, ValueError, "n_noise must be an int in \\[1, 65536\\]"),
    ("listops", {"max_length": 10 ** 9, "min_length": 1}, ValueError, "input values, more than the limit"),
    ("digits", {"upsample": 40}, ValueError, "input values, more than the limit"),
])
def test_bad_arguments(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        tasks.load(name, **kwargs)
    with pytest.raises(error, match=match):      # check(): the same errors, with nothing generated
        tasks.check(name, **kwargs)


def test_listops_options_that_admit_too_few_expressions():
    """Found only while generating (check() cannot know it): still a ValueError that says what to change."""
    with pytest.raises(ValueError, match="distinct expressions"):
        tasks.load("listops", max_depth=1, min_length=1, n_train=20, n_val=0, n_test=0)


def test_check_generates_nothing(monkeypatch):
    """tasks.check validates without building: the build functions are never called."""
    for name in tasks.names():
        module = getattr(tasks, name)

        def build(*a, **k):
            raise AssertionError("built")
        monkeypatch.setattr(module, "build", build)
        assert tasks.check(name, seed=3) is None
