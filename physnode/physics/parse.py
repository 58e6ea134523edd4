"""Safe parsing of expressions from text (config files, command line) into SymPy.

The text is parsed with Python's :mod:`ast` and the tree is walked with a whitelist: numbers, declared names,
a fixed set of math functions and constants, ``+ - * / **`` and unary ``+ -``. The SymPy expression is built
node by node, so user text is never passed to ``eval`` or ``sympify``. Anything else (attribute access,
subscripts, lambdas, comprehensions, keyword arguments, strings, very long or deeply nested input, huge
numeric powers) raises a ``ValueError`` that says what was found and what is allowed.

The work is bounded so that any text of at most :data:`MAX_EXPRESSION_LENGTH` characters is parsed in
milliseconds: at most :data:`MAX_EXPRESSION_NODES` syntax-tree nodes, nesting at most 100 levels (a long sum or
product ``a + b + c + ...`` counts as one level), numeric exponents at most :data:`MAX_EXPONENT` in magnitude
(``(x + 1)**30000`` is refused: SymPy would spend minutes on it in later steps), and no number literal beyond the
float64 range.
"""

from __future__ import annotations

import ast
import keyword
import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping

import sympy as sp
from sympy.printing.str import StrPrinter

from .compile import canonical_symbol

__all__ = [
    "FUNCTIONS",
    "MAX_EXPONENT",
    "MAX_EXPRESSION_LENGTH",
    "MAX_EXPRESSION_NODES",
    "check_expression_size",
    "expression_text",
    "parse_expression",
]

MAX_EXPRESSION_LENGTH = 4000
"""Longest accepted expression text, in characters."""

MAX_EXPRESSION_NODES = 5000
"""Largest accepted expression, in syntax-tree nodes (text) or SymPy tree nodes (expressions given directly)."""

MAX_EXPONENT = 1000
"""Largest accepted magnitude of a numeric exponent (``x**1000`` is accepted, ``x**1001`` is not)."""

_MAX_DEPTH = 100
_MAX_NUMERIC_EXPONENT = MAX_EXPONENT
_MAX_LISTED_NAMES = 20

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
RESERVED_NAMES: tuple[str, ...] = (*FUNCTIONS, *_CONSTANTS)
"""Names that text expressions read as functions or constants, so they cannot name variables."""

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


def _exponent_too_large(exponent: sp.Expr) -> bool:
    """Whether a numeric exponent exceeds :data:`MAX_EXPONENT` in magnitude (symbolic exponents never do)."""
    if not exponent.is_number:
        return False
    size = sp.Abs(exponent).evalf(15)
    return bool(size.is_Number and (not size.is_finite or size > MAX_EXPONENT))


def _exponent_message(exponent: sp.Expr) -> str:
    text = str(exponent)
    text = text if len(text) <= 30 else f"{text[:12]}…({len(text)} characters)"
    return (
        f"a power with the exponent {text}, above the limit |exponent| <= {MAX_EXPONENT} (SymPy's later steps "
        "would take minutes on it); rescale the variable or write the power another way, e.g. exp(n*log(x))"
    )


class _Builder:
    def __init__(self, text: str, names: Mapping[str, sp.Expr]) -> None:
        self.text = text
        self.names = names

    def _allowed_names(self) -> str:
        names = sorted(self.names)
        if not names:
            return "none"
        if len(names) > _MAX_LISTED_NAMES:
            return f"{', '.join(names[:_MAX_LISTED_NAMES])}, … ({len(names)} in all)"
        return ", ".join(names)

    def fail(self, node: ast.AST, what: str) -> ValueError:
        col = getattr(node, "col_offset", None)
        at = f" at column {col}" if col is not None else ""
        return ValueError(
            f"cannot parse expression {self.text[:80]!r}: {what}{at} is not allowed. Allowed: numbers, the declared "
            f"names ({self._allowed_names()}), constants pi and E, the functions "
            f"{', '.join(sorted(FUNCTIONS))}, + - * / ** and unary minus."
        )

    def too_large(self, node: ast.AST, exponent: sp.Expr) -> ValueError:
        return ValueError(
            f"cannot parse expression {self.text[:80]!r}: it contains {_exponent_message(exponent)} (at column "
            f"{getattr(node, 'col_offset', '?')})."
        )

    def _chain(self, node: ast.expr, family: tuple[type, ...]) -> tuple[ast.AST, list[tuple[ast.operator, ast.AST]]]:
        """The left-deep chain ``a op b op c ...`` of one operator family, as its first operand and the rest."""
        rest: list[tuple[ast.operator, ast.AST]] = []
        while isinstance(node, ast.BinOp) and isinstance(node.op, family):
            rest.append((node.op, node.right))
            node = node.left
        rest.reverse()
        return node, rest

    def build(self, node: ast.AST, depth: int = 0) -> sp.Expr:
        if depth > _MAX_DEPTH:
            raise ValueError(f"expression {self.text[:80]!r} is nested more than {_MAX_DEPTH} levels deep.")
        if isinstance(node, ast.Expression):
            return self.build(node.body, depth + 1)
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self.fail(node, f"the literal {v!r}")
            if abs(v) > sys.float_info.max:
                literal = ast.get_source_segment(self.text.strip(), node) or repr(v)
                literal = literal if len(literal) <= 30 else f"{literal[:12]}…({len(literal)} digits)"
                raise ValueError(
                    f"cannot parse expression {self.text[:80]!r}: the number {literal} is beyond the float64 range "
                    f"(largest {sys.float_info.max:.3g}) and would compile to inf. Rescale the equation "
                    "(nondimensionalise) or move the magnitude into a parameter."
                )
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
            if isinstance(node.op, (ast.Add, ast.Sub)):
                first, rest = self._chain(node, (ast.Add, ast.Sub))
                terms = [self.build(first, depth + 1)]
                terms += [self.build(r, depth + 1) * (1 if isinstance(op, ast.Add) else -1) for op, r in rest]
                return sp.Add(*terms)
            if isinstance(node.op, (ast.Mult, ast.Div)):
                first, rest = self._chain(node, (ast.Mult, ast.Div))
                factors = [self.build(first, depth + 1)]
                factors += [self.build(r, depth + 1) ** (1 if isinstance(op, ast.Mult) else -1) for op, r in rest]
                return sp.Mul(*factors)
            left = self.build(node.left, depth + 1)
            right = self.build(node.right, depth + 1)
            if isinstance(node.op, ast.Pow):
                if left.is_number and right.is_number:
                    _check_numeric_power(self, node, left, right)
                elif _exponent_too_large(right):
                    raise self.too_large(node, right)
                result = left**right
                if isinstance(result, sp.Pow) and not result.is_number and _exponent_too_large(result.exp):
                    raise self.too_large(node, result.exp)  # (x**30)**50 combines to x**1500
                return result
            raise self.fail(node, f"the operator {type(node.op).__name__}")
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


def check_expression_size(expr: sp.Basic, where: str) -> None:
    """Refuse a SymPy expression with more than :data:`MAX_EXPRESSION_NODES` nodes or an exponent above
    :data:`MAX_EXPONENT`: the same budget as for text, so later symbolic steps (derivatives, compilation) stay fast.

    Parameters
    ----------
    expr
        The expression.
    where
        What it is, for the message (e.g. ``"the Hamiltonian H"``).
    """
    count = 0
    for sub in sp.preorder_traversal(expr):
        count += 1
        if count > MAX_EXPRESSION_NODES:
            raise ValueError(
                f"{where} has more than {MAX_EXPRESSION_NODES} nodes; split it into smaller parts (e.g. several "
                "state variables) or simplify it before building the model."
            )
        if isinstance(sub, sp.Pow) and not sub.is_number and _exponent_too_large(sub.exp):
            raise ValueError(f"{where} contains {_exponent_message(sub.exp)}.")


def _declared_names(symbols: object) -> dict[str, sp.Expr]:
    """Validate the declared names (identifiers in NFKC form, no keywords, no built-ins) and map them to SymPy."""
    if isinstance(symbols, Mapping):
        names = {}
        for name, value in symbols.items():
            if not isinstance(value, sp.Expr):
                raise TypeError(
                    f"symbols must map names to SymPy expressions (usually symbols), got {type(value).__name__} "
                    f"{value!r} for {name!r}."
                )
            names[name] = value
    elif isinstance(symbols, (str, bytes)) or not isinstance(symbols, Iterable):
        raise TypeError(
            f"symbols must be a list of names (e.g. ['x', 'k']) or a dict name -> sympy.Symbol, got "
            f"{type(symbols).__name__} {symbols!r}."
        )
    else:
        names = {}
        for s in symbols:
            if isinstance(s, sp.Symbol):
                name, value = s.name, s
            elif isinstance(s, str):
                name, value = s, None
            else:
                raise TypeError(f"symbols must be names or sympy.Symbol objects, got {type(s).__name__}.")
            if name in names:
                raise ValueError(f"declared name {name!r} is given twice.")
            names[name] = value
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"declared name {name!r} must be an identifier not starting with '_'.")
        if keyword.iskeyword(name):
            raise ValueError(f"declared name {name!r} is a Python keyword; rename it (e.g. {name + '_'!r}).")
        if name in FUNCTIONS or name in _CONSTANTS:
            raise ValueError(f"declared name {name!r} shadows a built-in function or constant; rename it.")
        normal = unicodedata.normalize("NFKC", name)
        if normal in seen:
            raise ValueError(
                f"declared names {seen[normal]!r} and {name!r} are the same name once Unicode-normalised (NFKC), "
                "as Python reads identifiers; rename one."
            )
        if normal != name:
            raise ValueError(
                f"declared name {name!r} is read as {normal!r} in expressions (Unicode NFKC normalisation, as "
                f"Python reads identifiers); write {normal!r}."
            )
        seen[normal] = name
    return {name: canonical_symbol(name) if value is None else value for name, value in names.items()}


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
        For anything outside the whitelist, syntax errors, empty text, too long, too large or too deeply nested
        text, exponents above :data:`MAX_EXPONENT`, numbers beyond the float64 range, and declared names that are
        keywords, built-in names or not in Unicode NFKC form.
    TypeError
        When ``text`` is not a string or ``symbols`` is neither a list of names nor a mapping to SymPy expressions.

    Examples
    --------
    >>> parse_expression("-k*sin(theta)", ["k", "theta"])
    -k*sin(theta)
    """
    if not isinstance(text, str):
        raise TypeError(f"expression text must be a string, got {type(text).__name__}.")
    return parse_declared(text, _declared_names(symbols))


def _count_nodes(tree: ast.AST) -> int:
    """Number of nodes of a syntax tree (``ast.walk`` imports at call time, which the tests forbid)."""
    count, stack = 0, [tree]
    while stack:
        node = stack.pop()
        count += 1
        stack.extend(ast.iter_child_nodes(node))
    return count


def parse_declared(text: str, names: Mapping[str, sp.Expr]) -> sp.Expr:
    """:func:`parse_expression` over names already validated (a model's symbol table): no per-call name checks,
    so building a model with thousands of state variables stays linear in their number."""
    if not isinstance(text, str):
        raise TypeError(f"expression text must be a string, got {type(text).__name__}.")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ValueError(
            f"expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_LENGTH}. Split it into named "
            "parts or build it with SymPy directly."
        )
    if "\x00" in text:
        raise ValueError("expression text contains a NUL character.")
    if not text.strip():
        raise ValueError("expression text is empty; write the expression, e.g. '0' for a zero right-hand side.")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"cannot parse expression {text[:80]!r}: syntax error ({e.msg}).") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"expression {text[:80]!r} is nested too deeply to parse.") from None
    n_nodes = _count_nodes(tree)
    if n_nodes > MAX_EXPRESSION_NODES:
        raise ValueError(
            f"expression {text[:80]!r} has {n_nodes} syntax nodes; the limit is {MAX_EXPRESSION_NODES}. Split it "
            "into named parts."
        )
    try:
        return _Builder(text, names).build(tree)
    except RecursionError:
        raise ValueError(f"expression {text[:80]!r} is nested too deeply.") from None


class _TextPrinter(StrPrinter):
    """SymPy's text printer with floats written as Python's shortest exact ``repr`` (15 significant digits, the
    default, can lose the last bit of a float64 constant)."""

    def _print_Float(self, expr: sp.Float) -> str:
        value = float(expr)
        return repr(value) if value >= 0 else f"({value!r})"


def expression_text(expr: sp.Expr, names: Mapping[str, sp.Expr], where: str) -> str:
    """Text that :func:`parse_declared` reads back as exactly ``expr`` (the inverse of parsing, for saving models).

    Parameters
    ----------
    expr
        An expression over the symbols of ``names``.
    names
        The model's symbol table (name -> canonical symbol), as used to parse its text.
    where
        What the expression is, for the message (e.g. ``"the Hamiltonian H"``).

    Raises
    ------
    ValueError
        ``expr`` uses something the parser does not read (a function outside :data:`FUNCTIONS`, a derivative, a
        piecewise expression, ...), so it cannot be written as text.
    """
    text = _TextPrinter().doprint(expr)
    try:
        back = parse_declared(text, names)
    except ValueError as err:
        raise ValueError(f"{where} cannot be written as text that physnode parses back ({err})") from None
    if back != expr:
        raise ValueError(
            f"{where} cannot be written as text that physnode parses back exactly: {text[:80]!r} reads as "
            f"{str(back)[:80]!r}."
        )
    return text
