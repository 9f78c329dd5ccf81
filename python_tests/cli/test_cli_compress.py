"""dssm train's compression flags end to end at toy sizes: --hsv-reg (the Hankel penalty) and
--compress-tol (reduction during training), and their errors."""

import pytest

from dssm_kernels.cli import main
from dssm_kernels.reduction.penalty import hankel_penalty
from dssm_kernels.workflows import checkpoint

SMALL = ["--task", "recall", "--layer", "s4d", "--d-model", "8", "--d-state", "8", "--epochs", "2", "--no-progress",
         "--task-option", "seq_len=32", "--task-option", "n_train=128", "--batch-size", "16"]


def test_hsv_reg_lowers_the_trained_models_hsv_sum(tmp_path, capsys):
    """The same seeded run with and without the penalty: the penalised model's HSV sum is lower (16 Adam
    steps of lr 1e-2 on a penalty of ~100 against a cross-entropy of ~1.4 take ~14% off; rounding cannot
    account for a tenth)."""
    plain, reg = str(tmp_path / "plain.pt"), str(tmp_path / "reg.pt")
    assert main(["train", *SMALL, "--out", plain]) == 0
    assert main(["train", *SMALL, "--out", reg, "--hsv-reg", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count('"test_acc"') == 2
    sums = [hankel_penalty(checkpoint.load(p)[0]).item() for p in (plain, reg)]
    assert sums[1] < 0.9 * sums[0]


@pytest.mark.parametrize("value", ["-1", "nan", "x"])
def test_hsv_reg_refuses_bad_values(tmp_path, capsys, value):
    assert main(["train", *SMALL, "--out", str(tmp_path / "m.pt"), "--hsv-reg", value]) == 2
    assert "--hsv-reg" in capsys.readouterr().err
