"""Plain symbolic equations dx/dt = expr(x, params, t)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sympy as sp
from torch import Tensor

from .base import PhysicsModel, SymbolSpec, canonicalize, symbol_name, symbol_names
from .compile import as_expression
from .params import Param

__all__ = ["SymbolicODE", "time_function_equations"]


def time_function_equations(
    lhs_symbols: Sequence[sp.Symbol], rhs: Sequence[sp.Expr], state: Sequence[sp.Symbol], time: sp.Symbol
) -> list[sp.Eq]:
    """``[Eq(d x_i(t)/dt, rhs_i)]`` with every state symbol shown as a function of time."""
    funcs = {s: sp.Function(s.name)(time) for s in state}
    return [
        sp.Eq(sp.Derivative(funcs[s], time), as_expression(e, f"the equation of {s}").xreplace(funcs))
        for s, e in zip(lhs_symbols, rhs, strict=True)
    ]


def is_separable(rhs: Sequence[sp.Expr], state: Sequence[sp.Symbol], time: sp.Symbol) -> bool:
    """Whether ``d(first half)/dt`` depends on the second half only and vice versa, with no explicit time."""
    n = len(state)
    if n % 2:
        return False
    q, p = set(state[: n // 2]), set(state[n // 2 :])
    for i, e in enumerate(rhs):
        fs = as_expression(e, f"component {i}").free_symbols
        if time in fs:
            return False
        if i < n // 2 and fs & q:
            return False
        if i >= n // 2 and fs & p:
            return False
    return True


class SymbolicODE(PhysicsModel):
    """Plain symbolic equations ``dx/dt = rhs(x, params, t)`` compiled once into a batched torch function.

    Parameters
    ----------
    rhs
        One expression per state variable (SymPy expressions or strings, parsed safely), in the order of
        ``state``; or a mapping ``state name -> expression``.
    state
        State variable names or symbols ``x_1 .. x_D`` (the last axis of ``y``).
    params
        Named quantities: ``{"alpha": Param(1.1, positive=True), "g": 9.81}`` (numbers are known constants).
    time
        Name of the time variable in the expressions (default ``"t"``).

    Raises
    ------
    TypeError
        For inputs of the wrong kind (a single string where a list of names is expected, ``None``, booleans or
        relations as expressions).
    ValueError
        For text outside the parser's whitelist or budget (see :func:`~physnode.physics.parse_expression`),
        duplicate names (also after Unicode NFKC normalisation), names that shadow built-in functions,
        undeclared symbols, constants outside the float64 range and functions that cannot be compiled.

    Examples
    --------
    Lotka–Volterra with learnable rates:

    >>> lv = SymbolicODE(["a*x - b*x*y", "d*x*y - c*y"], ["x", "y"],
    ...                  {n: Param(v, positive=True) for n, v in dict(a=1.0, b=0.4, c=0.8, d=0.2).items()})
    """

    def __init__(
        self,
        rhs: Sequence[sp.Expr | str] | Mapping[SymbolSpec, sp.Expr | str],
        state: Sequence[SymbolSpec],
        params: Mapping[str, Param | float] | None = None,
        *,
        time: SymbolSpec = "t",
    ) -> None:
        super().__init__(params)
        names = symbol_names(state, "state variable", "SymbolicODE")
        if not names:
            raise ValueError("SymbolicODE needs at least one state variable, e.g. SymbolicODE(['-x'], ['x']).")
        table = self._declare_symbols(names, time)
        if not isinstance(rhs, (Mapping, Sequence)) or isinstance(rhs, (str, sp.Basic)):
            got = f"the single expression {rhs!r}" if isinstance(rhs, (str, sp.Basic)) else type(rhs).__name__
            raise TypeError(
                f"SymbolicODE rhs must be a list with one expression per state variable {names[:10]} (or a dict "
                f"state -> expression), got {got}; e.g. rhs=['-x'] for state=['x']."
            )
        if isinstance(rhs, Mapping):
            by_name = {symbol_name(k, "state variable"): v for k, v in rhs.items()}
            missing = [n for n in names if n not in by_name]
            extra = [n for n in by_name if n not in names]
            if missing or extra:
                raise ValueError(
                    f"rhs must give one equation per state variable {names}; missing {missing}, unknown {extra}."
                )
            rhs = [by_name[n] for n in names]
        if len(rhs) != len(names):
            shown = names if len(names) <= 10 else [*names[:10], "…"]
            raise ValueError(
                f"rhs must hold one expression per state variable ({len(names)}: {shown}), got {len(rhs)}."
            )
        self.param_names = self._scalar_param_names()
        self.rhs_exprs = [canonicalize(e, table, f"rhs of d{n}/dt") for n, e in zip(names, rhs, strict=True)]
        self.separable = is_separable(self.rhs_exprs, self.state_symbols, self.time_symbol)
        self.compiled = self._compile(self.rhs_exprs, "the SymbolicODE right-hand side")

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """dy/dt for ``y`` of shape ``(..., D)`` and ``t`` of shape ``y.shape[:-1]`` (or broadcastable)."""
        t = self._check_state(t, y)
        return self.compiled(t, y, self.param_values())

    def equations(self) -> list[sp.Eq]:
        """``[Eq(dx_i/dt, rhs_i)]`` with the current parameter values substituted."""
        subs = self.substitutions()
        rhs = [e.xreplace(subs) for e in self.rhs_exprs]
        return time_function_equations(self.state_symbols, rhs, self.state_symbols, self.time_symbol)

    def to_config(self) -> dict[str, Any]:
        """``{"kind": "ode", "state", "rhs", "params", "time"}`` for :func:`~physnode.physics.from_config`."""
        rhs = {n: self._text(e, f"rhs of d{n}/dt") for n, e in zip(self.state_names, self.rhs_exprs, strict=True)}
        return {
            "kind": "ode",
            "state": list(self.state_names),
            "rhs": rhs,
            "params": self._params_config(),
            "time": self.time_symbol.name,
        }
