"""Integral losses carried as state: against closed forms and against quadrature of a dense solve."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nn_systems import Autonomous, mlp
from scipy.integrate import cumulative_simpson

import physnode
from physnode.nn import IntegralLoss, JacobianFrobenius, KineticEnergy

F64 = torch.float64


def test_closed_form_per_trajectory() -> None:
    """dz/dt = −z, L = ‖z‖²: ∫_(t0)^t L = ‖z0‖² (1 − e^(−2 (t − t0))) / 2, each trajectory on its own times.

    At rtol=1e-10 the relative error of the integral is ~1e-10 per unit time; 1e-8 leaves a factor 100."""
    loss = IntegralLoss(lambda t, z: -z, lambda t, z: z.square().sum(-1))
    z0 = torch.tensor([[1.0, 2.0], [-0.5, 0.3], [3.0, 0.0]], dtype=F64)
    t = torch.tensor([[0.0, 0.5, 2.0], [1.0, 1.1, 4.0], [-1.0, 0.0, 0.5]], dtype=F64)
    ys = physnode.odeint(loss, loss.initial_state(z0), t, rtol=1e-10, atol=1e-12)
    z, integral = loss.split(ys)
    assert z.shape == (3, 3, 2) and integral.shape == (3, 3, 1)
    expect = z0.square().sum(-1, keepdim=True) * (1 - torch.exp(-2 * (t - t[:, :1]))) / 2
    torch.testing.assert_close(integral[..., 0], expect, rtol=1e-8, atol=1e-12)


def test_against_simpson_on_a_dense_solve() -> None:
    """A tanh-MLP field with three integrands — a time-dependent running cost, the kinetic energy and the exact
    Jacobian Frobenius norm — against composite Simpson on a dense float64 solve of the plain field.

    Simpson with h = 1e-3 on [0, 2] errs by ~h⁴ max|L''''| / 180 < 1e-12 here, the dense solve (rtol=1e-12) by
    less; the integral-as-state solve runs at rtol=1e-10, so 1e-8 relative bounds the difference with margin."""
    torch.manual_seed(3)
    field = Autonomous(mlp(2, 2, hidden=12))
    terms = [
        lambda t, z: torch.cos(3 * t) * z.square().sum(-1) + torch.tanh(z[..., 0]),
        KineticEnergy(),
        JacobianFrobenius("exact"),
    ]
    loss = IntegralLoss(field, terms)
    z0 = torch.tensor([[0.7, -0.4], [-1.2, 0.5]], dtype=F64)
    dense_t = torch.linspace(0.0, 2.0, 2001, dtype=F64)
    obs = [0, 250, 1000, 1500, 2000]
    with torch.no_grad():
        ys = physnode.odeint(loss, loss.initial_state(z0), dense_t[obs], rtol=1e-10, atol=1e-12)
        z_dense = physnode.odeint(field, z0, dense_t, rtol=1e-12, atol=1e-14)  # (2, 2001, 2)
        tt = dense_t.expand(2, -1)
        running = terms[0](tt, z_dense)
        kinetic = field(tt, z_dense).square().sum(-1)
    jac = torch.func.vmap(torch.func.jacrev(lambda z: field(None, z)))(z_dense.reshape(-1, 2))
    frob = jac.square().sum((-2, -1)).reshape(2, -1).detach()
    for i, integrand in enumerate([running, kinetic, frob]):
        quad = cumulative_simpson(integrand.numpy(), x=dense_t.numpy(), axis=-1, initial=0.0)[:, obs]
        got = loss.split(ys)[1][..., i].numpy()
        np.testing.assert_allclose(got, quad, rtol=1e-8, atol=1e-12, err_msg=f"integrand {i}")
    torch.testing.assert_close(loss.split(ys)[0], z_dense[:, obs], rtol=1e-8, atol=1e-10)


def test_unbatched_state() -> None:
    loss = IntegralLoss(lambda t, z: -z, [lambda t, z: z.square().sum(-1), KineticEnergy()])
    y0 = loss.initial_state(torch.tensor([1.0, 1.0], dtype=F64))
    ys = physnode.odeint(loss, y0, torch.tensor([0.0, 1.0], dtype=F64), rtol=1e-10, atol=1e-12)
    assert ys.shape == (2, 4)
    expect = 1 - math.exp(-2.0)  # ‖z0‖² = 2, ∫ = 2 (1 − e^(−2)) / 2, the same for ‖f‖² = ‖z‖²
    torch.testing.assert_close(loss.split(ys)[1][-1], torch.tensor([expect, expect], dtype=F64), rtol=1e-8, atol=0)


def test_errors() -> None:
    with pytest.raises(ValueError, match="at least one integrand"):
        IntegralLoss(lambda t, z: z, [])
    with pytest.raises(TypeError, match=r"terms\[1\] must be callable"):
        IntegralLoss(lambda t, z: z, [KineticEnergy(), 3])  # type: ignore[list-item]
    loss = IntegralLoss(lambda t, z: z, lambda t, z: z)  # integrand not reduced over the state axis
    with pytest.raises(ValueError, match=r"terms\[0\] returned shape \(4, 2\); expected \(4,\)\. An integrand returns"):
        loss(torch.zeros(4), torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"expects a state \[z, ℓ\] of shape \(\.\.\., D \+ 1\) with D >= 1"):
        loss(torch.zeros(4), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="z0 must be a floating-point tensor"):
        loss.initial_state(torch.zeros(3, 2, dtype=torch.int64))
