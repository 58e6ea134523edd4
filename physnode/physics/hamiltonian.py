"""Hamiltonian mechanics: dq/dt = ∂H/∂p, dp/dt = −∂H/∂q, derived symbolically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sympy as sp
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
from .symbolic import is_separable, time_function_equations

__all__ = ["Hamiltonian"]


class Hamiltonian(PhysicsModel):
    """Hamilton's equations of a scalar Hamiltonian ``H(q, p, t)``, derived symbolically and compiled once.

    State layout ``y = [q_1 .. q_n, p_1 .. p_n]`` (coordinates, then conjugate momenta).

    Parameters
    ----------
    H
        The Hamiltonian (energy units), a SymPy expression or a string (parsed safely).
    coords
        Generalised coordinates ``q_i`` (names or symbols).
    momenta
        Conjugate momenta ``p_i``, one per coordinate.
    params
        Named quantities (``Param`` or numbers).
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
        Also when Hamilton's equations exceed
        :data:`~physnode.physics.base.MAX_DERIVED_NODES` nodes.

    Attributes
    ----------
    separable
        ``True`` when ``H = T(p) + V(q)`` (no mixed ``q``–``p`` terms, no explicit time), so ``"leapfrog"`` and
        ``"yoshida4"`` apply.

    Examples
    --------
    >>> kepler = Hamiltonian("(px**2 + py**2)/(2*m) - k*m/sqrt(x**2 + y**2)", ["x", "y"], ["px", "py"],
    ...                      {"m": 1.0, "k": Param(1.0, positive=True)})
    """

    def __init__(
        self,
        H: sp.Expr | str,
        coords: Sequence[SymbolSpec],
        momenta: Sequence[SymbolSpec],
        params: Mapping[str, Param | float] | None = None,
        *,
        time: SymbolSpec = "t",
    ) -> None:
        super().__init__(params)
        q_names = symbol_names(coords, "coordinate", "Hamiltonian")
        p_names = symbol_names(momenta, "momentum", "Hamiltonian")
        if not q_names:
            raise ValueError(
                "Hamiltonian needs at least one coordinate, e.g. Hamiltonian('p**2/2 + q**2/2', ['q'], ['p'])."
            )
        if len(q_names) != len(p_names):
            raise ValueError(
                f"Hamiltonian needs one momentum per coordinate; got {len(q_names)} coordinates {q_names} and "
                f"{len(p_names)} momenta {p_names}."
            )
        table = self._declare_symbols(q_names + p_names, time)
        q = self.state_symbols[: len(q_names)]
        p = self.state_symbols[len(q_names) :]
        self.param_names = self._scalar_param_names()
        self.H = canonicalize(H, table, "the Hamiltonian H")
        d = Differentiator(self.H)
        self.rhs_exprs = [d(pi) for pi in p] + [-d(qi) for qi in q]
        check_derived_size(
            self.rhs_exprs,
            "Hamilton's equations",
            "write H with fewer or smaller terms, or give the equations directly as a SymbolicODE.",
        )
        self.separable = is_separable(self.rhs_exprs, self.state_symbols, self.time_symbol)
        self.compiled = self._compile(self.rhs_exprs, "Hamilton's equations")
        self.compiled_energy = self._compile([self.H], "the Hamiltonian H")

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """dy/dt = [∂H/∂p, −∂H/∂q] for ``y`` of shape ``(..., 2n)``, ``t`` of shape ``y.shape[:-1]``."""
        t = self._check_state(t, y)
        return self.compiled(t, y, self.param_values())

    def energy(self, t: Tensor, y: Tensor) -> Tensor:
        """The value of ``H`` at ``(t, y)``, shape ``y.shape[:-1]``."""
        t = self._check_state(t, y)
        return self.compiled_energy(t, y, self.param_values()).squeeze(-1)

    def equations(self) -> list[sp.Eq]:
        """Hamilton's equations ``[Eq(dq/dt, ∂H/∂p), Eq(dp/dt, −∂H/∂q)]`` with current parameter values."""
        subs = self.substitutions()
        rhs = [e.xreplace(subs) for e in self.rhs_exprs]
        return time_function_equations(self.state_symbols, rhs, self.state_symbols, self.time_symbol)

    def hamiltonian(self) -> sp.Expr:
        """``H`` with the current parameter values substituted."""
        return self.H.xreplace(self.substitutions())

    def to_config(self) -> dict[str, Any]:
        """``{"kind": "hamiltonian", "coords", "momenta", "H", "params", "time"}`` for
        :func:`~physnode.physics.from_config`."""
        n = len(self.state_names) // 2
        return {
            "kind": "hamiltonian",
            "coords": list(self.state_names[:n]),
            "momenta": list(self.state_names[n:]),
            "H": self._text(self.H, "the Hamiltonian H"),
            "params": self._params_config(),
            "time": self.time_symbol.name,
        }
