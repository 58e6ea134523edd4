"""Regularisers: Hutchinson's estimator is unbiased, its noise is fixed per solve, and the errors are clear."""

from __future__ import annotations

import pytest
import torch
from nn_systems import Autonomous, mlp

import physnode
from physnode.nn import IntegralLoss, JacobianFrobenius, KineticEnergy

F64 = torch.float64


def jacobian_at(field, z: torch.Tensor) -> torch.Tensor:
    return torch.autograd.functional.jacobian(lambda v: field(None, v), z)


@pytest.mark.parametrize("estimator", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_with_the_predicted_variance(estimator: str) -> None:
    """N = 20000 independent draws at one state: the mean is within 5 standard errors of ‖J‖_F² (a false failure
    has probability < 1e-6), and the sample variance within 15% of the theory (its relative standard error is
    ~sqrt((κ − 1) / N) < 3% for these quadratic forms)."""
    torch.manual_seed(1)
    field = Autonomous(mlp(3, 3, hidden=16))
    z = torch.tensor([0.3, -0.8, 0.5], dtype=F64)
    J = jacobian_at(field, z)
    A = J @ J.T
    exact = float(A.trace())
    loss = IntegralLoss(field, JacobianFrobenius(estimator))
    n = 20_000
    y = loss.initial_state(z.expand(n, 3).clone(), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        est = loss(torch.zeros(n, dtype=F64), y)[:, -1]
    mean, var = float(est.mean()), float(est.var())
    assert abs(mean - exact) < 5 * (var / n) ** 0.5, (mean, exact)
    off = A - torch.diag(torch.diag(A))
    theory = float(2 * off.square().sum()) if estimator == "rademacher" else float(2 * A.square().sum())
    assert abs(var - theory) < 0.15 * theory, (var, theory)


def test_exact_estimator_is_the_frobenius_norm() -> None:
    torch.manual_seed(2)
    field = Autonomous(mlp(4, 4, hidden=8))
    z = torch.randn(5, 4, dtype=F64)
    loss = IntegralLoss(field, [JacobianFrobenius("exact"), KineticEnergy()])
    out = loss(torch.zeros(5, dtype=F64), loss.initial_state(z))
    expect = torch.stack([jacobian_at(field, z[b]).square().sum() for b in range(5)])
    torch.testing.assert_close(out[:, 4], expect, rtol=1e-12, atol=0)
    torch.testing.assert_close(out[:, 5], field(None, z).square().sum(-1), rtol=1e-12, atol=0)


def test_noise_is_fixed_per_solve_and_per_trajectory() -> None:
    """Repeated evaluations in one solve see the same ε (as the replay methods require); a new initial state draws
    a new ε; each trajectory has its own."""
    field = Autonomous(mlp(2, 2))
    reg = JacobianFrobenius("gaussian")
    loss = IntegralLoss(field, reg)
    z0 = torch.randn(3, 2, dtype=F64)
    y0 = loss.initial_state(z0)
    first = reg.noise.clone()
    assert first.shape == (3, 2) and not torch.allclose(first[0], first[1])
    t = torch.zeros(3, dtype=F64)
    a, b = loss(t, y0), loss(t, y0)
    # same noise held fixed: equal to round-off (a redrawn noise would change the estimate by O(1))
    torch.testing.assert_close(a, b, rtol=1e-14, atol=0.0)
    loss.initial_state(z0)
    assert not torch.allclose(reg.noise, first)


def test_noise_must_match_the_solve() -> None:
    field = Autonomous(mlp(2, 2))
    loss = IntegralLoss(field, JacobianFrobenius())
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(RuntimeError, match=r"no noise for this solve: build the initial state with IntegralLoss"):
        physnode.odeint(loss, torch.zeros(3, 3, dtype=F64), t)
    loss.initial_state(torch.zeros(4, 2, dtype=F64))
    with pytest.raises(ValueError, match=r"noise has shape \(4, 2\).*have \(3, 2\).*drawn for another batch"):
        physnode.odeint(loss, torch.zeros(3, 3, dtype=F64), t)


def test_rademacher_noise_is_plus_minus_one_and_exact_draws_nothing() -> None:
    reg = JacobianFrobenius()
    reg.resample(torch.zeros(50, 3, dtype=torch.float32))
    assert reg.noise.dtype == torch.float32 and set(reg.noise.unique().tolist()) == {-1.0, 1.0}
    exact = JacobianFrobenius("exact")
    exact.resample(torch.zeros(2, 2))
    assert exact.noise is None


def test_errors() -> None:
    with pytest.raises(ValueError, match="estimator must be one of rademacher, gaussian, exact; got 'hutch'"):
        JacobianFrobenius("hutch")
    with pytest.raises(ValueError, match="use it inside IntegralLoss"):
        JacobianFrobenius("exact")(torch.zeros(2), torch.zeros(2, 2), torch.zeros(2, 2))
