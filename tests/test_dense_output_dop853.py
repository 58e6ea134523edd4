"""dopri8's seventh-order continuous extension (DOP853's dense output, four extra stages): agreement with scipy's
``DOP853`` dense output, its order, the ``interpolant=`` option, extra evaluations only where the extension is
used, the step's side at breakpoints, and exact gradients through it (``direct`` = ``aca`` = ``symplectic``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import torch

import physnode
from physnode.dense import evaluate
from physnode.solvers import SOLVERS
from physnode.solvers.dopri8 import TABLEAU, TABLEAU_FREE5


def _pendulum_np(t: float, y: np.ndarray) -> np.ndarray:
    return np.array([y[1], -np.sin(y[0]) + 0.3 * np.cos(t)])


def _pendulum(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.stack([y[:, 1], -torch.sin(y[:, 0]) + 0.3 * torch.cos(t)], dim=-1)


def _one_step(h: float, thetas: np.ndarray, interpolant: str = "dop853") -> tuple[np.ndarray, int]:
    """The extension of one fixed step of size ``h`` of the forced pendulum from ``y = (1, 0.2)`` at ``thetas``
    (and the evaluations of ``f`` the extension cost)."""
    solver = SOLVERS.build("dopri8", {"adaptive": False, "interpolant": interpolant})
    t0 = torch.zeros(1, dtype=torch.float64)
    hh = torch.full((1,), h, dtype=torch.float64)
    y0 = torch.tensor([[1.0, 0.2]], dtype=torch.float64)
    solver.step(_pendulum, t0, hh, solver.init(_pendulum, t0, y0, hh))
    calls = [0]

    def counted(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return _pendulum(t, y)

    y, h_dev, R = solver.dense_terms(counted)
    solver.dense_terms(counted)  # a second call reuses the extra stages
    out = evaluate(y, h_dev, R, torch.from_numpy(thetas)[None])[0].numpy()
    return out, calls[0]


def test_agrees_with_scipy_dop853_dense_output() -> None:
    h = 0.7
    ref_solver = scipy.integrate.DOP853(_pendulum_np, 0.0, np.array([1.0, 0.2]), 10.0, first_step=h, atol=1e3)
    ref_solver.step()  # one step of exactly h (accepted at this loose tolerance)
    assert ref_solver.t == h
    thetas = np.array([0.0, 0.1, 0.3, 0.55, 0.9, 1.0])
    ref = ref_solver.dense_output()(thetas * h).T
    got, calls = _one_step(h, thetas)
    # The same polynomial from the same stages (monomial vs Hairer's nested form): round-off only, the state is O(1)
    # and the coefficients reach ~500 (measured 1.4e-14).
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13)
    assert calls == 4  # f(t + h, y_(n+1)) and the three stages at c = 0.1, 0.2, 7/9, once


def test_order_seven_under_step_halving() -> None:
    """Local error of the extension ~ C h^8: the error ratio under halving approaches 2^8 = 256 (the free
    fifth-order one: 2^6 = 64). Reference: a step of the same size subdivided by scipy at rtol 1e-13."""
    thetas = np.array([0.25, 0.5, 0.8])

    def error(h: float, interpolant: str) -> float:
        ref = scipy.integrate.solve_ivp(
            _pendulum_np, (0.0, h), [1.0, 0.2], method="DOP853", rtol=1e-13, atol=1e-15, t_eval=thetas * h
        ).y.T
        return float(np.abs(_one_step(h, thetas, interpolant)[0] - ref).max())

    for interpolant, q in (("dop853", 7), ("free5", 5)):
        errors = [error(h, interpolant) for h in (0.8, 0.4)]
        ratio = errors[0] / errors[1]
        # Pre-asymptotic steps: the ratio is within a factor 0.6..1.6 of 2^(q+1) (measured 212 and 58 at these h).
        assert 0.6 * 2 ** (q + 1) < ratio < 1.6 * 2 ** (q + 1), f"{interpolant}: ratio {ratio:.1f}"


def test_interpolant_option() -> None:
    assert SOLVERS.build("dopri8").tableau is TABLEAU
    free = SOLVERS.build("dopri8", {"interpolant": "free5"})
    assert free.tableau is TABLEAU_FREE5 and free.dense_order == 5
    assert TABLEAU.dense_stages == 16 and TABLEAU_FREE5.dense_stages == 12
    with pytest.raises(ValueError, match="interpolant must be one of 'dop853', 'free5' for method 'dopri8', got 'x'"):
        physnode.SolveOptions(method="dopri8", options={"interpolant": "x"})


def test_extra_stages_only_on_steps_that_serve_observations() -> None:
    """Same steps with either extension (the extension does not steer the step size): dop853 costs exactly four
    evaluations more for each of the two steps that hold an observation (1.5, and the end 3.0)."""
    y0 = torch.tensor([[1.0, 0.2]], dtype=torch.float64)
    t = torch.tensor([0.0, 1.5, 3.0], dtype=torch.float64)
    kw = dict(method="dopri8", rtol=1e-6, atol=1e-8, outputs="interpolate")
    free = physnode.solve(_pendulum, y0, t, options={"interpolant": "free5"}, **kw)
    full = physnode.solve(_pendulum, y0, t, **kw)
    assert torch.equal(free.stats.n_accepted, full.stats.n_accepted) and int(full.stats.n_accepted[0]) > 4
    assert full.stats.nfe - free.stats.nfe == 2 * 4


def test_extra_stages_see_the_step_side_of_a_breakpoint() -> None:
    """y' = u(t) with u switching from 0 to 1 at t = 1 (a breakpoint): y = max(t - 1, 0). The extra stage at the
    end of the step that ends on the breakpoint must read u's left limit, else the interpolated states before 1
    are off by O(h)."""

    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (t >= 1.0).to(y.dtype).unsqueeze(-1).expand_as(y)

    y0 = torch.zeros(1, 1, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 0.9, 0.99, 1.3, 2.0], dtype=torch.float64)
    sol = physnode.solve(f, y0, t, method="dopri8", outputs="interpolate", breakpoints=[1.0])
    exact = torch.clamp(t - 1.0, min=0.0)
    # Piecewise linear solution: every stage and the extension are exact up to round-off on each side.
    torch.testing.assert_close(sol.ys[0, :, 0], exact, rtol=0, atol=1e-13)


class _Field(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.W = torch.nn.Parameter(torch.randn(2, 2, generator=g, dtype=torch.float64) * 0.7)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(y @ self.W.T) + 0.2 * torch.cos(t).unsqueeze(-1)


def test_exact_gradients_through_the_seventh_order_extension() -> None:
    """``aca`` and ``symplectic`` equal backprop through the same discrete solve, extension and extra stages
    included (a solve with a breakpoint, so the extra stages of replayed steps need the step's side too)."""
    g = torch.Generator().manual_seed(5)
    t = torch.sort(torch.rand(2, 25, generator=g, dtype=torch.float64) * 3.0, dim=1).values
    t[:, 0] = 0.0

    def grads(grad: str) -> tuple[physnode.Solution, list[torch.Tensor]]:
        f = _Field()
        y0 = torch.tensor([[0.5, -0.3], [0.1, 0.9]], dtype=torch.float64, requires_grad=True)
        sol = physnode.solve(
            f, y0, t, method="dopri8", grad=grad, rtol=1e-6, atol=1e-8, outputs="interpolate", breakpoints=[1.234]
        )
        w = torch.linspace(-1.0, 2.0, sol.ys.numel(), dtype=torch.float64).reshape(sol.ys.shape)
        return sol, list(torch.autograd.grad((w * sol.ys).sum() + 0.5 * sol.ys.square().sum(), [y0, f.W]))

    ref_sol, ref = grads("direct")
    assert int(ref_sol.stats.n_accepted.max()) < 24  # observations share steps: the extension is exercised
    for method in ("aca", "symplectic"):
        sol, got = grads(method)
        assert torch.equal(sol.stats.n_accepted, ref_sol.stats.n_accepted)
        for a, r in zip(got, ref, strict=True):
            # Same operations in another order: round-off only (a missing extra-stage cotangent is off by >1e-3).
            assert float((a - r).abs().max()) <= 1e-11 * float(r.abs().max()), method


def test_dense_solution_gradient_matches_finite_differences() -> None:
    """``Solution.interpolate`` of a dense dopri8 solve is differentiable through the extra stages."""
    t = torch.tensor([[0.0, 2.0]], dtype=torch.float64)
    tq = torch.tensor([[0.3, 1.7]], dtype=torch.float64)

    def value(y0: torch.Tensor) -> torch.Tensor:
        sol = physnode.solve(_Field(), y0, t, method="dopri8", dense=True, rtol=1e-10, atol=1e-12)
        return sol.interpolate(tq)[0, 1, 0]

    y0 = torch.tensor([[0.5, -0.3]], dtype=torch.float64, requires_grad=True)
    (gy,) = torch.autograd.grad(value(y0), y0)
    fd = []
    for i in range(2):
        e = torch.zeros_like(y0)
        e[0, i] = 1e-5
        with torch.no_grad():
            fd.append(float(value(y0.detach() + e) - value(y0.detach() - e)) / 2e-5)
    # Central differences with step 1e-5 (truncation ~1e-10) of a solve at rtol 1e-10: agree to ~1e-7.
    np.testing.assert_allclose(gy[0].numpy(), fd, rtol=0, atol=1e-6)
