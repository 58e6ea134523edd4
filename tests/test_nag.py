"""The first-order Nesterov-accelerated solver (``method="nag"``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from systems import MLP, Linear

import physnode
from physnode.solvers.nag import NAG

A = torch.tensor([[-0.3, 1.0], [-1.0, -0.1]], dtype=torch.float64)


def _step_matrix(mu: float, z: float) -> torch.Tensor:
    """The 2x2 matrix of one NAG step on dy/dt = lambda y (h = 1, lambda = z) acting on (y, h w)."""
    solver = NAG(mu=mu)
    t = torch.zeros(2, dtype=torch.float64)
    h = torch.ones(2, dtype=torch.float64)
    basis = (torch.tensor([[1.0], [0.0]], dtype=torch.float64), torch.tensor([[0.0], [1.0]], dtype=torch.float64))
    (y1, w1), err = solver.step(lambda t, y: z * y, t, h, basis)
    assert err is None
    return torch.stack([y1[:, 0], w1[:, 0]])  # columns: images of (1, 0) and (0, 1)


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9], ids=["mu0", "mu0.5", "mu0.9"])
def test_zero_stability_roots_of_rho(mu):
    """At z = 0 the step matrix's characteristic polynomial is rho(zeta) = (zeta - 1)(zeta - mu)."""
    M = _step_matrix(mu, 0.0)
    char = np.poly(M.numpy())
    np.testing.assert_allclose(char, [1.0, -(1.0 + mu), mu], atol=1e-14)
    roots = np.sort(np.abs(np.roots(char)))
    assert roots[-1] == pytest.approx(1.0)
    assert roots[0] < 1.0


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9], ids=["mu0", "mu0.5", "mu0.9"])
def test_consistency_principal_root(mu):
    """The principal root of the step matrix is 1 + z + O(z^2) (consistency), but not 1 + z + z^2/2 (order 1)."""
    for z in (1e-3, 1e-4):
        eig = torch.linalg.eigvals(_step_matrix(mu, z))
        principal = eig[torch.argmin((eig - 1).abs())].real.item()
        assert (principal - 1.0) / z == pytest.approx(1.0, abs=10 * z / (1 - mu))
        assert abs(principal - math.exp(z)) > 1e-3 * z**2


def test_mu_zero_is_euler():
    func = MLP(2, 8)
    y0 = torch.randn(3, 2, dtype=torch.float64)
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    with torch.no_grad():
        a = physnode.odeint(func, y0, t, method="nag", step_size=0.05, options={"mu": 0.0})
        b = physnode.odeint(func, y0, t, method="euler", step_size=0.05)
    torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)


def test_matches_displacement_form_by_hand():
    """With a constant step the velocity-form state reproduces the displacement-form recurrence written out."""
    func = MLP(2, 8)
    y0 = torch.randn(2, dtype=torch.float64)
    mu, h, n = 0.7, 0.05, 20
    t = torch.tensor([0.0, n * h], dtype=torch.float64)
    with torch.no_grad():
        ys = physnode.odeint(func, y0, t, method="nag", step_size=h, options={"mu": mu})
        y, v, tk = y0.clone(), h * func(torch.tensor(0.0), y0), 0.0
        for _ in range(n):
            v = mu * v + (1 - mu) * h * func(torch.tensor(tk + mu * h), y + mu * v)
            y = y + v
            tk += h
    torch.testing.assert_close(ys[-1], y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mu", [0.5, 0.9], ids=["mu0.5", "mu0.9"])
@pytest.mark.parametrize("clipped", [False, True], ids=["uniform", "clipped"])
def test_order_one(mu, clipped):
    func = Linear(A)
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    # "clipped": observation times that are not multiples of the step, so steps are cut to land on them.
    t = torch.tensor([0.0, 0.37, 1.13, 2.0] if clipped else [0.0, 2.0], dtype=torch.float64)
    exact = torch.linalg.matrix_exp(2.0 * A) @ y0
    hs = [0.01, 0.005, 0.0025, 0.00125]
    errs = []
    with torch.no_grad():
        for h in hs:
            ys = physnode.odeint(func, y0, t, method="nag", step_size=h, options={"mu": mu})
            errs.append(float((ys[-1] - exact).norm()))
    x, y = np.log(hs), np.log(errs)
    slope = np.polyfit(x, y, 1)[0]
    assert abs(slope - 1.0) < 0.3


def test_gradients_direct_vs_finite_differences():
    t = torch.tensor([0.0, 0.3, 0.5], dtype=torch.float64)

    def run(y0, M):
        return physnode.odeint(lambda t, y: torch.tanh(y @ M.T), y0, t, method="nag", step_size=0.1)

    y0 = torch.tensor([[0.3, -0.4]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(run, (y0, A.clone().requires_grad_()))


def test_aca_matches_direct():
    if "aca" not in physnode.GRADIENTS:
        pytest.skip("grad='aca' is not registered")
    func = MLP(2, 8)
    y0 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0.0, 0.33, 1.0], [0.1, 0.5, 0.8], [0.0, 0.2, 0.9]], dtype=torch.float64)
    params = [y0, *func.parameters()]
    grads = []
    for grad in ("direct", "aca"):
        ys = physnode.odeint(func, y0, t, method="nag", grad=grad, step_size=0.05)
        grads.append(torch.autograd.grad(ys.square().sum(), params))
    for a, b in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mu", [1.0, -0.1, 1.5, math.inf, True], ids=["one", "neg", "big", "inf", "bool"])
def test_invalid_mu(mu):
    y0 = torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"mu must be a finite number in \[0, 1\)"):
        physnode.odeint(lambda t, y: -y, y0, t, method="nag", step_size=0.1, options={"mu": mu})


def test_needs_step_size():
    y0 = torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="step_size"):
        physnode.odeint(lambda t, y: -y, y0, t, method="nag")
