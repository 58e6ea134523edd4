"""Small fitting problems shared by the fit tests."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from physnode.data import Trajectories


class Decay(nn.Module):
    """dy/dt = -k y with a plain learnable rate (no physics base class)."""

    def __init__(self, k: float = 0.5) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k, dtype=torch.float64))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -self.k * y


def decay_data(k: float = 1.3, n: int = 3, T: int = 20, noise: float = 0.0, seed: int = 0) -> Trajectories:
    """``y_i(t) = a_i exp(-k t)`` on [0, 2], with metadata initial states ``a_i``."""
    g = torch.Generator().manual_seed(seed)
    a = torch.linspace(1.0, 2.0, n, dtype=torch.float64)
    t = torch.linspace(0.0, 2.0, T, dtype=torch.float64)
    y = (a[:, None] * torch.exp(-k * t))[..., None]
    y = y + noise * torch.randn(y.shape, generator=g, dtype=torch.float64)
    meta = [{"initial_state": [float(ai)]} for ai in a]
    return Trajectories(t, y, metadata=meta)


def true_decay_rate() -> float:
    return 1.3


__all__ = ["Decay", "decay_data", "math", "true_decay_rate"]
