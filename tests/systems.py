"""Small test systems shared by the solver and gradient tests (hand-written torch references)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

# The ACA paper's three-body problem (hand-written reference, learnable masses) has one home, used here too.
from physnode.datasets._systems import K1, K2, ThreeBody, three_body_y0

__all__ = ["K1", "K2", "MLP", "Linear", "ThreeBody", "TimeDependent", "three_body_y0"]


class Linear(nn.Module):
    """dy/dt = A y with a learnable matrix; exact solution exp(A t) y0."""

    def __init__(self, A: Tensor) -> None:
        super().__init__()
        self.A = nn.Parameter(A.clone())

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return y @ self.A.T


class MLP(nn.Module):
    """A small tanh MLP right-hand side ``f(y)``."""

    def __init__(self, dim: int = 2, hidden: int = 16, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim)).to(dtype)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.net(y)


class TimeDependent(nn.Module):
    """Forced damped oscillator x'' = -k x - c x' + a sin(w t), learnable (k, c, a, w)."""

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([1.3, 0.2, 0.7, 2.1], dtype=dtype))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        k, c, a, w = self.theta
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, -k * x - c * v + a * torch.sin(w * t)], dim=-1)
