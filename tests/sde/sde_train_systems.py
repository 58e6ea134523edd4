"""Small data sets for the neural-SDE training tests: an Ornstein–Uhlenbeck ensemble with irregular sampling."""

from __future__ import annotations

import torch

from physnode.data import Trajectories
from physnode.sde import ScalarDiffusion, sdeint

THETA, MU, SIGMA = 2.0, 1.0, 0.5  # dX = THETA (MU - X) dt + SIGMA dW


def ou_paths(
    n: int, n_grid: int, dt: float, seed: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` OU paths on the grid ``k dt``, ``k < n_grid``, X_0 ~ N(0, 0.3²); grid ``(T,)``, paths ``(n, T, 1)``."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.arange(n_grid, dtype=dtype) * dt
    y0 = 0.3 * torch.randn(n, 1, generator=g, dtype=dtype)
    with torch.no_grad():
        ys = sdeint(
            lambda t, y: THETA * (MU - y),
            ScalarDiffusion(SIGMA, dtype=dtype),
            y0,
            grid,
            dt=dt,
            seed=seed,
            grad="direct",
        )
    return grid, ys


def irregular(grid: torch.Tensor, paths: torch.Tensor, keep: float, seed: int) -> Trajectories:
    """Each trajectory keeps each grid time with probability ``keep`` (always the first): per-trajectory times."""
    g = torch.Generator().manual_seed(seed)
    n, T, D = paths.shape
    sel = torch.rand(n, T, generator=g) < keep
    sel[:, 0] = True
    L = int(sel.sum(1).max())
    times = torch.full((n, L), float("nan"), dtype=paths.dtype)
    values = torch.zeros(n, L, D, dtype=paths.dtype)
    for i in range(n):
        k = sel[i].nonzero().squeeze(1)
        times[i, : len(k)] = grid[k]
        values[i, : len(k)] = paths[i, k]
    return Trajectories(times, values)
