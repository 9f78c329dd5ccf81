"""Reduction during training (workflows.compress): the energy rule, the hook inside fit(), the optimizer
state carried across a reduction (transform / reset / slice), layer-by-layer reduction, the errors,
and dssm train --compress-tol."""
import json
import math

import numpy as np
import pytest
import torch

from dssm_kernels import tasks
from dssm_kernels.cli import main
from dssm_kernels.nn import SequenceClassifier
from dssm_kernels.reduction.model import layer_states, ssm_layers
from dssm_kernels.workflows import checkpoint, compress
from dssm_kernels.workflows.training import fit
from testing import assert_clear_error

KINDS = ["s4d", "dss", "s5", "lru"]


@pytest.fixture(scope="module")
def task():
    return tasks.load("digits", upsample=1, n_train=96, n_val=16, n_test=16)


def model(kind, task, d_state=16):
    return SequenceClassifier(task.n_classes, d_input=1, layer=kind, d_model=4, d_state=d_state, n_layers=2, seed=0)


def states(m):
    return sum(layer_states(layer) for _, _, _, layer in ssm_layers(m))


def test_kept_modes_is_the_smallest_order_within_the_energy():
    hsv = np.array([4.0, 3.0, 2.0, 1.0, 0.0, 0.0])
    # discarded at real order r: 6, 3, 1, 0: tol 0.1 of 10 -> r = 3 -> 2 modes (a pair); tol 0.35 -> r = 2 -> 1
    assert compress.kept_modes(hsv, 0.1, 3) == 2
    assert compress.kept_modes(hsv, 0.35, 3) == 1
    assert compress.kept_modes(hsv, 0.0 + 1e-12, 3) == 2       # the zero tail costs nothing
    assert compress.kept_modes(np.zeros(4), 0.1, 2) == 1       # a system with no energy keeps one mode
    assert compress.kept_modes(hsv, 1.0, 3) == 1               # at least one mode


@pytest.mark.parametrize("kind", KINDS)
def test_reduction_during_training_shrinks_and_keeps_training(kind, task):
    """Every check inside the window reduces (or leaves) the model; fit trains on the last model, whose
    size is the log's last entry; states never grow; no check after the window."""
    m = model(kind, task)
    hook = compress.compress_during_training(0.2, 12, every=2, until=0.5)
    hist = fit(m, task, epochs=2, batch_size=16, seed=0, model_hook=hook)
    sizes = [e["states"] for e in hook.log]
    assert sizes[0] == states(m) and sizes[-1] == states(hist.model) < sizes[0]
    assert all(a > b for a, b in zip(sizes, sizes[1:]))
    assert all(e["step"] <= 6 and e["step"] % 2 == 0 for e in hook.log)
    assert math.isfinite(hist.train_loss[-1])
    x = task.test[0][:2]
    with torch.no_grad():
        assert hist.model(x).shape == (2, task.n_classes)


def test_siso_layers_stay_uniform_unless_channel_sizes_are_asked(task):
    """Default: an S4D layer keeps its largest channel's count on every channel (one d_state, no per-channel
    layout); channel_sizes=True keeps each channel's own count (a per-channel layout, fewer states)."""
    finals = {}
    for channel_sizes in (False, True):
        hook = compress.compress_during_training(0.2, 12, every=2, until=0.5, channel_sizes=channel_sizes)
        hist = fit(model("s4d", task), task, epochs=2, batch_size=16, seed=0, model_hook=hook)
        layers = [layer for _, _, _, layer in ssm_layers(hist.model)]
        finals[channel_sizes] = states(hist.model)
        if not channel_sizes:
            assert all(layer.layout is None for layer in layers)
    assert finals[True] <= finals[False]


def _swap_once(kind, task, carry):
    """(old model, new model, old optimizer, new optimizer) of the first reduction of a short run."""
    seen = {}
    hook = compress.CompressDuringTraining(0.2, every=3, until_step=3, carry=carry)

    def spy(model, step, optimizer):
        swap = hook(model, step, optimizer)
        if swap is not None:
            seen.update(old=model, new=swap.model, old_opt=optimizer)
            if swap.carry_state is not None:
                new_opt = torch.optim.AdamW(swap.model.parameters())
                swap.carry_state(optimizer, new_opt)
                seen["new_opt"] = new_opt
        return swap

    fit(model(kind, task), task, epochs=1, batch_size=16, seed=0, model_hook=spy)
    return seen


@pytest.mark.parametrize("kind", ["s4d", "s5"])
def test_transform_keeps_the_untouched_coordinates_and_restarts_the_new_basis(kind, task):
    seen = _swap_once(kind, task, "transform")
    old = dict(seen["old"].named_parameters())
    reduced = {name for name, _ in compress._changed_layers(seen["old"], seen["new"]).items()}
    assert reduced
    for name, p in seen["new"].named_parameters():
        layer, _, pname = name.rpartition(".")
        state = seen["new_opt"].state.get(p)
        if layer not in reduced:        # encoder, decoder, norms, mixing: same coordinates, same state
            assert state is not None and torch.equal(state["exp_avg"], seen["old_opt"].state[old[name]]["exp_avg"])
        elif pname == "D" or (kind == "s4d" and pname == "log_dt"):    # per channel: the channels are kept
            assert torch.equal(state["exp_avg_sq"], seen["old_opt"].state[old[name]]["exp_avg_sq"])
        else:                           # poles, B, C in the balanced-then-diagonalised basis: afresh
            assert state is None


def test_slice_gives_each_new_mode_its_nearest_old_modes_state(task):
    seen = _swap_once("s5", task, "slice")
    old_layer = seen["old"].blocks[0].layer
    new_layer = seen["new"].blocks[0].layer
    assert new_layer.d_state < old_layer.d_state
    with torch.no_grad():
        p_old, p_new = old_layer.discrete()[0], new_layer.discrete()[0]
    nearest = (p_new[:, None] - p_old[None, :]).abs().argmin(-1)
    old_state = seen["old_opt"].state[old_layer.lam_imag]
    new_state = seen["new_opt"].state[new_layer.lam_imag]
    assert torch.equal(new_state["exp_avg"], old_state["exp_avg"][nearest])
    old_c, new_c = seen["old_opt"].state[old_layer.C], seen["new_opt"].state[new_layer.C]
    assert torch.equal(new_c["exp_avg_sq"], old_c["exp_avg_sq"][:, nearest])      # C (H, N, 2): modes second


def test_reset_carries_nothing(task):
    seen = _swap_once("s4d", task, "reset")
    assert "new_opt" not in seen and states(seen["new"]) < states(seen["old"])


@pytest.mark.parametrize("kind", KINDS)
def test_reduce_layers_gives_each_layer_the_states_asked(kind, task):
    m = model(kind, task)
    names = [name for _, _, name, _ in ssm_layers(m)]
    want = {names[0]: 8, names[1]: 12}
    small = compress.reduce_layers(m, want, "bt")
    got = {name: layer_states(layer) for _, _, name, layer in ssm_layers(small)}
    for name in names:
        assert got[name] <= want[name] and got[name] >= want[name] - 2     # a real pole takes a whole mode
    assert states(m) == 2 * 4 * 16 if kind in ("s4d", "dss") else states(m) == 2 * 16      # the original untouched


def test_errors_name_the_argument():
    for kw, names in [(dict(tol=0.0), ["tol"]), (dict(tol=2.0), ["tol"]), (dict(tol=0.1, carry="keep"), ["carry"]),
                      (dict(tol=0.1, method="h2"), ["method"]), (dict(tol=0.1, every=0), ["every"])]:
        args = dict(dict(every=1, until_step=1), **kw)
        with pytest.raises((ValueError, TypeError)) as e:
            compress.CompressDuringTraining(args.pop("tol"), **args)
        assert_clear_error(e.value, names)
    with pytest.raises(ValueError) as e:
        compress.hsv_penalty_hook(-1.0)
    assert_clear_error(e.value, ["weight"])


def test_cli_compress_tol_reports_the_states_and_saves_the_smaller_model(tmp_path, capsys):
    out = str(tmp_path / "m.pt")
    assert main(["train", "--task", "digits", "--task-option", "upsample=1", "--task-option", "n_train=64",
                 "--task-option", "n_val=16", "--task-option", "n_test=16", "--layer", "s5", "--d-model", "4",
                 "--d-state", "16", "--epochs", "2", "--batch-size", "16", "--no-progress", "--out", out,
                 "--compress-tol", "0.3", "--compress-every", "2", "--compress-until", "0.5"]) == 0
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    steps = [s for s, _ in report["states"]]
    sizes = [n for _, n in report["states"]]
    assert steps[0] == 0 and sizes[0] == 2 * 16 and sizes[-1] < sizes[0] and max(steps) <= 4
    saved, _, _ = checkpoint.load(out)
    assert states(saved) == sizes[-1]
    assert main(["train", "--task", "digits", "--out", str(tmp_path / "x.pt"), "--compress-tol", "0"]) == 2
    assert "--compress-tol" in capsys.readouterr().err
