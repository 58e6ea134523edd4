"""Depth-variant layers: basis values, the depth-invariant start, per-trajectory weights, and errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import physnode
from physnode.nn import Chebyshev, Fourier, GalerkinLinear, PiecewiseConstant, TimeSequential

F64 = torch.float64
BASES = [Fourier(2, period=2.0), Chebyshev(4, 0.0, 2.0), PiecewiseConstant.uniform(4, 0.0, 2.0)]
BASIS_IDS = ["fourier", "chebyshev", "piecewise"]


def test_fourier_values() -> None:
    phi = Fourier(2, period=1.0)(torch.tensor([0.25], dtype=F64))
    expect = torch.tensor([[1.0, 0.0, 1.0, -1.0, 0.0]], dtype=F64)  # 1, cos(π/2), sin(π/2), cos(π), sin(π)
    torch.testing.assert_close(phi, expect, rtol=0, atol=1e-15)
    assert Fourier(0).size == 1


def test_chebyshev_is_cos_k_theta() -> None:
    """T_k(cos θ) = cos(k θ), with t in [t0, t1] mapped to s = cos θ in [−1, 1]."""
    theta = torch.linspace(0.0, math.pi, 9, dtype=F64)
    t0, t1 = 1.0, 3.0
    t = t0 + (torch.cos(theta) + 1) * (t1 - t0) / 2
    phi = Chebyshev(5, t0, t1)(t)
    expect = torch.cos(theta.unsqueeze(-1) * torch.arange(6, dtype=F64))
    torch.testing.assert_close(phi, expect, rtol=0, atol=1e-12)


def test_piecewise_constant_indicators() -> None:
    basis = PiecewiseConstant((0.5, 1.0))
    phi = basis(torch.tensor([-1.0, 0.0, 0.5, 0.99, 1.0, 7.0], dtype=F64))
    expect = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=F64)
    assert torch.equal(phi, expect)  # indicators: exact 0/1 values, no arithmetic
    assert PiecewiseConstant.uniform(4, 0.0, 2.0).breakpoints == (0.5, 1.0, 1.5)


@pytest.mark.parametrize("basis", BASES, ids=BASIS_IDS)
def test_constant_coefficients_give_one(basis) -> None:
    t = torch.rand(3, 5, dtype=F64) * 2.0
    phi = basis(t)
    assert phi.shape == (3, 5, basis.size)
    total = phi @ torch.tensor(basis.constant(), dtype=F64)
    torch.testing.assert_close(total, torch.ones(3, 5, dtype=F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("basis", BASES, ids=BASIS_IDS)
def test_starts_depth_invariant(basis) -> None:
    layer = GalerkinLinear(3, 4, basis, dtype=F64)
    x = torch.randn(6, 3, dtype=F64)
    a = layer(torch.zeros(6, dtype=F64), x)
    b = layer(torch.linspace(0.1, 1.9, 6, dtype=F64), x)
    assert a.shape == (6, 4)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("basis", BASES, ids=BASIS_IDS)
def test_per_trajectory_weights(basis) -> None:
    """Row b of ``layer(t, x)`` equals ``W(t_b) x_b + b(t_b)``; a 0-d t is shared by the batch."""
    layer = GalerkinLinear(3, 2, basis, dtype=F64)
    with torch.no_grad():
        layer.coeff.add_(torch.randn_like(layer.coeff))
        layer.bias_coeff.add_(torch.randn_like(layer.bias_coeff))
    t = torch.tensor([0.1, 0.7, 1.3, 1.9], dtype=F64)
    x = torch.randn(4, 3, dtype=F64)
    out = layer(t, x)
    W = layer.weight(t)
    assert W.shape == (4, 2, 3)
    bias = basis(t) @ layer.bias_coeff
    torch.testing.assert_close(out, (W @ x.unsqueeze(-1)).squeeze(-1) + bias, rtol=1e-12, atol=1e-12)
    shared = layer(torch.tensor(0.7, dtype=F64), x)
    torch.testing.assert_close(shared[1], out[1], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out[0], layer(torch.tensor(1.9, dtype=F64), x)[0])


def test_time_sequential_field_in_a_solve() -> None:
    basis = Fourier(1, period=2.0)
    f = TimeSequential(GalerkinLinear(2, 8, basis, dtype=F64), nn.Tanh(), GalerkinLinear(8, 2, basis, dtype=F64))
    y0 = torch.randn(3, 2, dtype=F64)
    t = torch.tensor([[0.0, 1.0], [0.5, 2.0], [0.2, 0.4]], dtype=F64)
    sol = physnode.solve(f, y0, t)
    assert sol.ys.shape == (3, 2, 2) and sol.stats.success


def test_errors() -> None:
    with pytest.raises(ValueError, match="Fourier period must be positive"):
        Fourier(2, period=0.0)
    with pytest.raises(ValueError, match="Fourier harmonics must be an integer >= 0"):
        Fourier(-1)
    with pytest.raises(ValueError, match="Chebyshev needs t0 < t1"):
        Chebyshev(3, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"strictly increasing; breakpoints\[1\] = 0.5 <= breakpoints\[0\] = 0.5"):
        PiecewiseConstant((0.5, 0.5))
    with pytest.raises(ValueError, match="at least one breakpoint"):
        PiecewiseConstant(())
    with pytest.raises(TypeError, match="basis must be a physnode.nn Basis"):
        GalerkinLinear(2, 2, "fourier")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"GalerkinLinear input x must have shape \(\.\.\., 3\), got \(5, 2\)"):
        GalerkinLinear(3, 2, Fourier(1))(torch.zeros(5), torch.zeros(5, 2))
