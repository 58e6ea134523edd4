"""The common base of physics models: named parameters, symbols, and the ``forward(t, y)`` contract."""

from __future__ import annotations

import keyword
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import sympy as sp
import torch
from torch import Tensor, nn

from .compile import CompiledComponents, as_expression, canonical_symbol
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

    def to_config(self) -> dict[str, Any]:
        """A plain dict (numbers, strings, lists) from which :func:`~physnode.physics.from_config` rebuilds this
        model: its kind, state names, equations as text and parameter tables (current values). Used to save fitted
        models without pickle (:meth:`physnode.FitResult.save`).

        Raises
        ------
        NotImplementedError
            The model has no plain description (e.g. a :class:`Hybrid`, whose correction is a network).
        ValueError
            An equation uses something the expression parser does not read, so it cannot be written as text.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no plain description (to_config); save its state dict and rebuild the model "
            "in code."
        )

    def _params_config(self) -> dict[str, Any]:
        """The ``params`` table of :meth:`to_config`."""
        return {name: p.to_config() for name, p in self.params.items()}

    def _text(self, expr: sp.Expr, where: str) -> str:
        """``expr`` as text that the model's parser reads back exactly (see :meth:`to_config`)."""
        from .parse import expression_text

        table = self._symbol_table(self.state_names, self.time_symbol.name)
        return expression_text(expr, table, f"{type(self).__name__}: {where}")

    def _check_state(self, t: Tensor, y: Tensor) -> Tensor:
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a tensor of shape (..., {self.state_dim}), got {type(y).__name__}.")
        if y.ndim == 0 or y.shape[-1] != self.state_dim:
            raise ValueError(
                f"{type(self).__name__} expects a state y of shape (..., {self.state_dim}) with components "
                f"{self.state_names}, got {tuple(y.shape)}."
            )
        if not y.is_floating_point():
            raise TypeError(
                f"{type(self).__name__} expects a real floating-point state y (float32 or float64), got {y.dtype}; "
                "convert it, e.g. y.double()."
            )
        if not isinstance(t, Tensor):
            if isinstance(t, bool) or not isinstance(t, (int, float)):
                raise TypeError(
                    f"t must be a tensor of shape {tuple(y.shape[:-1])} (or broadcastable to it) or a number, got "
                    f"{type(t).__name__}."
                )
            t = torch.as_tensor(t, dtype=y.dtype, device=y.device)
        elif t.ndim and t.shape != y.shape[:-1]:
            try:
                ok = torch.broadcast_shapes(t.shape, y.shape[:-1]) == y.shape[:-1]
            except RuntimeError:
                ok = False
            if not ok:
                raise ValueError(
                    f"t of shape {tuple(t.shape)} does not broadcast to the batch shape {tuple(y.shape[:-1])} of y "
                    f"{tuple(y.shape)}; give one time per trajectory (shape y.shape[:-1]) or a scalar."
                )
        return t

    def extra_repr(self) -> str:
        return f"state={self.state_names}, separable={self.separable}"

    # Shared helpers for the symbolic models ---------------------------------------------------------------
    def _symbol_table(self, names: Sequence[str], time_name: str) -> dict[str, sp.Symbol]:
        """Canonical symbols of the state variables, the time and the parameters, by name.

        Names must be distinct once Unicode-normalised (NFKC), the way Python and the expression parser read
        identifiers: ``x`` and the fullwidth ``ｘ`` are the same name there, so they are refused as duplicates,
        and a name that is not in NFKC form is refused with the form to write instead.
        """
        entries = [(n, "state variable") for n in names] + [(time_name, "time variable")]
        entries += [(n, "parameter") for n in self.params]
        seen: dict[str, tuple[str, str]] = {}
        for raw, role in entries:
            key = unicodedata.normalize("NFKC", raw)
            if key in seen:
                first, first_role = seen[key]
                if first != raw:
                    raise ValueError(
                        f"the {first_role} {first!r} and the {role} {raw!r} are the same name once Unicode-normalised "
                        f"(NFKC: both read as {key!r}), as Python and the expression parser read identifiers; rename "
                        "one."
                    )
                if role == first_role == "state variable":
                    raise ValueError(f"state variable {raw!r} is declared twice.")
                if "time variable" in (role, first_role) and "parameter" not in (role, first_role):
                    raise ValueError(f"{raw!r} is the time variable and cannot also be a state variable.")
                raise ValueError(
                    f"{raw!r} is declared both as a parameter and as a state variable or time; rename one."
                )
            seen[key] = (raw, role)
        for key, (raw, role) in seen.items():
            if key != raw:
                raise ValueError(
                    f"{role} name {raw!r} is read as {key!r} by Python and the expression parser (Unicode NFKC "
                    f"normalisation); write {key!r}."
                )
        table = {n: canonical_symbol(n) for n in names}
        table[time_name] = canonical_symbol(time_name)
        for name in self.params:
            table[name] = self.param_symbol(name)
        return table

    def _declare_symbols(self, names: list[str], time: SymbolSpec) -> dict[str, sp.Symbol]:
        """Declare the state variables and the time: the symbol table by name (:meth:`_symbol_table`).

        Sets :attr:`state_names` (``names``), ``state_symbols`` and ``time_symbol``.
        """
        time_name = symbol_name(time, "time variable")
        table = self._symbol_table(names, time_name)
        self.state_names = names
        self.time_symbol = table[time_name]
        self.state_symbols = [table[n] for n in names]
        return table

    def _compile(self, exprs: list[sp.Expr], where: str) -> CompiledComponents:
        """``exprs`` compiled over the declared state and time symbols and the ``param_names`` parameters.

        ``where`` names the equations in errors (see :class:`~physnode.physics.compile.CompiledComponents`).
        """
        params = [self.param_symbol(n) for n in self.param_names]
        return CompiledComponents(exprs, self.state_symbols, params, self.time_symbol, where=where)

    def _scalar_param_names(self) -> list[str]:
        for name, p in self.params.items():
            if p.shape != torch.Size([]):
                raise ValueError(
                    f"parameter {name!r} has shape {tuple(p.shape)}; symbolic models take scalar parameters only "
                    "(declare one named Param per component)."
                )
        return list(self.params)


def symbol_names(values: object, what: str, owner: str) -> list[str]:
    """Validated names of a list of state variables / coordinates / momenta (strings or SymPy symbols).

    A single string is refused rather than read as a sequence of one-letter names (``"xy"`` is not ``["x", "y"]``).
    """
    if isinstance(values, (str, sp.Basic)) or not isinstance(values, Sequence):
        example = f"[{values!r}]" if isinstance(values, str) else "['x', 'v']"
        raise TypeError(
            f"{owner} takes its {what} names as a list of names or sympy.Symbol objects, got {type(values).__name__} "
            f"{_short(values)}; write e.g. {example}."
        )
    if len(values) > MAX_STATE_DIM:
        raise ValueError(
            f"{owner} got {len(values)} {what} names; the limit is {MAX_STATE_DIM} state components. Larger systems "
            "should be written as tensor code (an nn.Module) rather than symbolic equations."
        )
    return [symbol_name(s, what) for s in values]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}… ({len(text)} characters)"


MAX_STATE_DIM = 100_000
"""Most state components of a symbolic model (each is compiled and checked symbolically)."""


def canonicalize(expr: Any, table: Mapping[str, sp.Symbol], where: str) -> sp.Expr:
    """Turn ``expr`` (a SymPy expression or a safe-parsed string) into one over the canonical symbols.

    Symbols are matched by name, so a user's ``sympy.Symbol("k")`` (with any assumptions) becomes physnode's
    real ``k``. Strings are parsed with :func:`~physnode.physics.parse_expression` (never ``eval``). Expressions
    given directly obey the parser's budget too (:data:`~physnode.physics.parse.MAX_EXPRESSION_NODES` nodes,
    exponents up to :data:`~physnode.physics.parse.MAX_EXPONENT`).
    """
    from .parse import RESERVED_NAMES, check_expression_size, parse_declared

    if isinstance(expr, str):
        for name in RESERVED_NAMES:
            if name in table:
                raise ValueError(
                    f"the name {name!r} (a state variable, parameter or the time) shadows the built-in function or "
                    f"constant {name!r} of expressions, so {where} cannot be read; rename it (e.g. {name + '_'!r})."
                )
        try:
            return parse_declared(expr, table)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    expr = as_expression(expr, where)
    check_expression_size(expr, where)
    repl = {}
    for s in expr.free_symbols:
        if not isinstance(s, sp.Symbol):
            continue
        if s.name not in table:
            declared = sorted(table)
            listed = ", ".join(declared[:20]) + (f", … ({len(declared)} in all)" if len(declared) > 20 else "")
            raise ValueError(
                f"{where} uses the undeclared symbol {s.name!r}; declared: {listed}. Declare it "
                "as a state variable or a parameter."
            )
        repl[s] = table[s.name]
    return expr.xreplace(repl)


_CHAIN_RULE_FUNCTIONS = (
    sp.sin,
    sp.cos,
    sp.tan,
    sp.asin,
    sp.acos,
    sp.atan,
    sp.sinh,
    sp.cosh,
    sp.tanh,
    sp.asinh,
    sp.acosh,
    sp.atanh,
    sp.exp,
    sp.log,
    sp.erf,
)


MAX_DERIVED_NODES = 10_000
"""Largest total size (SymPy tree nodes, zero entries not counted) of the equations a model derives symbolically
(Hamilton's or Lagrange's equations). Compiling (common-subexpression elimination, code generation) grows faster
than linearly with it: about 3 s at this bound, minutes at ten times it."""


def check_derived_size(exprs: Sequence[sp.Basic], where: str, hint: str, start: int = 0) -> int:
    """Refuse derived equations whose total size exceeds :data:`MAX_DERIVED_NODES` (counted with an early stop).

    Parameters
    ----------
    exprs
        The derived expressions.
    where
        What they are (e.g. ``"the Euler–Lagrange equations"``).
    hint
        How to make them smaller, appended to the message.
    start
        Nodes already counted (when the equations are checked in parts as they are derived).

    Returns
    -------
    int
        ``start`` plus the number of nodes of ``exprs``.
    """
    count = start
    for e in exprs:
        if e == 0:
            continue
        for _ in sp.preorder_traversal(e):
            count += 1
            if count > MAX_DERIVED_NODES:
                raise ValueError(
                    f"{where} grow beyond {MAX_DERIVED_NODES} expression nodes after symbolic differentiation, "
                    f"which would take minutes to compile (the limit is physnode.physics.base.MAX_DERIVED_NODES); "
                    f"{hint}"
                )
    return count


class Differentiator:
    """Partial derivatives of one expression with respect to many symbols, visiting only the subtrees that
    contain the symbol.

    ``sympy.diff`` walks the whole expression for every symbol and builds a ``Derivative`` object for every
    term, which makes Hamilton's or Lagrange's equations of a 100-coordinate chain take tens of seconds. Here the
    free symbols of every subexpression are computed once, sums and products differentiate only their factors
    that contain the symbol, and powers with constant exponents and one-argument functions use the chain rule
    directly; other nodes fall back to ``sympy.diff`` on that subtree only. The results are equal to
    ``sympy.diff`` (not always in the same printed form).

    Parameters
    ----------
    expr
        The expression to differentiate.
    """

    def __init__(self, expr: sp.Expr) -> None:
        self.expr = expr
        self._free: dict[sp.Basic, frozenset[sp.Basic]] = {}

    def free(self, e: sp.Basic) -> frozenset[sp.Basic]:
        """Free symbols of ``e`` (cached for every visited subexpression)."""
        got = self._free.get(e)
        if got is None:
            if e.is_Symbol:
                got = frozenset((e,))
            elif not e.args or isinstance(e, sp.Number):
                got = frozenset(e.free_symbols)
            else:
                got = frozenset().union(*(self.free(a) for a in e.args))
            self._free[e] = got
        return got

    def __call__(self, x: sp.Symbol, e: sp.Basic | None = None) -> sp.Expr:
        """``∂e/∂x`` (``e`` defaults to the whole expression)."""
        e = self.expr if e is None else e
        if x not in self.free(e):
            return sp.S.Zero
        if e == x:
            return sp.S.One
        if isinstance(e, sp.Add):
            return sp.Add(*(self(x, a) for a in e.args if x in self.free(a)))
        if isinstance(e, sp.Mul):
            args = e.args
            terms = [sp.Mul(*args[:k], self(x, a), *args[k + 1 :]) for k, a in enumerate(args) if x in self.free(a)]
            return sp.Add(*terms)
        if isinstance(e, sp.Pow) and x not in self.free(e.exp):
            base, exp = e.args
            return exp * base ** (exp - 1) * self(x, base)
        if isinstance(e, _CHAIN_RULE_FUNCTIONS):
            return e.fdiff(1) * self(x, e.args[0])
        return sp.diff(e, x)
