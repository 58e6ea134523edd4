"""Lagrangian mechanics: Euler–Lagrange equations in mass-matrix form, solved for q̈ at run time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sympy as sp
import torch
from torch import Tensor

from .base import PhysicsModel, SymbolSpec, canonicalize, symbol_name
from .compile import CompiledComponents
from .params import Param

__all__ = ["Lagrangian"]


class Lagrangian(PhysicsModel):
    """Euler–Lagrange equations of ``L(q, q̇, t)`` as ``M(q, q̇, t) q̈ = f(q, q̇, t)``, solved at run time.

    With ``M_ij = ∂²L/∂q̇_i∂q̇_j`` and ``f_i = ∂L/∂q_i − Σ_j ∂²L/∂q̇_i∂q_j q̇_j − ∂²L/∂q̇_i∂t``, the mass matrix
    and force are compiled symbolically and ``q̈`` is obtained with ``torch.linalg.solve`` on each call. No
    symbolic inversion is done (it explodes for double pendulums and chains).

    State layout ``y = [q_1 .. q_n, q̇_1 .. q̇_n]``.

    Parameters
    ----------
    L
        The Lagrangian (energy units), a SymPy expression or a string (parsed safely).
    coords
        Generalised coordinates ``q_i``.
    params
        Named quantities (``Param`` or numbers).
    velocities
        Names of the generalised velocities used in ``L`` (default ``"<q>_dot"`` for each coordinate).
    time
        Name of the time variable (default ``"t"``).

    Attributes
    ----------
    separable
        ``True`` when ``M`` is constant and ``f`` depends on ``q`` only (``L = ½ q̇ᵀMq̇ − V(q)``).

    Examples
    --------
    >>> pendulum = Lagrangian("m*l**2*theta_dot**2/2 + m*g*l*cos(theta)", ["theta"],
    ...                       {"m": 1.0, "l": 1.0, "g": Param(9.0, positive=True)})
    """

    def __init__(
        self,
        L: sp.Expr | str,
        coords: Sequence[SymbolSpec],
        params: Mapping[str, Param | float] | None = None,
        *,
        velocities: Sequence[SymbolSpec] | None = None,
        time: SymbolSpec = "t",
    ) -> None:
        super().__init__(params)
        q_names = [symbol_name(s, "coordinate") for s in coords]
        if not q_names:
            raise ValueError("Lagrangian needs at least one coordinate.")
        if velocities is None:
            v_names = [f"{n}_dot" for n in q_names]
        else:
            v_names = [symbol_name(s, "velocity") for s in velocities]
            if len(v_names) != len(q_names):
                raise ValueError(
                    f"Lagrangian needs one velocity per coordinate; got {q_names} and velocities {v_names}."
                )
        n = len(q_names)
        time_name = symbol_name(time, "time variable")
        table = self._symbol_table(q_names + v_names, time_name)
        self.n = n
        self.state_names = q_names + v_names
        self.time_symbol = t = table[time_name]
        self.state_symbols = [table[k] for k in self.state_names]
        q, qd = self.state_symbols[:n], self.state_symbols[n:]
        self.param_names = self._scalar_param_names()
        self.L = canonicalize(L, table, "the Lagrangian L")
        dL_dqd = [sp.diff(self.L, v) for v in qd]
        self.mass_matrix = [[sp.diff(dL_dqd[i], qd[j]) for j in range(n)] for i in range(n)]
        self.force = [
            sp.diff(self.L, q[i]) - sum(sp.diff(dL_dqd[i], q[j]) * qd[j] for j in range(n)) - sp.diff(dL_dqd[i], t)
            for i in range(n)
        ]
        flat_m = [m for row in self.mass_matrix for m in row]
        dynamic = set(self.state_symbols) | {t}
        self.separable = not any(sp.sympify(m).free_symbols & dynamic for m in flat_m) and not any(
            sp.sympify(f).free_symbols & (set(qd) | {t}) for f in self.force
        )
        if all(sp.sympify(m) == 0 for m in flat_m):
            raise ValueError(
                "the Lagrangian does not depend on the velocities "
                f"{v_names} quadratically (its mass matrix ∂²L/∂q̇² is zero); check the velocity names."
            )
        self.compiled = CompiledComponents(
            flat_m + self.force,
            self.state_symbols,
            [self.param_symbol(k) for k in self.param_names],
            t,
            where="the Euler–Lagrange equations",
        )

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """dy/dt = [q̇, M⁻¹f] for ``y`` of shape ``(..., 2n)``, ``t`` of shape ``y.shape[:-1]``."""
        t = self._check_state(t, y)
        n = self.n
        mf = self.compiled(t, y, self.param_values())
        f = mf[..., n * n :]
        if n == 1:
            qdd = f / mf[..., :1]
        else:
            M = mf[..., : n * n].unflatten(-1, (n, n))
            qdd = torch.linalg.solve(M, f.unsqueeze(-1)).squeeze(-1)
        return torch.cat([y[..., n:], qdd], dim=-1)

    def equations(self) -> list[sp.Eq]:
        """Euler–Lagrange equations ``[Eq(Σ_j M_ij q̈_j, f_i)]`` with current parameter values (q̈ as symbols)."""
        subs = self.substitutions()
        qdd = [sp.Symbol(f"{name}_ddot", real=True) for name in self.state_names[: self.n]]
        return [
            sp.Eq(
                sum(sp.sympify(self.mass_matrix[i][j]).xreplace(subs) * qdd[j] for j in range(self.n)),
                sp.sympify(self.force[i]).xreplace(subs),
            )
            for i in range(self.n)
        ]

    def lagrangian(self) -> sp.Expr:
        """``L`` with the current parameter values substituted."""
        return self.L.xreplace(self.substitutions())
