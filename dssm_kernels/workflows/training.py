"""Training and evaluation of a classifier on a Task: what `dssm train`, the demo, the experiments and the
tests share."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from dssm_kernels.nn import param_groups
from dssm_kernels.tasks._common import Split, Task
from dssm_kernels.workflows import reporting


@dataclass
class History:
    """Per-epoch records of fit(): training loss, validation accuracy, seconds."""
    train_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    def records(self) -> dict:
        """The per-epoch lists as plain values: what a checkpoint keeps."""
        return {"train_loss": list(self.train_loss), "val_acc": list(self.val_acc), "seconds": list(self.seconds)}


def _batches(split: Split, batch_size: int, g: torch.Generator | None):
    x, y = split
    order = torch.randperm(len(y), generator=g) if g is not None else torch.arange(len(y))
    for i in range(0, len(y), batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]


@torch.no_grad()
def accuracy(model: nn.Module, split: Split, batch_size: int = 256) -> float:
    """Fraction of correctly classified sequences of `split` (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    correct = 0
    for x, y in _batches(split, batch_size, None):
        x = x.to(dtype) if x.is_floating_point() else x
        correct += (model(x).argmax(-1) == y).sum().item()
    model.train(was_training)
    return correct / max(1, len(split[1]))


def fit(model: nn.Module, task: Task, *, epochs: int = 5, lr: float = 1e-2, weight_decay: float = 0.0,
        batch_size: int = 64, seed: int = 0, progress: bool = False, max_seconds: float | None = None) -> History:
    """AdamW on the cross-entropy of task.train with param_groups (SSM parameters at their own lr, no
    decay) and a cosine schedule over `epochs`; records validation accuracy after each epoch. Stops
    early after an epoch that ends past `max_seconds`."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be an int >= 1, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"fit: batch_size must be an int >= 1, got {batch_size!r}")
    opt = torch.optim.AdamW(param_groups(model, lr=lr, weight_decay=weight_decay))
    steps = epochs * -(-len(task.train[1]) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    g = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    hist = History()
    start = time.perf_counter()
    epoch_iter = reporting.progress_bar(range(epochs), progress, desc="train", unit="epoch", leave=False)
    for _ in epoch_iter:
        model.train()
        total, n = 0.0, 0
        for x, y in _batches(task.train, batch_size, g):
            x = x.to(dtype) if x.is_floating_point() else x
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.item() * len(y), n + len(y)
        hist.train_loss.append(total / n)
        hist.val_acc.append(accuracy(model, task.val))
        hist.seconds.append(time.perf_counter() - start)
        if hasattr(epoch_iter, "set_postfix"):
            epoch_iter.set_postfix(loss=f"{hist.train_loss[-1]:.3f}", val_acc=f"{hist.val_acc[-1]:.3f}")
        if max_seconds is not None and hist.seconds[-1] > max_seconds:
            break
    return hist
