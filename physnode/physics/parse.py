"""Safe parsing of expressions from text (config files, command line) into SymPy.

The text is parsed with Python's :mod:`ast` and the tree is walked with a whitelist: numbers, declared names,
a fixed set of math functions and constants, ``+ - * / **`` and unary ``+ -``. The SymPy expression is built
node by node, so user text is never passed to ``eval`` or ``sympify``. Anything else (attribute access,
subscripts, lambdas, comprehensions, keyword arguments, strings, very long or deeply nested input, huge
numeric powers) raises a ``ValueError`` that says what was found and what is allowed.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping

import sympy as sp

from .compile import canonical_symbol

__all__ = ["FUNCTIONS", "MAX_EXPRESSION_LENGTH", "parse_expression"]

MAX_EXPRESSION_LENGTH = 4000
"""Longest accepted expression text, in characters."""

_MAX_DEPTH = 100
_MAX_NUMERIC_EXPONENT = 1000

FUNCTIONS: dict[str, Callable[..., sp.Expr]] = {
    "sin": sp.sin,
    "cos": sp.cos,
    "tan": sp.tan,
    "asin": sp.asin,
    "acos": sp.acos,
    "atan": sp.atan,
    "atan2": sp.atan2,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "tanh": sp.tanh,
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "Abs": sp.Abs,
    "abs": sp.Abs,
    "sign": sp.sign,
}
"""Functions allowed in text expressions, by name."""

_ARITY = {"atan2": 2}
_CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "E": sp.E}

_BINOPS: dict[type, Callable[[sp.Expr, sp.Expr], sp.Expr]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_SYMBOL_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


def _describe(node: ast.AST) -> str:
    kinds = {
        ast.Attribute: "attribute access (a.b)",
        ast.Subscript: "subscripts (a[i])",
        ast.Lambda: "lambda",
        ast.ListComp: "comprehensions",
        ast.GeneratorExp: "comprehensions",
        ast.SetComp: "comprehensions",
        ast.DictComp: "comprehensions",
        ast.Compare: "comparisons",
        ast.BoolOp: "boolean operators",
        ast.IfExp: "conditional expressions",
        ast.NamedExpr: "assignment expressions",
        ast.Starred: "starred arguments",
    }
    return kinds.get(type(node), type(node).__name__)


def _check_numeric_power(builder: _Builder, node: ast.AST, base: sp.Expr, exponent: sp.Expr) -> None:
    """Refuse numeric powers whose exact evaluation would be huge (``9**9**9`` would hang SymPy)."""
    e = abs(float(sp.Abs(exponent).evalf(15)))
    if e > _MAX_NUMERIC_EXPONENT:
        raise builder.fail(node, f"a numeric power with exponent {exponent} (limit {_MAX_NUMERIC_EXPONENT})")
    magnitude = float(sp.log(sp.Abs(base) + 1, 10).evalf(15))
    if magnitude * e > _MAX_NUMERIC_EXPONENT:
        raise builder.fail(node, f"a numeric power with about {magnitude * e:.3g} digits")


class _Builder:
    def __init__(self, text: str, names: Mapping[str, sp.Expr]) -> None:
        self.text = text
        self.names = names

    def fail(self, node: ast.AST, what: str) -> ValueError:
        col = getattr(node, "col_offset", None)
        at = f" at column {col}" if col is not None else ""
        return ValueError(
            f"cannot parse expression {self.text[:80]!r}: {what}{at} is not allowed. Allowed: numbers, the declared "
            f"names ({', '.join(sorted(self.names)) or 'none'}), constants pi and E, the functions "
            f"{', '.join(sorted(FUNCTIONS))}, + - * / ** and unary minus."
        )

    def build(self, node: ast.AST, depth: int = 0) -> sp.Expr:
        if depth > _MAX_DEPTH:
            raise ValueError(f"expression {self.text[:80]!r} is nested more than {_MAX_DEPTH} levels deep.")
        if isinstance(node, ast.Expression):
            return self.build(node.body, depth + 1)
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self.fail(node, f"the literal {v!r}")
            return sp.Integer(v) if isinstance(v, int) else sp.Float(v)
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            if node.id in FUNCTIONS:
                raise self.fail(node, f"the function name {node.id!r} without a call")
            raise self.fail(node, f"the undeclared name {node.id!r}")
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return -self.build(node.operand, depth + 1)
            if isinstance(node.op, ast.UAdd):
                return self.build(node.operand, depth + 1)
            raise self.fail(node, f"the unary operator {type(node.op).__name__}")
        if isinstance(node, ast.BinOp):
            left = self.build(node.left, depth + 1)
            right = self.build(node.right, depth + 1)
            if isinstance(node.op, ast.Pow):
                if left.is_number and right.is_number:
                    _check_numeric_power(self, node, left, right)
                return left**right
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise self.fail(node, f"the operator {type(node.op).__name__}")
            return op(left, right)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                callee = node.func.id if isinstance(node.func, ast.Name) else _describe(node.func)
                raise self.fail(node, f"a call of {callee!r}")
            if node.keywords:
                raise self.fail(node, "keyword arguments")
            name = node.func.id
            n_args = _ARITY.get(name, 1)
            if len(node.args) != n_args:
                raise ValueError(
                    f"cannot parse expression {self.text[:80]!r}: {name}() takes {n_args} argument(s), got "
                    f"{len(node.args)}."
                )
            args = [self.build(a, depth + 1) for a in node.args]
            return FUNCTIONS[name](*args)
        raise self.fail(node, _describe(node))


def parse_expression(text: str, symbols: Mapping[str, sp.Expr] | Iterable[str | sp.Symbol]) -> sp.Expr:
    """Parse ``text`` into a SymPy expression over the declared ``symbols``, without ``eval``.

    Parameters
    ----------
    text
        The expression, e.g. ``"p**2 / (2*m) + k*q**2/2"``; at most :data:`MAX_EXPRESSION_LENGTH` characters.
    symbols
        The names the expression may use: a mapping ``name -> SymPy expression`` (usually symbols), or an
        iterable of names / symbols (each becomes a real symbol of that name).

    Returns
    -------
    sympy.Expr

    Raises
    ------
    ValueError
        For anything outside the whitelist, syntax errors, too long or too deeply nested text.

    Examples
    --------
    >>> parse_expression("-k*sin(theta)", ["k", "theta"])
    -k*sin(theta)
    """
    if not isinstance(text, str):
        raise TypeError(f"expression text must be a string, got {type(text).__name__}.")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ValueError(
            f"expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_LENGTH}. Split it into named "
            "parts or build it with SymPy directly."
        )
    if "\x00" in text:
        raise ValueError("expression text contains a NUL character.")
    if isinstance(symbols, Mapping):
        names = dict(symbols)
    else:
        names = {}
        for s in symbols:
            if isinstance(s, sp.Symbol):
                names[s.name] = s
            elif isinstance(s, str):
                names[s] = canonical_symbol(s)
            else:
                raise TypeError(f"symbols must be names or sympy.Symbol objects, got {type(s).__name__}.")
    for name in names:
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"declared name {name!r} must be an identifier not starting with '_'.")
        if name in FUNCTIONS or name in _CONSTANTS:
            raise ValueError(f"declared name {name!r} shadows a built-in function or constant; rename it.")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"cannot parse expression {text[:80]!r}: syntax error ({e.msg}).") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"expression {text[:80]!r} is nested too deeply to parse.") from None
    try:
        return _Builder(text, names).build(tree)
    except RecursionError:
        raise ValueError(f"expression {text[:80]!r} is nested too deeply.") from None
