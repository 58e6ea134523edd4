"""Small float64 models built from the design blocks, shared by the tests of :mod:`physnode.nn`.

Each case is a model (an ``nn.Module``), the inputs to differentiate, how the initial state is built from them
(outside the solve, so lifts are tested too), and a readout of the solution that the loss is formed from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from physnode.nn import (
    Chebyshev,
    DataControlled,
    Fourier,
    GalerkinLinear,
    InputAugment,
    IntegralLoss,
    JacobianFrobenius,
    KineticEnergy,
    PiecewiseConstant,
    SecondOrder,
    TimeSequential,
    ZeroAugment,
)

F64 = torch.float64


def mlp(n_in: int, n_out: int, hidden: int = 8) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out)).to(F64)


class Autonomous(nn.Module):
    """``f(t, y) = net(y)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.net(y)


class ConcatControl(nn.Module):
    """``f(t, z, x) = net([z, x])``: the usual data-controlled field."""

    def __init__(self, dz: int, dx: int, hidden: int = 8) -> None:
        super().__init__()
        self.net = mlp(dz + dx, dz, hidden)

    def forward(self, t: Tensor, z: Tensor, x: Tensor) -> Tensor:
        return self.net(torch.cat([z, x], dim=-1))


@dataclass
class Case:
    """A model, its inputs, the initial state built from them and the readout the loss is formed from."""

    name: str
    model: nn.Module  # the field passed to physnode.solve
    extra: nn.Module | None  # modules outside the solve (lifts, heads) whose parameters are differentiated too
    inputs: Tensor
    make_y0: Callable[[Tensor], Tensor]
    readout: Callable[[Tensor], Tensor]

    def parameters(self) -> list[Tensor]:
        ps = list(self.model.parameters())
        if self.extra is not None:
            ps += list(self.extra.parameters())
        return ps


def make_case(name: str, batch: int = 3) -> Case:
    """Build the named case with fresh parameters (call under a fixed seed)."""
    x = torch.randn(batch, 2, dtype=F64)
    if name == "zero_augment":
        aug = ZeroAugment(2)
        return Case(name, Autonomous(mlp(4, 4)), None, x, aug, lambda ys: ys)
    if name == "input_augment":
        aug = InputAugment(2, 4, out_dim=3, dtype=F64)
        return Case(name, Autonomous(mlp(4, 4)), aug, x, aug, aug.project)
    if name == "second_order":
        field = SecondOrder(Autonomous(mlp(4, 2)))
        return Case(name, field, None, x, lambda q: SecondOrder.initial_state(q, 0.5 * q.flip(-1)), lambda ys: ys)
    if name == "data_controlled":
        field = DataControlled(ConcatControl(2, 2), input_dim=2)
        return Case(name, field, None, x, lambda x: field.initial_state(torch.tanh(x), x), lambda ys: ys)
    if name == "galerkin":
        f = TimeSequential(
            GalerkinLinear(2, 8, Fourier(2, period=2.0), dtype=F64),
            nn.Tanh(),
            GalerkinLinear(8, 2, Chebyshev(3, 0.0, 2.0), dtype=F64),
        )
        _perturb(f)
        return Case(name, f, None, x, lambda x: x, lambda ys: ys)
    if name == "galerkin_piecewise":
        f = TimeSequential(
            GalerkinLinear(2, 8, PiecewiseConstant.uniform(3, 0.0, 2.0), dtype=F64),
            nn.Tanh(),
            nn.Linear(8, 2, dtype=F64),
        )
        _perturb(f)
        return Case(name, f, None, x, lambda x: x, lambda ys: ys)
    if name == "integral":

        def running_cost(t: Tensor, z: Tensor) -> Tensor:
            return torch.cos(t) * z.square().sum(-1)

        loss = IntegralLoss(Autonomous(mlp(2, 2)), [KineticEnergy(), JacobianFrobenius("rademacher"), running_cost])
        # The Hutchinson noise is drawn from a seeded generator so that every run of the case uses the same.
        return Case(
            name, loss, None, x, lambda z: loss.initial_state(z, torch.Generator().manual_seed(1)), lambda ys: ys
        )
    raise KeyError(name)


def _perturb(module: nn.Module) -> None:
    """Move Galerkin coefficients away from their depth-invariant start, so that θ(t) really varies."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, GalerkinLinear):
                m.coeff.add_(0.3 * torch.randn_like(m.coeff))


CASES = [
    "zero_augment",
    "input_augment",
    "second_order",
    "data_controlled",
    "galerkin",
    "galerkin_piecewise",
    "integral",
]
