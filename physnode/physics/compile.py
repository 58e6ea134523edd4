"""Compile lists of SymPy expressions into batched torch functions, once, with SymPy's own torch printer.

``sympy.lambdify(..., modules="torch", cse=True)`` prints a *list* of component expressions after common
subexpression elimination; the components are stacked with ``torch.stack`` so gradients flow to every input
(printing a ``Matrix`` would build a new tensor from Python numbers and detach them). Known gaps of the
printer are closed here:

* numeric subexpressions (``sqrt(2)``, ``exp(1)``) are evaluated to floats first, since the printer emits
  ``torch.sqrt(2)`` which fails on a Python number;
* ``Max`` / ``Min`` (printed as ``max`` / ``min``), ``Heaviside`` and ``atan2`` are mapped to functions that
  accept any mix of tensors and numbers (``atan2(x, 0)``) and, for ``Max`` / ``Min``, any number of arguments;
* undefined functions (``f(x)``) and other objects without a torch equivalent raise a ``ValueError`` naming
  the offending subexpression, at construction time; so do constants outside the float64 range
  (``exp(1000)``), which would otherwise compile to ``inf``.

Right-hand sides that are affine in the state with coefficients independent of time (harmonic chains, linear
oscillators, forced linear systems) compile to one matrix product ``y @ A(θ)ᵀ + c(t, θ)`` instead of one kernel
per component (a gather and an ``index_add`` over the nonzero entries when ``A`` is large and sparse, e.g. a chain
of a thousand states). Affinity is decided structurally on the unexpanded expression tree, so ``(x + 1)**1000``
costs nothing to classify (``Poly`` would expand it). Components that do not depend on the state or time
(constants, functions of the parameters only) are broadcast to the batch shape, so every component is a ``(...,)``
tensor.
"""

from __future__ import annotations

import itertools
import keyword
import math
import sys
import unicodedata
from collections.abc import Sequence
from functools import reduce

import sympy as sp
import torch
from sympy.core.function import AppliedUndef
from torch import Tensor

__all__ = ["CompiledComponents", "canonical_symbol", "check_supported", "numeric_constants"]

_NUMERIC_PRECISION = 20


def canonical_symbol(name: str, *, positive: bool = False) -> sp.Symbol:
    """The SymPy symbol physnode uses for ``name``: real (so derivatives of ``Abs`` stay real), or positive."""
    return sp.Symbol(name, positive=True) if positive else sp.Symbol(name, real=True)


def _as_tensor_like(x: object, like: Tensor) -> Tensor:
    return x if isinstance(x, Tensor) else torch.as_tensor(x, dtype=like.dtype, device=like.device)


def _first_tensor(args: Sequence[object]) -> Tensor:
    for a in args:
        if isinstance(a, Tensor):
            return a
    raise ValueError("Max/Min/Heaviside/atan2 of numbers only should have been folded at compile time.")


def _torch_max(*args: object) -> Tensor:
    like = _first_tensor(args)
    return reduce(torch.maximum, [_as_tensor_like(a, like) for a in args])


def _torch_min(*args: object) -> Tensor:
    like = _first_tensor(args)
    return reduce(torch.minimum, [_as_tensor_like(a, like) for a in args])


def _torch_heaviside(x: object, h0: object = 0.5) -> Tensor:
    like = _first_tensor([x, h0])
    return torch.heaviside(_as_tensor_like(x, like), _as_tensor_like(h0, like))


def _torch_atan2(y: object, x: object) -> Tensor:
    like = _first_tensor([y, x])
    return torch.atan2(_as_tensor_like(y, like), _as_tensor_like(x, like))


_EXTRA_MODULE = {"max": _torch_max, "min": _torch_min, "heaviside": _torch_heaviside, "atan2": _torch_atan2}

# SymPy function classes the torch printer renders as torch calls that accept tensors.
_SUPPORTED_FUNCTIONS: tuple[type, ...] = (
    sp.sin,
    sp.cos,
    sp.tan,
    sp.asin,
    sp.acos,
    sp.atan,
    sp.atan2,
    sp.sinh,
    sp.cosh,
    sp.tanh,
    sp.asinh,
    sp.acosh,
    sp.atanh,
    sp.exp,
    sp.log,
    sp.Abs,
    sp.sign,
    sp.floor,
    sp.ceiling,
    sp.erf,
    sp.Max,
    sp.Min,
    sp.Heaviside,
    sp.Piecewise,
)


_FLOAT_MAX = sys.float_info.max
_INT_MAX = int(_FLOAT_MAX)


def short_text(expr: object, limit: int = 60) -> str:
    """``str(expr)`` cut to about ``limit`` characters for error messages (the length is said when cut)."""
    text = str(expr)
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}…{text[-10:]} ({len(text)} characters)"


def as_expression(value: object, where: str) -> sp.Expr:
    """``value`` as a SymPy expression: SymPy expressions and Python numbers only, never text.

    Text must go through :func:`~physnode.physics.parse_expression` (an ``ast`` whitelist); this function never
    calls ``sympify`` on a string, so nothing in user text is executed.

    Raises
    ------
    TypeError
        For strings, booleans, relations (``Eq``, ``x > 0``) and any other non-expression.
    """
    if isinstance(value, bool) or (isinstance(value, sp.logic.boolalg.Boolean) and not isinstance(value, sp.Expr)):
        raise TypeError(
            f"{where} must be a numeric SymPy expression, got the truth value / relation {short_text(value)!r} "
            f"({type(value).__name__}); give the expression itself (e.g. the right-hand side of an Eq)."
        )
    if isinstance(value, sp.Expr):
        return value
    if isinstance(value, int):
        return sp.Integer(value)
    if isinstance(value, float):
        return sp.Float(value)
    if isinstance(value, str):
        raise TypeError(
            f"{where} must be a SymPy expression, got the string {short_text(value)!r}; parse text with "
            "physnode.physics.parse_expression(text, names) (safe, no eval) or pass it to a model, which does."
        )
    raise TypeError(f"{where} must be a SymPy expression or a number, got {type(value).__name__}.")


def check_supported(expr: sp.Basic, where: str) -> None:
    """Raise ``ValueError`` when ``expr`` contains something the torch printer cannot compile.

    Refused: undefined functions, unevaluated derivatives / integrals / sums, matrices, functions without a torch
    equivalent, non-finite or complex numbers, and constant subexpressions (``exp(1000)``, a 400-digit literal)
    whose value lies outside the float64 range, which would otherwise compile to ``inf``.

    Parameters
    ----------
    expr
        Expression to check.
    where
        Human-readable location used in the message (e.g. ``"the Hamiltonian"``).
    """
    if not isinstance(expr, sp.Basic):
        raise TypeError(f"{where} must be a SymPy expression, got {type(expr).__name__}.")
    if not isinstance(expr, sp.Expr):
        raise TypeError(
            f"{where} must be a numeric SymPy expression, got {type(expr).__name__} {short_text(expr)!r}; give "
            "the expression itself (e.g. the right-hand side of an Eq)."
        )
    walk = sp.preorder_traversal(expr)
    for sub in walk:
        if isinstance(sub, AppliedUndef):
            raise ValueError(
                f"{where} contains the undefined function {sub}, which cannot be compiled to torch. Replace it by "
                "an explicit expression, or model the unknown part with a neural network through Hybrid(...)."
            )
        if isinstance(sub, (sp.Derivative, sp.Integral, sp.Sum, sp.Product, sp.Limit)):
            raise ValueError(
                f"{where} contains the unevaluated {type(sub).__name__} {sub}; evaluate it (.doit()) or write it "
                "out explicitly before compiling."
            )
        if isinstance(sub, (sp.MatrixBase, sp.MatrixExpr)):
            raise ValueError(f"{where} contains a matrix ({sub}); give a list of scalar components instead.")
        if isinstance(sub, sp.Function) and not isinstance(sub, _SUPPORTED_FUNCTIONS):
            raise ValueError(
                f"{where} uses {type(sub).__name__}, which physnode cannot compile to torch; supported functions: "
                f"{', '.join(sorted(f.__name__ for f in _SUPPORTED_FUNCTIONS))}."
            )
        if sub.is_Number and not sub.is_finite:
            raise ValueError(f"{where} contains the non-finite number {sub}.")
        if sub is sp.zoo:
            raise ValueError(
                f"{where} ({short_text(expr)}) contains zoo, SymPy's complex infinity: a division by zero or log(0) "
                "among the constants; check the expression."
            )
        if sub.is_number and sub.is_real is False:
            raise ValueError(f"{where} contains the complex number {sub}; physnode compiles real expressions only.")
        if isinstance(sub, sp.Expr) and sub.is_number:
            _check_constant_range(sub, expr, where)
            walk.skip()


def _check_constant_range(constant: sp.Expr, expr: sp.Expr, where: str) -> None:
    """Refuse a constant subexpression whose value is outside the float64 range (it would compile to ``inf``)."""
    if constant.is_Rational:  # exact integers and fractions: compare without evaluating (fast for big systems)
        if abs(constant.p) <= _INT_MAX * constant.q:
            return
    elif constant.is_Float and math.isfinite(float(constant)):
        return
    value = constant.evalf(_NUMERIC_PRECISION)
    if not isinstance(value, sp.Number):
        return  # complex parts and the like are reported by the caller's other checks
    if not value.is_finite or abs(value) > _FLOAT_MAX:
        size = "non-finite" if not value.is_finite else f"about {sp.Float(value, 4)}"
        raise ValueError(
            f"{where} ({short_text(expr)}) contains the constant {short_text(constant)}, {size}, which is beyond "
            f"the float64 range (largest {_FLOAT_MAX:.3g}) and would compile to inf. Rescale the equation "
            "(nondimensionalise) or move the magnitude into a parameter."
        )


def numeric_constants(expr: sp.Expr) -> sp.Expr:
    """Evaluate symbol-free subexpressions (``sqrt(2)``, ``pi``, ``1/3``) to floats, keeping integer powers.

    Parameters
    ----------
    expr
        A SymPy expression (or a Python number). Text is refused: parse it with
        :func:`~physnode.physics.parse_expression` first.
    """
    return as_expression(expr, "numeric_constants' argument").evalf(_NUMERIC_PRECISION)


def _cse_cost(exprs: Sequence[sp.Expr]) -> int:
    """Number of operations left after common-subexpression elimination (a proxy for the number of kernels)."""
    if not exprs:
        return 0
    reps, reduced = sp.cse(list(exprs))
    return sum(sp.count_ops(r) for _, r in reps) + sum(sp.count_ops(e) for e in reduced)


def _column_spec(indices: list[int]) -> slice | list[int]:
    """A view-producing slice when ``indices`` is an arithmetic progression, else the index list."""
    if len(indices) == 1:
        return slice(indices[0], indices[0] + 1)
    step = indices[1] - indices[0]
    if step > 0 and all(b - a == step for a, b in itertools.pairwise(indices)):
        return slice(indices[0], indices[-1] + 1, step)
    return indices


class _Group:
    """Components that share one expression template up to which state columns they read: evaluated once on
    ``(..., width)`` column blocks instead of ``width`` times on single columns."""

    def __init__(self, template: sp.Expr, placeholders: list[sp.Symbol], columns: list[list[int]], args: list) -> None:
        self.width = len(columns[0]) if columns else 0
        self.specs = [_column_spec(c) for c in columns]
        self.function = sp.lambdify([args[0], *placeholders, *args[1:]], [template], modules=_MODULES, cse=True)


_MODULES = [_EXTRA_MODULE, "torch"]


def _affine_parts(expr: sp.Expr, states: frozenset[sp.Symbol]) -> tuple[dict[sp.Symbol, sp.Expr], sp.Expr] | None:
    """``({x_j: a_j}, c)`` with ``expr == Σ a_j x_j + c`` when ``expr`` is affine in the ``states`` *as written*.

    Decided on the unexpanded tree: sums of affine terms, products of one affine factor with state-free factors,
    and state-free subexpressions are affine; anything else that involves a state (a power, a function, a product
    of two state factors) returns ``None``. Nothing is expanded, so the cost is linear in the size of ``expr``;
    an affine expression written in a non-affine form (``x*(y + 1) - x*y``) is merely compiled by the generic path.
    """
    if not (expr.free_symbols & states):
        return {}, expr
    if expr in states:
        return {expr: sp.S.One}, sp.S.Zero
    if isinstance(expr, sp.Add):
        coeffs: dict[sp.Symbol, list[sp.Expr]] = {}
        offsets: list[sp.Expr] = []
        for arg in expr.args:
            part = _affine_parts(arg, states)
            if part is None:
                return None
            for x, a in part[0].items():
                coeffs.setdefault(x, []).append(a)
            offsets.append(part[1])
        return {x: sp.Add(*a) for x, a in coeffs.items()}, sp.Add(*offsets)
    if isinstance(expr, sp.Mul):
        dependent = [a for a in expr.args if a.free_symbols & states]
        if len(dependent) != 1:
            return None
        part = _affine_parts(dependent[0], states)
        if part is None:
            return None
        factor = sp.Mul(*(a for a in expr.args if a is not dependent[0]))
        return {x: factor * a for x, a in part[0].items()}, factor * part[1]
    return None


_OBVIOUS_GROUPING = 200
"""Above this many components, a grouping that covers half of them (four or more per template) is used without
comparing operation counts."""

_DENSE_LIMIT = 1 << 16
"""Largest ``n_out * n_state`` evaluated as a dense matrix product when ``A`` is mostly zero."""


class _LinearPlan:
    """Right-hand sides affine in the state with time-independent coefficients: ``f = y @ A(θ)ᵀ + c(t, θ)``.

    Harmonic chains, linear oscillators and linearised models compile to one matrix product instead of one kernel
    per component: the non-constant entries of ``A`` (functions of the parameters only) are evaluated by one
    generated function and written into a constant template of ``A``. A large sparse ``A`` (more than
    ``_DENSE_LIMIT`` entries, under one in sixteen nonzero) is applied as a gather of the used state columns and
    an ``index_add`` into the output rows, so memory and work scale with the number of nonzero entries.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        rows: list[int],
        cols: list[int],
        const: list[float],
        variable: list[int],
        entries,
        offset,
        static: bool,
    ) -> None:
        self.shape = shape
        self.rows = rows
        self.cols = cols
        self.const = const
        self.variable = variable
        self.entries = entries
        self.offset = offset
        self.offset_static = static
        self.sparse = shape[0] * shape[1] > _DENSE_LIMIT and 16 * len(rows) < shape[0] * shape[1]
        self._cache: dict[tuple, tuple[Tensor, ...]] = {}

    @classmethod
    def build(
        cls, exprs: list[sp.Expr], state: list[sp.Symbol], params: list[sp.Symbol], time: sp.Symbol
    ) -> _LinearPlan | None:
        if not state or not exprs:
            return None
        states = frozenset(state)
        column = {x: j for j, x in enumerate(state)}
        rows: list[int] = []
        cols: list[int] = []
        const: list[float] = []
        variable: list[int] = []  # positions (in rows/cols) of the parameter-dependent entries
        values: list[sp.Expr] = []
        offsets: list[sp.Expr] = []
        for i, e in enumerate(exprs):
            try:
                part = _affine_parts(e, states)
            except RecursionError:
                return None
            if part is None:
                return None
            coeffs, offset = part
            for x in sorted(coeffs, key=column.__getitem__):
                c = coeffs[x]
                if c.free_symbols & (states | {time}):
                    return None
                if c == 0:
                    continue
                rows.append(i)
                cols.append(column[x])
                if c.free_symbols:
                    variable.append(len(const))
                    values.append(c)
                    const.append(0.0)
                else:
                    const.append(float(c))
            offsets.append(offset)
        entries = sp.lambdify([*params], values, modules=_MODULES, cse=True) if values else None
        has_offset = any(o != 0 for o in offsets)
        static = not any(o.free_symbols & {time} for o in offsets)
        if not has_offset:
            offset = None
        elif all(o.is_number for o in offsets):  # constant offsets (e.g. a constant mass matrix): no generated code
            offset = [float(o) for o in offsets]
        else:
            offset = sp.lambdify([time, *params], offsets, modules=_MODULES, cse=True)
        return cls((len(exprs), len(state)), rows, cols, const, variable, entries, offset, static)

    def _tensors(self, y: Tensor) -> tuple[Tensor, ...]:
        key = (y.dtype, y.device)
        if key not in self._cache:
            long = {"dtype": torch.long, "device": y.device}
            self._cache[key] = (
                torch.tensor(self.const, dtype=y.dtype, device=y.device),
                torch.tensor(self.variable, **long),
                torch.tensor(self.rows, **long),
                torch.tensor(self.cols, **long),
                torch.tensor([r * self.shape[1] + c for r, c in zip(self.rows, self.cols, strict=True)], **long),
            )
        return self._cache[key]

    def __call__(self, t: Tensor, y: Tensor, params: Sequence[Tensor]) -> Tensor:
        const, variable, rows, cols, flat = self._tensors(y)
        if self.entries is not None:
            values = [v if isinstance(v, Tensor) else const.new_tensor(float(v)) for v in self.entries(*params)]
            nonzero = const.index_put((variable,), torch.stack(values).to(y.dtype))
        else:
            nonzero = const
        if self.sparse:
            out = y.new_zeros((*y.shape[:-1], self.shape[0])).index_add(-1, rows, y[..., cols] * nonzero)
        elif self.entries is None:  # a constant matrix: built once per dtype and device
            key = ("dense", y.dtype, y.device)
            if key not in self._cache:
                a = const.new_zeros(self.shape[0] * self.shape[1]).index_put((flat,), const)
                self._cache[key] = (a.view(self.shape).T.contiguous(),)
            out = y @ self._cache[key][0]
        else:
            a = nonzero.new_zeros(self.shape[0] * self.shape[1]).index_put((flat,), nonzero)
            out = y @ a.view(self.shape).T
        if isinstance(self.offset, list):
            key = ("offset", y.dtype, y.device)
            if key not in self._cache:
                self._cache[key] = (torch.tensor(self.offset, dtype=y.dtype, device=y.device),)
            out = out + self._cache[key][0]
        elif self.offset is not None:
            c = self.offset(t if not self.offset_static else const.new_zeros(()), *params)
            out = out + CompiledComponents._stack(list(c), out).to(y.dtype)
        return out


def _check_symbols(
    state: Sequence[sp.Symbol], params: Sequence[sp.Symbol], time: sp.Symbol, where: str
) -> dict[str, sp.Symbol]:
    """Check the argument symbols (SymPy symbols with distinct names); return them by name."""
    if not isinstance(time, sp.Symbol):
        raise TypeError(f"{where}: time must be a sympy.Symbol, got {type(time).__name__}.")
    by_name: dict[str, sp.Symbol] = {}
    for kind, group in (("state", state), ("params", params)):
        if isinstance(group, (str, sp.Basic)) or not isinstance(group, Sequence):
            raise TypeError(f"{where}: {kind} must be a list of sympy.Symbol, got {type(group).__name__}.")
        for s in group:
            if not isinstance(s, sp.Symbol):
                raise TypeError(f"{where}: {kind} must hold sympy.Symbol objects, got {type(s).__name__} {s!r}.")
    for s in [time, *state, *params]:
        key = unicodedata.normalize("NFKC", s.name)
        if key in by_name:
            raise ValueError(
                f"{where}: the symbols {by_name[key].name!r} and {s.name!r} have the same name (after Unicode NFKC "
                "normalisation, as Python reads identifiers); give every state variable, parameter and the time "
                "a distinct name."
            )
        if not key.isidentifier() or keyword.iskeyword(key):
            raise ValueError(f"{where}: symbol name {s.name!r} is not a Python identifier; rename it (e.g. 'x1').")
        by_name[key] = s
    return by_name


class CompiledComponents:
    """A list of scalar expressions compiled into ``f(t, y, params) -> (..., n)``.

    Built once; each call evaluates the generated code on the columns of ``y`` and stacks the components.

    Parameters
    ----------
    exprs
        The ``n`` component expressions.
    state
        The state symbols, in the order of the last axis of ``y``.
    params
        The parameter symbols, in the order of the ``params`` sequence passed at call time.
    time
        The time symbol.
    where
        Description of the expressions for error messages.
    """

    def __init__(
        self,
        exprs: Sequence[sp.Expr],
        state: Sequence[sp.Symbol],
        params: Sequence[sp.Symbol],
        time: sp.Symbol,
        where: str = "the expressions",
    ) -> None:
        if isinstance(exprs, (str, sp.Basic)) or not isinstance(exprs, Sequence):
            raise TypeError(
                f"{where}: exprs must be a list of SymPy expressions (one per output component), got "
                f"{type(exprs).__name__}."
            )
        symbols = _check_symbols(state, params, time, where)
        exprs = [self._expression(e, symbols, f"{where} (component {i})") for i, e in enumerate(exprs)]
        for i, e in enumerate(exprs):
            check_supported(e, f"{where} (component {i})")
        allowed = {time, *state, *params}
        for i, e in enumerate(exprs):
            unknown = e.free_symbols - allowed
            if unknown:
                names = ", ".join(sorted(str(s) for s in unknown))
                raise ValueError(
                    f"{where} (component {i}: {short_text(e)}) uses undeclared symbols {names}; declare them as "
                    "state variables or parameters (params={'name': Param(...)} or a number)."
                )
        self.exprs = [numeric_constants(e) for e in exprs]
        self.n_state = len(state)
        self.n_out = len(self.exprs)
        dynamic = {time, *state}
        #: Indices of components that do not depend on the state or time and need broadcasting.
        self.static = [i for i, e in enumerate(self.exprs) if not (e.free_symbols & dynamic)]
        self._arguments = [time, *state, *params]
        self._function = None
        self.groups: list[tuple[_Group, list[int]]] = []
        self.rest: list[int] = []
        self.linear = _LinearPlan.build(self.exprs, list(state), list(params), time)
        if self.linear is None:
            self._plan_vectorised(list(state), list(params), time)

    @staticmethod
    def _expression(value: object, symbols: dict[str, sp.Symbol], where: str) -> sp.Expr:
        """A component as a SymPy expression; text is parsed with the safe parser over the declared symbols."""
        if isinstance(value, str):
            from .parse import parse_expression

            return parse_expression(value, symbols)
        return as_expression(value, where)

    @property
    def function(self):
        """The component-wise generated function ``f(t, *state, *params) -> list``, built on first use."""
        if self._function is None:
            self._function = sp.lambdify(self._arguments, self.exprs, modules=_MODULES, cse=True)
        return self._function

    def _plan_vectorised(self, state: list[sp.Symbol], params: list[sp.Symbol], time: sp.Symbol) -> None:
        """Group components with equal templates (e.g. the interior of a chain) into column-block evaluations,
        when the operation count says it is cheaper than the component-wise code."""
        index = {s: i for i, s in enumerate(state)}
        by_template: dict[sp.Expr, list[tuple[int, list[int]]]] = {}
        placeholders_of: dict[sp.Expr, list[sp.Symbol]] = {}
        for i, e in enumerate(self.exprs):
            if i in self.static:
                continue
            used = sorted((s for s in e.free_symbols if s in index), key=index.__getitem__)
            ph = [sp.Symbol(f"_col{j}", real=True) for j in range(len(used))]
            template = e.xreplace(dict(zip(used, ph, strict=True)))
            by_template.setdefault(template, []).append((i, [index[s] for s in used]))
            placeholders_of[template] = ph
        grouped = {tpl: members for tpl, members in by_template.items() if len(members) > 1 and placeholders_of[tpl]}
        if not grouped:
            return
        in_group = {i for members in grouped.values() for i, _ in members}
        rest = [i for i in range(self.n_out) if i not in in_group]
        n_columns = sum(len(placeholders_of[tpl]) for tpl in grouped)
        # Large systems mostly made of a few repeated templates are grouped without the estimate: common-
        # subexpression elimination of every component costs seconds there, and the grouped code is far smaller.
        covered = len(in_group)
        obvious = self.n_out > _OBVIOUS_GROUPING and covered >= 4 * len(grouped) and 2 * covered >= self.n_out
        if not obvious:
            cost_grouped = sum(_cse_cost([tpl]) for tpl in grouped) + _cse_cost([self.exprs[i] for i in rest])
            cost_grouped += n_columns + len(grouped)  # column-block views and block writes
            if cost_grouped >= _cse_cost(self.exprs):
                return
        for tpl, members in grouped.items():
            columns = [[cols[j] for _, cols in members] for j in range(len(placeholders_of[tpl]))]
            group = _Group(tpl, placeholders_of[tpl], columns, [time, *params])
            self.groups.append((group, [i for i, _ in members]))
        self.rest = rest
        rest_exprs = [self.exprs[i] for i in rest]
        used = set().union(*(e.free_symbols for e in rest_exprs)) if rest_exprs else set()
        self.rest_columns = [i for i, sym in enumerate(state) if sym in used]
        self.rest_function = sp.lambdify(
            [time, *(state[i] for i in self.rest_columns), *params], rest_exprs, modules=_MODULES, cse=True
        )
        self.group_targets = [_column_spec(members) for _, members in self.groups]

    def __call__(self, t: Tensor, y: Tensor, params: Sequence[Tensor]) -> Tensor:
        """Evaluate the components.

        Parameters
        ----------
        t
            Time, broadcastable to ``y.shape[:-1]``.
        y
            State, ``(..., n_state)``.
        params
            Parameter values (0-d tensors), in the order of the ``params`` symbols.

        Returns
        -------
        Tensor
            ``(..., n_out)``.
        """
        if y.shape[-1] != self.n_state:
            raise ValueError(f"expected a state with {self.n_state} components on its last axis, got {tuple(y.shape)}.")
        shape = y.shape[:-1]
        if self.linear is not None:
            return self.linear(t, y, params)
        if not self.groups:
            return self._stack(self.function(t, *y.unbind(-1), *params), y)
        # Vectorised plan: each group fills a block of columns of a fresh output (slice assignment is recorded by
        # autograd), the remaining components fill their own columns.
        t_col = t.unsqueeze(-1) if t.ndim else t
        out = torch.empty((*shape, self.n_out), dtype=y.dtype, device=y.device)
        for (group, _), target in zip(self.groups, self.group_targets, strict=True):
            (o,) = group.function(t_col, *(y[..., spec] for spec in group.specs), *params)
            out[..., target] = o
        if self.rest:
            values = self.rest_function(t, *(y[..., i] for i in self.rest_columns), *params)
            for i, o in zip(self.rest, values, strict=True):
                out[..., i] = o
        return out

    @staticmethod
    def _stack(out: list, y: Tensor) -> Tensor:
        shape = y.shape[:-1]
        for i, o in enumerate(out):
            if not isinstance(o, Tensor):
                out[i] = torch.full(shape, float(o), dtype=y.dtype, device=y.device)
            elif o.shape != shape:
                out[i] = o.to(y.dtype).expand(shape)
        return torch.stack(out, dim=-1)
