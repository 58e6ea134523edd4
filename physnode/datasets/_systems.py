"""Hand-written torch right-hand sides ``f(t, y)`` of the zoo's systems (batched: ``t (B,)``, ``y (B, S)``).

This module is also the one home of the ACA paper's three-body example (Zhuang et al. 2020): its
nondimensionalisation constants ``K1``, ``K2``, masses, initial state and right-hand side :class:`ThreeBody`, used
by the dataset zoo, the demo, the commands, the benchmarks and the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "ACA_MASSES",
    "ACA_R0",
    "ACA_V0",
    "K1",
    "K2",
    "M_ND",
    "R_ND",
    "T_ND",
    "V_ND",
    "DampedOscillator",
    "DoublePendulum",
    "G",
    "Kepler",
    "LotkaVolterra",
    "MassSpringChain",
    "NBody",
    "Pendulum",
    "ThreeBody",
    "three_body_y0",
]

# ------------------------------------------------------------------------------------------ ACA three body
#: Gravitational constant (m^3 kg^-1 s^-2) and the ACA paper's units: mass (kg, one solar mass), length (m),
#: velocity (m/s) and time (s).
G = 6.67408e-11
M_ND = 1.989e30
R_ND = 5.326e12
V_ND = 3e4
T_ND = 79.91 * 365 * 24 * 3600 * 0.51
#: The nondimensional equations read ``dr/dt = K2 v``, ``dv_i/dt = K1 sum_j m_j (r_j - r_i) / |r_j - r_i|^3``.
K1 = G * T_ND * M_ND / (R_ND**2 * V_ND)
K2 = V_ND * T_ND / R_ND
#: True masses (units of ``M_ND``), initial positions (units of ``R_ND``) and velocities (units of ``V_ND``).
ACA_MASSES = (1.1, 1.1, 0.9)
ACA_R0 = ((0.0, 0.2, 0.0), (0.5, 0.0, 0.5), (0.0, 0.0, 0.5))
ACA_V0 = ((0.0, 0.1, 0.0), (0.0, 0.0, 0.1), (0.1, 0.0, 0.0))


def three_body_y0(dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> Tensor:
    """Initial state of the ACA paper's three-body experiment, ``(18,)`` = ``[r_1, r_2, r_3, v_1, v_2, v_3]``."""
    return torch.tensor([*sum(ACA_R0, ()), *sum(ACA_V0, ())], dtype=dtype, device=device)


class NBody(nn.Module):
    """``n`` point masses in ``dim`` dimensions with Plummer softening ``eps``.

    State ``y = [r_1, ..., r_n, v_1, ..., v_n]`` (``2 n dim``); ``dr_i/dt = c_r v_i`` and
    ``dv_i/dt = c_v sum_{j != i} m_j (r_j - r_i) / (|r_j - r_i|^2 + eps^2)^{3/2}``.

    Parameters
    ----------
    masses
        ``(n,)`` masses, stored as :attr:`masses` in ``dtype``.
    dim
        Number of space dimensions.
    c_r, c_v
        Scale factors of the position and velocity equations.
    eps
        Plummer softening length.
    dtype
        Floating-point type of :attr:`masses`.
    learnable
        Store the masses as an ``nn.Parameter`` (else a buffer).
    """

    def __init__(
        self,
        masses: Sequence[float] | Tensor,
        dim: int,
        c_r: float = 1.0,
        c_v: float = 1.0,
        eps: float = 0.0,
        *,
        dtype: torch.dtype = torch.float64,
        learnable: bool = False,
    ) -> None:
        super().__init__()
        m = torch.as_tensor(masses, dtype=dtype).detach().clone()
        if learnable:
            self.masses = nn.Parameter(m)
        else:
            self.register_buffer("masses", m)
        self.dim, self.c_r, self.c_v, self.eps = dim, c_r, c_v, eps
        self.n = m.shape[0]

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        n, dim = self.n, self.dim
        r = y[..., : n * dim].reshape(*y.shape[:-1], n, dim)
        v = y[..., n * dim :]
        dr = r.unsqueeze(-3) - r.unsqueeze(-2)  # dr[..., i, j, :] = r_j - r_i
        d2 = (dr * dr).sum(-1) + self.eps**2
        # The diagonal (j = i) has dr = 0; give it a unit denominator so it adds exactly zero.
        d2 = d2 + torch.eye(n, dtype=y.dtype, device=y.device)
        w = self.masses.to(y) / (d2 * torch.sqrt(d2))  # (..., i, j)
        acc = (w.unsqueeze(-1) * dr).sum(-2)
        return torch.cat([self.c_r * v, self.c_v * acc.reshape(v.shape)], dim=-1)


class ThreeBody(NBody):
    """The ACA paper's nondimensionalised three-body problem: ``dr/dt = K2 v``, ``dv_i/dt = K1 sum_j m_j (r_j -
    r_i) / |r_j - r_i|^3`` in three dimensions, state ``(..., 18)`` = ``[r_1, r_2, r_3, v_1, v_2, v_3]``.

    Parameters
    ----------
    masses
        ``(3,)`` masses in units of ``M_ND`` (default: the paper's :data:`ACA_MASSES`).
    dtype
        Floating-point type of :attr:`masses`.
    learnable
        Masses as an ``nn.Parameter`` (default; gradients w.r.t. them), else a buffer.
    """

    def __init__(
        self,
        masses: Sequence[float] | Tensor = ACA_MASSES,
        dtype: torch.dtype = torch.float64,
        learnable: bool = True,
    ) -> None:
        super().__init__(masses, dim=3, c_r=K2, c_v=K1, eps=0.0, dtype=dtype, learnable=learnable)


class Kepler:
    """Relative motion of two bodies in the plane: ``r'' = -mu r / |r|^3``; state ``(x, y, vx, vy)``."""

    def __init__(self, mu: float) -> None:
        self.mu = mu

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        r = y[..., :2]
        d3 = (r * r).sum(-1, keepdim=True) ** 1.5
        return torch.cat([y[..., 2:], -self.mu * r / d3], dim=-1)


def _positive(**values: float) -> None:
    """Refuse a physical quantity that must be positive (a length or a mass divides the equations)."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number (it divides the equations), got {v!r}.")


class Pendulum:
    """``theta'' = -(g / L) sin(theta)``; state ``(theta, omega)``."""

    def __init__(self, g: float, length: float) -> None:
        _positive(length=length)
        self.g, self.length = g, length

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        return torch.stack([y[..., 1], -(self.g / self.length) * torch.sin(y[..., 0])], dim=-1)


class DoublePendulum:
    """Planar double pendulum of point masses ``m1, m2`` on massless rods ``l1, l2``; state
    ``(theta1, theta2, omega1, omega2)`` (angles from the downward vertical)."""

    def __init__(self, m1: float, m2: float, l1: float, l2: float, g: float) -> None:
        _positive(m1=m1, m2=m2, l1=l1, l2=l2)
        self.m1, self.m2, self.l1, self.l2, self.g = m1, m2, l1, l2, g

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        m1, m2, l1, l2, g = self.m1, self.m2, self.l1, self.l2, self.g
        th1, th2, w1, w2 = y.unbind(-1)
        delta = th1 - th2
        den = 2 * m1 + m2 - m2 * torch.cos(2 * delta)
        a1 = (
            -g * (2 * m1 + m2) * torch.sin(th1)
            - m2 * g * torch.sin(th1 - 2 * th2)
            - 2 * torch.sin(delta) * m2 * (w2**2 * l2 + w1**2 * l1 * torch.cos(delta))
        ) / (l1 * den)
        a2 = (
            2
            * torch.sin(delta)
            * (w1**2 * l1 * (m1 + m2) + g * (m1 + m2) * torch.cos(th1) + w2**2 * l2 * m2 * torch.cos(delta))
        ) / (l2 * den)
        return torch.stack([w1, w2, a1, a2], dim=-1)


class MassSpringChain:
    """``n`` equal masses ``m`` joined by springs ``k`` between two fixed walls:
    ``m x_i'' = k (x_{i+1} - 2 x_i + x_{i-1})`` with ``x_0 = x_{n+1} = 0``; state ``(x_1..x_n, v_1..v_n)``."""

    def __init__(self, n: int, k: float, m: float) -> None:
        _positive(m=m)
        self.n, self.k, self.m = n, k, m

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        x, v = y[..., : self.n], y[..., self.n :]
        zero = torch.zeros_like(x[..., :1])
        xp = torch.cat([zero, x, zero], dim=-1)
        a = (self.k / self.m) * (xp[..., 2:] - 2 * x + xp[..., :-2])
        return torch.cat([v, a], dim=-1)


class DampedOscillator:
    """``x'' = -omega0^2 x - 2 zeta omega0 x'``; state ``(x, v)``."""

    def __init__(self, omega0: float, zeta: float) -> None:
        self.omega0, self.zeta = omega0, zeta

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, -(self.omega0**2) * x - 2 * self.zeta * self.omega0 * v], dim=-1)


class LotkaVolterra:
    """``x' = alpha x - beta x y``, ``y' = delta x y - gamma y``; state ``(prey, predator)``."""

    def __init__(self, alpha: float, beta: float, gamma: float, delta: float) -> None:
        self.alpha, self.beta, self.gamma, self.delta = alpha, beta, gamma, delta

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        x, p = y[..., 0], y[..., 1]
        return torch.stack([self.alpha * x - self.beta * x * p, self.delta * x * p - self.gamma * p], dim=-1)
