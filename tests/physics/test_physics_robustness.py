"""Values behind the robustness fixes: the sparse linear plan, the fast differentiation, atan2 with a number,
the exponent boundary and the run-time singular mass matrix (the refusals themselves are in tests/fuzz)."""

from __future__ import annotations

import random

import pytest
import sympy as sp
import torch

from physnode.physics import Lagrangian, Param, SymbolicODE, parse_expression
from physnode.physics.base import Differentiator
from physnode.physics.parse import MAX_EXPONENT


def test_large_linear_chain_uses_the_sparse_plan_and_matches_the_matrix() -> None:
    """A 1000-state chain takes the gather / index_add path; values and parameter gradients equal ``y @ Aᵀ``."""
    n = 1000
    rhs = [f"k*(x{i + 1} - x{i})" for i in range(n - 1)] + [f"-k*x{n - 1} + 1"]
    model = SymbolicODE(rhs, [f"x{i}" for i in range(n)], {"k": Param(0.7)}).double()
    assert model.compiled.linear is not None and model.compiled.linear.sparse
    y = torch.randn(3, n, dtype=torch.float64)
    out = model(torch.zeros(3, dtype=torch.float64), y)
    k = model.params["k"]()
    a = -torch.eye(n, dtype=torch.float64) + torch.diag(torch.ones(n - 1, dtype=torch.float64), 1)
    expected = k * (y @ a.T) + torch.nn.functional.one_hot(torch.tensor(n - 1), n).to(y)
    # Same sums in a different order: agreement to rounding (1e-12 relative is many ulps of margin).
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(out.sum(), model.params["k"].raw)
    torch.testing.assert_close(grad, (y @ a.T).sum(), rtol=1e-12, atol=1e-12)


def test_differentiator_equals_sympy_diff() -> None:
    """On random expressions over the supported functions, equal to ``sympy.diff`` at a generic point."""
    x, y, k = sp.symbols("x y k", real=True)
    functions = [sp.sin, sp.cos, sp.tan, sp.atan, sp.sinh, sp.tanh, sp.exp, sp.log, sp.Abs, sp.sqrt, sp.erf]
    rng = random.Random(0)

    def draw(depth: int) -> sp.Expr:
        if depth == 0:
            return rng.choice([x, y, k, sp.Integer(rng.randint(1, 3)), sp.Rational(1, 3)])
        c = rng.random()
        if c < 0.3:
            return draw(depth - 1) + draw(depth - 1)
        if c < 0.6:
            return draw(depth - 1) * draw(depth - 1)
        if c < 0.75:
            return draw(depth - 1) ** rng.choice([2, 3, -1, sp.Rational(1, 2), y])
        if c < 0.8:
            return sp.atan2(draw(depth - 1), draw(depth - 1))
        return rng.choice(functions)(draw(depth - 1))

    point = {x: 0.37, y: 0.61, k: 0.23}
    compared = 0
    for _ in range(60):
        e = draw(3)
        d = Differentiator(e)
        for s in (x, y):
            ours, theirs = d(s).evalf(subs=point), sp.diff(e, s).evalf(subs=point)
            if not (ours.is_number and theirs.is_number) or theirs.has(sp.nan, sp.zoo):
                continue
            assert abs(complex(ours) - complex(theirs)) <= 1e-9 * (1 + abs(complex(theirs))), (e, s)
            compared += 1
    assert compared > 80


def test_atan2_with_a_number_argument_compiles() -> None:
    model = SymbolicODE(["atan2(x, 0)", "atan2(-1, v)"], ["x", "v"]).double()
    y = torch.tensor([[0.5, -2.0], [-0.5, 3.0]], dtype=torch.float64)
    out = model(torch.zeros(2, dtype=torch.float64), y)
    expected = torch.stack([torch.atan2(y[:, 0], torch.zeros(2)), torch.atan2(-torch.ones(2), y[:, 1])], -1)
    torch.testing.assert_close(out, expected.to(out))


def test_exponent_limit_is_inclusive() -> None:
    assert parse_expression(f"x**{MAX_EXPONENT}", ["x"]) == sp.Symbol("x", real=True) ** MAX_EXPONENT
    with pytest.raises(ValueError, match=f"exponent {MAX_EXPONENT + 1}"):
        parse_expression(f"x**{MAX_EXPONENT + 1}", ["x"])


def test_long_sums_are_flat_not_nested() -> None:
    """A sum of 500 terms is one level of nesting (it was refused as 'nested more than 100 levels')."""
    e = parse_expression(" + ".join(f"{i}*x" for i in range(1, 501)), ["x"])
    assert e == sum(range(1, 501)) * sp.Symbol("x", real=True)
    a, b, c, d = sp.symbols("a b c d", real=True)
    assert parse_expression("a - b - c + d", ["a", "b", "c", "d"]) == a - b - c + d
    assert parse_expression("a / b / c * d", ["a", "b", "c", "d"]) == a * d / (b * c)


def test_mass_matrix_singular_at_a_state_is_explained() -> None:
    """Regular at generic states, singular where q1 = 0: the solve error says so."""
    model = Lagrangian("(q1**2*q1_dot**2 + q2_dot**2)/2 - q2**2/2", ["q1", "q2"]).double()
    y = torch.tensor([[0.0, 1.0, 0.5, 0.5]], dtype=torch.float64)
    with pytest.raises(torch.linalg.LinAlgError, match="mass matrix .* is singular at a state"):
        model(torch.zeros(1, dtype=torch.float64), y)


def test_constant_linear_systems_match_the_generic_code() -> None:
    """Constant matrices and constant offsets (cached per dtype) equal the component-wise generated code."""
    model = SymbolicODE(["v + 1", "-2*x - v/2 + 3"], ["x", "v"]).double()
    assert model.compiled.linear is not None and model.compiled.linear.entries is None
    for dtype in (torch.float64, torch.float32):
        y = torch.randn(4, 2, dtype=dtype)
        t = torch.zeros(4, dtype=dtype)
        generic = model.compiled._stack(model.compiled.function(t, *y.unbind(-1)), y)
        torch.testing.assert_close(model(t, y), generic)
