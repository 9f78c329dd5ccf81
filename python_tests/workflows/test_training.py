"""workflows.training.fit in one process: the seams for training that changes the model as it goes
(loss_hook, model_hook with ModelSwap), their argument checks, the process-group set-up's checks
(workflows.distributed) and the `dssm train` flags for distributed runs. The multi-process behaviour
is in test_workflows_distributed.py."""
import math

import pytest
import torch
from torch import nn

from dssm_kernels import tasks
from dssm_kernels.cli import main
from dssm_kernels.nn import SequenceClassifier, param_groups
from dssm_kernels.workflows import distributed
from dssm_kernels.workflows.training import ModelSwap, fit

from testing import accumulated

EPS32 = float(torch.finfo(torch.float32).eps)
TASK = dict(seed=0, seq_len=16, n_train=24, n_val=8, n_test=4)
BATCH, EPOCHS, LR = 8, 2, 1e-2
STEPS = EPOCHS * 3
# Two float32 evaluations of the same training (the same sums, possibly ordered differently by another
# code path) agree per step to 2 n eps32 with n = BATCH * seq_len terms per gradient sum (Higham 3.1),
# safety 8; relative, in norm, to how far training moved each tensor (Adam's step is about lr whatever
# the gradient's scale, and changes by at most the gradient's relative change).
TOL = 8 * 2 * BATCH * TASK["seq_len"] * EPS32


@pytest.fixture(scope="module")
def task():
    return tasks.load("recall", **TASK)


def new_model(task, layer="s4d"):
    return SequenceClassifier(task.n_classes, vocab_size=task.vocab_size, layer=layer, d_model=8, d_state=8,
                              n_layers=1, seed=0)


def rebuilt(model):
    """The same model built anew from its config and weights (a stand-in for a reduced one)."""
    new = SequenceClassifier.from_config(model.current_config())
    new.load_state_dict(model.state_dict())
    return new


def moved_apart(a: nn.Module, b: nn.Module, start: dict) -> float:
    """max over tensors of |a - b| / |a - start|: how far a and b differ, relative to how far a moved."""
    sb = b.state_dict()
    return max(((p - sb[k]).norm() / (p - start[k]).norm()).item() for k, p in a.state_dict().items())


def penalty(model, step):
    return 1e-2 * model.decoder.weight.square().sum()


def test_loss_hook_adds_its_term_to_every_step(task):
    """fit with a penalty through loss_hook against the loop its docstring specifies, written out here: AdamW
    over param_groups, the cosine schedule in steps, per epoch the seeded permutation in batches, mean
    cross-entropy plus the penalty. Without the hook the result is far away (the hook is not ignored)."""
    model = new_model(task)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    steps_seen = []
    fit(model, task, epochs=EPOCHS, lr=LR, batch_size=BATCH, seed=0,
        loss_hook=lambda m, step: steps_seen.append(step) or penalty(m, step))
    assert steps_seen == list(range(STEPS))

    ref = new_model(task)
    opt = torch.optim.AdamW(param_groups(ref, lr=LR))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=STEPS)
    g = torch.Generator().manual_seed(0)
    x, y = task.train
    for _ in range(EPOCHS):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), BATCH):
            idx = order[i:i + BATCH]
            loss = nn.functional.cross_entropy(ref(x[idx]), y[idx]) + penalty(ref, None)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    assert moved_apart(ref, model, start) <= TOL

    plain = new_model(task)
    fit(plain, task, epochs=EPOCHS, lr=LR, batch_size=BATCH, seed=0)
    assert moved_apart(ref, plain, start) > 100 * TOL


def carry_by_position(old, new):
    """Optimizer state from old to new parameter by parameter (the rebuilt model has the same shapes)."""
    olds = [p for grp in old.param_groups for p in grp["params"]]
    news = [p for grp in new.param_groups for p in grp["params"]]
    for po, pn in zip(olds, news, strict=True):
        new.state[pn] = {k: v.clone() for k, v in old.state[po].items()}


def test_model_swap_with_carried_state_continues_the_same_training(task):
    """Swapping in a rebuilt copy (same weights) after steps 2 and 4 with the optimizer state carried over
    trains as if nothing happened: the same parameters as an uninterrupted fit, to rounding. The model
    trained last is History.model; the one given to fit stopped at the first swap."""
    model = new_model(task)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    at_swap = {}

    def hook(m, step, optimizer):
        if step in (2, 4):
            at_swap[step] = {k: v.clone() for k, v in m.state_dict().items()}
            return ModelSwap(rebuilt(m), carry_state=carry_by_position)
        return None

    hist = fit(model, task, epochs=EPOCHS, lr=LR, batch_size=BATCH, seed=0, model_hook=hook)
    assert hist.model is not model and set(at_swap) == {2, 4}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in at_swap[2].items())   # untouched since
    plain = new_model(task)
    fit(plain, task, epochs=EPOCHS, lr=LR, batch_size=BATCH, seed=0)
    assert moved_apart(plain, hist.model, start) <= TOL


def test_model_swap_without_state_keeps_the_schedule_and_restarts_adam(task):
    """A swap that returns a bare model: the learning rates of the steps after it continue the cosine,
    lr_t = lr_0 (1 + cos(pi t / T)) / 2 per parameter group (its lr_0: LR, or the SSM parameters' own), and
    Adam's state starts afresh (its step count restarts). Tolerance on the rates: the scheduler's recursion
    over T steps in float64, accumulated(T)."""
    model = new_model(task)
    base = [grp["lr"] for grp in param_groups(model, lr=LR)]
    lrs, adam_steps = {}, {}

    def hook(m, step, optimizer):
        lrs[step] = [grp["lr"] for grp in optimizer.param_groups]
        adam_steps[step] = int(optimizer.state[optimizer.param_groups[0]["params"][0]]["step"])
        return rebuilt(m) if step == 3 else None

    fit(model, task, epochs=EPOCHS, lr=LR, batch_size=BATCH, seed=0, model_hook=hook)
    assert sorted(lrs) == list(range(1, STEPS + 1)) and len(set(base)) == 2
    for t, got in lrs.items():
        want = [b * (1 + math.cos(math.pi * t / STEPS)) / 2 for b in base]
        assert got == pytest.approx(want, rel=accumulated(STEPS), abs=1e-18), t
    assert [adam_steps[t] for t in range(1, STEPS + 1)] == [1, 2, 3, 1, 2, 3]


def test_hook_and_argument_errors(task, monkeypatch):
    model = new_model(task)
    kw = dict(epochs=1, lr=LR, batch_size=BATCH, seed=0)
    with pytest.raises(TypeError, match="loss_hook must be callable or None, got int"):
        fit(model, task, loss_hook=3, **kw)
    with pytest.raises(TypeError, match="model_hook must be callable or None, got str"):
        fit(model, task, model_hook="x", **kw)
    with pytest.raises(ValueError, match=r"loss_hook must return a scalar tensor or None, got Tensor \(3,\) at step 0"):
        fit(model, task, loss_hook=lambda m, s: torch.zeros(3), **kw)
    with pytest.raises(TypeError, match="model_hook must return None, an nn.Module .* or a ModelSwap, got str after "
                                        "step 1"):
        fit(model, task, model_hook=lambda m, s, o: "smaller", **kw)
    with pytest.raises(ValueError, match="after step 1 has torch.float64 on cpu; the trained one torch.float32"):
        fit(model, task, model_hook=lambda m, s, o: rebuilt(m).double(), **kw)
    with pytest.raises(ValueError, match="has 1 optimizer parameter groups .*, the trained one 2"):
        fit(model, task, model_hook=lambda m, s, o: nn.Linear(2, 2), **kw)
    with pytest.raises(TypeError, match="carry_state must be callable or None, got int"):
        fit(model, task, model_hook=lambda m, s, o: ModelSwap(rebuilt(m), carry_state=1), **kw)
    with pytest.raises(TypeError, match="model must be an nn.Module, got str"):
        fit("model", task, **kw)
    with pytest.raises(TypeError, match=r"max_seconds must be a number, got str \('soon'\)"):
        fit(model, task, max_seconds="soon", **kw)
    monkeypatch.setattr(distributed, "current", lambda: distributed.World(0, 16))
    with pytest.raises(ValueError, match="batch_size 8 is below the 16 processes"):
        fit(model, task, **kw)


# ---------------------------------------------------------------- the process group from the environment

@pytest.fixture
def clean_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_init_from_env_single_process_and_bad_environments(clean_env):
    """No torchrun variables, or WORLD_SIZE 1: a single process, nothing initialised. Inconsistent
    variables and bad arguments: ValueError naming the variable or argument, before any connection."""
    assert distributed.init_from_env() == distributed.World(0, 1, 0)
    clean_env.setenv("WORLD_SIZE", "1")
    assert distributed.init_from_env() == distributed.World() and not torch.distributed.is_initialized()
    assert distributed.current().is_main and distributed.broadcast_object({"r": 8}) == {"r": 8}
    clean_env.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="WORLD_SIZE=2 but RANK, MASTER_ADDR, MASTER_PORT unset: launch with torchrun"):
        distributed.init_from_env()
    clean_env.setenv("RANK", "2")
    clean_env.setenv("MASTER_ADDR", "127.0.0.1")
    clean_env.setenv("MASTER_PORT", "29500")
    with pytest.raises(ValueError, match="RANK 2 must be below WORLD_SIZE 2"):
        distributed.init_from_env()
    clean_env.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer, got 'two'"):
        distributed.init_from_env()
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda', got 'tpu'"):
        distributed.init_from_env(device="tpu")
    with pytest.raises(ValueError, match="timeout_s must be a finite number > 0, got 0"):
        distributed.init_from_env(timeout_s=0)
    assert not torch.distributed.is_initialized()


def test_dssm_train_distributed_flags(tmp_path, capsys, clean_env):
    out = str(tmp_path / "m.pt")
    base = ["train", "--task", "recall", "--task-option", "n_train=8", "--d-model", "8", "--d-state", "8",
            "--epochs", "1", "--no-progress", "--out", out]
    for flag, value, needle in (("--batch-size", "0", "expected an integer in [1, 65536], got 0"),
                                ("--dist-timeout", "0", "expected a finite number > 0, got 0")):
        assert main([*base, flag, value]) == 2
        assert f"argument {flag}: {needle}" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*base, "--device", "cuda"]) == 2
        assert "dssm train: error: --device cuda: torch sees no CUDA device" in capsys.readouterr().err
    clean_env.setenv("WORLD_SIZE", "2")      # a torchrun environment with its rendezvous variables lost
    assert main(base) == 2
    assert "dssm train: error: distributed: WORLD_SIZE=2 but RANK, MASTER_ADDR, MASTER_PORT unset" in \
        capsys.readouterr().err
    clean_env.setenv("RANK", "1")            # under torchrun each rank's error says whose it is
    assert main(base) == 2
    assert "dssm train (rank 1 of 2): error: distributed: WORLD_SIZE=2 but MASTER_ADDR, MASTER_PORT unset" in \
        capsys.readouterr().err
