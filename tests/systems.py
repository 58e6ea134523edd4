"""Small test systems shared by the solver and gradient tests (hand-written torch references)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


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


# The three-body problem of the ACA paper (Zhuang et al. 2020), nondimensionalised.
G = 6.67408e-11
M_ND, R_ND, V_ND = 1.989e30, 5.326e12, 3e4
T_ND = 79.91 * 365 * 24 * 3600 * 0.51
K1 = G * T_ND * M_ND / (R_ND**2 * V_ND)
K2 = V_ND * T_ND / R_ND


class ThreeBody(nn.Module):
    """dr_i/dt = K2 v_i, dv_i/dt = K1 sum_j m_j (r_j - r_i) / |r_j - r_i|^3; state (B, 18) = [r (9), v (9)].

    The masses are learnable (stored directly, no constraint).
    """

    def __init__(self, masses: tuple[float, float, float] = (1.1, 1.1, 0.9), dtype: torch.dtype = torch.float64):
        super().__init__()
        self.masses = nn.Parameter(torch.tensor(masses, dtype=dtype))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        r = y[..., :9].unflatten(-1, (3, 3))
        v = y[..., 9:]
        d = r.unsqueeze(-3) - r.unsqueeze(-2)  # d[..., i, j, :] = r_j - r_i
        dist3 = (d.square().sum(-1) + torch.eye(3, dtype=y.dtype, device=y.device)).pow(1.5)
        acc = (self.masses.unsqueeze(-1) * d / dist3.unsqueeze(-1)).sum(-2)
        return torch.cat([K2 * v, K1 * acc.flatten(-2)], dim=-1)


def three_body_y0(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Tensor:
    """Initial state of the ACA paper's three-body experiment, shape (18,)."""
    r = [0.0, 0.2, 0.0, 0.5, 0.0, 0.5, 0.0, 0.0, 0.5]
    v = [0.0, 0.1, 0.0, 0.0, 0.0, 0.1, 0.1, 0.0, 0.0]
    return torch.tensor(r + v, dtype=dtype, device=device)
