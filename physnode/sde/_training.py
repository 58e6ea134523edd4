"""Shared pieces of the neural-SDE trainers (:mod:`.gan`, :mod:`.latent`): batches of irregular, masked
observations on a union time grid, per-iteration seeds, checkpoints, and the training loop itself.

A batch of :class:`~physnode.data.Trajectories` has per-trajectory times, padded to a common length, and
per-channel masks. The SDE is solved once for the batch on the sorted union of all valid observation times
(plus the common initial time), and each trajectory's states are gathered from that grid.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..data.trajectories import Trajectories
from ..fit.checkpoint import Checkpoint, load_checkpoint, resolve_checkpoint, save_checkpoint

__all__ = [
    "Batch",
    "Run",
    "check_trajectories",
    "fill_forward",
    "make_batch",
    "model_seed",
    "resolve_resume",
    "resume_state",
    "train",
    "write_state",
]


def check_trajectories(data: object, data_dim: int, what: str) -> Trajectories:
    """``data`` is a :class:`Trajectories` with ``data_dim`` channels; clear errors otherwise."""
    if not isinstance(data, Trajectories):
        raise TypeError(
            f"{what} needs data as physnode.data.Trajectories, got {type(data).__name__}; build one with "
            "Trajectories(times, values, mask)."
        )
    if data.n_channels != data_dim:
        raise ValueError(
            f"the model has data_dim = {data_dim} channels but the data has {data.n_channels} "
            f"({', '.join(data.channels)}); build the model with data_dim={data.n_channels}."
        )
    if data.n_times < 2:
        raise ValueError(f"{what} needs at least 2 observation times per batch, the data has T = {data.n_times}.")
    return data


def fill_forward(values: Tensor, mask: Tensor) -> Tensor:
    """Replace unobserved entries by the last observation of the channel (the first one before it; 0 if none).

    Parameters
    ----------
    values, mask
        ``(B, T, D)`` values and bool mask.

    Returns
    -------
    Tensor
        ``(B, T, D)``, equal to ``values`` where ``mask`` is true.
    """
    T = values.shape[1]
    idx = torch.arange(T, device=values.device).view(1, T, 1).expand_as(values)
    last = torch.where(mask, idx, -1).cummax(dim=1).values
    first = torch.where(mask, idx, T).amin(dim=1, keepdim=True).expand_as(values)
    src = torch.where(last >= 0, last, first).clamp(max=T - 1)
    filled = torch.where(mask, values, 0.0).gather(1, src)
    anywhere = mask.any(dim=1, keepdim=True).expand_as(values)
    return torch.where(anywhere, filled, 0.0)


@dataclass
class Batch:
    """A batch of observations on the union grid.

    Attributes
    ----------
    grid
        ``(U,)`` sorted union of the valid observation times and the initial time ``grid[0]``.
    index
        ``(B, T)`` position of each observation time in ``grid`` (padded entries point at the last valid one).
    times
        ``(B, T)`` observation times with padded entries equal to the last valid time.
    values
        ``(B, T, D)`` observations, unobserved entries filled forward (:func:`fill_forward`).
    mask
        ``(B, T, D)`` bool, observed entries.
    valid
        ``(B, T)`` bool, valid (non-padded) times.
    """

    grid: Tensor
    index: Tensor
    times: Tensor
    values: Tensor
    mask: Tensor
    valid: Tensor

    def gather(self, ys: Tensor) -> Tensor:
        """States on the grid ``(B, U, S)`` -> states at the observation times ``(B, T, S)``."""
        return ys.gather(1, self.index.unsqueeze(-1).expand(-1, -1, ys.shape[-1]))

    def observe(self, ys: Tensor) -> Tensor:
        """Model paths at the observation times ``(B, T, D)`` seen through the data's mask, filled like the data."""
        return fill_forward(ys, self.mask)


def make_batch(data: Trajectories, t0: float | None = None) -> Batch:
    """Union grid, indices and filled values of ``data`` (all of it: index the ``Trajectories`` first).

    Parameters
    ----------
    data
        The batch.
    t0
        Initial time of the solves (default: the earliest valid time of the batch); must not exceed it.
    """
    valid = data.time_mask
    lengths = valid.sum(1)
    last = data.times.gather(1, (lengths - 1).unsqueeze(1))
    times = torch.where(valid, data.times, last)
    first = float(times[:, 0].min())
    if t0 is None:
        t0 = first
    elif t0 > first:
        raise ValueError(f"the initial time t0 = {t0:.10g} is after the earliest observation time {first:.10g}.")
    flat = torch.cat([times[valid], times.new_tensor([t0])])
    grid, inverse = torch.unique(flat, sorted=True, return_inverse=True)
    index = torch.zeros_like(times, dtype=torch.int64)
    index[valid] = inverse[:-1]
    index = torch.where(valid, index, index.gather(1, (lengths - 1).unsqueeze(1)))
    return Batch(grid, index, times, fill_forward(data.values, data.mask), data.mask, valid)


def model_seed(seed: int, iteration: int) -> int:
    """The Brownian seed of one training iteration: a fixed function of the run's seed and the iteration."""
    return (seed * 1_000_003 + iteration * 7919 + 1) % (2**31 - 1)


@dataclass
class Run:
    """One training run: what its checkpoints hold and what they must match to be resumed.

    ``nets`` and ``opts`` are keyed by name (the keys of the checkpoint's ``model`` and ``optimizer``); ``rng``
    draws the batches and the trainer's noise; the data's digest, ``iterations`` and ``info`` (kind of training,
    solver, ...) identify the run.
    """

    nets: Mapping[str, nn.Module]
    opts: Mapping[str, torch.optim.Optimizer]
    rng: torch.Generator
    data: Trajectories
    iterations: int
    info: Mapping[str, str]


def _identity(run: Run) -> dict[str, Any]:
    """What a checkpoint belongs to (the ``run`` entry of the fit checkpoint format): compared before resuming."""
    tensors = {f"{name}.{k}": list(v.shape) for name, net in run.nets.items() for k, v in net.state_dict().items()}
    return {
        "optimizer": "adam",
        "data_digest": run.data.digest(),
        "tensors": tensors,
        "epochs": int(run.iterations),
        **run.info,
    }


def write_state(path: Path, run: Run, history: list[dict[str, float]], extra: Mapping[str, Any]) -> None:
    """Write a training checkpoint in the format of :mod:`physnode.fit.checkpoint` (atomic, ``weights_only``).

    One "epoch" of that format is one iteration here; ``extra`` holds the trainer's own plain state.
    """
    save_checkpoint(
        path,
        {
            "epoch": len(history),
            "model": {name: net.state_dict() for name, net in run.nets.items()},
            "learnables": {},
            "optimizer": {name: opt.state_dict() for name, opt in run.opts.items()},
            "rng": {"generator": run.rng.get_state(), "torch": torch.get_rng_state()},
            "history": [{**h, "epoch": i + 1} for i, h in enumerate(history)],
            "run": _identity(run),
            "extra": dict(extra),
        },
    )


def resume_state(path: Path, run: Run) -> tuple[int, list[dict[str, float]], dict[str, Any]]:
    """Load a checkpoint written by :func:`write_state` into the run's networks, optimisers and generator.

    Returns
    -------
    iterations done, history, extra
        The history entries without the format's ``epoch`` key.

    Raises
    ------
    ValueError
        The file is not a readable checkpoint (``physnode.fit.checkpoint`` says why), or belongs to another kind
        of training, other networks, data, number of iterations, solver or gradient.
    """
    state = load_checkpoint(path, map_location=run.data.device)
    where = f"checkpoint {str(path)!r}"
    fix = "pass the same arguments as the run that wrote it, or another checkpoint path to start afresh."
    saved, ours = state.get("run"), _identity(run)
    if not isinstance(saved, Mapping):
        raise ValueError(f"{where} has no run description; it was not written by a physnode.sde trainer.")
    for key, value in ours.items():
        if saved.get(key) != value:
            if key == "data_digest":
                raise ValueError(f"{where} belongs to a run on other data (the data digest differs); {fix}")
            theirs = repr(saved.get(key))[:80]
            raise ValueError(f"{where} belongs to another run: its {key} is {theirs}, not {repr(value)[:80]}; {fix}")
    done, history = state.get("epoch"), state.get("history")
    if (
        not isinstance(done, int)
        or not isinstance(history, list)
        or done != len(history)
        or not 0 <= done <= run.iterations
    ):
        raise ValueError(f"{where} is inconsistent (iterations done vs its history); delete it to start afresh.")
    for name, net in run.nets.items():
        net.load_state_dict(state["model"][name])
    for name, opt in run.opts.items():
        opt.load_state_dict(state["optimizer"][name])
    run.rng.set_state(state["rng"]["generator"])
    history = [{k: v for k, v in h.items() if k != "epoch"} for h in state["history"]]
    return done, history, dict(state.get("extra", {}))


def resolve_resume(checkpoint: Any, resume: bool) -> Checkpoint | None:
    """The trainers' ``checkpoint=`` as a :class:`~physnode.fit.Checkpoint` (or ``None``); ``resume`` needs one."""
    ckpt = resolve_checkpoint(checkpoint)
    if resume and ckpt is None:
        raise ValueError("resume=True needs checkpoint=PATH (the file to resume from).")
    return ckpt


def train(
    run: Run,
    step: Callable[[int, list[int]], dict[str, float]],
    *,
    batch_size: int,
    checkpoint: Checkpoint | None,
    resume: bool,
    progress: bool,
    desc: str,
    postfix: tuple[str, str],
    callback: Callable[[int, dict[str, float]], None] | None,
    save: Callable[[], Mapping[str, Any]] = dict,
    load: Callable[[Mapping[str, Any]], None] | None = None,
) -> tuple[list[dict[str, float]], float]:
    """The training loop of the neural-SDE trainers: batches, history, progress bar, callback and checkpoints.

    Starts at iteration 0, or where an existing ``checkpoint`` file left off with ``resume``. Iteration ``it``
    (0-based) takes the next ``batch_size`` trajectory indices of a permutation drawn with ``run.rng`` (a fresh
    permutation when fewer are left: the leftovers are dropped, so a batch never holds a trajectory twice) and
    calls ``step(it, indices)``, which takes the optimiser step and returns the values of the history
    entry ``{"iteration": it + 1, **values, "wall_time": seconds since this call started}``. ``postfix = (label,
    key)`` shows the entry's ``key`` on the tqdm bar named ``desc``; ``callback(it + 1, entry)`` follows each step.
    The checkpoint is written after every ``checkpoint.every`` iterations and after the last, its ``extra`` holding
    the batch order and ``save()``; ``load(extra)`` restores the trainer's own state on resume.

    Returns
    -------
    history, seconds_per_iteration
        All entries of the run (resumed ones included); mean wall time of this call's iterations (``nan`` if none).
    """
    order: list[int] = []
    history: list[dict[str, float]] = []
    start = 0
    if resume and checkpoint is not None and checkpoint.path.exists():
        start, history, extra = resume_state(checkpoint.path, run)
        order = [int(i) for i in extra.pop("order")]
        if load is not None:
            load(extra)
    n, iterations = run.data.n_trajectories, run.iterations
    t_start = time.perf_counter()
    bar = tqdm(range(start, iterations), initial=start, total=iterations, disable=not progress, desc=desc, leave=False)
    for it in bar:
        if len(order) < batch_size:  # leftovers dropped: a batch never holds a trajectory twice
            order = torch.randperm(n, generator=run.rng).tolist()
        idx, order = order[:batch_size], order[batch_size:]
        entry = {"iteration": it + 1, **step(it, idx)}
        entry["wall_time"] = time.perf_counter() - t_start
        history.append(entry)
        if progress:
            label, key = postfix
            bar.set_postfix({label: f"{entry[key]:.4g}"})
        if callback is not None:
            callback(it + 1, entry)
        if checkpoint is not None and ((it + 1) % checkpoint.every == 0 or it + 1 == iterations):
            write_state(checkpoint.path, run, history, {"order": order, **save()})
    bar.close()
    ran = iterations - start
    return history, (time.perf_counter() - t_start) / ran if ran else math.nan
