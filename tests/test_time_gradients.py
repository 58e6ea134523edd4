"""Gradients with respect to the observation times and the initial time, for every gradient method.

Reference: ``dy/dt = -k (1 + sin(t)/2) y`` has the closed form ``y(t) = y0 exp(-k (t - t0 - (cos t - cos t0)/2))``,
differentiated by autograd with respect to ``t`` and ``t0`` directly. The solve's time gradient is the exact
flow's (:mod:`physnode.time_input`), so it matches the closed form to the solve's tolerance.
"""

from __future__ import annotations

import pytest
import torch
from registries import ALL_GRADIENTS, IMPLICIT, solver_for

import physnode
from physnode.solvers import SOLVERS

K = 0.7


def accuracy(method: str) -> tuple[dict, float]:
    """Solve tolerances for ``method`` and the relative agreement with the closed form they buy: tight for
    high-order methods, looser for low-order ones (which would need 10^5 steps for 1e-10)."""
    order = SOLVERS.build(method).order
    if order >= 5:
        return dict(rtol=1e-10, atol=1e-12), 1e-6
    if order >= 3:
        return dict(rtol=1e-7, atol=1e-9), 1e-4
    return dict(rtol=1e-5, atol=1e-7), 1e-2


def rhs(k: torch.Tensor):
    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -k * y * (1 + 0.5 * torch.sin(t)).unsqueeze(-1)

    return f


def exact(y0: torch.Tensor, t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Closed form at ``t`` ``(B, T)`` from ``y0`` ``(B, D)``: ``(B, T, D)``."""
    t0 = t[:, :1]
    phase = (t - t0) - 0.5 * (torch.cos(t) - torch.cos(t0))
    return y0.unsqueeze(1) * torch.exp(-k * phase).unsqueeze(-1)


def loss(ys: torch.Tensor) -> torch.Tensor:
    w = torch.linspace(-1.0, 2.0, ys.numel(), dtype=ys.dtype).reshape(ys.shape)
    return (w * ys + ys**2).sum()


Y0 = torch.tensor([[1.0, -0.5], [2.0, 0.3]], dtype=torch.float64)
T_SHARED = torch.tensor([0.3, 1.0, 1.7, 2.5], dtype=torch.float64)
T_EACH = torch.tensor([[0.3, 1.0, 1.7, 2.5], [-0.2, 0.4, 2.0, 3.0]], dtype=torch.float64)


def reference(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed-form ``dL/dt``, ``dL/dy0``, ``dL/dk``."""
    t = t.clone().requires_grad_()
    y0 = Y0.clone().requires_grad_()
    k = torch.tensor(K, dtype=torch.float64, requires_grad=True)
    tb = t.unsqueeze(0).expand(2, -1) if t.ndim == 1 else t
    return torch.autograd.grad(loss(exact(y0, tb, k)), (t, y0, k))


def solved(t: torch.Tensor, grad: str, method: str, **kw) -> tuple[torch.Tensor, ...]:
    t = t.clone().requires_grad_()
    y0 = Y0.clone().requires_grad_()
    k = torch.tensor(K, dtype=torch.float64, requires_grad=True)
    ys = physnode.odeint(rhs(k), y0, t, method=method, grad=grad, params=[k], **kw)
    return torch.autograd.grad(loss(ys), (t, y0, k))


def _cases() -> list:
    """Every method on shared times; per-trajectory times and the low-order reversible solvers with the slow tests."""
    out = []
    for grad in ALL_GRADIENTS:
        low = SOLVERS.build(solver_for(grad)).order < 3
        for times in ("shared", "per_trajectory"):
            slow = low or (times == "per_trajectory" and grad not in ("direct", "aca"))
            out.append(pytest.param(grad, times, marks=pytest.mark.slow) if slow else (grad, times))
    return out


@pytest.mark.parametrize(("grad", "times"), _cases())
def test_time_gradient_matches_closed_form(grad: str, times: str) -> None:
    """dL/dt (initial and observation times), dL/dy0 and dL/dk of every gradient method vs the closed form."""
    t = T_SHARED if times == "shared" else T_EACH
    method = solver_for(grad)
    tol, agree = accuracy(method)
    got = solved(t, grad, method, **tol)
    want = reference(t)
    # The global error of the solve (and of the adjoint's backward solve) at these tolerances is ~10-100x rtol.
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=agree, atol=agree / 10)


@pytest.mark.parametrize(
    "method", [m if m == "kvaerno5" else pytest.param(m, marks=pytest.mark.slow) for m in IMPLICIT], ids=IMPLICIT
)
def test_time_gradient_implicit(method: str) -> None:
    """The implicit solvers with direct and aca (their two gradient methods)."""
    tol, agree = dict(rtol=1e-7, atol=1e-9), 1e-4  # the implicit methods' IFT graph is costly at tight tolerances
    want = reference(T_SHARED)
    for grad in ("direct", "aca"):
        got = solved(T_SHARED, grad, method, **tol)
        torch.testing.assert_close(got[0], want[0], rtol=agree, atol=agree / 10)


def test_time_gradient_by_finite_differences() -> None:
    """Central differences of the solve itself (tight tolerance, so the step choices' noise stays below 1e-7)."""
    k = torch.tensor(K, dtype=torch.float64)
    g_t, _, _ = solved(T_EACH, "direct", "dopri5", rtol=1e-11, atol=1e-13)
    eps = 1e-4
    for b, i in ((1, 0),):
        tp, tm = T_EACH.clone(), T_EACH.clone()
        tp[b, i] += eps
        tm[b, i] -= eps
        with torch.no_grad():
            lp = loss(physnode.odeint(rhs(k), Y0, tp, rtol=1e-12, atol=1e-14))
            lm = loss(physnode.odeint(rhs(k), Y0, tm, rtol=1e-12, atol=1e-14))
        fd = (lp - lm) / (2 * eps)  # O(eps^2) = 1e-8 truncation
        torch.testing.assert_close(g_t[b, i], fd, rtol=1e-6, atol=1e-7)


def test_initial_time_identity_and_values_unchanged() -> None:
    """dL/dt0 = <dL/dys[0], f0> - <dL/dy0, f0> holds to round-off for the discrete solve, and attaching the time
    gradient leaves the solution's values unchanged."""
    k = torch.tensor(K, dtype=torch.float64)
    f = rhs(k)
    t = T_SHARED.clone().requires_grad_()
    y0 = Y0.clone().requires_grad_()
    ys = physnode.odeint(f, y0, t, grad="aca")
    g_t, g_y0 = torch.autograd.grad(loss(ys), (t, y0))
    with torch.no_grad():
        plain = physnode.odeint(f, Y0, T_SHARED)
    # x + (t - t) * f adds an exact zero; 1e-15 leaves room only for a changed computation.
    torch.testing.assert_close(ys.detach(), plain, rtol=1e-15, atol=0.0)
    ys0 = ys[:, 0].detach().requires_grad_()
    (g_ys0,) = torch.autograd.grad(loss(torch.cat([ys0.unsqueeze(1), ys[:, 1:].detach()], 1)), ys0)
    f0 = f(T_SHARED[:1].expand(2), Y0)
    expected = ((g_ys0 - g_y0) * f0).sum()
    torch.testing.assert_close(g_t[0], expected, rtol=1e-12, atol=1e-12)  # the same products, summed differently


def test_unbatched_and_no_grad() -> None:
    """A (D,) state with (T,) times gets the time gradient; under no_grad a t requiring grad is just a t."""
    k = torch.tensor(K, dtype=torch.float64)
    t = T_SHARED.clone().requires_grad_()
    ys = physnode.odeint(rhs(k), Y0[0], t, rtol=1e-10, atol=1e-12)
    (g,) = torch.autograd.grad(ys.sum(), t)
    want = exact(Y0[:1], T_SHARED.unsqueeze(0), k)[0]
    fs = rhs(k)(T_SHARED, want)
    expect_obs = fs[1:].sum(-1)
    torch.testing.assert_close(g[1:], expect_obs, rtol=1e-7, atol=1e-9)
    with torch.no_grad():
        out = physnode.odeint(rhs(k), Y0[0], t)
    assert not out.requires_grad
