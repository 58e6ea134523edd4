"""Data-parallel fitting over trajectories with ``torch.distributed`` (gloo on CPU, NCCL on GPU).

Every rank holds the whole data set and the whole model; trajectory ``i`` is solved by rank ``i % world_size``.
The loss of a rank is its share of a sum over trajectories normalised by the *global* count of observations, so
summing the ranks' gradients (:func:`all_reduce_`) gives exactly the single-process gradient, and every rank takes
the same optimiser step. Launch a script that calls :func:`init_from_env` and :func:`physnode.fit` with
``torchrun --nproc-per-node N script.py`` or :func:`launch`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["all_reduce_", "init_from_env", "is_distributed", "launch", "shard", "torchrun_command", "world"]


def is_distributed() -> bool:
    """Whether a process group with more than one rank is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(backend: str | None = None) -> tuple[int, int]:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...).

    Does nothing without ``WORLD_SIZE`` or with ``WORLD_SIZE=1``, or when a group is already initialised.
    ``backend`` defaults to ``"nccl"`` when CUDA is available, else ``"gloo"``; with NCCL the current CUDA device is
    set to ``LOCAL_RANK``. Returns ``(rank, world_size)``.
    """
    if not dist.is_available():
        return 0, 1
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or dist.is_initialized():
        return world()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return world()


def shard(indices: Tensor, rank: int, world_size: int) -> Tensor:
    """The entries of ``indices`` (trajectory numbers) that rank ``rank`` handles: ``index % world_size == rank``."""
    return indices[indices % world_size == rank]


def all_reduce_(tensors: Iterable[Tensor]) -> None:
    """Sum each tensor over the ranks in place (no-op outside a multi-rank group)."""
    if not is_distributed():
        return
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def all_reduce_grads_(params: Sequence[Tensor]) -> None:
    """Sum the ``.grad`` of ``params`` over the ranks (a missing gradient counts as zero)."""
    if not is_distributed():
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def torchrun_command(nproc: int, argv: Sequence[str], *, python: str | None = None) -> list[str]:
    """The command that runs ``python argv...`` on ``nproc`` local processes with torchrun (``--standalone``).

    ``argv`` is the script or module invocation, e.g. ``["-m", "physnode", "fit", "three-body"]``.
    """
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ValueError(f"nproc must be a positive integer, got {nproc!r}.")
    argv = list(argv)
    head = [python or sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    if argv and argv[0] == "-m":
        if len(argv) < 2:
            raise ValueError("argv ['-m'] names no module.")
        return [*head, "--module", *argv[1:]]
    return [*head, *argv]


def launch(nproc: int, argv: Sequence[str], *, env: dict[str, str] | None = None, check: bool = True) -> int:
    """Run :func:`torchrun_command` as a subprocess and wait; returns its exit code (raises on failure if ``check``)."""
    cmd = torchrun_command(nproc, argv)
    proc = subprocess.run(cmd, env=env, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"torchrun exited with code {proc.returncode}: {' '.join(cmd)}")
    return proc.returncode
