"""Continuous extensions of the Runge–Kutta tableaux: their order of accuracy, their self-checks, and
``Solution.interpolate`` (per trajectory, differentiable, with a clear error outside the solved interval).

The solvers come from ``registries.RK``: every explicit Runge–Kutta tableau that carries a continuous extension
gets the order test, so a new tableau with ``dense=`` is tested without editing this file.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from registries import RK

from physnode.dense import evaluate
from physnode.solvers import SOLVERS, Tableau
from physnode.solvers.tableau import dense_from_order_conditions

DENSE = [n for n in RK if SOLVERS.cls(n).tableau.dense is not None]

# A damped, coupled linear oscillator: its exact flow is the matrix exponential.
A = torch.tensor([[0.0, 1.0, 0.2], [-1.0, -0.1, 0.0], [0.3, 0.0, -0.5]], dtype=torch.float64)
Y0 = torch.tensor([[1.0, 0.5, -0.3]], dtype=torch.float64)
THETAS = torch.tensor([[0.2, 0.5, 0.8]], dtype=torch.float64)


def _rhs(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return y @ A.T


def _one_step_error(name: str, h: float) -> float:
    """Largest error of the continuous extension of one step of size ``h`` at the fractions ``THETAS``."""
    solver = SOLVERS.build(name, {"adaptive": False} if "adaptive" in SOLVERS.accepted_options(name) else None)
    t0, hh = torch.zeros(1, dtype=torch.float64), torch.full((1,), h, dtype=torch.float64)
    state = solver.init(_rhs, t0, Y0, hh)
    solver.step(_rhs, t0, hh, state)
    y, h_dev, R = solver.dense_terms(_rhs)
    got = evaluate(y, h_dev, R, THETAS)[0]
    # scipy's expm: torch.linalg.matrix_exp loses ~1e-11 for matrices of norm ~0.03 (torch 2.13, float64).
    exact = torch.stack([torch.from_numpy(scipy.linalg.expm(A.numpy() * float(th) * h)) @ Y0[0] for th in THETAS[0]])
    return float((got - exact).abs().max())


@pytest.mark.parametrize("name", DENSE, ids=DENSE)
def test_interpolant_order(name: str) -> None:
    """Local error of the interpolant ~ C h^(q+1) for its declared order q (error vs theta·h convergence)."""
    q = SOLVERS.cls(name).tableau.dense_order
    hs, errs = [], []
    h = 0.5
    while len(hs) < 3 and h > 1e-3:
        err = _one_step_error(name, h)
        if err < 1e-12:  # too close to float64 round-off to fit a slope: stop at the smallest usable steps
            break
        hs.append(h)
        errs.append(err)
        h /= 2
    assert len(hs) >= 2, f"{name}: interpolant error already at round-off for h = 0.5"
    slope = float(np.polyfit(np.log(hs), np.log(errs), 1)[0])
    # The fitted slope approaches q + 1 from either side as h -> 0; 0.4 allows for the pre-asymptotic
    # bend over two halvings of the largest steps (the order-q extension's next term is O(h^(q+2))).
    assert slope > q + 1 - 0.4, f"{name}: interpolant local error slope {slope:.2f}, expected about {q + 1}"


@pytest.mark.parametrize("name", DENSE, ids=DENSE)
def test_interpolant_ends_on_the_step(name: str) -> None:
    """At theta = 1 the interpolant is the step's solution, at theta = 0 its start (to round-off)."""
    solver = SOLVERS.build(name, {"adaptive": False} if "adaptive" in SOLVERS.accepted_options(name) else None)
    t0, hh = torch.zeros(1, dtype=torch.float64), torch.full((1,), 0.3, dtype=torch.float64)
    new_state, _ = solver.step(_rhs, t0, hh, solver.init(_rhs, t0, Y0, hh))
    y, h_dev, R = solver.dense_terms(_rhs)
    ends = evaluate(y, h_dev, R, torch.tensor([[0.0, 1.0]], dtype=torch.float64))[0]
    # Tolerance: a sum of s stage terms with coefficients up to ~50 (dopri8) in float64.
    torch.testing.assert_close(ends[0], Y0[0], rtol=0, atol=1e-14)
    torch.testing.assert_close(ends[1], new_state[0][0], rtol=0, atol=1e-13)


def test_bad_dense_coefficients_are_rejected() -> None:
    base = dict(name="bad", c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5), order=2)
    with pytest.raises(ValueError, match="must sum to theta"):
        Tableau(**base, dense=((1.0, -0.4), (0.1, 0.4)), dense_order=2)
    with pytest.raises(ValueError, match=r"weight of stage 0 is 0.6 at theta = 1, expected b\[0\] = 0.5"):
        Tableau(**base, dense=((1.0, -0.4), (0.0, 0.4)), dense_order=2)
    with pytest.raises(ValueError, match="given together"):
        Tableau(**base, dense=((1.0, -0.5), (0.0, 0.5)))


def test_order_conditions_solver_refuses_an_impossible_order() -> None:
    # Heun's two stages carry a quadratic extension but no cubic one.
    P = dense_from_order_conditions((0.0, 1.0), ((), (1.0,)), (0.5, 0.5), 2)
    assert math.isclose(sum(P[0]), 0.5, abs_tol=1e-14) and math.isclose(sum(P[1]), 0.5, abs_tol=1e-14)
    with pytest.raises(ValueError, match="admit no continuous extension of order 3"):
        dense_from_order_conditions((0.0, 1.0), ((), (1.0,)), (0.5, 0.5), 3)
