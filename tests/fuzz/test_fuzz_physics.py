"""Fuzz catalogue of the physics layer and the expression parser: bad inputs must fail fast with a clear error.

Each row is ``(id, build, expected exception type, message fragment)``; ``build`` constructs (and where useful
evaluates) the input. Every case runs under a time limit, so a hang or runaway symbolic work fails the case
instead of blocking the run. A second table lists inputs that are legal and must build and evaluate quickly.
Messages are checked by fragment (what was received / what is expected), never float outputs exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sympy as sp
import torch

from physnode.physics import (
    Hamiltonian,
    Hybrid,
    Lagrangian,
    NBodyGravity,
    Param,
    SymbolicODE,
    from_config,
    parse_expression,
)
from physnode.physics.base import canonicalize
from physnode.physics.compile import CompiledComponents, check_supported, numeric_constants

LIMIT_S = 10.0
"""Wall-clock limit of one case (the slowest legal case takes about a second on one core)."""

X, V = sp.Symbol("x", real=True), sp.Symbol("v", real=True)
T = sp.Symbol("t", real=True)


def _eval(model: torch.nn.Module) -> torch.Tensor:
    """One evaluation of ``model`` at a generic float64 state (positive components, away from singularities)."""
    model = model.double()
    y = 0.5 + torch.rand(3, model.state_dim, dtype=torch.float64)
    return model(torch.zeros(3, dtype=torch.float64), y)


def _ode(rhs: Any, state: Any = ("x",), params: Any = None, **kw: Any) -> Callable[[], object]:
    return lambda: SymbolicODE(rhs, list(state) if isinstance(state, tuple) else state, params, **kw)


def _cfg(**kw: Any) -> Callable[[], object]:
    base = {"kind": "ode", "state": ["x"], "rhs": ["-x"]}
    return lambda: from_config(base | kw)


def _chain(n: int) -> list[str]:
    return [f"x{i + 1} - x{i}" for i in range(n - 1)] + [f"-x{n - 1}"]


_PLUS = "+".join
EXPONENT = "exponent"
HUGE = "beyond the float64 range"

BAD: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    # --- runaway symbolic work (hangs before): refused by the exponent limit, or built without expansion
    ("pow_30000", _ode(["(x+1)**30000"]), ValueError, EXPONENT),
    ("pow_negative_30000", _ode(["(x+1)**-30000"]), ValueError, EXPONENT),
    ("pow_float_1e10", _ode(["(x+1)**1e10"]), ValueError, EXPONENT),
    ("pow_nested_combined", _ode(["(((x+1)**30)**30)**30"]), ValueError, EXPONENT),
    ("hamiltonian_pow_30000", lambda: Hamiltonian("p**2/2 + (q+1)**30000", ["q"], ["p"]), ValueError, EXPONENT),
    ("lagrangian_pow_30000", lambda: Lagrangian("q_dot**2/2 - (q+1)**30000", ["q"]), ValueError, EXPONENT),
    ("config_pow_30000", _cfg(state=["x", "v"], rhs={"x": "(x+v+1)**30000", "v": "x"}), ValueError, EXPONENT),
    ("sympy_pow_30000", _ode([(X + 1) ** 30000]), ValueError, EXPONENT),
    ("numeric_power_tower", lambda: parse_expression("9**9**9", ["x"]), ValueError, "numeric power"),
    ("numeric_power_digits", lambda: parse_expression("(10**500)**10", ["x"]), ValueError, "digits"),
    ("sympy_too_many_nodes", _ode([sp.Add(*(sp.sin(i * X) for i in range(1, 3000)))]), ValueError, "nodes"),
    ("text_too_many_nodes", _ode([_PLUS(["x"] * 1900)]), ValueError, "syntax nodes"),
    ("text_too_long", _ode([_PLUS(["(x+1)"] * 1500)]), ValueError, "characters long"),
    ("text_too_deep", _ode(["sin(" * 150 + "x" + ")" * 150]), ValueError, "nested"),
    (
        "lagrangian_derived_too_large",
        lambda: Lagrangian(
            f"({_PLUS(f'q{i}_dot**2' for i in range(40))})*{'*'.join(f'cos(q{i})' for i in range(40))}",
            [f"q{i}" for i in range(40)],
        ),
        ValueError,
        "Euler–Lagrange equations grow beyond",
    ),
    (
        "hamiltonian_derived_too_large",
        lambda: Hamiltonian(
            f"({_PLUS(f'p{i}**2' for i in range(60))})*{'*'.join(f'cos(q{i})' for i in range(60))}",
            [f"q{i}" for i in range(60)],
            [f"p{i}" for i in range(60)],
        ),
        ValueError,
        "Hamilton's equations grow beyond",
    ),
    ("nbody_huge", lambda: NBodyGravity(10**9), ValueError, "too large"),
    ("nbody_huge_dim", lambda: NBodyGravity(1000, dim=1000), ValueError, "n_bodies \\* dim"),
    # --- constants outside the float64 range (compiled to inf before)
    ("const_exp_1000", _ode(["exp(1000)*x"]), ValueError, r"constant exp\(1000\).*float64 range"),
    ("const_literal_401_digits", _ode(["1" + "0" * 400 + "*x"]), ValueError, r"401 digits\) is " + HUGE),
    ("const_float_literal_inf", _ode(["1e400*x"]), ValueError, r"number 1e400 is " + HUGE),
    ("const_power_10_400", _ode(["10**400*x"]), ValueError, "float64 range"),
    ("const_sympy_big_int", _ode([sp.Integer(10) ** 400 * X]), ValueError, "float64 range"),
    ("const_python_big_int", _ode([10**400]), ValueError, "float64 range"),
    ("const_in_hamiltonian", lambda: Hamiltonian("p**2/2 + exp(800)*q**2", ["q"], ["p"]), ValueError, "exp\\(800\\)"),
    ("const_sympy_oo", _ode([sp.oo * X]), ValueError, "non-finite number oo"),
    ("const_sympy_nan", _ode([sp.nan]), ValueError, "non-finite number nan"),
    ("const_float_nan", _ode([float("nan")]), ValueError, "non-finite"),
    ("const_division_by_zero", _ode(["x/0"]), ValueError, "division by zero"),
    ("const_log_zero", _ode(["log(0)*x"]), ValueError, "zoo"),
    ("const_complex_sqrt", _ode(["sqrt(-1)*x"]), ValueError, "complex number I"),
    ("param_value_huge_int", lambda: Param(10**400), ValueError, HUGE),
    # --- text must never reach sympify: refused or parsed safely, never executed
    (
        "numeric_constants_text",
        lambda: numeric_constants("__import__('os').getcwd()"),
        TypeError,
        "must be a SymPy expression, got the string",
    ),
    (
        "compiled_components_text",
        lambda: CompiledComponents(["__import__('os').getcwd()"], [X], [], T),
        ValueError,
        "call of 'attribute access",
    ),
    ("compiled_components_bare_string", lambda: CompiledComponents("x", [X], [], T), TypeError, "list of SymPy"),
    ("compiled_components_state_text", lambda: CompiledComponents(["x"], ["x"], [], T), TypeError, "sympy.Symbol"),
    ("check_supported_text", lambda: check_supported("x", "the test"), TypeError, "must be a SymPy expression"),
    ("canonicalize_list", lambda: canonicalize([1], {"x": X}, "the test"), TypeError, "SymPy expression"),
    ("dunder_name", lambda: parse_expression("__import__('os')", ["x"]), ValueError, "call of '__import__'"),
    # --- printer gaps and degenerate mechanics (raw torch / sympy errors before)
    ("duplicate_nfkc_state", _ode(["x", "x"], ("x", "\uff58")), ValueError, "'x' and the state variable 'ｘ'"),
    ("duplicate_nfkc_ligature", _ode(["x", "x"], ("\ufb01", "fi")), ValueError, "same name once Unicode"),
    ("duplicate_nfkc_param", _ode(["k*x"], ("x",), {"\uff4b": 1.0, "k": 2.0}), ValueError, "same name once"),
    ("non_nfkc_single_name", _ode(["-x"], ("\uff58",)), ValueError, "is read as 'x'"),
    ("compiled_duplicate_symbols", lambda: CompiledComponents([X], [X, sp.Symbol("x")], [], T), ValueError, "same"),
    ("lagrangian_missing_velocity", lambda: Lagrangian("q1_dot**2/2", ["q1", "q2"]), ValueError, "degenerate"),
    ("lagrangian_linear_in_velocity", lambda: Lagrangian("x*x_dot", ["x"]), ValueError, "mass matrix"),
    (
        "lagrangian_singular_mass_matrix",
        lambda: Lagrangian("(q1_dot + q2_dot)**2/2 - q1**2", ["q1", "q2"]),
        ValueError,
        r"degenerate: its mass matrix .*singular \(rank 1 < 2\)",
    ),
    ("lagrangian_zero_mass_matrix", lambda: Lagrangian("cos(q)", ["q"]), ValueError, "mass matrix"),
    # --- names: keywords, built-in functions and constants, collisions
    ("state_keyword", _ode(["x"], ("lambda",)), ValueError, "not keywords"),
    ("state_shadows_E", _ode(["E"], ("E",)), ValueError, "shadows the built-in"),
    ("state_shadows_sin", _ode(["sin"], ("sin",)), ValueError, "shadows the built-in"),
    ("param_shadows_pi", _ode(["pi*x"], ("x",), {"pi": 3.0}), ValueError, "shadows the built-in"),
    ("state_leading_underscore", _ode(["x"], ("_x",)), ValueError, "do not start with '_'"),
    ("state_not_identifier", _ode(["x"], ("1x",)), ValueError, "Python identifiers"),
    ("state_param_collision", _ode(["x"], ("x",), {"x": 1.0}), ValueError, "both as a parameter"),
    ("time_param_collision", _ode(["x"], ("x",), {"t": 1.0}), ValueError, "both as a parameter"),
    ("time_state_collision", _ode(["x"], ("t",)), ValueError, "is the time variable"),
    ("coordinate_momentum_same", lambda: Hamiltonian("q**2", ["q"], ["q"]), ValueError, "declared twice"),
    ("velocity_is_coordinate", lambda: Lagrangian("q_dot**2", ["q", "q_dot"]), ValueError, "declared twice"),
    ("param_name_module_attr", _ode(["x"], ("x",), {"update": 1.0}), ValueError, "clashes with an attribute"),
    ("param_name_int", _ode(["x"], ("x",), {1: 1.0}), TypeError, "given by name"),
    ("parse_declared_keyword", lambda: parse_expression("x", ["lambda"]), ValueError, "Python keyword"),
    ("parse_declared_twice", lambda: parse_expression("x", ["x", "x"]), ValueError, "given twice"),
    ("parse_declared_nfkc", lambda: parse_expression("x", ["x", "\uff58"]), ValueError, "same name once"),
    # --- wrong types and shapes
    ("rhs_none", _ode(None), TypeError, "rhs must be a list"),
    ("rhs_single_string", _ode("-x"), TypeError, "got the single expression"),
    ("rhs_mismatch", _ode(["x", "x"]), ValueError, "one expression per state variable"),
    ("rhs_empty_string", _ode([""]), ValueError, "expression text is empty"),
    ("rhs_whitespace", _ode(["   "]), ValueError, "expression text is empty"),
    ("rhs_bool", _ode([True]), TypeError, "truth value"),
    ("rhs_sympy_true", _ode([sp.true]), TypeError, "truth value"),
    ("rhs_sympy_relation", _ode([sp.Eq(X, 1)]), TypeError, "Equality"),
    ("rhs_matrix", _ode([sp.Matrix([1])]), TypeError, "SymPy expression or a number"),
    ("rhs_undefined_function", _ode([sp.Function("f")(X)]), ValueError, "undefined function f"),
    ("rhs_unsupported_function", _ode([sp.gamma(X)]), ValueError, "uses gamma"),
    ("rhs_unknown_symbol_text", _ode(["y"]), ValueError, "undeclared name 'y'"),
    ("rhs_unknown_symbol_sympy", _ode([sp.Symbol("y")]), ValueError, "undeclared symbol 'y'"),
    ("rhs_map_wrong_keys", _ode({"y": "x"}), ValueError, r"missing \['x'\], unknown \['y'\]"),
    ("state_none", _ode(["x"], None), TypeError, "list of names"),
    ("state_single_string", _ode(["x", "y"], "xy"), TypeError, r"write e.g. \['xy'\]"),
    ("state_empty", _ode([], []), ValueError, "at least one state variable"),
    ("state_int", _ode(["x"], [1]), TypeError, "by name"),
    ("params_list", _ode(["x"], ("x",), [1.0]), TypeError, "params must be a dict"),
    ("param_string_value", _ode(["k*x"], ("x",), {"k": "1"}), TypeError, "Param"),
    ("param_vector_in_symbolic", _ode(["k*x"], ("x",), {"k": Param([1.0, 2.0])}), ValueError, "scalar parameters"),
    ("param_empty", lambda: Param([]), ValueError, "at least one number"),
    ("param_nan", lambda: Param(float("nan")), ValueError, "finite"),
    ("param_ragged", lambda: Param([[1.0], [2.0, 3.0]]), TypeError, "list of numbers"),
    ("param_bounds_reversed", lambda: Param(1.0, bounds=(2.0, 0.0)), ValueError, "lo < hi"),
    ("hamiltonian_coords_string", lambda: Hamiltonian("p**2", "q", ["p"]), TypeError, "list of names"),
    ("hamiltonian_mismatch", lambda: Hamiltonian("p**2", ["q", "r"], ["p"]), ValueError, "one momentum per"),
    ("hamiltonian_empty", lambda: Hamiltonian("p**2", [], []), ValueError, "at least one coordinate"),
    ("hamiltonian_list_H", lambda: Hamiltonian(["q"], ["q"], ["p"]), TypeError, "SymPy expression"),
    ("lagrangian_none", lambda: Lagrangian(None, ["q"]), TypeError, "SymPy expression"),
    ("lagrangian_velocities_mismatch", lambda: Lagrangian("v**2", ["q"], velocities=["v", "w"]), ValueError, "one"),
    ("nbody_zero", lambda: NBodyGravity(0), ValueError, "positive integer"),
    ("nbody_string", lambda: NBodyGravity("3"), ValueError, "positive integer"),
    ("nbody_masses_shape", lambda: NBodyGravity(2, masses=[1.0]), ValueError, "masses must have shape"),
    ("nbody_negative_mass", lambda: NBodyGravity(2, masses=[1.0, -1.0]), ValueError, "non-negative"),
    ("nbody_softening_inf", lambda: NBodyGravity(2, softening=float("inf")), ValueError, "finite non-negative"),
    ("nbody_G_string", lambda: NBodyGravity(2, G="1"), TypeError, "parameter 'G'"),
    ("hybrid_not_physics", lambda: Hybrid(None, torch.nn.Linear(1, 1)), TypeError, "physnode.physics model"),
    ("parse_text_none", lambda: parse_expression(None, ["x"]), TypeError, "must be a string"),
    ("parse_symbols_string", lambda: parse_expression("x", "x"), TypeError, "list of names"),
    ("parse_symbols_none", lambda: parse_expression("x", None), TypeError, "list of names"),
    ("parse_symbols_mapping_to_text", lambda: parse_expression("x", {"x": "os"}), TypeError, "SymPy expressions"),
    ("parse_complex_literal", lambda: parse_expression("1j*x", ["x"]), ValueError, "literal 1j"),
    ("parse_keyword_argument", lambda: parse_expression("sin(x=1)", ["x"]), ValueError, "keyword arguments"),
    ("parse_wrong_arity", lambda: parse_expression("atan2(x)", ["x"]), ValueError, "takes 2 argument"),
    ("param_set_nan", lambda: Param(1.0, positive=True).set_(float("nan")), ValueError, "finite"),
    ("param_set_negative", lambda: Param(1.0, positive=True).set_(-1.0), ValueError, "> 0"),
    ("param_set_outside_bounds", lambda: Param(1.0, bounds=(0.0, 2.0)).set_(3.0), ValueError, "inside the bounds"),
    ("param_complex_tensor", lambda: Param(torch.tensor([1 + 1j])), TypeError, "must be real"),
    (
        "hybrid_on_none",
        lambda: Hybrid(SymbolicODE(["-x"], ["x"]), torch.nn.Linear(1, 1), on=None),
        TypeError,
        "on must",
    ),
    (
        "forward_integer_state",
        lambda: SymbolicODE(["-x"], ["x"])(0.0, torch.ones(2, 1, dtype=torch.long)),
        TypeError,
        "floating",
    ),
    (
        "forward_complex_state",
        lambda: Hamiltonian("p**2/2", ["q"], ["p"])(0.0, torch.ones(2, 2, dtype=torch.cfloat)),
        TypeError,
        "floating",
    ),
    (
        "forward_time_shape",
        lambda: SymbolicODE(["-x"], ["x"])(torch.zeros(5), torch.ones(3, 1)),
        ValueError,
        "does not broadcast",
    ),
    ("forward_time_none", lambda: Lagrangian("q_dot**2/2", ["q"])(None, torch.ones(3, 2)), TypeError, "t must be"),
    ("forward_state_list", lambda: NBodyGravity(2)(0.0, [0.0] * 12), TypeError, "y must be a tensor"),
    ("forward_state_width", lambda: NBodyGravity(2, dim=2)(0.0, torch.ones(3, 7)), ValueError, r"shape \(\.\.\., 8\)"),
    ("config_not_dict", lambda: from_config(None), TypeError, "config must be a dict"),
    ("config_no_kind", lambda: from_config({}), ValueError, "needs 'kind'"),
    ("config_state_ints", _cfg(state=[1]), ValueError, "list of names"),
    ("config_rhs_number", _cfg(rhs=[1]), ValueError, "expression strings"),
    ("config_param_learnable_text", _cfg(params={"k": {"value": 1.0, "learnable": "yes"}}), ValueError, "True or"),
    ("config_param_bad_name", _cfg(params={"1k": 1.0}), ValueError, "not usable"),
    ("config_time_keyword", _cfg(time="lambda"), ValueError, "not keywords"),
    ("config_injection", _cfg(rhs=["__import__('os').getcwd()"]), ValueError, "not allowed"),
]

GOOD: list[tuple[str, Callable[[], object]]] = [
    ("chain_1000_states", lambda: _eval(SymbolicODE(_chain(1000), [f"x{i}" for i in range(1000)]))),
    ("zero_rhs_5000_states", lambda: _eval(SymbolicODE(["0"] * 5000, [f"x{i}" for i in range(5000)]))),
    ("pow_1000_affine_check", lambda: _eval(SymbolicODE(["(x+v+1)**1000 * 0", "x"], ["x", "v"]))),
    ("pow_200_four_states", lambda: SymbolicODE(["(x+y+z+w)**200"] * 4, ["x", "y", "z", "w"])),
    ("hamiltonian_pow_1000", lambda: Hamiltonian("p**2/2 + (q/2)**1000", ["q"], ["p"])),
    ("atan2_with_zero", lambda: _eval(SymbolicODE(["atan2(x, 0)", "atan2(0, v)"], ["x", "v"]))),
    ("tall_legal_expression", lambda: _eval(SymbolicODE(["sin(" * 90 + "x" + ")" * 90], ["x"]))),
    ("long_flat_sum", lambda: _eval(SymbolicODE([_PLUS(f"x*{i}" for i in range(600))], ["x"]))),
    ("sympy_names_I_S_N", lambda: _eval(SymbolicODE(["-I", "S*N", "-N"], ["I", "S", "N"]))),
    ("greek_names", lambda: _eval(SymbolicODE(["ω", "-θ"], ["θ", "ω"]))),
    ("nested_power_combined_900", lambda: SymbolicODE(["((x+1)**30)**30"], ["x"])),
    (
        "lagrangian_chain_40",
        lambda: _eval(
            Lagrangian(
                f"({_PLUS(f'q{i}_dot**2' for i in range(40))})/2"
                f" - ({_PLUS(f'(q{i + 1}-q{i})**2' for i in range(39))})/2",
                [f"q{i}" for i in range(40)],
            )
        ),
    ),
]


@pytest.mark.parametrize(("build", "error", "match"), [r[1:] for r in BAD], ids=[r[0] for r in BAD])
def test_bad_input_raises_clearly(limit, build: Callable[[], object], error: type[Exception], match: str) -> None:
    """The input is refused within the time limit by the expected exception, whose message names the problem."""
    with limit(LIMIT_S), pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize("build", [r[1] for r in GOOD], ids=[r[0] for r in GOOD])
def test_legal_input_builds_quickly(limit, build: Callable[[], object]) -> None:
    """Large or unusual but legal inputs build (and evaluate to finite values where evaluated) within the limit."""
    with limit(LIMIT_S):
        out = build()
    if isinstance(out, torch.Tensor):
        assert torch.isfinite(out).all()


def test_catalogue_size() -> None:
    assert len(BAD) >= 55 and len({r[0] for r in BAD}) == len(BAD)
    assert len({r[0] for r in GOOD}) == len(GOOD)


def _injections(marker: Path) -> list[tuple[str, Callable[[str], object]]]:
    x = sp.Symbol("x", real=True)
    return [
        ("parse_expression", lambda s: parse_expression(s, ["x"])),
        ("SymbolicODE", lambda s: SymbolicODE([s], ["x"])),
        ("SymbolicODE_mapping", lambda s: SymbolicODE({"x": s}, ["x"])),
        ("Hamiltonian", lambda s: Hamiltonian(s, ["q"], ["p"])),
        ("Lagrangian", lambda s: Lagrangian(s, ["q"])),
        ("from_config_ode", lambda s: from_config({"kind": "ode", "state": ["x"], "rhs": [s]})),
        (
            "from_config_hamiltonian",
            lambda s: from_config({"kind": "hamiltonian", "coords": ["q"], "momenta": ["p"], "H": s}),
        ),
        ("from_config_lagrangian", lambda s: from_config({"kind": "lagrangian", "coords": ["q"], "L": s})),
        ("CompiledComponents", lambda s: CompiledComponents([s], [x], [], T)),
        ("numeric_constants", lambda s: numeric_constants(s)),
        ("check_supported", lambda s: check_supported(s, "the test")),
        ("canonicalize", lambda s: canonicalize(s, {"x": x}, "the test")),
    ]


@pytest.mark.parametrize("entry", range(12), ids=[name for name, _ in _injections(Path())])
def test_text_entries_never_execute(limit, tmp_path: Path, entry: int) -> None:
    """Every public entry that takes text refuses code with a clear error and runs none of it."""
    marker = tmp_path / "pwned"
    name, call = _injections(marker)[entry]
    payload = f"__import__('os').system('touch {marker}')"
    with limit(LIMIT_S), pytest.raises((ValueError, TypeError), match="not allowed|string|SymPy expression"):
        call(payload)
    assert not marker.exists(), f"{name} executed the payload"
