"""The ucr task: the UCR / UEA sets the aeon wheel ships, read with aeon's loader, against aeon's own
arrays (sizes, labels, the normalisation), the stratified validation split, determinism, the refusal of
sets not shipped (which aeon would download), and a training run from the command line."""
import os

import numpy as np
import pytest
import torch

from dssm_kernels import tasks
from dssm_kernels.cli import main
from dssm_kernels.tasks import ucr
from testing import assert_clear_error

aeon_datasets = pytest.importorskip("aeon.datasets")


def raw(name, split):
    X, y = aeon_datasets.load_classification(name, split=split, extract_path=ucr.data_dir())
    return X, np.asarray(y).astype(str)


@pytest.mark.parametrize("name", sorted(ucr.BUNDLED))
def test_every_bundled_set_loads_with_the_archives_sizes(name):
    n_train, n_test, L, channels, n_classes = ucr.BUNDLED[name]
    task = tasks.load("ucr", dataset=name)
    assert (task.seq_len, task.d_input, task.n_classes, task.vocab_size) == (L, channels, n_classes, None)
    assert len(task.train[1]) + len(task.val[1]) == n_train and len(task.test[1]) == n_test
    for x, y in (task.train, task.val, task.test):
        assert x.shape == (len(y), L, channels) and x.dtype == torch.float32 and y.dtype == torch.long
        assert int(y.min()) >= 0 and int(y.max()) < n_classes
    # the same files through aeon: as many series of each class in the test split, in the archive's order
    _, yte = raw(name, "test")
    order = ucr._class_order(np.concatenate([raw(name, "train")[1], yte]))
    assert task.test[1].tolist() == [order.index(c) for c in yte]


def test_values_are_the_archives_normalised_by_train_statistics():
    """x = (value - mean_c) / std_c with the train split's per-channel statistics, in float32: the stored
    values equal aeon's raw ones transformed in float64 to float32 rounding (half an ulp of |x| <= ~10,
    plus the mean / std's own sums of ~n eps relative: 1e-6 absolute covers both)."""
    X, _ = raw("BasicMotions", "train")
    Xt, _ = raw("BasicMotions", "test")
    flat = np.concatenate(list(X), axis=-1)
    mean, std = flat.mean(-1), flat.std(-1)
    task = tasks.load("ucr", dataset="BasicMotions", n_val=0)
    want = np.stack([((x - mean[:, None]) / std[:, None]).T for x in Xt])
    np.testing.assert_allclose(task.test[0].numpy(), want, rtol=0, atol=1e-6 * max(1.0, np.abs(want).max()))


def test_unequal_lengths_are_zero_padded_at_the_end():
    X, _ = raw("PickupGestureWiimoteZ", "test")
    task = tasks.load("ucr", dataset="PickupGestureWiimoteZ")
    lengths = [x.shape[-1] for x in X]
    for i, n in enumerate(lengths):
        assert torch.all(task.test[0][i, n:] == 0)
        assert torch.any(task.test[0][i, :n] != 0)


def test_validation_is_stratified_and_seeded():
    a = tasks.load("ucr", dataset="ACSF1", seed=1)
    b = tasks.load("ucr", dataset="ACSF1", seed=1)
    c = tasks.load("ucr", dataset="ACSF1", seed=2)
    assert torch.equal(a.val[0], b.val[0]) and torch.equal(a.train[0], b.train[0])
    assert not torch.equal(a.val[0], c.val[0])
    assert torch.equal(a.test[0], c.test[0])          # the whole test split, in the archive's order
    assert a.val[1].bincount(minlength=10).tolist() == [2] * 10      # 20 of 10 classes x 10 series
    small = tasks.load("ucr", dataset="ACSF1", n_val=5)
    counts = small.val[1].bincount(minlength=10)
    assert int(counts.max()) == 1                     # 5 series of 5 different classes
    rebuilt = tasks.load(a.name, **a.options)
    assert torch.equal(rebuilt.train[0], a.train[0]) and torch.equal(rebuilt.val[1], a.val[1])


def test_sets_not_shipped_and_bad_sizes_are_refused_before_aeon_is_called(monkeypatch):
    def no_call(*a, **k):
        raise AssertionError("aeon's loader was called")
    monkeypatch.setattr(aeon_datasets, "load_classification", no_call)
    with pytest.raises(ValueError) as e:
        tasks.load("ucr", dataset="FordA")
    assert_clear_error(e.value, ["dataset", "FordA", "ACSF1"])
    with pytest.raises(ValueError) as e:
        tasks.load("ucr", dataset="GunPoint", n_val=50)
    assert_clear_error(e.value, ["n_val", "50"])
    with pytest.raises(ValueError) as e:
        tasks.load("ucr", dataset="GunPoint", n_test=151)
    assert_clear_error(e.value, ["n_test", "151"])
    with pytest.raises(ValueError) as e:
        tasks.check("ucr", dataset="GunPoint", n_train=45, n_val=10)
    assert_clear_error(e.value, ["n_train", "n_val"])


def test_cli_trains_on_a_ucr_set(tmp_path, capsys):
    out = str(tmp_path / "m.pt")
    assert main(["train", "--task", "ucr", "--task-option", "dataset=UnitTest", "--layer", "s5", "--d-model", "4",
                 "--d-state", "4", "--epochs", "1", "--no-progress", "--out", out]) == 0
    assert capsys.readouterr().out.startswith("ucr: 2 classes, real (d_input 1), L=24")
    assert os.path.getsize(out) > 0
