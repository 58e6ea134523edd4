"""Safe parsing, configs, printer gaps and Param validation."""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch
from physics_systems import kepler_ref

from physnode.physics import Hamiltonian, Lagrangian, Param, SymbolicODE, from_config, parse_expression

X, K = sp.Symbol("x", real=True), sp.Symbol("k", real=True)


def test_parse_builds_expected_expression() -> None:
    e = parse_expression("-k*sin(x)**2 + atan2(x, 2) / sqrt(x) - 3**2 + abs(x) + E + pi", ["x", "k"])
    expected = -K * sp.sin(X) ** 2 + sp.atan2(X, 2) / sp.sqrt(X) - 9 + sp.Abs(X) + sp.E + sp.pi
    assert sp.simplify(e - expected) == 0
    assert parse_expression("+x - -x", {"x": X}) == 2 * X
    assert parse_expression("1.5e-3 * x", ["x"]) == sp.Float(1.5e-3) * X


MALICIOUS = {
    "import": ("__import__('os').system('echo pwned')", "call of 'attribute access"),
    "import_direct": ("__import__('os')", "call of '__import__'"),
    "attribute": ("x.__class__", "attribute access"),
    "attribute_call": ("().__class__.__bases__[0].__subclasses__()", "call of 'attribute access"),
    "subscript": ("x[0]", "subscripts"),
    "lambda": ("(lambda: 1)()", "call of 'lambda'"),
    "comprehension": ("[c for c in 'ab']", "comprehensions"),
    "string": ("'a' * 3", "literal 'a'"),
    "keyword": ("sin(x=1)", "keyword arguments"),
    "unknown_name": ("os", "undeclared name 'os'"),
    "eval": ("eval('1')", "call of 'eval'"),
    "walrus": ("(y := 1)", "assignment expressions"),
    "compare": ("x < 1", "comparisons"),
    "floor_div": ("x // 2", "operator FloorDiv"),
    "bitwise": ("x ^ 2", "operator BitXor"),
    "statement": ("import os", "syntax error"),
    "complex": ("1j * x", "literal 1j"),
    "huge_power": ("9**9**9", "numeric power"),
    "big_power": ("(10**500)**10", "numeric power"),
    "too_long": ("x + " * 2000 + "x", "characters long"),
    "too_deep": ("sin(" * 150 + "x" + ")" * 150, "nested"),
    "too_deep_parser": ("-" * 3000 + "x", "nested"),
    "function_name_alone": ("sin", "without a call"),
    "wrong_arity": ("sin(x, x)", r"sin\(\) takes 1 argument"),
}


@pytest.mark.parametrize("key", list(MALICIOUS), ids=list(MALICIOUS))
def test_malicious_or_invalid_strings_raise(key: str) -> None:
    text, match = MALICIOUS[key]
    with pytest.raises(ValueError, match=match):
        parse_expression(text, ["x"])


def test_parse_never_executes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a string that would call a patched builtin raises without calling it."""
    calls = []
    monkeypatch.setattr("builtins.__import__", lambda *a, **k: calls.append(a))
    with pytest.raises(ValueError):
        parse_expression("__import__('os')", ["x"])
    assert calls == []


def test_declared_names_are_validated() -> None:
    with pytest.raises(ValueError, match="shadows a built-in function"):
        parse_expression("sin", ["sin"])
    with pytest.raises(ValueError, match="identifier not starting with '_'"):
        parse_expression("x", ["__x"])


def test_from_config_hamiltonian_matches_reference() -> None:
    cfg = {
        "kind": "hamiltonian",
        "coords": ["x", "y"],
        "momenta": ["px", "py"],
        "H": "(px**2 + py**2)/(2*m) - k*m/sqrt(x**2 + y**2)",
        "params": {"m": 0.8, "k": {"value": 1.5, "learnable": True, "positive": True, "units": "m^3/s^2"}},
    }
    model = from_config(cfg).double()
    assert isinstance(model, Hamiltonian)
    y = torch.randn(6, 4, dtype=torch.float64) + 0.5
    t = torch.zeros(6, dtype=torch.float64)
    torch.testing.assert_close(model(t, y), kepler_ref(t, y), rtol=1e-12, atol=1e-12)
    assert model.params["k"].learnable and model.params["k"].units == "m^3/s^2"
    assert not model.params["m"].learnable
    assert [n for n, p in model.named_parameters()] == ["params.k.raw"]


def test_from_config_ode_and_lagrangian() -> None:
    ode = from_config({"kind": "ode", "state": ["x"], "rhs": {"x": "-a*x"}, "params": {"a": {"value": 2.0}}})
    assert isinstance(ode, SymbolicODE)
    y = torch.tensor([[1.5]], dtype=torch.float64)
    torch.testing.assert_close(ode(torch.zeros(1), y), -2.0 * y)
    lag = from_config(
        {"kind": "lagrangian", "coords": ["q"], "velocities": ["v"], "L": "m*v**2/2 - k*q**2/2", "params": {"m": 2.0}}
        | {"params": {"m": 2.0, "k": {"value": 3.0, "bounds": [0.5, 10.0]}}}
    )
    assert isinstance(lag, Lagrangian)
    y = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(lag(torch.zeros(1), y), torch.tensor([[0.5, -1.5]], dtype=torch.float64))


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"kind": "magic"}, "unknown config kind"),
        ({"coords": ["q"]}, "needs 'kind'"),
        ({"kind": "hamiltonian", "coords": ["q"], "H": "q"}, r"missing \['momenta'\]"),
        ({"kind": "ode", "state": ["x"], "rhs": ["x"], "extra": 1}, r"unknown keys \['extra'\]"),
        ({"kind": "ode", "state": ["x"], "rhs": ["x"], "params": {"a": {"valu": 1}}}, "unknown keys"),
        ({"kind": "ode", "state": ["x"], "rhs": ["x"], "params": {"a": {"value": -1, "positive": True}}}, "positive"),
        ({"kind": "ode", "state": "x", "rhs": ["x"]}, "list of names"),
        ({"kind": "ode", "state": ["x"], "rhs": ["__import__('os')"]}, "not allowed"),
    ],
    ids=["kind", "no_kind", "missing", "extra", "param_key", "param_value", "state_type", "malicious"],
)
def test_from_config_errors(cfg: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        from_config(cfg)


# ------------------------------------------------------------------------------------------ printer gaps
def test_max_min_piecewise_compile() -> None:
    x, y = sp.symbols("x y", real=True)
    model = SymbolicODE(
        [sp.Max(x, y, 0.5), sp.Min(1, x), sp.Piecewise((x, x > 0), (y, True))], [x, y, "z"], {}
    ).double()
    s = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    out = model(torch.zeros(10, dtype=torch.float64), s)
    a, b = s[:, 0], s[:, 1]
    expected = torch.stack(
        [
            torch.maximum(torch.maximum(a, b), torch.tensor(0.5, dtype=torch.float64)),
            a.clamp(max=1),
            torch.where(a > 0, a, b),
        ],
        -1,
    )
    torch.testing.assert_close(out, expected)
    (g,) = torch.autograd.grad(out.sum(), s)
    assert torch.isfinite(g).all()


def test_printer_gaps_raise_clearly() -> None:
    x = sp.Symbol("x", real=True)
    with pytest.raises(ValueError, match="undefined function f"):
        SymbolicODE([sp.Function("f")(x)], [x])
    with pytest.raises(ValueError, match="unevaluated Derivative"):
        SymbolicODE([sp.Derivative(sp.sin(x), x)], [x])
    with pytest.raises(ValueError, match="cannot compile to torch"):
        SymbolicODE([sp.gamma(x)], [x])
    with pytest.raises(ValueError, match="complex number"):
        SymbolicODE([sp.I * x], [x])


# -------------------------------------------------------------------------------------- Param validation
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"value": 0.0, "positive": True}, ValueError, "strictly positive"),
        ({"value": -2.0, "positive": True}, ValueError, "strictly positive"),
        ({"value": 1.0, "bounds": (2.0, 1.0)}, ValueError, "lo < hi"),
        ({"value": 1.0, "bounds": (1.0, 1.0)}, ValueError, "lo < hi"),
        ({"value": 3.0, "bounds": (0.0, 2.0)}, ValueError, "strictly inside"),
        ({"value": 2.0, "bounds": (0.0, 2.0)}, ValueError, "strictly inside"),
        ({"value": 3.0, "bounds": (0.0, 2.0), "learnable": False}, ValueError, "outside its bounds"),
        ({"value": 1.0, "bounds": (-1.0, 2.0), "positive": True}, ValueError, "lo >= 0"),
        ({"value": 1.0, "bounds": (0.0, math.inf)}, ValueError, "finite"),
        ({"value": 1.0, "bounds": (0.0,)}, ValueError, "pair"),
        ({"value": math.nan}, ValueError, "finite"),
        ({"value": "1.0"}, TypeError, "must be a number"),
        ({"value": True}, TypeError, "must be a number"),
        ({"value": 1.0, "learnable": 1}, TypeError, "True or False"),
        ({"value": 1.0, "units": 3}, TypeError, "units must be a string"),
    ],
    ids=[
        "positive_zero",
        "positive_negative",
        "bounds_order",
        "bounds_equal",
        "outside",
        "on_bound",
        "const_outside",
        "positive_bounds",
        "inf_bounds",
        "bounds_shape",
        "nan",
        "string",
        "bool",
        "learnable_type",
        "units_type",
    ],
)
def test_param_validation(kwargs: dict, error: type, match: str) -> None:
    value = kwargs.pop("value")
    with pytest.raises(error, match=match):
        Param(value, **kwargs)


def test_param_maps_round_trip() -> None:
    for p, v in [
        (Param(2.5), 2.5),
        (Param(1e-6, positive=True), 1e-6),
        (Param(30.0, positive=True), 30.0),
        (Param(0.3, bounds=(-1.0, 1.0)), 0.3),
        (Param(4.0, learnable=False), 4.0),
    ]:
        assert abs(float(p().detach()) - v) <= 1e-12 * max(1.0, v)
    assert isinstance(Param(1.0).raw, torch.nn.Parameter)
    assert not isinstance(Param(1.0, learnable=False).raw, torch.nn.Parameter)
    assert "raw" in dict(Param(1.0, learnable=False).named_buffers())
