"""Compile lists of SymPy expressions into batched torch functions, once, with SymPy's own torch printer.

``sympy.lambdify(..., modules="torch", cse=True)`` prints a *list* of component expressions after common
subexpression elimination; the components are stacked with ``torch.stack`` so gradients flow to every input
(printing a ``Matrix`` would build a new tensor from Python numbers and detach them). Known gaps of the
printer are closed here:

* numeric subexpressions (``sqrt(2)``, ``exp(1)``) are evaluated to floats first, since the printer emits
  ``torch.sqrt(2)`` which fails on a Python number;
* ``Max`` / ``Min`` (printed as ``max`` / ``min``) and ``Heaviside`` are mapped to functions that accept any
  mix of tensors and numbers and any number of arguments;
* undefined functions (``f(x)``) and other objects without a torch equivalent raise a ``ValueError`` naming
  the offending subexpression, at construction time.

Right-hand sides that are affine in the state with coefficients independent of time (harmonic chains, linear
oscillators, forced linear systems) compile to one matrix product ``y @ A(θ)ᵀ + c(t, θ)`` instead of one kernel
per component. Components that do not depend on the state or time (constants, functions of the parameters only) are
broadcast to the batch shape, so every component is a ``(...,)`` tensor.
"""

from __future__ import annotations

import itertools
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
    raise ValueError("Max/Min/Heaviside of numbers only should have been folded at compile time.")


def _torch_max(*args: object) -> Tensor:
    like = _first_tensor(args)
    return reduce(torch.maximum, [_as_tensor_like(a, like) for a in args])


def _torch_min(*args: object) -> Tensor:
    like = _first_tensor(args)
    return reduce(torch.minimum, [_as_tensor_like(a, like) for a in args])


def _torch_heaviside(x: object, h0: object = 0.5) -> Tensor:
    like = _first_tensor([x, h0])
    return torch.heaviside(_as_tensor_like(x, like), _as_tensor_like(h0, like))


_EXTRA_MODULE = {"max": _torch_max, "min": _torch_min, "heaviside": _torch_heaviside}

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


def check_supported(expr: sp.Basic, where: str) -> None:
    """Raise ``ValueError`` when ``expr`` contains something the torch printer cannot compile.

    Parameters
    ----------
    expr
        Expression to check.
    where
        Human-readable location used in the message (e.g. ``"the Hamiltonian"``).
    """
    if not isinstance(expr, sp.Basic):
        raise TypeError(f"{where} must be a SymPy expression, got {type(expr).__name__}.")
    for sub in sp.preorder_traversal(expr):
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
        if sub.is_number and sub.is_real is False:
            raise ValueError(f"{where} contains the complex number {sub}; physnode compiles real expressions only.")


def numeric_constants(expr: sp.Expr) -> sp.Expr:
    """Evaluate symbol-free subexpressions (``sqrt(2)``, ``pi``, ``1/3``) to floats, keeping integer powers."""
    return sp.sympify(expr).evalf(_NUMERIC_PRECISION)


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


class _LinearPlan:
    """Right-hand sides affine in the state with time-independent coefficients: ``f = y @ A(θ)ᵀ + c(t, θ)``.

    Harmonic chains, linear oscillators and linearised models compile to one matrix product instead of one kernel
    per component: the non-constant entries of ``A`` (functions of the parameters only) are evaluated by one
    generated function and written into a constant template of ``A``.
    """

    def __init__(self, n_out: int, n_state: int, const: list[float], index: list[int], entries, offset, static: bool):
        self.shape = (n_out, n_state)
        self.const = const
        self.index = index
        self.entries = entries
        self.offset = offset
        self.offset_static = static
        self._cache: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}

    @classmethod
    def build(
        cls, exprs: list[sp.Expr], state: list[sp.Symbol], params: list[sp.Symbol], time: sp.Symbol
    ) -> _LinearPlan | None:
        if not state or not exprs:
            return None
        states = set(state)
        const: list[float] = []
        index: list[int] = []
        variable: list[sp.Expr] = []
        offsets: list[sp.Expr] = []
        zero = dict.fromkeys(state, sp.S.Zero)
        for i, e in enumerate(exprs):
            if not e.free_symbols & states:
                pass
            elif not e.is_polynomial(*state) or sp.Poly(e, *state).total_degree() > 1:
                return None
            for j, x in enumerate(state):
                c = sp.diff(e, x)
                if c.free_symbols & (states | {time}):
                    return None
                if c.free_symbols:
                    index.append(i * len(state) + j)
                    variable.append(c)
                    const.append(0.0)
                else:
                    const.append(float(c))
            offsets.append(sp.expand(e).xreplace(zero))
        entries = sp.lambdify([*params], variable, modules=_MODULES, cse=True) if variable else None
        has_offset = any(o != 0 for o in offsets)
        static = not any(o.free_symbols & {time} for o in offsets)
        offset = sp.lambdify([time, *params], offsets, modules=_MODULES, cse=True) if has_offset else None
        return cls(len(exprs), len(state), const, index, entries, offset, static)

    def __call__(self, t: Tensor, y: Tensor, params: Sequence[Tensor]) -> Tensor:
        key = (y.dtype, y.device)
        if key not in self._cache:
            self._cache[key] = (
                torch.tensor(self.const, dtype=y.dtype, device=y.device),
                torch.tensor(self.index, dtype=torch.long, device=y.device),
            )
        base, index = self._cache[key]
        if self.entries is not None:
            values = [v if isinstance(v, Tensor) else base.new_tensor(float(v)) for v in self.entries(*params)]
            a = base.index_put((index,), torch.stack(values).to(y.dtype))
        else:
            a = base
        out = y @ a.view(self.shape).T
        if self.offset is not None:
            c = self.offset(t if not self.offset_static else base.new_zeros(()), *params)
            out = out + CompiledComponents._stack(list(c), out).to(y.dtype)
        return out


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
        exprs = [sp.sympify(e) for e in exprs]
        for i, e in enumerate(exprs):
            check_supported(e, f"{where} (component {i})")
        allowed = {time, *state, *params}
        for i, e in enumerate(exprs):
            unknown = e.free_symbols - allowed
            if unknown:
                names = ", ".join(sorted(str(s) for s in unknown))
                raise ValueError(
                    f"{where} (component {i}: {e}) uses undeclared symbols {names}; declare them as state "
                    "variables or parameters (params={'name': Param(...)} or a number)."
                )
        self.exprs = [numeric_constants(e) for e in exprs]
        self.n_state = len(state)
        self.n_out = len(self.exprs)
        dynamic = {time, *state}
        #: Indices of components that do not depend on the state or time and need broadcasting.
        self.static = [i for i, e in enumerate(self.exprs) if not (e.free_symbols & dynamic)]
        self.function = sp.lambdify([time, *state, *params], self.exprs, modules=_MODULES, cse=True)
        self.groups: list[tuple[_Group, list[int]]] = []
        self.rest: list[int] = []
        self.linear = _LinearPlan.build(self.exprs, list(state), list(params), time)
        if self.linear is None:
            self._plan_vectorised(list(state), list(params), time)

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
