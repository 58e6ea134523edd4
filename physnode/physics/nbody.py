"""Newtonian N-body gravity, vectorised over bodies and batch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import sympy as sp
import torch
from torch import Tensor

from .base import PhysicsModel
from .params import Param

__all__ = ["MAX_BODIES", "MAX_BODY_COMPONENTS", "NBodyGravity"]

MAX_BODIES = 10_000
"""Most bodies of an :class:`NBodyGravity` model (the pairwise forces take ``n_bodies²`` memory per state)."""

MAX_BODY_COMPONENTS = 100_000
"""Most position components ``n_bodies * dim`` of an :class:`NBodyGravity` model."""


class NBodyGravity(PhysicsModel):
    """Newtonian gravity of ``n`` point masses: ``dr_i/dt = k_r v_i``,
    ``dv_i/dt = k_v G Σ_{j≠i} m_j (r_j − r_i) / (|r_j − r_i|² + ε²)^{3/2}``.

    State layout ``y = [r_1 .. r_n, v_1 .. v_n]``, each ``dim`` components: ``(..., 2·n·dim)``. All pairs are
    computed with tensor operations (no Python loop over pairs), batched over any leading shape.

    The scale factors ``k_r`` and ``k_v`` express nondimensionalised problems directly: the ACA paper's
    three-body setup ``dr/dt = K₂ v``, ``dv/dt = K₁ Σ m_j (r_j − r_i)/|r_j − r_i|³`` is
    ``NBodyGravity(3, G=1.0, k_r=K2, k_v=K1, masses=...)``.

    Parameters
    ----------
    n_bodies
        Number of bodies ``n >= 1``.
    dim
        Spatial dimension (1, 2 or 3 typically).
    G
        Gravitational constant (a number or a :class:`Param`).
    masses
        Masses ``(n,)``: numbers (known constants) or a vector :class:`Param` (e.g.
        ``Param([1.1, 1.1, 0.9], positive=True)``). Default: unit masses.
    softening
        Plummer softening length ``ε >= 0`` (length units).
    k_r, k_v
        Scale factors of dr/dt and dv/dt (numbers or :class:`Param`), default 1.

    Attributes
    ----------
    separable
        Always ``True``: dr/dt depends on ``v`` only and dv/dt on ``r`` only.
    """

    separable = True

    def __init__(
        self,
        n_bodies: int,
        dim: int = 3,
        G: float | Param = 1.0,
        masses: Sequence[float] | Tensor | Param | None = None,
        softening: float = 0.0,
        *,
        k_r: float | Param = 1.0,
        k_v: float | Param = 1.0,
    ) -> None:
        for name, v in (("n_bodies", n_bodies), ("dim", dim)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"NBodyGravity {name} must be a positive integer, got {v!r}.")
        if n_bodies > MAX_BODIES or n_bodies * dim > MAX_BODY_COMPONENTS:
            raise ValueError(
                f"NBodyGravity(n_bodies={n_bodies}, dim={dim}) is too large: the pairwise forces need n_bodies² "
                f"memory per state; the limits are n_bodies <= {MAX_BODIES} and n_bodies * dim <= "
                f"{MAX_BODY_COMPONENTS}. Use fewer bodies (or a tree / mesh method outside physnode)."
            )
        if (
            not isinstance(softening, (int, float))
            or isinstance(softening, bool)
            or not math.isfinite(softening)
            or not softening >= 0
        ):
            raise ValueError(f"softening must be a finite non-negative number (length units), got {softening!r}.")
        if masses is None:
            masses = [1.0] * n_bodies
        if not isinstance(masses, Param):
            masses = Param(masses, learnable=False)
        if masses.shape != torch.Size([n_bodies]):
            raise ValueError(
                f"masses must have shape ({n_bodies},) for n_bodies={n_bodies}, got {tuple(masses.shape)}."
            )
        initial = masses().detach()
        if bool((initial < 0).any()):
            raise ValueError(
                f"masses must be non-negative, got {initial.tolist()}; gravity of a negative mass is not modelled. "
                "For learnable masses use Param([...], positive=True)."
            )
        super().__init__({"G": G, "masses": masses, "k_r": k_r, "k_v": k_v})
        for name in ("G", "k_r", "k_v"):
            if self.params[name].shape != torch.Size([]):
                raise ValueError(f"{name} must be a scalar, got shape {tuple(self.params[name].shape)}.")
        self.n_bodies = n_bodies
        self.dim = dim
        self.softening = float(softening)
        self.state_names = _position_names(n_bodies, dim) + _velocity_names(n_bodies, dim)

    def to_config(self) -> dict[str, Any]:
        """``{"kind": "nbody", "n_bodies", "dim", "softening", "params": {"G", "masses", "k_r", "k_v"}}`` for
        :func:`~physnode.physics.from_config`."""
        return {
            "kind": "nbody",
            "n_bodies": self.n_bodies,
            "dim": self.dim,
            "softening": self.softening,
            "params": self._params_config(),
        }

    def acceleration(self, r: Tensor) -> Tensor:
        """Gravitational acceleration ``(..., n, dim)`` (including ``G``, without ``k_v``) at positions ``r``."""
        n = self.n_bodies
        masses = self.params["masses"]().to(r.dtype)
        d = r.unsqueeze(-3) - r.unsqueeze(-2)  # d[..., i, j, :] = r_j - r_i
        dist2 = d.square().sum(-1) + self.softening**2
        # The diagonal (i = j) has d = 0; adding 1 there keeps the division finite and contributes nothing.
        dist2 = dist2 + torch.eye(n, dtype=r.dtype, device=r.device)
        w = masses * dist2.pow(-1.5)  # (..., n, n): m_j / |r_j - r_i|^3
        return self.params["G"]() * (w.unsqueeze(-1) * d).sum(-2)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """dy/dt = [k_r v, k_v a(r)] for ``y`` of shape ``(..., 2·n·dim)``."""
        self._check_state(t, y)
        half = self.n_bodies * self.dim
        r = y[..., :half].unflatten(-1, (self.n_bodies, self.dim))
        v = y[..., half:]
        acc = self.acceleration(r).flatten(-2)
        return torch.cat([self.params["k_r"]() * v, self.params["k_v"]() * acc], dim=-1)

    def energy(self, t: Tensor, y: Tensor) -> Tensor:
        """The quantity conserved by these equations, ``E = (k_r / k_v) Σ ½ m_i |v_i|² − G Σ_{i<j} m_i m_j / r_ij``.

        ``r_ij = sqrt(|r_j − r_i|² + ε²)``. For ``k_r = k_v = 1`` this is the kinetic plus potential energy.
        Shape ``y.shape[:-1]``.
        """
        self._check_state(t, y)
        n, half = self.n_bodies, self.n_bodies * self.dim
        r = y[..., :half].unflatten(-1, (n, self.dim))
        v = y[..., half:].unflatten(-1, (n, self.dim))
        m = self.params["masses"]().to(y.dtype)
        kinetic = 0.5 * (m * v.square().sum(-1)).sum(-1) * self.params["k_r"]() / self.params["k_v"]()
        d = r.unsqueeze(-3) - r.unsqueeze(-2)
        dist = (d.square().sum(-1) + self.softening**2 + torch.eye(n, dtype=y.dtype, device=y.device)).sqrt()
        mm = m.unsqueeze(-1) * m.unsqueeze(-2)
        iu = torch.triu_indices(n, n, offset=1, device=y.device)
        potential = -self.params["G"]() * (mm / dist)[..., iu[0], iu[1]].sum(-1)
        return kinetic + potential

    def equations(self) -> list[sp.Eq]:
        """The equations of motion per component, with the current masses, ``G``, ``k_r``, ``k_v`` substituted."""
        t = sp.Symbol("t", real=True)
        n, dim = self.n_bodies, self.dim
        pos, vel = _position_names(n, dim), _velocity_names(n, dim)
        r = [[sp.Function(pos[i * dim + a])(t) for a in range(dim)] for i in range(n)]
        v = [[sp.Function(vel[i * dim + a])(t) for a in range(dim)] for i in range(n)]
        masses = [sp.Float(float(m), 15) for m in self.params["masses"]().detach().tolist()]
        G, k_r, k_v = (sp.Float(float(self.params[k]().detach()), 15) for k in ("G", "k_r", "k_v"))
        eps2 = sp.Float(self.softening**2, 15)
        eqs = [sp.Eq(sp.Derivative(r[i][a], t), k_r * v[i][a]) for i in range(n) for a in range(dim)]
        for i in range(n):
            for a in range(dim):
                acc = sum(
                    masses[j]
                    * (r[j][a] - r[i][a])
                    / (sum((r[j][b] - r[i][b]) ** 2 for b in range(dim)) + eps2) ** sp.Rational(3, 2)
                    for j in range(n)
                    if j != i
                )
                eqs.append(sp.Eq(sp.Derivative(v[i][a], t), k_v * G * acc))
        return eqs


def _axes(dim: int) -> list[str]:
    return ["x", "y", "z"][:dim] if dim <= 3 else [str(a) for a in range(dim)]


def _position_names(n: int, dim: int) -> list[str]:
    """``x1, y1, z1, x2, ...`` (bodies numbered from 1, as in physnode.datasets); ``r1_0, r1_1, ...`` above 3-D."""
    if dim <= 3:
        return [f"{a}{i + 1}" for i in range(n) for a in _axes(dim)]
    return [f"r{i + 1}_{a}" for i in range(n) for a in _axes(dim)]


def _velocity_names(n: int, dim: int) -> list[str]:
    """``vx1, vy1, vz1, vx2, ...``; ``v1_0, v1_1, ...`` above 3-D."""
    if dim <= 3:
        return [f"v{a}{i + 1}" for i in range(n) for a in _axes(dim)]
    return [f"v{i + 1}_{a}" for i in range(n) for a in _axes(dim)]
