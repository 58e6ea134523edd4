"""Data-controlled fields: x is constant along each trajectory, per trajectory, and differentiable."""

from __future__ import annotations

import math

import pytest
import torch

import physnode
from physnode.nn import DataControlled

F64 = torch.float64


def test_each_trajectory_follows_its_own_input() -> None:
    """dz/dt = x − z from z0 = 0 gives z(t) = x (1 − e^(−(t − t0))) per trajectory, with its own times."""
    f = DataControlled(lambda t, z, x: x - z, input_dim=2)
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.0]], dtype=F64)
    y0 = f.initial_state(torch.zeros(3, 2, dtype=F64), x)
    assert y0.shape == (3, 4)
    t = torch.tensor([[0.0, 0.5, 1.0], [0.2, 0.4, 2.0], [1.0, 1.5, 3.0]], dtype=F64)
    ys = physnode.odeint(f, y0, t, rtol=1e-10, atol=1e-12)
    z, x_t = f.split(ys)
    assert z.shape == (3, 3, 2) and x_t.shape == (3, 3, 2)
    assert torch.equal(x_t, x.unsqueeze(1).expand(3, 3, 2))  # dx/dt = 0 exactly: every stage leaves x unchanged
    expect = x.unsqueeze(1) * (1 - torch.exp(-(t - t[:, :1]))).unsqueeze(-1)
    torch.testing.assert_close(z, expect, rtol=0, atol=1e-8)


def test_gradient_reaches_the_input() -> None:
    """d z(1) / d x = (1 − e^(−1)) I for dz/dt = x − z, z0 = 0 — x gets its gradient through the state."""
    f = DataControlled(lambda t, z, x: x - z, input_dim=1)
    x = torch.tensor([[0.3], [2.0]], dtype=F64, requires_grad=True)
    ys = physnode.odeint(
        f,
        f.initial_state(torch.zeros(2, 1, dtype=F64), x),
        torch.tensor([0.0, 1.0], dtype=F64),
        grad="aca",
        rtol=1e-10,
        atol=1e-12,
    )
    (g,) = torch.autograd.grad(f.split(ys)[0][:, -1].sum(), x)
    torch.testing.assert_close(g, torch.full((2, 1), 1 - math.exp(-1.0), dtype=F64), rtol=1e-8, atol=0)


def test_shared_input_is_broadcast() -> None:
    f = DataControlled(lambda t, z, x: x - z, input_dim=2)
    y0 = f.initial_state(torch.zeros(4, 2), torch.ones(2))
    assert y0.shape == (4, 4) and torch.equal(y0[:, 2:], torch.ones(4, 2))


def test_errors() -> None:
    f = DataControlled(lambda t, z, x: x, input_dim=3)
    with pytest.raises(
        ValueError, match=r"x must have shape \(\.\.\., 3\) \(input_dim=3\), got torch.Size\(\[4, 2\]\)"
    ):
        f.initial_state(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"does not match the batch of z0, \(4, 2\): give one x per trajectory"):
        f.initial_state(torch.zeros(4, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"field\(t, z, x\) returned shape \(4, 3\); expected \(4, 2\)"):
        f(torch.zeros(4), torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"expects a state \[z, x\] of shape \(\.\.\., Dz \+ 3\)"):
        f(torch.zeros(4), torch.zeros(4, 3))
    with pytest.raises(TypeError, match="must have the dtype and device of z0"):
        f.initial_state(torch.zeros(4, 2, dtype=F64), torch.zeros(4, 3, dtype=torch.float32))
    with pytest.raises(ValueError, match="input_dim must be an integer >= 1"):
        DataControlled(lambda t, z, x: z, input_dim=0)
