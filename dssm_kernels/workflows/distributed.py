"""Data-parallel runs over torch.distributed: the process group from the environment torchrun sets, and
what training needs to know of it.

    torchrun --nproc-per-node 2 -m dssm_kernels train --task digits --out m.pt              # 2 processes
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 4 --master-addr HOST --master-port 29500 \\
             -m dssm_kernels train ...                                     # and the same with --node-rank 1

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each process; init_from_env
reads them and joins the group: gloo for CPU training, nccl for CUDA (one GPU per process, cuda:LOCAL_RANK).
Without them (a plain `python` or `dssm` run), or with WORLD_SIZE 1, nothing is initialised and the run
is a single process, exactly as without this module.

Every collective waits at most `timeout_s` for the other processes: a rank that dies or stalls makes the
others fail with a timeout (or at once, when gloo sees the peer's connection close) instead of hanging,
and torchrun then stops the whole run and reports the first failure. The timeout must exceed the longest
stretch one rank works alone between two collectives: rank 0's validation pass after each epoch, and
a model_hook's work (workflows.training.fit).

    World(rank, size, local_rank)         # .is_main: rank 0, the one that validates, prints and writes
    init_from_env(device="cpu", timeout_s=DEFAULT_TIMEOUT_S) -> World
    current() -> World                    # the initialised group, or World() for a single process
    shutdown()                            # leave the group (a no-op without one)
    broadcast_object(obj, src=0)          # rank src's picklable obj on every rank (decisions made on rank 0)
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dssm_kernels._validate import check_number

DEFAULT_TIMEOUT_S = 1800.0      # torch's own default: rank 0's validation of a large split may take minutes
_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """This process's place in the group: rank in [0, size), local_rank on its machine (its GPU index)."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, least: int) -> int:
    raw = os.environ[name]
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"distributed: environment variable {name} must be an integer, got {raw!r}") from None
    if value < least:
        raise ValueError(f"distributed: environment variable {name} must be >= {least}, got {value}")
    return value


def _from_env() -> World:
    """The World torchrun's variables describe; World() when WORLD_SIZE is unset."""
    if "WORLD_SIZE" not in os.environ:
        return World()
    size = _env_int("WORLD_SIZE", 1)
    if size == 1:
        return World()
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise ValueError(f"distributed: WORLD_SIZE={size} but {', '.join(missing)} unset: launch with torchrun, "
                         "which sets them all")
    rank = _env_int("RANK", 0)
    if rank >= size:
        raise ValueError(f"distributed: RANK {rank} must be below WORLD_SIZE {size}")
    local_rank = _env_int("LOCAL_RANK", 0) if "LOCAL_RANK" in os.environ else 0
    return World(rank, size, local_rank)


def init_from_env(device: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S) -> World:
    """Join the process group torchrun's environment describes (see the module docstring) and return this
    process's World; World() and nothing initialised for a single process. device "cpu" uses gloo, "cuda"
    nccl with this process on cuda:LOCAL_RANK (set as the current device). Idempotent: an initialised
    group is returned as it is. Raises ValueError for a bad device, timeout or environment, RuntimeError
    when the backend is missing."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"distributed.init_from_env: device must be 'cpu' or 'cuda', got {device!r}")
    check_number("distributed.init_from_env", "timeout_s", timeout_s, positive=True)
    if dist.is_available() and dist.is_initialized():
        return current()
    world = _from_env()
    if world.size == 1:
        return world
    if not dist.is_available():
        raise RuntimeError("distributed: this torch build has no torch.distributed; WORLD_SIZE "
                           f"{world.size} asks for {world.size} processes")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("distributed: device 'cuda' asked for, but torch sees no CUDA device")
        if world.local_rank >= torch.cuda.device_count():
            raise ValueError(f"distributed: LOCAL_RANK {world.local_rank} has no GPU: this machine has "
                             f"{torch.cuda.device_count()}; give --nproc-per-node at most that")
        if not dist.is_nccl_available():
            raise RuntimeError("distributed: device 'cuda' needs the nccl backend, which this torch build lacks")
        torch.cuda.set_device(world.local_rank)
        backend = "nccl"
    else:
        if not dist.is_gloo_available():
            raise RuntimeError("distributed: CPU training needs the gloo backend, which this torch build lacks")
        backend = "gloo"
    dist.init_process_group(backend, init_method="env://", rank=world.rank, world_size=world.size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return world


def current() -> World:
    """The World of the initialised process group, or World() (a single process) when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    local = int(os.environ.get("LOCAL_RANK", "0")) if os.environ.get("LOCAL_RANK", "0").isdigit() else 0
    return World(dist.get_rank(), dist.get_world_size(), local)


def shutdown() -> None:
    """Leave the process group, if this process is in one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj, src: int = 0):
    """obj as rank `src` has it, on every rank (pickled: only between the processes of one run); obj
    itself without a group. For decisions every rank must take alike but that rest on floating-point
    results, which may round differently on different machines: a reduced state size chosen from a
    tolerance, say, decided on rank 0 and broadcast."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
