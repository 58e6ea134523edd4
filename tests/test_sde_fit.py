"""physnode.sde.fit_sde: recovering drift and diffusion parameters from an ensemble of noisy trajectories."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from physnode.sde import ScalarDiffusion, fit_sde, moment_loss

F64 = torch.float64


class OU(nn.Module):
    """Ornstein–Uhlenbeck drift -theta y with a learnable rate."""

    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta, dtype=F64))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.theta * y


def ou_data(theta: float, sigma: float, n: int, times: torch.Tensor, seed: int) -> torch.Tensor:
    """Exact OU paths (N, T, 1) from the Gaussian transition law, independent of any SDE solver."""
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(n, times.numel(), 1, dtype=F64)
    x[:, 0] = 1.5 + 0.3 * torch.randn(n, 1, generator=g, dtype=F64)
    for k in range(1, times.numel()):
        a = math.exp(-theta * float(times[k] - times[k - 1]))
        x[:, k] = a * x[:, k - 1] + sigma * math.sqrt((1 - a * a) / (2 * theta)) * torch.randn(
            n, 1, generator=g, dtype=F64
        )
    return x


def test_recovers_ornstein_uhlenbeck_rate_and_diffusion_scale() -> None:
    theta, sigma = 1.0, 0.5
    times = torch.linspace(0.0, 2.5, 11, dtype=F64)
    data = ou_data(theta, sigma, 1000, times, seed=123)
    drift, diffusion = OU(0.5), ScalarDiffusion(0.2, dtype=F64)
    result = fit_sde(drift, diffusion, times, data, dt=0.125, iterations=80, lr=0.1, n_samples=1000, seed=1)
    # Tolerance: the per-time sample standard deviations of 1000 observed and 1000 simulated paths each carry a
    # relative standard error 1/sqrt(2 * 1000) ≈ 2.2 %, ≈ 3.2 % for their difference, pooled over 10 times;
    # the reversible-Heun weak bias at dt = 0.125 for theta = 1 is below 1 %. 10 % is > 3 standard errors.
    # (Measured: sigma 0.482, theta 1.03; Brownian seeds 2-4 give sigma 0.51-0.52, theta 1.03-1.05.)
    assert abs(diffusion.sigma.item() - sigma) < 0.1 * sigma
    assert abs(drift.theta.item() - theta) < 0.15 * theta
    assert result.final_loss < 0.01 * result.losses[0]


def test_fit_is_deterministic_given_the_seed() -> None:
    times = torch.linspace(0.0, 1.0, 5, dtype=F64)
    data = ou_data(1.0, 0.5, 50, times, seed=0)

    def run(**kw) -> tuple[list[float], float]:
        drift, diffusion = OU(0.5), ScalarDiffusion(0.2, dtype=F64)
        res = fit_sde(drift, diffusion, times, data, dt=0.125, iterations=3, **kw)
        return res.losses, diffusion.sigma.item()

    assert run(seed=4) == run(seed=4)
    assert run(seed=4) != run(seed=5)
    assert run(seed=4, resample=True) == run(seed=4, resample=True)
    assert run(seed=4, resample=True)[0][1:] != run(seed=4)[0][1:]  # iteration 0 shares the seed


def test_fit_with_adjoint_follows_the_direct_path() -> None:
    # The reversible adjoint gives the gradient of the same discrete solve, so Adam takes the same steps.
    times = torch.linspace(0.0, 1.0, 5, dtype=F64)
    data = ou_data(1.0, 0.5, 40, times, seed=0)
    histories = []
    for grad in ("direct", "adjoint_reversible_heun"):
        drift, diffusion = OU(0.5), ScalarDiffusion(0.2, dtype=F64)
        histories.append(fit_sde(drift, diffusion, times, data, dt=0.125, iterations=4, grad=grad, seed=2).losses)
    assert histories[0] == pytest.approx(histories[1], rel=1e-9, abs=0)


def test_moment_loss_against_hand_computation() -> None:
    obs = torch.tensor([[[0.0], [1.0]], [[2.0], [3.0]]], dtype=F64)  # N=2, T=2, D=1
    sim = torch.tensor([[[1.0], [1.0]], [[1.0], [5.0]]], dtype=F64)
    # Means: obs (1, 2), sim (1, 3); stds: obs (sqrt 2, sqrt 2), sim (0, 2 sqrt 2); scale 2.
    expected = ((0 + 1) / 4 + (2 + 2) / 4) / 2
    assert moment_loss(sim, obs, torch.tensor([2.0], dtype=F64)).item() == pytest.approx(expected, rel=1e-14)
    assert moment_loss(obs, obs, torch.ones(1, dtype=F64)).item() == 0.0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"loss": "elbo"}, ValueError, r"unknown loss='elbo'; choose one of 'moments'"),
        ({"data_values": torch.zeros(1, 5, 1, dtype=F64)}, ValueError, r"N >= 2 observed trajectories"),
        ({"data_values": torch.zeros(4, 5, dtype=F64)}, ValueError, r"data_values must have shape \(N, T, D\)"),
        ({"data_values": torch.zeros(4, 5, 1, dtype=torch.int32)}, TypeError, r"data_values must be float32"),
        ({"data_times": torch.zeros(4, 5, dtype=F64)}, ValueError, r"every trajectory must be observed at the same"),
        ({"data_times": torch.linspace(0, 1, 4, dtype=F64)}, ValueError, r"data_times has 4 times but .* T = 5"),
        ({"data_times": [0.0, 1.0]}, TypeError, r"must be tensors"),
        ({"n_samples": 1}, ValueError, r"n_samples must be an int >= 2"),
        ({"iterations": 0}, ValueError, r"iterations must be a positive int"),
        ({"lr": -1.0}, ValueError, r"lr must be a positive finite number"),
        ({"seed": -2}, ValueError, r"seed must be a non-negative int"),
        ({"dt": 0.0}, ValueError, r"dt must be a positive finite step size"),
        # Each of these used to surface as a raw torch / Python error (or, for a tensor without grad, silently
        # fit nothing for it).
        ({"params": [1.0]}, TypeError, r"params\[0\] must be a tensor, got float"),
        ({"params": [torch.ones(2, dtype=F64)]}, ValueError, r"params\[0\] \(shape \(2,\), torch.float64\) cannot be"),
        ({"params": [torch.ones(2, dtype=F64, requires_grad=True) * 2]}, ValueError, r"pass the leaf itself"),
        ({"optimizer": "adam"}, TypeError, r"optimizer must be a torch.optim.Optimizer .* got str"),
        ({"callback": 3}, TypeError, r"callback must be callable"),
        ({"resample": "yes"}, TypeError, r"resample must be True or False"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_inputs(kwargs, exc, match) -> None:
    times = torch.linspace(0.0, 1.0, 5, dtype=F64)
    args = {"data_times": times, "data_values": ou_data(1.0, 0.5, 4, times, 0), "dt": 0.125, "iterations": 1}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        fit_sde(OU(0.5), ScalarDiffusion(0.2, dtype=F64), **args)


def test_nothing_to_fit_and_nan_data() -> None:
    times = torch.linspace(0.0, 1.0, 5, dtype=F64)
    data = ou_data(1.0, 0.5, 4, times, 0)
    with pytest.raises(ValueError, match=r"nothing to fit"):
        fit_sde(lambda t, y: -y, ScalarDiffusion(0.2, learnable=False, dtype=F64), times, data, dt=0.125)
    data[2, 3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"data_values contains NaN or Inf \(first at index \(2, 3, 0\)\)"):
        fit_sde(OU(0.5), ScalarDiffusion(0.2, dtype=F64), times, data, dt=0.125)


def test_params_may_be_a_single_tensor() -> None:
    # A lone tensor used to be iterated element by element ("Boolean value of Tensor ... is ambiguous").
    times = torch.linspace(0.0, 1.0, 5, dtype=F64)
    theta = torch.tensor(0.5, dtype=F64, requires_grad=True)
    fit_sde(
        lambda t, y: -theta * y,
        ScalarDiffusion(0.2, dtype=F64),
        times,
        ou_data(1.0, 0.5, 4, times, 0),
        dt=0.125,
        iterations=2,
        params=theta,
    )
    assert theta.item() != 0.5


class _SqrtRate(OU):
    """Drift ``-sqrt(theta) y``: NaN once an oversized optimiser step makes ``theta`` negative."""

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.theta.sqrt() * y


def test_divergence_stops_the_fit() -> None:
    # lr = 100 drives theta below zero within a few Adam steps: the paths used to turn NaN and the fit went on
    # with a NaN loss history.
    times = torch.linspace(0.0, 1.0, 5, dtype=F64)
    data = ou_data(1.0, 0.5, 4, times, 0)
    with pytest.raises(
        FloatingPointError, match=r"fit_sde diverged at iteration \d \(after \d optimiser steps\).*NaN or Inf.*Lower lr"
    ):
        fit_sde(_SqrtRate(0.5), ScalarDiffusion(0.2, dtype=F64), times, data, dt=0.125, iterations=5, lr=100.0)
