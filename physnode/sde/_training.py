"""Shared pieces of the neural-SDE trainers (:mod:`.gan`, :mod:`.latent`): batches of irregular, masked
observations on a union time grid, per-iteration seeds, and checkpoints.

A batch of :class:`~physnode.data.Trajectories` has per-trajectory times, padded to a common length, and
per-channel masks. The SDE is solved once for the batch on the sorted union of all valid observation times
(plus the common initial time), and each trajectory's states are gathered from that grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.trajectories import Trajectories
from ..fit.checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "Batch",
    "check_trajectories",
    "fill_forward",
    "make_batch",
    "model_seed",
    "resume_state",
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


def _identity(
    nets: Mapping[str, nn.Module], data: Trajectories, iterations: int, info: Mapping[str, str]
) -> dict[str, Any]:
    """What a checkpoint belongs to (the ``run`` entry of the fit checkpoint format): compared before resuming."""
    tensors = {f"{name}.{k}": list(v.shape) for name, net in nets.items() for k, v in net.state_dict().items()}
    return {
        "optimizer": "adam",
        "data_digest": data.digest(),
        "tensors": tensors,
        "epochs": int(iterations),
        **info,
    }


def write_state(
    path: Path,
    nets: Mapping[str, nn.Module],
    opts: Mapping[str, torch.optim.Optimizer],
    rng: torch.Generator,
    data: Trajectories,
    iterations: int,
    info: Mapping[str, str],
    history: list[dict[str, float]],
    extra: Mapping[str, Any],
) -> None:
    """Write a training checkpoint in the format of :mod:`physnode.fit.checkpoint` (atomic, ``weights_only``).

    One "epoch" of that format is one iteration here; ``extra`` holds the trainer's own plain state.
    """
    save_checkpoint(
        path,
        {
            "epoch": len(history),
            "model": {name: net.state_dict() for name, net in nets.items()},
            "learnables": {},
            "optimizer": {name: opt.state_dict() for name, opt in opts.items()},
            "rng": {"generator": rng.get_state(), "torch": torch.get_rng_state()},
            "history": [{**h, "epoch": i + 1} for i, h in enumerate(history)],
            "run": _identity(nets, data, iterations, info),
            "extra": dict(extra),
        },
    )


def resume_state(
    path: Path,
    nets: Mapping[str, nn.Module],
    opts: Mapping[str, torch.optim.Optimizer],
    rng: torch.Generator,
    data: Trajectories,
    iterations: int,
    info: Mapping[str, str],
) -> tuple[int, list[dict[str, float]], dict[str, Any]]:
    """Load a checkpoint written by :func:`write_state` into the networks, optimisers and generator.

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
    state = load_checkpoint(path, map_location=data.device)
    where = f"checkpoint {str(path)!r}"
    fix = "pass the same arguments as the run that wrote it, or another checkpoint path to start afresh."
    saved, ours = state.get("run"), _identity(nets, data, iterations, info)
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
        or not 0 <= done <= iterations
    ):
        raise ValueError(f"{where} is inconsistent (iterations done vs its history); delete it to start afresh.")
    for name, net in nets.items():
        net.load_state_dict(state["model"][name])
    for name, opt in opts.items():
        opt.load_state_dict(state["optimizer"][name])
    rng.set_state(state["rng"]["generator"])
    history = [{k: v for k, v in h.items() if k != "epoch"} for h in state["history"]]
    return done, history, dict(state.get("extra", {}))
