"""Augmentation blocks: shapes, the lift/projection round trip, second-order dynamics, and their errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import physnode
from physnode.nn import InputAugment, SecondOrder, ZeroAugment

F64 = torch.float64


def test_zero_augment_appends_zeros_and_projects_back() -> None:
    aug = ZeroAugment(3)
    x = torch.randn(4, 5, 2, dtype=F64)
    z = aug(x)
    assert z.shape == (4, 5, 5) and z.dtype == F64
    assert torch.equal(z[..., 2:], torch.zeros(4, 5, 3, dtype=F64))
    assert torch.equal(aug.project(z), x)


def test_zero_augment_errors() -> None:
    with pytest.raises(ValueError, match="augment_dim must be an integer >= 1, got 0"):
        ZeroAugment(0)
    with pytest.raises(ValueError, match=r"project expects z of shape \(\.\.\., D \+ 2\)"):
        ZeroAugment(2).project(torch.zeros(3, 2))


def test_input_augment_shapes_and_custom_lift() -> None:
    aug = InputAugment(2, 5, out_dim=3, dtype=F64)
    x = torch.randn(7, 2, dtype=F64)
    z0 = aug(x)
    assert z0.shape == (7, 5)
    assert aug.project(z0).shape == (7, 3)
    ident = InputAugment(2, 5, dtype=F64)
    assert ident.project(z0) is z0
    custom = InputAugment(2, 4, lift=nn.Sequential(nn.Linear(2, 4), nn.Tanh()).to(F64))
    assert custom(x).shape == (7, 4)


def test_input_augment_errors() -> None:
    aug = InputAugment(2, 5)
    with pytest.raises(ValueError, match=r"input x must have shape \(\.\.\., 2\), got \(3, 4\)"):
        aug(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"project input z must have shape \(\.\.\., 5\)"):
        aug.project(torch.zeros(3, 2))
    bad = InputAugment(2, 5, lift=nn.Linear(2, 3))
    with pytest.raises(ValueError, match=r"lift returned shape \(3, 3\); expected \(3, 5\)"):
        bad(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="state_dim must be an integer >= 1"):
        InputAugment(2, 0)


def test_second_order_is_the_harmonic_oscillator() -> None:
    """q'' = −ω² q from q0 = 1, v0 = 0 gives q = cos(ω t), v = −ω sin(ω t) (to the solver tolerance)."""
    omega = 1.7
    f = SecondOrder(lambda t, y: -(omega**2) * y[..., :1])
    y0 = SecondOrder.initial_state(torch.ones(2, 1, dtype=F64))
    assert torch.equal(y0, torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64))
    t = torch.linspace(0.0, 3.0, 7, dtype=F64)
    ys = physnode.odeint(f, y0, t, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(f.positions(ys)[0, :, 0], torch.cos(omega * t), rtol=0, atol=1e-8)
    torch.testing.assert_close(f.velocities(ys)[0, :, 0], -omega * torch.sin(omega * t), rtol=0, atol=1e-8)
    assert math.isclose(float(ys[1, -1, 0]), math.cos(omega * 3.0), abs_tol=1e-8)


def test_second_order_errors() -> None:
    f = SecondOrder(lambda t, y: y)  # returns 2 D instead of D
    with pytest.raises(ValueError, match=r"accel\(t, y\) returned shape \(3, 4\); expected \(3, 2\)"):
        f(torch.zeros(3), torch.zeros(3, 4))
    with pytest.raises(
        ValueError, match=r"expects a state \[q, v\] of shape \(\.\.\., 2 D\), got torch.Size\(\[3, 3\]\)"
    ):
        f(torch.zeros(3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="v0 must have the shape of q0"):
        SecondOrder.initial_state(torch.zeros(3, 2), torch.zeros(3, 1))
    with pytest.raises(TypeError, match="accel must be callable"):
        SecondOrder(3)  # type: ignore[arg-type]


def test_second_order_refuses_the_leapfrog_solvers() -> None:
    f = SecondOrder(lambda t, y: -y[..., :1])
    with pytest.raises(ValueError, match="separable"):
        physnode.odeint(
            f,
            torch.tensor([1.0, 0.0], dtype=F64),
            torch.tensor([0.0, 1.0], dtype=F64),
            method="leapfrog",
            step_size=0.1,
        )


def test_package_is_reachable_lazily() -> None:
    assert physnode.nn.ZeroAugment is ZeroAugment
    assert "nn" in physnode._LAZY_MODULES
