"""``torch.autograd.gradcheck`` (finite differences) for every gradient method on tiny float64 problems.

Fixed-step grids make the discrete solve a smooth function of its inputs (adaptive step choices are
piecewise constant), so finite differences see exactly what the methods differentiate.
"""

from __future__ import annotations

import pytest
import torch
from registries import ALL_GRADIENTS, FIXED, solvers_for

import physnode
from physnode.gradients import GRADIENTS
from physnode.solvers import SOLVERS

NAMES = ALL_GRADIENTS


def _solve_kwargs(grad: str) -> dict:
    """Fixed steps: a fixed-step solver of order >= 4 of the method's family, or the solver it requires."""
    required = GRADIENTS.cls(grad).requires_method
    if required is None:
        method = next(m for m in solvers_for(grad) if m in FIXED and SOLVERS.build(m).order >= 4)
        return dict(method=method, step_size=0.1)
    kw: dict = dict(method=required, step_size=0.05)
    if "adaptive" in physnode.SOLVERS.accepted_options(required):
        kw["options"] = {"adaptive": False}
    return kw


def _rhs(t: torch.Tensor, y: torch.Tensor, w: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return torch.tanh(y @ w.T) + c * torch.sin(t).unsqueeze(-1)


@pytest.mark.parametrize("grad", NAMES, ids=NAMES)
def test_gradcheck(grad: str) -> None:
    w = (0.5 * torch.randn(2, 2, dtype=torch.float64)).requires_grad_()
    c = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0.0, 0.25, 0.6], [0.1, 0.3, 0.5]], dtype=torch.float64)
    kw = _solve_kwargs(grad)
    if grad == "adjoint":
        # The continuous adjoint differentiates the exact flow: compare with finite differences of the
        # same fixed-step solve only up to its discretisation error.
        kw = dict(method="rk4", step_size=0.025)

    def fn(y0: torch.Tensor, w: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return physnode.odeint(lambda t, y: _rhs(t, y, w, c), y0, t, grad=grad, params=[w, c], **kw)

    atol = 1e-8 if GRADIENTS.cls(grad).exact else 1e-6
    assert torch.autograd.gradcheck(fn, (y0, w, c), eps=1e-6, atol=atol, rtol=1e-5)


def test_gradgradcheck_direct() -> None:
    w = (0.5 * torch.randn(2, 2, dtype=torch.float64)).requires_grad_()
    y0 = torch.randn(2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.3, 0.6], dtype=torch.float64)

    def fn(y0: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return physnode.odeint(lambda t, y: torch.tanh(y @ w.T), y0, t, method="rk4", step_size=0.1, params=[w])

    assert torch.autograd.gradgradcheck(fn, (y0, w), eps=1e-6, atol=1e-7, rtol=1e-5)
