"""Observations served by interpolation (``outputs="interpolate"``) and dense solutions (``dense=True``):
accuracy against the exact flow, per-trajectory times, exactness of every exact gradient method w.r.t. the discrete
solve including the interpolation, the refusals, and ``Solution.interpolate``.

Gradient methods come from ``registries``: a method whose solver has a continuous extension must equal ``direct``,
one whose solver has none must refuse with a clear error, so a newly registered method gets one of the two tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from registries import EXACT_GRADIENTS, RK, solver_for

import physnode
from physnode.solvers import SOLVERS

A = torch.tensor([[0.0, 1.0, 0.2], [-1.0, -0.1, 0.0], [0.3, 0.0, -0.5]], dtype=torch.float64)
Y0 = torch.tensor([[1.0, 0.5, -0.3], [-0.2, 0.8, 0.4]], dtype=torch.float64)
DENSE = [n for n in RK if SOLVERS.cls(n).tableau.dense is not None]


def _linear(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return y @ A.to(y.dtype).T


def _exact(y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``(B, T, D)`` exact states of the linear system, ``V exp(Λ t) V⁻¹ y0`` from the eigendecomposition of ``A``
    (distinct eigenvalues, condition number of ``V`` ~ 3: accurate to ~1e-15; checked against scipy's expm)."""
    tb = (t.expand(y0.shape[0], -1) if t.ndim == 1 else t).numpy()
    lam, V = np.linalg.eig(A.numpy())
    c = np.linalg.solve(V, y0.detach().numpy().T).T  # (B, D) coordinates in the eigenbasis
    out = np.einsum("ij,btj->bti", V, np.exp(lam[None, None, :] * tb[..., None]) * c[:, None, :])
    return torch.from_numpy(out.real.copy())


def test_reference_solution() -> None:
    ref = torch.from_numpy(scipy.linalg.expm(A.numpy() * 1.3)) @ Y0[1]
    torch.testing.assert_close(_exact(Y0, torch.tensor([1.3], dtype=torch.float64))[1, 0], ref, rtol=0, atol=1e-14)


def _times(B: int, T: int, seed: int = 0, span: float = 3.0) -> torch.Tensor:
    """``(B, T)`` increasing observation times from 0, different for every trajectory."""
    g = torch.Generator().manual_seed(seed)
    t = torch.sort(torch.rand(B, T, generator=g, dtype=torch.float64) * span, dim=1).values
    t[:, 0] = 0.0
    return t


@pytest.mark.parametrize(
    ("method", "rtol"),
    [
        ("dopri5", 1e-8),
        pytest.param("tsit5", 1e-8, marks=pytest.mark.slow),
        pytest.param("bosh3", 1e-5, marks=pytest.mark.slow),
    ],
)
def test_interpolated_outputs_are_accurate_with_fewer_steps(method: str, rtol: float) -> None:
    t = _times(2, 100)
    kw = dict(method=method, rtol=rtol, atol=rtol / 100)
    land = physnode.solve(_linear, Y0, t, **kw)
    interp = physnode.solve(_linear, Y0, t, outputs="interpolate", **kw)
    exact = _exact(Y0, t)
    err_land = float((land.ys - exact).abs().max())
    err_interp = float((interp.ys - exact).abs().max())
    # Interpolation error is of the order of the local error the tolerance allows: within 100x rtol here
    # (bosh3's cubic Hermite is the weakest), and the steps no longer follow the 99 observation intervals.
    assert err_interp < 100 * rtol, f"{method}: interpolated outputs off by {err_interp:.2e} (landing: {err_land:.2e})"
    assert int(interp.stats.n_accepted.max()) < 99 <= int(land.stats.n_accepted.min())
    assert interp.stats.nfe < land.stats.nfe


def test_backward_in_time_and_float32() -> None:
    t = torch.linspace(2.0, 0.0, 50, dtype=torch.float64)
    sol = physnode.solve(_linear, Y0, t, outputs="interpolate", rtol=1e-8, atol=1e-10)
    # Backward solve of a linear system from y(2) = Y0: y(t) = expm(A (t - 2)) Y0.
    ref = _exact(Y0, t - 2.0)
    assert float((sol.ys - ref).abs().max()) < 1e-6
    sol32 = physnode.solve(_linear, Y0.float(), t.float(), outputs="interpolate", rtol=1e-5, atol=1e-7)
    # float32: interpolation and steps at rtol 1e-5 stay within 1e-4 of the exact flow.
    assert float((sol32.ys.double() - ref).abs().max()) < 1e-4


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.W = torch.nn.Parameter(torch.randn(3, 3, generator=g, dtype=torch.float64) * 0.5)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(y @ self.W.T) - 0.1 * y + 0.05 * t.unsqueeze(-1)


def _loss_grads(grad: str, method: str, t: torch.Tensor, outputs: str = "interpolate"):
    f = _Net()
    y0 = Y0.clone().requires_grad_()
    solver = SOLVERS.build(method)
    # Low-order pairs at looser tolerances (exactness does not depend on the tolerance, only on the same steps).
    rtol = {1: 1e-2, 2: 1e-2, 3: 1e-4}.get(solver.order, 1e-6)
    kw = dict(step_size=0.17) if not solver.adaptive else dict(rtol=rtol, atol=rtol / 100)
    sol = physnode.solve(f, y0, t, method=method, grad=grad, outputs=outputs, **kw)
    w = torch.linspace(-1.0, 2.0, sol.ys.numel(), dtype=torch.float64).reshape(sol.ys.shape)
    loss = (w * sol.ys).sum() + 0.5 * sol.ys.square().sum()
    return sol, torch.autograd.grad(loss, [y0, f.W])


CAN = [g for g in EXACT_GRADIENTS if SOLVERS.build(solver_for(g)).dense_order is not None]
CANNOT = [g for g in EXACT_GRADIENTS if g not in CAN]


@pytest.mark.parametrize("grad", CAN, ids=CAN)
@pytest.mark.parametrize(
    "method",
    ["dopri5", "rk4", *(pytest.param(m, marks=pytest.mark.slow) for m in ("tsit5", "dopri8", "bosh3", "heun_euler"))],
)
def test_exact_gradients_include_the_interpolation(grad: str, method: str) -> None:
    """Same discrete solve (same steps), outputs between steps: equal to direct backprop up to round-off."""
    t = _times(2, 30, seed=3)
    ref_sol, ref = _loss_grads("direct", method, t)
    sol, got = _loss_grads(grad, method, t)
    assert torch.equal(sol.stats.n_accepted, ref_sol.stats.n_accepted)
    # Several observations fall inside single steps (else the test would not exercise the interpolation).
    assert int(sol.stats.n_accepted.min()) < 29
    for g, r in zip(got, ref, strict=True):
        # Same operations in another order (a replayed step, a vector-Jacobian product per stage): round-off only;
        # a missing interpolation cotangent would be off by O(1).
        assert float((g - r).abs().max()) <= 1e-11 * float(r.abs().max())


@pytest.mark.parametrize("grad", CANNOT, ids=CANNOT)
def test_methods_without_a_continuous_extension_refuse(grad: str) -> None:
    with pytest.raises(ValueError, match="continuous extension"):
        _loss_grads(grad, solver_for(grad), _times(2, 10))


def test_continuous_adjoint_supports_interpolated_outputs() -> None:
    """The continuous adjoint restarts from the forward outputs: it approximates the same gradient."""
    t = _times(2, 30, seed=3)
    _, ref = _loss_grads("direct", "dopri5", t)
    _, got = _loss_grads("adjoint", "dopri5", t)
    for g, r in zip(got, ref, strict=True):
        # Gradient of the exact flow vs of the discrete solve at rtol 1e-6: they agree to ~1e-5 relative.
        assert float((g - r).abs().max()) <= 1e-4 * float(r.abs().max())


def test_bad_outputs_option() -> None:
    with pytest.raises(ValueError, match="outputs must be 'land'.*or 'interpolate'.*got 'lerp'"):
        physnode.SolveOptions(outputs="lerp")
    with pytest.raises(ValueError, match="method='alf' has none"):
        physnode.SolveOptions(method="alf", outputs="interpolate")
    with pytest.raises(TypeError, match="dense must be True or False"):
        physnode.SolveOptions(dense=1)
    with pytest.raises(ValueError, match="differentiated by grad='direct' and grad='aca' only; grad='symplectic'"):
        physnode.SolveOptions(grad="symplectic", outputs="interpolate", options={"step_grad": True})
    opts = physnode.SolveOptions(outputs="interpolate", dense=True)
    assert physnode.SolveOptions.from_dict(opts.to_dict()) == opts


# ------------------------------------------------------------------------------------------ Solution.interpolate
def test_dense_solution_per_trajectory_and_differentiable() -> None:
    t_end = torch.tensor([[0.0, 2.0], [0.0, 3.0]], dtype=torch.float64)
    y0 = Y0.clone().requires_grad_()
    sol = physnode.solve(_linear, y0, t_end, dense=True, rtol=1e-9, atol=1e-11)
    tq = torch.tensor([[0.0, 0.3, 1.1, 2.0], [0.5, 1.7, 2.9, 3.0]], dtype=torch.float64)
    ys = sol.interpolate(tq)
    assert ys.shape == (2, 4, 3)
    # 4th-order interpolant at rtol 1e-9: within 1e-7 of the exact flow.
    assert float((ys.detach() - _exact(Y0, tq)).abs().max()) < 1e-7
    shared = sol.interpolate(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert shared.shape == (2, 2, 3)
    # d y(t)/d y0 = expm(A t): an independent reference for the gradient through the dense output.
    (g,) = torch.autograd.grad(ys[1, 2, 0], y0)
    ref = torch.from_numpy(scipy.linalg.expm(A.numpy() * 2.9))[0]
    torch.testing.assert_close(g[1], ref, rtol=0, atol=1e-6)
    assert float(g[0].abs().max()) == 0.0  # trajectories do not mix


def test_dense_solution_errors() -> None:
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    sol = physnode.solve(_linear, Y0, t, dense=True)
    with pytest.raises(ValueError, match=r"t\[0, 1\] = 1.5 lies outside the solved interval \[0.0, 1.0\]"):
        sol.interpolate(torch.tensor([0.5, 1.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="t must have shape"):
        sol.interpolate(torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="solve with dense=True"):
        physnode.solve(_linear, Y0, t).interpolate(t)
    with pytest.raises(ValueError, match="method='alf' has none"):
        physnode.solve(_linear, Y0, t, method="alf", dense=True)
    unbatched = physnode.solve(_linear, Y0[0], t, dense=True)
    assert unbatched.interpolate(torch.tensor([0.25, 0.75], dtype=torch.float64)).shape == (2, 3)


def test_dense_solution_after_a_failure_is_nan() -> None:
    """``raise_on_failure=False``: a trajectory that blew up (y' = y², y(0) = 1 at t = 1) has no dense solution
    after its last accepted step, like its outputs; the other trajectory is unaffected."""
    y0 = torch.tensor([[1.0], [0.1]], dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    sol = physnode.solve(lambda t, y: y * y, y0, t, dense=True, raise_on_failure=False, max_steps=500)
    assert int(sol.status[0]) != 0 and int(sol.status[1]) == 0
    ys = sol.interpolate(torch.tensor([0.0, 0.5, 1.5], dtype=torch.float64))
    # y = y0 / (1 - y0 t): 2 at t = 0.5 for the first, 0.1 / 0.85 at 1.5 for the second (rtol 1e-7 solve).
    torch.testing.assert_close(ys[0, :2, 0], torch.tensor([1.0, 2.0], dtype=torch.float64), rtol=1e-5, atol=0)
    assert torch.isnan(ys[0, 2]).all()
    torch.testing.assert_close(ys[1, 2, 0], torch.tensor(0.1 / 0.85, dtype=torch.float64), rtol=1e-5, atol=0)


@pytest.mark.parametrize("method", DENSE, ids=DENSE)
def test_every_tableau_serves_interpolated_outputs(method: str) -> None:
    t = torch.linspace(0.0, 1.0, 21, dtype=torch.float64)
    solver = SOLVERS.build(method)
    rtol = 1e-5 if solver.order >= 3 else 1e-3
    kw = dict(step_size=0.05) if not solver.adaptive else dict(rtol=rtol, atol=rtol / 100)
    sol = physnode.solve(_linear, Y0, t, method=method, outputs="interpolate", **kw)
    # Coarse check for every tableau (Euler with h = 0.05 is off by ~2e-2 at t = 1, its own global error).
    assert float((sol.ys - _exact(Y0, t)).abs().max()) < 5e-2
