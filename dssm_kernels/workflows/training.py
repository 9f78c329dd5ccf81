"""Training and evaluation of a classifier on a Task, in one process or data-parallel over several
(torch.distributed, launched by torchrun: see workflows.distributed): what `dssm train`, the demo, the
experiments and the tests share.

    fit(model, task, *, epochs=5, lr=1e-2, weight_decay=0.0, batch_size=64, seed=0, progress=False,
        max_seconds=None, loss_hook=None, model_hook=None) -> History
    accuracy(model, split, batch_size=256) -> float
    ModelSwap(model, carry_state=None)       # what a model_hook returns to replace the model being trained

Data parallelism. When a process group is initialised (workflows.distributed.init_from_env) with W > 1
processes, fit wraps the model in DistributedDataParallel and each rank reads its own shard of every
global batch: all ranks draw the same seeded permutation of the training split each epoch (the
single-process order), split it into global batches of `batch_size`, and rank r takes every W-th
sample of each, starting at r (DistributedSampler's strided shard, without its padding: no sample is
read twice). Rank r's loss is its share of the global batch's mean cross-entropy, sum over its samples
times W / (global batch size), so DDP's average of the ranks' gradients is the gradient of the global
batch's mean, even when the last batch does not split evenly (a rank with no sample in it contributes a
zero-weighted sample, so that every rank takes part in every all-reduce). Optimizer steps and the
learning-rate schedule are those of one process reading the same global batches, and the parameters
equal a single-process run's up to rounding (the sums are ordered differently). Validation, the
max_seconds decision and the progress bar are rank 0's; the History (train loss averaged over every
rank, rank 0's validation accuracy) is the same on every rank. DDP handles the layers' complex values
as they are stored: real views (..., 2) of float dtype (nn._base.ssm_param), all-reduced as reals.

Seams for training that changes the model as it goes (a penalty on the Hankel singular values,
reduction during training):
- loss_hook(model, step) -> scalar tensor or None: added to the loss of every step before backward
  (`model` is the unwrapped module, `step` the number of optimizer steps taken so far). It must be a
  function of the parameters alone, the same on every rank (DDP averages it back to itself).
- model_hook(model, step, optimizer) -> None, an nn.Module or a ModelSwap: called on every rank after
  each optimizer step (`step` steps taken). A model returned replaces the trained one: fit builds a new
  AdamW over its param_groups, continues the learning-rate schedule where it was (each group's current
  lr, the cosine's position in steps), moves the optimizer state over with ModelSwap.carry_state(old
  optimizer, new optimizer) or starts it afresh, and wraps the new model in DDP again. Under DDP every
  rank must return a model of the same shapes (DDP checks, and copies rank 0's values to all ranks);
  decisions resting on floating-point results should be taken on rank 0 and broadcast
  (distributed.broadcast_object). The last model is History.model.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dssm_kernels.nn import param_groups
from dssm_kernels._validate import check_int, check_number
from dssm_kernels.tasks._common import Split, Task
from dssm_kernels.workflows import distributed, reporting


@dataclass
class History:
    """Per-epoch records of fit(): training loss (the mean cross-entropy over the epoch's samples),
    validation accuracy, seconds since the start; `model` is the model trained last (the one given to fit,
    unless a model_hook replaced it). records() is what a checkpoint keeps."""
    train_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)

    def records(self) -> dict:
        """The per-epoch lists as plain values."""
        return {"train_loss": list(self.train_loss), "val_acc": list(self.val_acc), "seconds": list(self.seconds)}


@dataclass
class ModelSwap:
    """A model_hook's replacement model, with how the optimizer's state goes over to it:
    carry_state(old_optimizer, new_optimizer) fills the new optimizer's state (the old one's, through a
    change of basis, say); None starts it afresh."""
    model: nn.Module
    carry_state: Callable[[torch.optim.Optimizer, torch.optim.Optimizer], None] | None = None


def _as_input(x: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A batch in the model's dtype (features; token ids stay integers) on its device."""
    return x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, batch_size: int = 256) -> float:
    """Fraction of correctly classified sequences of `split` (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    x, y = split
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += (model(_as_input(x[i:i + batch_size], p.dtype, p.device)).argmax(-1).cpu()
                    == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return correct / max(1, len(y))


def _new_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(model, lr=lr, weight_decay=weight_decay))


class _Trainer:
    """One fit() call's moving parts: the model, its DDP wrapper, optimizer and schedule, rebuilt together
    when a model_hook replaces the model."""

    def __init__(self, model, *, lr, weight_decay, total_steps, world):
        self.lr, self.weight_decay, self.world = lr, weight_decay, world
        self.optimizer = _new_optimizer(model, lr, weight_decay)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=total_steps)
        self._use(model)

    def _use(self, model: nn.Module) -> None:
        self.model = model
        p = next(model.parameters())
        self.dtype, self.device = p.dtype, p.device
        if self.world.size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(model, device_ids=ids)
        else:
            self.wrapped = model

    def replace(self, swap, step: int) -> None:
        """Train swap (an nn.Module or ModelSwap) from here on, the schedule continuing at `step`."""
        carry = None
        if isinstance(swap, ModelSwap):
            swap, carry = swap.model, swap.carry_state
        if not isinstance(swap, nn.Module) or isinstance(swap, DistributedDataParallel):
            raise TypeError(f"fit: model_hook must return None, an nn.Module (not DDP-wrapped) or a ModelSwap, "
                            f"got {type(swap).__name__} after step {step}")
        if carry is not None and not callable(carry):
            raise TypeError(f"fit: ModelSwap.carry_state must be callable or None, got {type(carry).__name__}")
        p = next(swap.parameters(), None)
        if p is None or (p.dtype, p.device) != (self.dtype, self.device):
            got = "no parameters" if p is None else f"{p.dtype} on {p.device}"
            raise ValueError(f"fit: the model model_hook returned after step {step} has {got}; the trained one "
                             f"{self.dtype} on {self.device}")
        optimizer = _new_optimizer(swap, self.lr, self.weight_decay)
        old_groups, new_groups = self.optimizer.param_groups, optimizer.param_groups
        if len(new_groups) != len(old_groups):
            raise ValueError(f"fit: the model model_hook returned after step {step} has {len(new_groups)} optimizer "
                             f"parameter groups (nn.param_groups), the trained one {len(old_groups)}")
        # where the schedule is: each group's current and initial lr (a new scheduler's first step keeps the
        # current one), then the step count and the recursion's state
        for old, new in zip(old_groups, new_groups):
            new["lr"], new["initial_lr"] = old["lr"], old["initial_lr"]
        if carry is not None:
            carry(self.optimizer, optimizer)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.schedule.T_max)
        schedule.load_state_dict(self.schedule.state_dict())
        self.optimizer, self.schedule = optimizer, schedule
        self._use(swap)


def _batch_loss(trainer: _Trainer, x, y, divisor: float) -> torch.Tensor:
    """The summed cross-entropy of (x, y), this rank's part of a batch, / divisor (the global batch's size
    / W: in one process sum / n, the mean as cross_entropy computes it)."""
    logits = trainer.wrapped(_as_input(x, trainer.dtype, trainer.device))
    return nn.functional.cross_entropy(logits, y.to(trainer.device), reduction="sum") / divisor


def fit(model: nn.Module, task: Task, *, epochs: int = 5, lr: float = 1e-2, weight_decay: float = 0.0,
        batch_size: int = 64, seed: int = 0, progress: bool = False, max_seconds: float | None = None,
        loss_hook=None, model_hook=None) -> History:
    """AdamW on the mean cross-entropy of task.train over batches of `batch_size` (the global batch, split
    over the processes of a distributed run: see the module docstring), with param_groups (SSM parameters
    at their own lr, no decay) and a cosine schedule over the epochs' optimizer steps,
    lr_t = lr_0 (1 + cos(pi t / T)) / 2; records validation accuracy after each epoch. Stops early after
    an epoch that ends past `max_seconds`. The model is trained in place and stays on its device and dtype
    (batches are moved to them); loss_hook and model_hook: see the module docstring."""
    check_int("fit", "epochs", epochs)
    check_int("fit", "batch_size", batch_size)
    if isinstance(model, DistributedDataParallel):
        raise TypeError("fit: model must be the plain module; fit wraps it in DistributedDataParallel itself")
    if not isinstance(model, nn.Module):
        raise TypeError(f"fit: model must be an nn.Module, got {type(model).__name__}")
    if max_seconds is not None and max_seconds != math.inf:   # inf: no limit
        check_number("fit", "max_seconds", max_seconds)
    for name, hook in (("loss_hook", loss_hook), ("model_hook", model_hook)):
        if hook is not None and not callable(hook):
            raise TypeError(f"fit: {name} must be callable or None, got {type(hook).__name__}")
    world = distributed.current()
    if batch_size < world.size:
        raise ValueError(f"fit: batch_size {batch_size} is below the {world.size} processes: each needs a sample "
                         "of every batch")
    x_train, y_train = task.train
    n_train = len(y_train)
    steps_per_epoch = -(-n_train // batch_size)
    trainer = _Trainer(model, lr=lr, weight_decay=weight_decay, total_steps=epochs * steps_per_epoch, world=world)
    g = torch.Generator().manual_seed(seed)
    hist = History()
    start = time.perf_counter()
    bar = reporting.progress_bar(range(epochs), progress and world.is_main, desc="train", unit="epoch", leave=False)
    step = 0
    for _ in bar:
        trainer.model.train()
        total, n = 0.0, 0
        order = torch.randperm(n_train, generator=g)          # the same on every rank
        for i in range(0, n_train, batch_size):
            batch = order[i:i + batch_size]
            divisor = len(batch) / world.size                 # rank r's loss: its sum * W / |global batch|
            mine = batch[world.rank::world.size]
            if len(mine):
                ce = _batch_loss(trainer, x_train[mine], y_train[mine], divisor)
            else:   # no sample of the last batch here: a zero-weighted one, so this rank joins the all-reduce
                ce = _batch_loss(trainer, x_train[batch[:1]], y_train[batch[:1]], divisor) * 0.0
            loss = ce
            if loss_hook is not None:
                extra = loss_hook(trainer.model, step)
                if extra is not None:
                    if not isinstance(extra, torch.Tensor) or extra.numel() != 1:
                        raise ValueError(f"fit: loss_hook must return a scalar tensor or None, got "
                                         f"{type(extra).__name__} {tuple(getattr(extra, 'shape', ()))} at step {step}")
                    loss = loss + extra.reshape(())
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trainer.optimizer.step()
            trainer.schedule.step()
            step += 1
            total, n = total + ce.item() * divisor, n + len(mine)
            if model_hook is not None:
                swap = model_hook(trainer.model, step, trainer.optimizer)
                if swap is not None:
                    trainer.replace(swap, step)
        hist.train_loss.append(_global_mean(total, n, world))
        val_acc = accuracy(trainer.model, task.val) if world.is_main else 0.0
        seconds = time.perf_counter() - start
        stop = max_seconds is not None and seconds > max_seconds
        val_acc, seconds, stop = _from_main((val_acc, seconds, stop), world)
        hist.val_acc.append(val_acc)
        hist.seconds.append(seconds)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{hist.train_loss[-1]:.3f}", val_acc=f"{hist.val_acc[-1]:.3f}")
        if stop:
            break
    hist.model = trainer.model
    return hist


def _global_mean(total: float, n: int, world) -> float:
    """total / n summed over the ranks (total and n are this rank's)."""
    if world.size == 1:
        return total / n
    t = torch.tensor([total, float(n)], dtype=torch.float64)
    if torch.distributed.get_backend() == "nccl":
        t = t.cuda()
    torch.distributed.all_reduce(t)
    return (t[0] / t[1]).item()


def _from_main(values: tuple, world) -> tuple:
    """Rank 0's values on every rank: one epoch's record and its decision to stop."""
    return values if world.size == 1 else tuple(distributed.broadcast_object(list(values)))
