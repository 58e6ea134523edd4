"""The solve grid of a batch: each trajectory's initial time, observation times and input breakpoints, merged."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..data.trajectories import solver_ready_times

__all__ = ["solve_grid"]


def solve_grid(times: Tensor, lengths: Tensor, breakpoints: Tensor | None, t0: float) -> tuple[Tensor, Tensor]:
    """Per-trajectory solve times ``t0 ∪ observations ∪ breakpoints`` and where the observations are in them.

    Landing on every breakpoint of the inputs means no solver step straddles a jump of ``u`` (an infusion starting
    or stopping), so fixed- and adaptive-step methods keep their order across treatment changes.

    Parameters
    ----------
    times
        ``(B, T)`` observation times; the first ``lengths[b]`` of row ``b`` are valid, increasing and ``> t0``.
    lengths
        ``(B,)`` number of valid times.
    breakpoints
        ``(B, K)`` times where the inputs jump (``+inf`` padded) or ``None``; those in ``(t0, last observation)``
        are added.
    t0
        Initial time of every trajectory.

    Returns
    -------
    grid
        ``(B, G)`` strictly increasing solve times per row, ``grid[:, 0] = t0`` (padding continues the last time with
        tiny steps, :func:`~physnode.data.solver_ready_times`).
    index
        ``(B, T)`` position of each observation time in its row of ``grid`` (``0`` at padded entries).

    Raises
    ------
    ValueError
        An observation at or before ``t0``.
    """
    B, T = times.shape
    valid = torch.arange(T, device=times.device).unsqueeze(0) < lengths.unsqueeze(1)
    inf = torch.tensor(math.inf, dtype=times.dtype, device=times.device)
    obs = torch.where(valid, times, inf)
    first = obs[:, 0]
    if bool((first <= t0).any()):
        b = int(torch.nonzero(first <= t0)[0])
        raise ValueError(
            f"trajectory {b} has an observation at t = {float(first[b]):.6g} <= t0 = {t0:.6g}; the initial state is "
            "inferred at t0, before the first observation. Choose t0 earlier than every observation time."
        )
    last = times.gather(1, (lengths - 1).unsqueeze(1))
    parts = [torch.full((B, 1), t0, dtype=times.dtype, device=times.device), obs]
    if breakpoints is not None and breakpoints.numel():
        br = breakpoints.to(times.dtype)
        parts.append(torch.where((br > t0) & (br < last), br, inf))
    s = torch.sort(torch.cat(parts, dim=1), dim=1).values
    dup = torch.cat([torch.zeros_like(s[:, :1], dtype=torch.bool), s[:, 1:] == s[:, :-1]], dim=1)
    s = torch.sort(torch.where(dup, inf, s), dim=1).values
    n = torch.isfinite(s).sum(dim=1)
    s = s[:, : int(n.max())]
    grid = solver_ready_times(torch.where(torch.isfinite(s), s, torch.nan), n)
    index = torch.searchsorted(grid.contiguous(), torch.where(valid, times, t0).contiguous())
    index = torch.where(valid, index, torch.zeros_like(index))
    return grid, index
