"""The continuous adjoint (``grad="adjoint"``): convergence to the exact gradient, options, per-trajectory times."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from systems import MLP, TimeDependent

import physnode


def _grads(func, y0, t, **kw):
    y0 = y0.detach().clone().requires_grad_()
    ys = physnode.odeint(func, y0, t, **kw)
    w = torch.linspace(-1.0, 1.0, ys.numel(), dtype=ys.dtype).reshape(ys.shape)
    loss = (w * ys).sum() + ys.square().sum()
    return torch.autograd.grad(loss, [y0, *func.parameters()])


def _rel_error(got, ref) -> float:
    return max(float((g - r).abs().max() / r.abs().max()) for g, r in zip(got, ref, strict=True))


def test_converges_as_adjoint_tolerance_tightens() -> None:
    """With a near-exact forward solve, the error follows the backward tolerance (observed rate ~1)."""
    func = TimeDependent()
    y0 = torch.tensor([[1.0, 0.0], [0.2, 0.6]], dtype=torch.float64)
    t = torch.tensor([[0.0, 1.0, 2.5, 4.0], [0.5, 1.2, 2.0, 3.0]], dtype=torch.float64)
    ref = _grads(func, y0, t, rtol=1e-12, atol=1e-14)
    rtols = [1e-4, 1e-6, 1e-8]
    errs = []
    for r in rtols:
        got = _grads(
            func, y0, t, rtol=1e-12, atol=1e-14, grad="adjoint", options={"adjoint_rtol": r, "adjoint_atol": r}
        )
        errs.append(_rel_error(got, ref))
    rate = np.polyfit(np.log(rtols), np.log(errs), 1)[0]
    assert errs[0] > errs[1] > errs[2], errs
    assert 0.6 <= rate <= 1.4, f"observed rate {rate:.2f} (errors {errs})"
    assert errs[-1] < 1e-6


def test_fixed_step_order() -> None:
    """With rk4 at fixed steps both solves are 4th order: the gradient error falls as h^4."""
    func = MLP(dim=2, hidden=8)
    y0 = torch.tensor([[0.5, -0.3]], dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    ref = _grads(func, y0, t, rtol=1e-12, atol=1e-14)
    hs = [0.1, 0.05, 0.025]
    errs = [_rel_error(_grads(func, y0, t, method="rk4", step_size=h, grad="adjoint"), ref) for h in hs]
    rate = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(rate - 4.0) <= 0.4, f"observed order {rate:.2f} (errors {errs})"


def test_default_tolerances_follow_forward() -> None:
    func = MLP(dim=2, hidden=8)
    y0 = torch.randn(3, 2, dtype=torch.float64)
    t = torch.sort(torch.rand(3, 5, dtype=torch.float64), dim=1).values
    ref = _grads(func, y0, t, rtol=1e-8, atol=1e-10)
    got = _grads(func, y0, t, rtol=1e-8, atol=1e-10, grad="adjoint")
    assert _rel_error(got, ref) < 1e-5


def test_backward_in_time() -> None:
    func = MLP(dim=2, hidden=8)
    y0 = torch.randn(2, 2, dtype=torch.float64)
    t = torch.tensor([[1.0, 0.6, 0.0], [2.0, 1.0, 0.5]], dtype=torch.float64)
    ref = _grads(func, y0, t, rtol=1e-10, atol=1e-12)
    got = _grads(func, y0, t, rtol=1e-10, atol=1e-12, grad="adjoint")
    assert _rel_error(got, ref) < 1e-6


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "tight"])
def test_bad_adjoint_tolerance(bad) -> None:
    # A string may be refused by the typed options check (TypeError) or by the constructor's range check.
    with pytest.raises((ValueError, TypeError), match=r"adjoint_rtol'? .*must be (a non-negative finite number|None)"):
        physnode.odeint(
            MLP(dim=2, hidden=4),
            torch.ones(2, dtype=torch.float64),
            torch.tensor([0.0, 1.0], dtype=torch.float64),
            grad="adjoint",
            options={"adjoint_rtol": bad},
        )
