"""Data-parallel training (workflows.training.fit under torch.distributed, gloo on CPU) with real processes
on 127.0.0.1: 2 processes equal one at the same global batch for every layer kind, hooks included; a rank
that fails or stalls fails the run instead of hanging; `dssm train` under torchrun.

The processes come from torch.multiprocessing's forkserver, which imports torch and the package once for
every test here (a fresh interpreter per process costs seconds on 2 shared cores). Each test is bounded:
the process group's timeout (PG_TIMEOUT_S) makes a waiting collective fail, and the test kills whatever
is still alive DEADLINE_S after the start.
"""
import math
import multiprocessing
import os
import socket
import time
import traceback

import pytest
import torch
import torch.multiprocessing as mp

from dssm_kernels import tasks
from dssm_kernels.cli import main
from dssm_kernels.nn import LAYERS, SequenceClassifier
from dssm_kernels.workflows import checkpoint, distributed
from dssm_kernels.workflows.training import ModelSwap, fit

PG_TIMEOUT_S = 30.0
DEADLINE_S = 150.0
EPS32 = float(torch.finfo(torch.float32).eps)

# 11 sequences in batches of 5: 5, 5, 1 per epoch. On 2 ranks the shares are 3 + 2 (uneven), 3 + 2, 1 + 0:
# the last batch leaves rank 1 without a sample (its zero-weighted stand-in). Two epochs: reshuffled.
SEQ_LEN = 16
TASK = dict(seed=0, seq_len=SEQ_LEN, n_train=11, n_val=8, n_test=4)
BATCH = 5
EPOCHS = 2
SWAP_AT = 2            # the model_hook rebuilds the model after this optimizer step
PENALTY = 1e-2
# Two float32 sums of the same n = BATCH * SEQ_LEN per-sample terms in different orders (the gradient of
# one process against the all-reduced halves of two) agree to 2 n eps32 of the terms' magnitude (Higham,
# Accuracy and Stability of Numerical Algorithms, 2nd ed., 3.1), times a safety of 8 for the few
# operations per term: 8 * 2 * 80 * 1.2e-7 = 1.5e-4, relative, in norm per tensor.
TOL_GRAD = 8 * 2 * BATCH * SEQ_LEN * EPS32


@pytest.fixture(scope="module", autouse=True)
def _forkserver_preload():
    """Preload torch and the package in the forkserver (effective if this module starts it first)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "dssm_kernels.nn", "dssm_kernels.workflows.training", __name__])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, fn, size, port, folder, timeout_s, args):
    """One process: torchrun's environment, the group from it (timeout_s None: fn joins it itself),
    fn(rank, folder, *args); any exception's traceback goes to folder/rank<r>.err before the process exits
    with it."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        if timeout_s is not None:
            world = distributed.init_from_env("cpu", timeout_s=timeout_s)
            assert (world.rank, world.size) == (rank, size)
        fn(rank, folder, *args)
    except BaseException:
        with open(os.path.join(folder, f"rank{rank}.err"), "w") as f:
            f.write(traceback.format_exc())
        raise
    distributed.shutdown()


def _launch(fn, folder, *args, size=2, timeout_s=PG_TIMEOUT_S, wait_for=None):
    """Run fn on `size` processes; wait for the ranks `wait_for` (default all) to end, at most until the
    deadline, then kill every process still alive. Returns (exit codes, seconds, ranks killed)."""
    ctx = mp.start_processes(_entry, args=(fn, size, _free_port(), str(folder), timeout_s, args), nprocs=size,
                             join=False, start_method="forkserver")
    start = time.monotonic()
    for r in range(size) if wait_for is None else wait_for:
        ctx.processes[r].join(timeout=max(0.0, DEADLINE_S - (time.monotonic() - start)))
    seconds = time.monotonic() - start
    killed = [r for r, p in enumerate(ctx.processes) if p.is_alive()]
    for r in killed:
        ctx.processes[r].kill()
        ctx.processes[r].join()
    return [p.exitcode for p in ctx.processes], seconds, killed


def _errors(folder, size=2) -> list:
    paths = [os.path.join(folder, f"rank{r}.err") for r in range(size)]
    return [open(p).read() if os.path.exists(p) else None for p in paths]


# ---------------------------------------------------------------- the same training in 1 and 2 processes

def _carry_by_position(old, new):
    """Optimizer state from old to new, parameter by parameter in order (the rebuilt model is the same)."""
    olds = [p for g in old.param_groups for p in g["params"]]
    news = [p for g in new.param_groups for p in g["params"]]
    for po, pn in zip(olds, news, strict=True):
        new.state[pn] = {k: v.clone() for k, v in old.state[po].items()}


def train_every_layer() -> dict:
    """{layer: (initial state, final state, gradients of the first step, History.records(), the input batch
    of each training forward)} after 2 epochs of 3 optimizer steps, with a penalty through loss_hook and,
    through model_hook, the first step's gradients recorded and the model rebuilt (same weights, optimizer
    state carried) after step SWAP_AT."""
    task = tasks.load("recall", **TASK)
    out = {}
    for layer in LAYERS:
        model = SequenceClassifier(task.n_classes, vocab_size=task.vocab_size, layer=layer, d_model=8, d_state=8,
                                   n_layers=2, seed=0)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        grads, inputs = {}, []

        def record_input(m, args):
            if m.training:
                inputs.append(args[0].clone())

        model.register_forward_pre_hook(record_input)

        def penalty(m, step):
            return PENALTY * m.decoder.weight.square().sum()

        def hook(m, step, optimizer):
            if step == 1:
                grads.update({n: p.grad.clone() for n, p in m.named_parameters()})
            if step == SWAP_AT:
                rebuilt = SequenceClassifier.from_config(m.current_config())
                rebuilt.load_state_dict(m.state_dict())
                rebuilt.register_forward_pre_hook(record_input)
                return ModelSwap(rebuilt, carry_state=_carry_by_position)
            return None

        hist = fit(model, task, epochs=EPOCHS, lr=1e-2, batch_size=BATCH, seed=0, loss_hook=penalty,
                   model_hook=hook)
        assert hist.model is not model                  # the swap happened, on this rank too
        out[layer] = (initial, {k: v.clone() for k, v in hist.model.state_dict().items()}, grads, hist.records(),
                      inputs)
    return out


def _train_and_save(rank, folder):
    res = train_every_layer()
    # max_seconds is rank 0's decision: rank 0 stops after the first epoch, rank 1 (no limit) with it
    task = tasks.load("recall", **TASK)
    model = SequenceClassifier(task.n_classes, vocab_size=task.vocab_size, layer="s4d", d_model=8, d_state=8,
                               n_layers=1, seed=0)
    hist = fit(model, task, epochs=3, batch_size=BATCH, max_seconds=0.0 if rank == 0 else None)
    res["epochs run with max_seconds on rank 0"] = len(hist.val_acc)
    torch.save(res, os.path.join(folder, f"rank{rank}.pt"))


def test_two_processes_equal_one_at_the_same_global_batch(tmp_path):
    """A 2-process run against one process reading the same global batches, per layer kind: each rank reads
    the strided half of every batch of the one process (the inputs themselves, compared exactly: data, not
    arithmetic), gradients of the first step and parameters after 6 steps (Adam, a penalty, a model swap)
    agree to rounding, and the History is the same on both ranks; max_seconds stops both when rank 0 says.

    Tolerances: gradients TOL_GRAD (see its comment). After the steps the parameters differ by what those
    gradient differences move them: Adam's update lr * m / sqrt(v) changes by at most the relative change
    of g, so each step adds at most lr * TOL_GRAD to the difference, against a movement of about lr per
    step: relative to the movement (|p - p0|) the parameters agree to TOL_GRAD, times 2 for the penalty's
    and the carried state's rounding."""
    exit_codes, seconds, killed = _launch(_train_and_save, tmp_path)
    assert not killed and exit_codes == [0, 0], _errors(tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [r["epochs run with max_seconds on rank 0"] for r in ranks] == [1, 1]
    one = train_every_layer()
    worst = {}
    for layer in LAYERS:
        initial, final1, grads1, hist1, inputs1 = one[layer]
        initial2, final2, grads2, hist2, _ = ranks[0][layer]
        steps = len(inputs1)
        assert steps == EPOCHS * 3 and [len(r[layer][4]) for r in ranks] == [steps, steps]
        for s, batch in enumerate(inputs1):
            assert torch.equal(ranks[0][layer][4][s], batch[0::2])
            # rank 1's share; of a 1-sample batch, the batch's sample as its zero-weighted stand-in
            assert torch.equal(ranks[1][layer][4][s], batch[1::2] if len(batch) > 1 else batch)
        assert grads1.keys() == grads2.keys() == final1.keys()      # every parameter (the model has no buffers)
        for name, g in grads1.items():
            err = ((grads2[name] - g).norm() / g.norm()).item()
            worst[layer, "grad"] = max(worst.get((layer, "grad"), 0.0), err)
            assert err <= TOL_GRAD, f"{layer} {name}: gradient relative error {err:.2e} > {TOL_GRAD:.2e}"
        for name, p in final1.items():
            assert torch.equal(initial2[name], initial[name])   # the same start: the same seeded construction
            err = ((final2[name] - p).norm() / (p - initial[name]).norm()).item()
            worst[layer, "param"] = max(worst.get((layer, "param"), 0.0), err)
            assert err <= 2 * TOL_GRAD, f"{layer} {name}: parameter error {err:.2e} of the movement"
        # the same History on every rank: values all-reduced (the loss) or sent from rank 0, not recomputed
        assert ranks[1][layer][3] == hist2
        for a, b in zip(hist2["train_loss"], hist1["train_loss"], strict=True):
            assert math.isclose(a, b, rel_tol=TOL_GRAD)
    print("worst relative errors (2 processes against 1):",
          ", ".join(f"{k[0]} {k[1]} {v:.1e}" for k, v in sorted(worst.items())), f"({seconds:.0f} s)")


# ---------------------------------------------------------------- a failing or stalled rank fails the run

def _rank1_fails(rank, folder, how):
    """Training in which rank 1, at its first step, raises (how="raise": its process ends with the error) or
    stops taking part without ending (how="stall": rank 0 waits in the all-reduce until the timeout)."""
    task = tasks.load("recall", **TASK)
    model = SequenceClassifier(task.n_classes, vocab_size=task.vocab_size, layer="s4d", d_model=8, d_state=8,
                               n_layers=1, seed=0)

    def loss_hook(m, step):
        if rank == 1 and step == 1:
            if how == "raise":
                raise ValueError("rank 1 fails on purpose")
            time.sleep(10 * DEADLINE_S)
        return None

    fit(model, task, epochs=2, lr=1e-2, batch_size=BATCH, seed=0, loss_hook=loss_hook)


def test_a_rank_that_raises_fails_the_whole_run_with_its_error(tmp_path):
    """Rank 1 raises: its process ends with its error, and rank 0, waiting for it in DDP's all-reduce, fails
    too (gloo sees the peer's connection close) well before the group's timeout: no process is left."""
    exit_codes, seconds, killed = _launch(_rank1_fails, tmp_path, "raise")
    errors = _errors(tmp_path)
    assert not killed, f"rank(s) {killed} hung until the deadline; errors: {errors}"
    assert exit_codes[0] != 0 and exit_codes[1] != 0
    assert "ValueError: rank 1 fails on purpose" in errors[1]
    assert errors[0] is not None and "rank 1 fails on purpose" not in errors[0]
    assert seconds < DEADLINE_S


def test_a_stalled_rank_fails_the_run_at_the_process_group_timeout(tmp_path):
    """Rank 1 stops taking part without ending: rank 0 fails with a timeout after about the group's timeout
    (3 s here) instead of waiting for ever; the launcher (here the test, in practice torchrun) then stops
    the stalled rank."""
    timeout = 3.0
    exit_codes, seconds, killed = _launch(_rank1_fails, tmp_path, "stall", timeout_s=timeout, wait_for=[0])
    errors = _errors(tmp_path)
    assert seconds < DEADLINE_S and exit_codes[0] is not None, f"rank 0 hung until the deadline; errors: {errors}"
    assert killed == [1] and exit_codes[0] != 0 and errors[0] is not None
    assert "timed out" in errors[0].lower() or "timeout" in errors[0].lower(), errors[0][-2000:]


# ---------------------------------------------------------------- dssm train as torchrun starts it

CLI_FLAGS = ["train", "--task", "recall", "--task-option", f"seq_len={SEQ_LEN}", "--task-option", "n_train=11",
             "--task-option", "n_val=8", "--task-option", "n_test=4", "--layer", "s4d", "--d-model", "8",
             "--d-state", "8", "--n-layers", "1", "--epochs", "1", "--batch-size", str(BATCH), "--no-progress"]


def _dssm_train(rank, folder):
    """`dssm train` in a process with torchrun's environment (the command joins the group itself); its
    stdout goes to folder/rank<r>.out."""
    import contextlib
    with open(os.path.join(folder, f"rank{rank}.out"), "w") as out, contextlib.redirect_stdout(out):
        code = main([*CLI_FLAGS, "--dist-timeout", str(PG_TIMEOUT_S), "--out", os.path.join(folder, "two.pt")])
    if code != 0:
        raise RuntimeError(f"dssm train exited with {code}")


def test_dssm_train_on_two_processes_writes_one_checkpoint_equal_to_one_process(tmp_path, capsys):
    """`dssm train` where torchrun --nproc-per-node 2 would start it (RANK, WORLD_SIZE, MASTER_* set): rank 0
    alone prints and writes the checkpoint, whose weights equal a plain `dssm train` of the same flags
    (tolerance: as in the equality test above, relative to how far training moved each tensor)."""
    exit_codes, _, killed = _launch(_dssm_train, tmp_path, timeout_s=None)
    assert not killed and exit_codes == [0, 0], _errors(tmp_path)
    out0, out1 = (open(tmp_path / f"rank{r}.out").read() for r in range(2))
    assert out1 == "" and out0.count('"checkpoint"') == 1 and "recall:" in out0 and "2 processes" in out0, out0
    one = str(tmp_path / "one.pt")
    assert main([*CLI_FLAGS, "--out", one]) == 0
    capsys.readouterr()
    m2, _, meta2 = checkpoint.load(str(tmp_path / "two.pt"))
    m1, _, meta1 = checkpoint.load(one)
    init = SequenceClassifier.from_config(m1.current_config()).state_dict()
    for name, p in m1.state_dict().items():
        err = ((m2.state_dict()[name] - p).norm() / (p - init[name]).norm()).item()
        assert err <= 2 * TOL_GRAD, f"{name}: {err:.2e} of the movement > {2 * TOL_GRAD:.2e}"
    assert len(meta2["history"]["val_acc"]) == len(meta1["history"]["val_acc"]) == 1
