"""Gradients reach every learnable physical parameter, with every gradient method; constraints hold; fits work."""

from __future__ import annotations

import pytest
import torch
from physics_systems import TinyNet, double_pendulum_lagrangian, kepler_hamiltonian, lotka_volterra

import physnode
from physnode.physics import Hybrid, NBodyGravity, Param, PhysicsModel


def _nbody() -> NBodyGravity:
    return NBodyGravity(2, dim=2, G=Param(1.0, positive=True), masses=Param([1.0, 0.5], positive=True)).double()


MODELS = {
    "double_pendulum": (double_pendulum_lagrangian, [0.3, -0.2, 0.1, 0.0]),
    "kepler": (kepler_hamiltonian, [1.0, 0.0, 0.0, 1.1]),
    "lotka_volterra": (lotka_volterra, [2.0, 1.0]),
    "nbody": (_nbody, [1.0, 0.0, -0.5, 0.0, 0.0, 0.3, 0.0, -0.6]),
    "hybrid": (lambda: Hybrid(kepler_hamiltonian(), TinyNet(4, 2), on="velocities"), [1.0, 0.0, 0.0, 1.1]),
}


def _solve_kwargs(grad: str) -> dict:
    method = physnode.GRADIENTS.cls(grad).requires_method or "dopri5"
    kwargs: dict = {"method": method, "grad": grad, "rtol": 1e-5, "atol": 1e-7}
    if not physnode.SOLVERS.build(method).adaptive:
        kwargs["step_size"] = 0.01
    return kwargs


def _loss_and_grads(model: PhysicsModel, y0: torch.Tensor, **kwargs) -> dict[str, torch.Tensor]:
    t = torch.linspace(0.0, 0.3, 3, dtype=torch.float64)
    ys = physnode.odeint(model, y0, t, **kwargs)
    loss = (ys[:, -1] ** 2).sum() + ys.sin().sum()
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(loss, list(params.values()))
    return dict(zip(params, grads, strict=True))


@pytest.mark.parametrize("model_name", list(MODELS), ids=list(MODELS))
@pytest.mark.parametrize("grad", physnode.GRADIENTS.names(), ids=physnode.GRADIENTS.names())
def test_gradients_reach_every_learnable_parameter(grad: str, model_name: str) -> None:
    build, state = MODELS[model_name]
    model = build()
    y0 = torch.tensor(state, dtype=torch.float64)
    y0 = torch.stack([y0, y0 * 0.9])
    kwargs = _solve_kwargs(grad)
    grads = _loss_and_grads(model, y0, **kwargs)
    learnable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert learnable and set(grads) == set(learnable)
    for name, g in grads.items():
        assert torch.isfinite(g).all(), name
        assert g.abs().sum() > 0, f"no gradient reached {name}"
    if grad != "direct" and physnode.GRADIENTS.cls(grad).exact:
        ref = _loss_and_grads(model, y0, **{**kwargs, "grad": "direct"})
        for name, g in grads.items():
            torch.testing.assert_close(g, ref[name], rtol=1e-6, atol=1e-9, msg=f"{grad} vs direct on {name}")


def test_gradient_matches_finite_differences() -> None:
    """d(loss)/d(raw k) of a Kepler solve against central differences on the same fixed-step solve."""
    model = kepler_hamiltonian()
    y0 = torch.tensor([1.0, 0.0, 0.0, 1.1], dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)

    def loss() -> torch.Tensor:
        return physnode.odeint(model, y0, t, method="rk4", step_size=0.05).square().sum()

    raw = model.params["k"].raw
    (g,) = torch.autograd.grad(loss(), raw)
    eps = 1e-6
    with torch.no_grad():
        raw += eps
        up = loss()
        raw -= 2 * eps
        down = loss()
        raw += eps
    torch.testing.assert_close(g, (up - down) / (2 * eps), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["push_down", "push_up"])
def test_constrained_parameters_stay_in_domain(sign: float) -> None:
    positive = Param(0.5, positive=True)
    bounded = Param(0.5, bounds=(0.2, 0.9))
    vector = Param([1.0, 2.0, 3.0], positive=True)
    opt = torch.optim.Adam([*positive.parameters(), *bounded.parameters(), *vector.parameters()], lr=50.0)
    for _ in range(30):
        opt.zero_grad()
        loss = sign * (positive() + bounded() + vector().sum())
        loss.backward()
        opt.step()
        assert positive() > 0 and bool((vector() > 0).all())
        assert 0.2 <= bounded() <= 0.9
    if sign > 0:  # the optimiser really pushed against the constraint
        assert positive() < 1e-3 and bounded() < 0.2 + 1e-3


def test_fit_recovers_two_body_mass() -> None:
    """A few LBFGS iterations recover a perturbed mass of a two-body problem from its trajectory."""
    true_masses = [1.0, 0.4]
    truth = NBodyGravity(2, dim=2, masses=true_masses).double()
    y0 = torch.tensor([1.0, 0.0, -0.4, 0.0, 0.0, 0.25, 0.0, -0.6], dtype=torch.float64)
    t = torch.linspace(0.0, 2.0, 11, dtype=torch.float64)
    with torch.no_grad():
        data = physnode.odeint(truth, y0, t, method="rk4", step_size=0.02)
    model = NBodyGravity(2, dim=2, masses=Param([1.0, 0.6], positive=True)).double()
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=30, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (physnode.odeint(model, y0, t, method="rk4", step_size=0.02) - data).square().mean()
        loss.backward()
        return loss

    for _ in range(2):
        opt.step(closure)
    fitted = model.physical_parameters()["masses"].detach()
    torch.testing.assert_close(fitted, torch.tensor(true_masses, dtype=torch.float64), rtol=1e-4, atol=1e-6)
