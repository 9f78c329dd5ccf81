"""Data-parallel training on this machine (gloo, CPU): time per epoch of `dssm train` in one process and
in N processes started by torchrun, and how closely N processes reproduce one process's gradient of the
same global batch, per layer kind.

    python examples/data_parallel.py                       # digits, d_model 64, 2 epochs; 1 and 2 processes
    python examples/data_parallel.py --nproc 4 --epochs 3 --json out.json

Timing: `dssm train --task digits --d-model 64` run as a plain process (torch's default threads, then
one thread) and as `torchrun --standalone --nproc-per-node N -m dssm_kernels train` (one thread per
process, torchrun's default); the seconds per epoch are read from each checkpoint's history (training
and rank 0's validation, without start-up), the wall time of each command is reported beside them.
Gradients: one optimizer step on one global batch of --batch digits sequences (d_model and d_state 64,
2 layers, float32), the gradient DDP leaves on rank 0 against one process's, as max over parameter
tensors of |g_N - g_1| / |g_1|.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.multiprocessing as mp

from dssm_kernels import tasks
from dssm_kernels.nn import LAYERS, SequenceClassifier
from dssm_kernels.workflows import checkpoint, distributed
from dssm_kernels.workflows.training import fit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def time_train(label: str, launcher: list, args, folder: str, threads: int | None) -> dict:
    out = os.path.join(folder, re.sub(r"[^0-9a-z]+", "-", label) + ".pt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [*launcher, "train", "--task", "digits", "--d-model", str(args.d_model), "--epochs", str(args.epochs),
           "--seed", "0", "--no-progress", "--out", out]
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    _, _, meta = checkpoint.load(out)
    cumulative = meta["history"]["seconds"]
    per_epoch = [b - a for a, b in zip([0.0] + cumulative[:-1], cumulative)]
    report = json.loads(r.stdout[r.stdout.index("{"):])
    row = {"run": label, "seconds_per_epoch": per_epoch, "median_epoch_s": statistics.median(per_epoch),
           "wall_s": wall, "test_acc": report["test_acc"], "command": " ".join(cmd[1:])}
    print(f"{label:<28} {row['median_epoch_s']:7.1f} s/epoch (epochs {', '.join(f'{s:.1f}' for s in per_epoch)}), "
          f"wall {wall:.0f} s, test accuracy {row['test_acc']:.3f}", flush=True)
    return row


def first_step_gradients(d_model: int, batch: int) -> dict:
    """{layer: {name: gradient}} of one optimizer step of fit on one global batch (in this process, or in
    the process group it belongs to: then DDP's all-reduced gradient)."""
    task = tasks.load("digits", seed=0, n_train=batch, n_val=8, n_test=8)
    grads = {}
    for layer in LAYERS:
        model = SequenceClassifier(task.n_classes, d_input=task.d_input, layer=layer, d_model=d_model, d_state=64,
                                   n_layers=2, seed=0)
        captured = {}

        def hook(m, step, optimizer):
            captured.update({n: p.grad.clone() for n, p in m.named_parameters()})

        fit(model, task, epochs=1, batch_size=batch, seed=0, model_hook=hook)
        grads[layer] = captured
    return grads


def _rank(rank, size, port, d_model, batch, path):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.init_from_env("cpu", timeout_s=600)
    grads = first_step_gradients(d_model, batch)
    if rank == 0:
        torch.save(grads, path)
    distributed.shutdown()


def gradient_errors(nproc: int, d_model: int, batch: int, folder: str) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = os.path.join(folder, "grads.pt")
    mp.start_processes(_rank, args=(nproc, port, d_model, batch, path), nprocs=nproc, start_method="spawn")
    many = torch.load(path)
    one = first_step_gradients(d_model, batch)
    errors = {}
    for layer, grads in one.items():
        errors[layer] = max(((many[layer][n] - g).norm() / g.norm()).item() for n, g in grads.items())
        print(f"{layer:<5} max over tensors of |g_{nproc} - g_1| / |g_1| = {errors[layer]:.1e}", flush=True)
    return errors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nproc", type=int, default=2, help="processes of the data-parallel runs (default 2)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of each timed run (default 2)")
    p.add_argument("--d-model", type=int, default=64, help="channels (default 64)")
    p.add_argument("--batch", type=int, default=64, help="global batch of the gradient check (default 64)")
    p.add_argument("--skip-timing", action="store_true", help="only the gradient check")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    res = {"machine": f"{os.cpu_count()} cores, torch {torch.__version__}", "nproc": args.nproc,
           "d_model": args.d_model, "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as folder:
        if not args.skip_timing:
            plain = [sys.executable, "-m", "dssm_kernels"]
            torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                        str(args.nproc), "-m", "dssm_kernels"]
            res["timing"] = [time_train(f"1 process, {torch.get_num_threads()} threads", plain, args, folder, None),
                             time_train("1 process, 1 thread", plain, args, folder, 1),
                             time_train(f"{args.nproc} processes, 1 thread each", torchrun, args, folder, 1)]
        res["gradient_rel_error"] = gradient_errors(args.nproc, args.d_model, args.batch, folder)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
