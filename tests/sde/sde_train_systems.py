"""Small data sets for the neural-SDE training tests: an Ornstein–Uhlenbeck ensemble with irregular sampling."""

from __future__ import annotations

import torch

from physnode.bench.sde import irregular  # the benchmark's subsampling into per-trajectory times, shared
from physnode.sde import ScalarDiffusion, sdeint

__all__ = ["MU", "SIGMA", "THETA", "irregular", "ou_paths"]

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
