"""Science checks: three-body masses (noise-free and noisy, with missing data) and a hybrid pendulum."""

from __future__ import annotations

import pytest
import torch

from physnode.datasets import pendulum, three_body
from physnode.datasets.generators import K1, K2
from physnode.fit import fit
from physnode.forecast import forecast
from physnode.physics import Hybrid, NBodyGravity, Param, SymbolicODE

TRUE = torch.tensor([1.1, 1.1, 0.9], dtype=torch.float64)


def _model() -> NBodyGravity:
    return NBodyGravity(3, dim=3, G=1.0, k_r=K2, k_v=K1, masses=Param([1.0, 1.2, 0.8], positive=True))


def _three_body(t_split: float, **kw):
    data = three_body(n_times=int(200 * t_split) + 1, t_span=(0.0, 2 * t_split), **kw)
    return data.split_by_time(t_split)


def test_three_body_masses_noise_free_short_window() -> None:
    obs, fc = _three_body(0.5)
    res = fit(_model(), obs, optimizer="gauss-newton", epochs=10, rtol=1e-6, progress=False)
    m = torch.tensor(res.params["masses"], dtype=torch.float64)
    assert torch.allclose(m, TRUE, rtol=1e-3)
    pred = forecast(res.model, fc, fc.times[0], rtol=1e-6)
    err = (pred.values[..., :9] - fc.values).abs().max()
    assert float(err) < 1e-2


@pytest.mark.slow
def test_three_body_masses_noise_free_aca_window() -> None:
    obs, fc = _three_body(1.0)  # 101 points on [0, 1], forecast on (1, 2]
    res = fit(_model(), obs, optimizer="gauss-newton", epochs=15, progress=False)
    assert torch.allclose(torch.tensor(res.params["masses"], dtype=torch.float64), TRUE, rtol=1e-3)
    pred = forecast(res.model, fc, fc.times[0])
    assert float((pred.values[..., :9] - fc.values).abs().max()) < 1e-2


def test_three_body_noisy_missing() -> None:
    obs, _ = _three_body(0.5, noise=0.01, missing=0.3, seed=1)
    assert 0.6 < float(obs.mask.float().mean()) < 0.8
    res = fit(_model(), obs, optimizer="gauss-newton", epochs=10, rtol=1e-6, progress=False)
    m = torch.tensor(res.params["masses"], dtype=torch.float64)
    se = torch.tensor(res.uncertainty["masses"], dtype=torch.float64)
    assert torch.allclose(m, TRUE, rtol=2e-2)
    assert bool((se > 0).all()) and bool(((m - TRUE).abs() < 5 * se).all())


class Friction(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


class NeuralODE(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


def test_hybrid_pendulum_beats_physics_and_neural_ode() -> None:
    torch.manual_seed(0)
    truth = SymbolicODE(["omega", "-9.81*sin(theta) - 0.3*omega"], ["theta", "omega"], {})
    base = pendulum(n_trajectories=4, n_times=41, t_span=(0.0, 4.0), seed=0)
    from physnode.data import Trajectories
    from physnode.odeint import odeint

    y0 = base.metadata_tensor("initial_state")
    ys = odeint(truth, y0, base.times).detach()
    data = Trajectories(base.times, ys, channels=base.channels, metadata=base.metadata)
    obs, fc = data.split_by_time(2.0)

    def physics() -> SymbolicODE:
        return SymbolicODE(["omega", "-g*sin(theta)"], ["theta", "omega"], {"g": 9.81})

    kw = {"optimizer": "adam", "lr": 0.02, "epochs": 60, "rtol": 1e-5, "atol": 1e-7, "progress": False}
    hybrid = fit(Hybrid(physics(), Friction(), on=[1]), obs, **kw).model
    neural = fit(NeuralODE(), obs, **kw).model

    def err(model) -> float:
        pred = forecast(model, fc, fc.times[0], rtol=1e-6)
        return float((pred.values - fc.values).square().mean().sqrt())

    e_h, e_p, e_n = err(hybrid), err(physics()), err(neural)
    assert e_h < e_p and e_h < e_n, (e_h, e_p, e_n)
