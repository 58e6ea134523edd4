"""Lagrangian mechanics: Euler–Lagrange equations in mass-matrix form, solved for q̈ at run time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sympy as sp
import torch
from torch import Tensor

from .base import (
    Differentiator,
    PhysicsModel,
    SymbolSpec,
    canonicalize,
    check_derived_size,
    symbol_names,
)
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

    Raises
    ------
    TypeError
        For inputs of the wrong kind (a single string where a list of names is expected, ``None``, booleans or
        relations as expressions).
    ValueError
        For text outside the parser's whitelist or budget (see :func:`~physnode.physics.parse_expression`),
        duplicate names (also after Unicode NFKC normalisation), names that shadow built-in functions,
        undeclared symbols, constants outside the float64 range and functions that cannot be compiled.
        Also for a degenerate Lagrangian (a velocity without kinetic term, a mass
        matrix singular at generic states) and when the equations exceed
        :data:`~physnode.physics.base.MAX_DERIVED_NODES` nodes.

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
        q_names = symbol_names(coords, "coordinate", "Lagrangian")
        if not q_names:
            raise ValueError("Lagrangian needs at least one coordinate, e.g. Lagrangian('q_dot**2/2', ['q']).")
        if velocities is None:
            v_names = [f"{n}_dot" for n in q_names]
        else:
            v_names = symbol_names(velocities, "velocity", "Lagrangian")
            if len(v_names) != len(q_names):
                raise ValueError(
                    f"Lagrangian needs one velocity per coordinate; got {q_names} and velocities {v_names}."
                )
        n = len(q_names)
        table = self._declare_symbols(q_names + v_names, time)
        self.n = n
        t = self.time_symbol
        q, qd = self.state_symbols[:n], self.state_symbols[n:]
        self.param_names = self._scalar_param_names()
        self.L = canonicalize(L, table, "the Lagrangian L")
        d = Differentiator(self.L)
        dL_dqd = [d(v) for v in qd]
        self.mass_matrix: list[list[sp.Expr]] = []
        self.force: list[sp.Expr] = []
        hint = (
            "write L with fewer or smaller terms (e.g. a constant mass matrix), or give the equations of motion "
            "directly as a SymbolicODE."
        )
        size = check_derived_size(dL_dqd, "the Euler–Lagrange equations", hint)
        for i in range(n):
            di = Differentiator(dL_dqd[i])
            self.mass_matrix.append([di(qd[j]) for j in range(n)])
            self.force.append(d(q[i]) - sp.Add(*(di(q[j]) * qd[j] for j in range(n))) - di(t))
            row = [*self.mass_matrix[-1], self.force[-1]]
            size = check_derived_size(row, "the Euler–Lagrange equations", hint, size)
        flat_m = [m for row in self.mass_matrix for m in row]
        dynamic = set(self.state_symbols) | {t}
        self.separable = not any(m.free_symbols & dynamic for m in flat_m) and not any(
            f.free_symbols & (set(qd) | {t}) for f in self.force
        )
        if all(m == 0 for m in flat_m):
            raise ValueError(
                "the Lagrangian does not depend on the velocities "
                f"{v_names} quadratically (its mass matrix ∂²L/∂q̇² is zero); check the velocity names."
            )
        missing = [v_names[i] for i in range(n) if all(m == 0 for m in self.mass_matrix[i])]
        if missing:
            raise ValueError(
                f"the Lagrangian is degenerate: it has no kinetic term in the velocities {missing} (their rows of "
                "the mass matrix ∂²L/∂q̇² are zero), so the Euler–Lagrange equations cannot be solved for the "
                f"accelerations. Add a term quadratic in each of {v_names}, or drop the coordinates that have none."
            )
        self.compiled = self._compile(flat_m + self.force, "the Euler–Lagrange equations")
        self._check_mass_matrix_regular(v_names)

    @torch.no_grad()
    def _check_mass_matrix_regular(self, v_names: list[str]) -> None:
        """Refuse a mass matrix that is singular at every one of a few random states (a degenerate Lagrangian).

        The states are drawn with a fixed seed in ``[0.5, 1.5]`` (inside the domain of ``log`` and ``sqrt``), so
        the check is deterministic and leaves the global random state alone. States where ``M`` is not finite
        are skipped; singular means a condition number above ``1e12``.
        """
        n = self.n
        generator = torch.Generator().manual_seed(0)
        y = 0.5 + torch.rand((4, 2 * n), generator=generator, dtype=torch.float64)
        t = 0.5 + torch.rand((4,), generator=generator, dtype=torch.float64)
        params = [p.to(torch.float64) for p in self.param_values()]
        mass = self.compiled(t, y, params)[..., : n * n].unflatten(-1, (n, n))
        finite = torch.isfinite(mass).flatten(-2).all(-1)
        if not bool(finite.any()):
            return
        mass = mass[finite]
        singular = torch.linalg.cond(mass) > 1e12
        if bool(singular.all()):
            rank = int(torch.linalg.matrix_rank(mass[0]))
            raise ValueError(
                f"the Lagrangian is degenerate: its mass matrix ∂²L/∂q̇² ({n}×{n}, over the velocities {v_names}) "
                f"is singular (rank {rank} < {n}) at every tested state, so the Euler–Lagrange equations cannot be "
                "solved for the accelerations (e.g. L = x*x_dot, or L = (q1_dot + q2_dot)**2/2). Give each "
                "coordinate its own kinetic term, or remove coordinates that only appear in combination."
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
            try:
                qdd = torch.linalg.solve(M, f.unsqueeze(-1)).squeeze(-1)
            except torch.linalg.LinAlgError as e:
                raise torch.linalg.LinAlgError(
                    f"the mass matrix ∂²L/∂q̇² of the Lagrangian is singular at a state of the batch ({e}); the "
                    "Lagrangian is degenerate there (no unique accelerations). Keep the trajectories away from those "
                    "states or reformulate L."
                ) from None
        return torch.cat([y[..., n:], qdd], dim=-1)

    def equations(self) -> list[sp.Eq]:
        """Euler–Lagrange equations ``[Eq(Σ_j M_ij q̈_j, f_i)]`` with current parameter values (q̈ as symbols)."""
        subs = self.substitutions()
        qdd = [sp.Symbol(f"{name}_ddot", real=True) for name in self.state_names[: self.n]]
        return [
            sp.Eq(
                sum(self.mass_matrix[i][j].xreplace(subs) * qdd[j] for j in range(self.n)),
                self.force[i].xreplace(subs),
            )
            for i in range(self.n)
        ]

    def lagrangian(self) -> sp.Expr:
        """``L`` with the current parameter values substituted."""
        return self.L.xreplace(self.substitutions())

    def to_config(self) -> dict[str, Any]:
        """``{"kind": "lagrangian", "coords", "velocities", "L", "params", "time"}`` for
        :func:`~physnode.physics.from_config`."""
        return {
            "kind": "lagrangian",
            "coords": list(self.state_names[: self.n]),
            "velocities": list(self.state_names[self.n :]),
            "L": self._text(self.L, "the Lagrangian L"),
            "params": self._params_config(),
            "time": self.time_symbol.name,
        }
