"""Empirical convergence order of every Runge–Kutta tableau (fixed steps) against a matrix exponential."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import physnode
from physnode.solvers import SOLVERS, ExplicitRK

RK_NAMES = [n for n in SOLVERS.names() if issubclass(SOLVERS.cls(n), ExplicitRK)]

A = torch.tensor([[-0.1, 1.0, 0.0], [-1.0, -0.1, 0.3], [0.0, -0.3, -0.5]], dtype=torch.float64)


def _error(name: str, h: float) -> float:
    y0 = torch.tensor([1.0, 0.5, -0.2], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ys = physnode.odeint(lambda t, y: A @ y, y0, t, method=name, step_size=h, options={"adaptive": False})
    exact = torch.linalg.matrix_exp(A) @ y0
    return float((ys[-1] - exact).abs().max())


@pytest.mark.parametrize("name", RK_NAMES, ids=RK_NAMES)
def test_convergence_order(name: str) -> None:
    order = SOLVERS.cls(name).tableau.order
    # Step sizes where the error is in the asymptotic regime yet well above float64 round-off.
    # (Tsitouras' pair minimises its leading error constant, so its asymptotic regime starts at smaller h.)
    hs = {
        1: [1 / 64, 1 / 128, 1 / 256],
        2: [1 / 32, 1 / 64, 1 / 128],
        3: [1 / 8, 1 / 16, 1 / 32],
        4: [1 / 4, 1 / 8, 1 / 16],
        5: [1 / 8, 1 / 16, 1 / 32],
        8: [1.0, 1 / 2, 1 / 4],
    }[order]
    errs = [_error(name, h) for h in hs]
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - order) <= 0.3, f"{name}: observed order {slope:.2f}, expected {order} (errors {errs})"


@pytest.mark.parametrize("name", [n for n in RK_NAMES if SOLVERS.cls(n).tableau.adaptive], ids=str)
def test_embedded_error_estimate_order(name: str) -> None:
    """The embedded estimate is the local error of the lower-order solution: O(h^(q+1))."""
    tab = SOLVERS.cls(name).tableau
    solver = SOLVERS.cls(name)()
    y0 = torch.tensor([[1.0, 0.5, -0.2]], dtype=torch.float64)
    hs = [0.2, 0.1, 0.05]
    norms = []
    for h in hs:
        f = lambda t, y: y @ A.T  # noqa: E731
        state = solver.init(f, torch.zeros(1, dtype=torch.float64), y0, torch.tensor([h], dtype=torch.float64))
        _, err = solver.step(f, torch.zeros(1, dtype=torch.float64), torch.tensor([h], dtype=torch.float64), state)
        norms.append(float(err.abs().max()))
    slope = np.polyfit(np.log(hs), np.log(norms), 1)[0]
    assert abs(slope - (tab.embedded_order + 1)) <= 0.3, f"{name}: error-estimate order {slope:.2f}"
