"""The common base of physics models: named parameters, symbols, and the ``forward(t, y)`` contract."""

from __future__ import annotations

import keyword
from collections.abc import Mapping, Sequence
from typing import Any

import sympy as sp
import torch
from torch import Tensor, nn

from .compile import canonical_symbol
from .params import Param

__all__ = ["PhysicsModel", "SymbolSpec"]

SymbolSpec = str | sp.Symbol
"""A state variable or coordinate given by name or as a SymPy symbol (matched by name)."""


def symbol_name(s: object, what: str) -> str:
    """The name of a symbol given as a string or a SymPy symbol, validated as an identifier."""
    if isinstance(s, sp.Symbol):
        name = s.name
    elif isinstance(s, str):
        name = s
    else:
        raise TypeError(f"{what} must be given by name (str) or as a sympy.Symbol, got {type(s).__name__} {s!r}.")
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
        raise ValueError(
            f"{what} name {name!r} is not usable: names must be Python identifiers that do not start with '_' "
            "and are not keywords (e.g. 'q1', 'theta', 'p_x')."
        )
    return name


class PhysicsModel(nn.Module):
    """Base class of the physics right-hand sides (:class:`SymbolicODE`, :class:`Hamiltonian`, ...).

    A model is an ``nn.Module`` with ``forward(t, y) -> dy/dt`` for ``y`` of shape ``(..., D)`` and ``t`` of
    shape ``y.shape[:-1]`` (or broadcastable to it), so it plugs straight into :func:`physnode.odeint`.

    Parameters
    ----------
    params
        Named physical quantities: a :class:`Param` or a plain number (a known constant). Stored in the
        ``params`` submodule, so ``model.params.k.raw`` is the tensor an optimiser updates.

    Attributes
    ----------
    separable
        ``True`` when the state splits into positions (first half) and velocities or momenta (second half)
        with d(positions)/dt depending on the velocities only and d(velocities)/dt on the positions only, the
        assumption of the structure-preserving solvers ``"leapfrog"`` and ``"yoshida4"``.
    state_names
        Names of the state components, in the order of the last axis of ``y``.
    """

    separable: bool = False
    state_names: list[str]

    def __init__(self, params: Mapping[str, Param | float | int] | None = None) -> None:
        super().__init__()
        self.params = nn.ModuleDict()
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise TypeError(
                f"params must be a dict mapping names to Param(...) or numbers, got {type(params).__name__}."
            )
        for name, spec in params.items():
            name = symbol_name(name, "parameter")
            if isinstance(spec, Param):
                p = spec
            elif isinstance(spec, (int, float)) and not isinstance(spec, bool):
                p = Param(float(spec), learnable=False)
            else:
                raise TypeError(
                    f"parameter {name!r} must be a Param(...) or a number (a known constant), got "
                    f"{type(spec).__name__} {spec!r}."
                )
            try:
                self.params[name] = p
            except KeyError:
                raise ValueError(
                    f"parameter name {name!r} clashes with an attribute of torch's ModuleDict; rename it."
                ) from None

    # ----------------------------------------------------------------------------------------------------
    @property
    def state_dim(self) -> int:
        """Number of state components ``D``."""
        return len(self.state_names)

    def param_symbol(self, name: str) -> sp.Symbol:
        """The SymPy symbol of parameter ``name`` (positive for positive parameters)."""
        p = self.params[name]
        return canonical_symbol(name, positive=bool(p.positive))

    def param_values(self) -> list[Tensor]:
        """Constrained parameter values, in the order of ``self.params``."""
        return [p() for p in self.params.values()]

    def physical_parameters(self) -> dict[str, Tensor]:
        """Current constrained values of every named quantity (constants included), by name."""
        return {name: p() for name, p in self.params.items()}

    def substitutions(self) -> dict[sp.Symbol, sp.Float]:
        """SymPy substitutions ``{symbol: current value}`` for the scalar parameters."""
        subs = {}
        for name, p in self.params.items():
            v = p().detach()
            if v.ndim == 0:
                subs[self.param_symbol(name)] = sp.Float(float(v), 15)
        return subs

    def equations(self) -> list[sp.Eq]:
        """The model's equations with the current parameter values substituted (for read-back after a fit)."""
        raise NotImplementedError

    def _check_state(self, t: Tensor, y: Tensor) -> Tensor:
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a tensor of shape (..., {self.state_dim}), got {type(y).__name__}.")
        if y.ndim == 0 or y.shape[-1] != self.state_dim:
            raise ValueError(
                f"{type(self).__name__} expects a state y of shape (..., {self.state_dim}) with components "
                f"{self.state_names}, got {tuple(y.shape)}."
            )
        if not isinstance(t, Tensor):
            t = torch.as_tensor(t, dtype=y.dtype, device=y.device)
        return t

    def extra_repr(self) -> str:
        return f"state={self.state_names}, separable={self.separable}"

    # Shared helpers for the symbolic models ---------------------------------------------------------------
    def _symbol_table(self, names: Sequence[str], time_name: str) -> dict[str, sp.Symbol]:
        table: dict[str, sp.Symbol] = {}
        for n in names:
            if n in table:
                raise ValueError(f"state variable {n!r} is declared twice.")
            table[n] = canonical_symbol(n)
        if time_name in table:
            raise ValueError(f"{time_name!r} is the time variable and cannot also be a state variable.")
        table[time_name] = canonical_symbol(time_name)
        for name in self.params:
            if name in table:
                raise ValueError(
                    f"{name!r} is declared both as a parameter and as a state variable or time; rename one."
                )
            table[name] = self.param_symbol(name)
        return table

    def _scalar_param_names(self) -> list[str]:
        for name, p in self.params.items():
            if p.shape != torch.Size([]):
                raise ValueError(
                    f"parameter {name!r} has shape {tuple(p.shape)}; symbolic models take scalar parameters only "
                    "(declare one named Param per component)."
                )
        return list(self.params)


def canonicalize(expr: Any, table: Mapping[str, sp.Symbol], where: str) -> sp.Expr:
    """Turn ``expr`` (a SymPy expression or a safe-parsed string) into one over the canonical symbols.

    Symbols are matched by name, so a user's ``sympy.Symbol("k")`` (with any assumptions) becomes physnode's
    real ``k``. Strings are parsed with :func:`~physnode.physics.parse_expression` (never ``eval``).
    """
    from .parse import parse_expression

    if isinstance(expr, str):
        return parse_expression(expr, table)
    if isinstance(expr, (int, float)) and not isinstance(expr, bool):
        return sp.Float(expr) if isinstance(expr, float) else sp.Integer(expr)
    if not isinstance(expr, sp.Basic):
        raise TypeError(f"{where} must be a SymPy expression or a string, got {type(expr).__name__}.")
    repl = {}
    for s in expr.free_symbols:
        if not isinstance(s, sp.Symbol):
            continue
        if s.name not in table:
            raise ValueError(
                f"{where} uses the undeclared symbol {s.name!r}; declared: {', '.join(sorted(table))}. Declare it "
                "as a state variable or a parameter."
            )
        repl[s] = table[s.name]
    return expr.xreplace(repl)
