"""Every gradient method on models built from the design blocks equals backprop through the same discrete solve.

The augmented, data-controlled, second-order, Galerkin and integral-loss models add nothing but state and
parameters, so each exact method must reproduce ``grad="direct"`` on the same steps to round-off (1e-10 relative
in float64: a few hundred steps of error growth over ~1e-16). The list of methods is read from the registry; a
method with ``requires_method`` runs on that solver, the others on dopri5.
"""

from __future__ import annotations

import pytest
import torch
from nn_systems import CASES, make_case

import physnode
from physnode.gradients import GRADIENTS
from physnode.nn import IntegralLoss, JacobianFrobenius, KineticEnergy
from physnode.solvers import SOLVERS

EXACT = [n for n in GRADIENTS.names() if GRADIENTS.cls(n).exact and n != "direct"]
INEXACT = [n for n in GRADIENTS.names() if not GRADIENTS.cls(n).exact]


def solver_kwargs(grad: str, rtol: float, atol: float) -> dict:
    """The solver a method needs; 1000x looser tolerances for low-order solvers (exactness does not depend on the
    tolerance, only on replaying the same steps; a low order at tight tolerances needs many thousands of steps)."""
    method = GRADIENTS.cls(grad).requires_method or "dopri5"
    if SOLVERS.build(method).order < 4:
        rtol, atol = max(rtol, 1e-4), max(atol, 1e-6)
    return dict(method=method, rtol=rtol, atol=atol)


def times(batch: int) -> torch.Tensor:
    """Per-trajectory observation times on about [0, 2]: each trajectory its own start and grid."""
    t = torch.sort(torch.rand(batch, 4, dtype=torch.float64) * 1.8 + 0.2, dim=1).values
    return torch.cat([0.1 * torch.rand(batch, 1, dtype=torch.float64), t], dim=1)


def run(name: str, grad: str, **kw):
    """Solve the case, form a loss from every output and return (solution, gradients)."""
    torch.manual_seed(0)
    case = make_case(name)
    t = times(case.inputs.shape[0])
    inputs = case.inputs.clone().requires_grad_()
    sol = physnode.solve(case.model, case.make_y0(inputs), t, grad=grad, **kw)
    out = case.readout(sol.ys)
    w = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    loss = (w * out).sum() + 0.5 * out.square().sum()
    return sol, torch.autograd.grad(loss, [inputs, *case.parameters()])


def max_rel(got, ref) -> float:
    worst = 0.0
    for g, r in zip(got, ref, strict=True):
        scale = float(r.abs().max())
        assert scale > 0, "a reference gradient is zero: the comparison would be vacuous"
        worst = max(worst, float((g - r).abs().max()) / scale)
    return worst


@pytest.mark.parametrize("grad", EXACT, ids=EXACT)
@pytest.mark.parametrize("name", CASES, ids=CASES)
def test_exact_methods_equal_direct(name: str, grad: str) -> None:
    kw = solver_kwargs(grad, 1e-8, 1e-10)
    ref, g_ref = run(name, "direct", **kw)
    sol, g = run(name, grad, **kw)
    assert torch.equal(sol.stats.n_accepted, ref.stats.n_accepted), "the replayed solve took other steps"
    torch.testing.assert_close(sol.ys, ref.ys, rtol=1e-13, atol=1e-13)
    rel = max_rel(g, g_ref)
    assert rel <= 1e-10, f"{name}/{grad}: gradient differs from direct backprop by {rel:.2e} (relative)"


# The discontinuous Galerkin field costs the continuous adjoint hundreds of rejected backward steps (~10 s).
ADJOINT_CASES = [pytest.param(n, marks=pytest.mark.slow) if n == "galerkin_piecewise" else n for n in CASES]


@pytest.mark.parametrize("grad", INEXACT, ids=INEXACT)
@pytest.mark.parametrize("name", ADJOINT_CASES, ids=CASES)
def test_continuous_adjoint_close_to_direct(name: str, grad: str) -> None:
    """The continuous adjoint differentiates the exact flow, not the discrete solve, so it agrees with direct only
    to the accuracy of both solves. At rtol=1e-8 the smooth models agree to < 1e-7 (measured up to 6e-8), hence
    1e-6. Piecewise-constant weights make the field jump at the breakpoints; the backward solve resolves the jumps
    only to its tolerance (measured 4e-6), hence 1e-4 there."""
    kw = solver_kwargs(grad, 1e-8, 1e-10)
    _, g_ref = run(name, "direct", **kw)
    _, g = run(name, grad, **kw)
    rel = max_rel(g, g_ref)
    tol = 1e-4 if name == "galerkin_piecewise" else 1e-6
    assert rel <= tol, f"{name}/{grad}: continuous adjoint differs from direct by {rel:.2e} (relative)"


@pytest.mark.parametrize("grad", ["direct", "aca"])
def test_regularised_integral_against_finite_differences(grad: str) -> None:
    """The exactness tests compare methods that share torch.func's double backward; finite differences check the
    gradient of ∫‖f‖² + ‖εᵀ∂f/∂z‖² dt independently (tiny float64 problem, fixed rk4 steps, noise fixed by a
    seeded generator so that every evaluation of the loss sees the same ε)."""
    torch.manual_seed(0)
    w0 = 0.7 * torch.randn(2, 2, dtype=torch.float64)
    z0 = torch.randn(2, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)

    def integrals(w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        loss = IntegralLoss(lambda t, y: torch.tanh(y @ w.T), [KineticEnergy(), JacobianFrobenius("gaussian")])
        y0 = loss.initial_state(z, generator=torch.Generator().manual_seed(5))
        ys = physnode.odeint(loss, y0, t, method="rk4", step_size=0.125, grad=grad, params=[w])
        return loss.split(ys)[1]

    w = w0.clone().requires_grad_()
    z = z0.clone().requires_grad_()
    assert torch.autograd.gradcheck(integrals, (w, z), eps=1e-6, atol=1e-7, rtol=1e-6)
