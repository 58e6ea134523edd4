"""Structure-preserving solvers leapfrog and yoshida4: order, bounded energy error, compatibility, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from physics_systems import TinyNet, harmonic_chain, kepler_energy_ref, kepler_hamiltonian

import physnode
from physnode.physics import Hamiltonian, Hybrid, NBodyGravity, Param

SYMPLECTIC = {"leapfrog": 2, "yoshida4": 4}


def oscillator(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A plain callable: q' = p, p' = -q (positions first half, momenta second half)."""
    return torch.cat([y[..., 1:], -y[..., :1]], -1)


def _slope(hs: list[float], errs: list[float]) -> float:
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


@pytest.mark.parametrize("method", list(SYMPLECTIC), ids=list(SYMPLECTIC))
def test_order_on_harmonic_oscillator(method: str) -> None:
    y0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)
    T = 2.0
    t = torch.tensor([0.0, T], dtype=torch.float64)
    exact = torch.stack(
        [y0[:, 0] * math.cos(T) + y0[:, 1] * math.sin(T), -y0[:, 0] * math.sin(T) + y0[:, 1] * math.cos(T)], -1
    )
    hs = [0.2, 0.1, 0.05, 0.025]
    errs = []
    for h in hs:
        ys = physnode.odeint(oscillator, y0, t, method=method, step_size=h)
        errs.append(float((ys[:, -1] - exact).abs().max()))
    assert abs(_slope(hs, errs) - SYMPLECTIC[method]) < 0.3, errs


@pytest.mark.parametrize("method", list(SYMPLECTIC), ids=list(SYMPLECTIC))
def test_order_on_nonlinear_kepler(method: str) -> None:
    """Order on an eccentric Kepler orbit against a tight dopri8 reference (a nonlinear force)."""
    model = kepler_hamiltonian()
    y0 = torch.tensor([1.0, 0.0, 0.0, 1.3], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with torch.no_grad():
        ref = physnode.odeint(model, y0, t, method="dopri8", rtol=1e-13, atol=1e-13)[-1]
        hs = [0.1, 0.05, 0.025, 0.0125]
        errs = [float((physnode.odeint(model, y0, t, method=method, step_size=h)[-1] - ref).abs().max()) for h in hs]
    assert abs(_slope(hs, errs) - SYMPLECTIC[method]) < 0.3, errs


def _energy_errors(method: str, n_steps: int, h: float = 0.05, **kwargs) -> np.ndarray:
    """|H(y(t)) - H(y0)| at 201 times over ``n_steps`` steps of size ``h`` on an eccentric Kepler orbit."""
    model = kepler_hamiltonian()
    y0 = torch.tensor([1.0, 0.0, 0.0, 1.3], dtype=torch.float64)
    t = torch.linspace(0.0, h * n_steps, 201, dtype=torch.float64)
    with torch.no_grad():
        ys = physnode.odeint(model, y0, t, method=method, **kwargs)
    return (kepler_energy_ref(ys) - kepler_energy_ref(y0)).abs().numpy()


def _assert_bounded(err: np.ndarray) -> None:
    """The worst error in the last quarter is no larger than in the first quarter (up to 1.5x)."""
    quarter = len(err) // 4
    assert err[-quarter:].max() <= 1.5 * err[:quarter].max(), (err[:quarter].max(), err[-quarter:].max())


def test_energy_error_stays_bounded_over_long_horizons() -> None:
    """10^4 leapfrog steps (about 30 orbits): no secular energy drift, whereas dopri5's error grows."""
    _assert_bounded(_energy_errors("leapfrog", 10_000, step_size=0.05))
    dopri = _energy_errors("dopri5", 10_000, rtol=1e-5, atol=1e-8)
    quarter = len(dopri) // 4
    assert dopri[-quarter:].max() > 3 * dopri[:quarter].max()


def test_yoshida4_energy_error_bounded() -> None:
    _assert_bounded(_energy_errors("yoshida4", 2_000, step_size=0.05))


@pytest.mark.slow
def test_yoshida4_energy_error_bounded_long() -> None:
    _assert_bounded(_energy_errors("yoshida4", 10_000, step_size=0.05))


def test_nbody_and_chain_work_and_are_time_reversible() -> None:
    """Integrating forward then backward returns to the start to round-off (a symmetric method)."""
    for model, y0 in [
        (NBodyGravity(3, dim=2, masses=[1.0, 0.8, 0.5], softening=0.05).double(), torch.randn(2, 12).double()),
        (harmonic_chain(4), torch.randn(3, 8).double()),
    ]:
        t = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)
        with torch.no_grad():
            fwd = physnode.odeint(model, y0, t, method="yoshida4", step_size=0.01)
            back = physnode.odeint(model, fwd[:, -1], t.flip(0), method="yoshida4", step_size=0.01)
        torch.testing.assert_close(back[:, -1], y0, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", list(SYMPLECTIC), ids=list(SYMPLECTIC))
def test_incompatible_systems_raise(method: str) -> None:
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    mixed = Hamiltonian("p**2/2 + q**2/2 + q*p", ["q"], ["p"]).double()
    with pytest.raises(ValueError, match="declares separable=False"):
        physnode.odeint(mixed, y0, t, method=method, step_size=0.1)
    hybrid = Hybrid(kepler_hamiltonian(), TinyNet(4, 2), on="velocities")
    with pytest.raises(ValueError, match="declares separable=False"):
        physnode.odeint(
            hybrid, torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64), t, method=method, step_size=0.1
        )
    with pytest.raises(ValueError, match="even dimension"):
        physnode.odeint(lambda t, y: -y, torch.ones(3, dtype=torch.float64), t, method=method, step_size=0.1)
    with pytest.raises(ValueError, match="needs step_size"):
        physnode.odeint(oscillator, y0, t, method=method)


@pytest.mark.parametrize("method", list(SYMPLECTIC), ids=list(SYMPLECTIC))
def test_gradcheck_through_symplectic_solve(method: str) -> None:
    def final_state(k: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
        f = lambda t, y: torch.cat([y[..., 1:], -k * torch.sin(y[..., :1])], -1)  # noqa: E731
        return physnode.odeint(f, y0, torch.tensor([0.0, 0.3], dtype=torch.float64), method=method, step_size=0.1)

    k = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([0.4, -0.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(final_state, (k, y0))


GRADS = [g for g in physnode.GRADIENTS.names() if physnode.GRADIENTS.cls(g).requires_method is None]


@pytest.mark.parametrize("grad", GRADS, ids=GRADS)
@pytest.mark.parametrize("method", list(SYMPLECTIC), ids=list(SYMPLECTIC))
def test_symplectic_solvers_with_gradient_methods(method: str, grad: str) -> None:
    """Every gradient method that works with any solver gives the leapfrog gradient (exact ones: direct's)."""
    model = NBodyGravity(2, dim=2, masses=Param([1.0, 0.5], positive=True)).double()
    y0 = torch.tensor([1.0, 0.0, -0.5, 0.0, 0.0, 0.3, 0.0, -0.6], dtype=torch.float64)
    t = torch.linspace(0.0, 0.5, 3, dtype=torch.float64)

    def grads(g: str) -> torch.Tensor:
        ys = physnode.odeint(model, y0, t, method=method, grad=g, step_size=0.05)
        return torch.autograd.grad(ys.square().sum(), model.params["masses"].raw)[0]

    try:
        g = grads(grad)
    except ValueError as e:  # the gradient method's own check() declares the solver unsupported
        if f"grad={grad!r}" not in str(e):
            raise
        pytest.skip(f"grad={grad!r} does not support method={method!r}: {e}")
    ref = grads("direct")
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    if physnode.GRADIENTS.cls(grad).exact:
        torch.testing.assert_close(g, ref, rtol=1e-7, atol=1e-10)
    else:  # a continuous adjoint: consistent with the discrete gradient up to the discretisation error
        torch.testing.assert_close(g, ref, rtol=5e-2, atol=1e-4)
