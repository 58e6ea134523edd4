"""The reversible Heun solver (``method="reversible_heun"``) and its exact reversible gradient."""

from __future__ import annotations

import math

import pytest
import torch
from systems import MLP, Linear, ThreeBody, TimeDependent, three_body_y0

import physnode
from physnode.solvers.reversible_heun import ReversibleHeun

METHOD = "reversible_heun"


def _grads(func, y0, t, grad, **kw):
    """Solve, contract the outputs with fixed random weights, return the solution and d(loss)/d(y0, params)."""
    y0 = y0.clone().requires_grad_()
    sol = physnode.solve(func, y0, t, grad=grad, **kw)
    w = torch.randn(sol.ys.shape, generator=torch.Generator().manual_seed(1), dtype=sol.ys.dtype).to(sol.ys.device)
    loss = (sol.ys * w).sum()
    inputs = [y0, *[p for p in func.parameters() if p.requires_grad]]
    return sol, torch.autograd.grad(loss, inputs)


def _max_rel(a, b) -> float:
    return max(float((x - y).abs().max() / y.abs().max().clamp(min=1e-300)) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    "kw",
    [
        dict(method=METHOD, rtol=1e-6, atol=1e-8, step_size=0.5),
        dict(method=METHOD, step_size=0.07, options={"adaptive": False}),
    ],
    ids=["adaptive", "fixed"],
)
def test_exact_vs_direct_mlp_batch(kw, device):
    func = MLP(2, 16).to(device)
    y0 = torch.randn(4, 2, dtype=torch.float64, device=device)
    t = torch.sort(torch.rand(4, 6, dtype=torch.float64), dim=1).values * 2.0
    t[:, 0] = torch.linspace(-0.2, 0.1, 4, dtype=torch.float64)
    t = t.to(device)
    sol_d, g_direct = _grads(func, y0, t, "direct", **kw)
    sol_r, g_rev = _grads(func, y0, t, "reversible_heun", **kw)
    # same discrete solve: round-off only (a different step sequence would differ by ~rtol)
    torch.testing.assert_close(sol_r.ys, sol_d.ys, rtol=1e-13, atol=1e-13 * float(sol_d.ys.detach().abs().max()))
    assert _max_rel(g_rev, g_direct) <= 1e-10
    if kw.get("options") is None:  # the large first step forces rejected steps, which must be the identity
        assert int(sol_d.stats.n_rejected.sum()) > 0
    recon = sol_r.stats.extra["reconstruction_error"]
    assert recon.shape == (4,)
    assert float(recon.max()) < 1e-12


def test_exact_vs_direct_three_body_masses():
    func = ThreeBody()
    y0 = three_body_y0().unsqueeze(0)
    t = torch.linspace(0.0, 0.2, 4, dtype=torch.float64)
    kw = dict(method=METHOD, rtol=1e-4, atol=1e-4)
    _, g_direct = _grads(func, y0, t, "direct", **kw)
    sol, g_rev = _grads(func, y0, t, "reversible_heun", **kw)
    assert _max_rel(g_rev, g_direct) <= 1e-10
    assert float(g_rev[1].abs().min()) > 0
    assert float(sol.stats.extra["reconstruction_error"].max()) < 1e-10


@pytest.mark.parametrize("adaptive", [True, False], ids=["adaptive", "fixed"])
def test_exact_vs_direct_time_dependent(adaptive):
    func = TimeDependent()
    y0 = torch.tensor([[1.0, 0.0], [0.3, -0.5]], dtype=torch.float64)
    t = torch.tensor([[0.0, 0.4, 1.1, 2.0], [0.5, 0.9, 1.7, 3.0]], dtype=torch.float64)
    kw = dict(method=METHOD, rtol=1e-4, atol=1e-6) if adaptive else dict(method=METHOD, step_size=0.05)
    if not adaptive:
        kw["options"] = {"adaptive": False}
    _, g_direct = _grads(func, y0, t, "direct", **kw)
    _, g_rev = _grads(func, y0, t, "reversible_heun", **kw)
    assert _max_rel(g_rev, g_direct) <= 1e-10


def test_params_argument_unbatched_float32():
    k = torch.tensor(0.7, requires_grad=True)
    y0 = torch.tensor([1.0, 0.5], requires_grad=True)
    t = torch.linspace(0, 1, 5)

    def f(t, y):
        return torch.stack([y[..., 1], -k * torch.sin(y[..., 0])], dim=-1)

    grads = []
    for grad in ("direct", "reversible_heun"):
        ys = physnode.odeint(f, y0, t, method=METHOD, grad=grad, rtol=1e-4, atol=1e-6, params=[k])
        assert ys.shape == (5, 2)
        grads.append(torch.autograd.grad(ys.square().sum(), (y0, k)))
    assert grads[1][1].dtype == torch.float32
    assert _max_rel(grads[1], grads[0]) <= 1e-4


def test_gradcheck_fixed_step():
    A = torch.tensor([[-0.1, 1.0], [-1.0, -0.2]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.3, 0.5], dtype=torch.float64)

    def run(y0, A):
        def f(t, y):
            return torch.tanh(y @ A.T)

        return physnode.odeint(
            f, y0, t, method=METHOD, grad="reversible_heun", step_size=0.1, params=[A], options={"adaptive": False}
        )

    y0 = torch.tensor([[0.3, -0.4], [1.0, 0.2]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(run, (y0, A))


def test_order_two():
    A = torch.tensor([[-0.3, 1.0], [-1.0, -0.1]], dtype=torch.float64)
    func = Linear(A)
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    exact = torch.linalg.matrix_exp(2.0 * A) @ y0
    hs = [0.02, 0.01, 0.005, 0.0025]
    errs = []
    with torch.no_grad():
        for h in hs:
            ys = physnode.odeint(func, y0, t, method=METHOD, step_size=h, options={"adaptive": False})
            errs.append(float((ys[-1] - exact).norm()))
    x = torch.log(torch.tensor(hs, dtype=torch.float64))
    y = torch.log(torch.tensor(errs, dtype=torch.float64))
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).square().sum())
    assert abs(slope - 2.0) < 0.3


def test_adaptive_error_follows_tolerance():
    """The global error of the adaptive solve shrinks with the tolerance (against the exact exp(At) y0)."""
    A = torch.tensor([[-0.3, 1.0], [-1.0, -0.1]], dtype=torch.float64)
    func = Linear(A)
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    exact = torch.linalg.matrix_exp(2.0 * A) @ y0
    errs = []
    with torch.no_grad():
        for tol in (1e-4, 1e-6):
            ys = physnode.odeint(func, y0, t, method=METHOD, rtol=tol, atol=tol)
            errs.append(float((ys[-1] - exact).norm()))
    assert errs[0] < 1e-2
    assert math.log10(errs[0] / errs[1]) > 1.0


def test_inverse_recovers_state():
    func = MLP(3, 8)
    solver = ReversibleHeun()
    t = torch.tensor([0.0, 0.5], dtype=torch.float64)
    h = torch.tensor([0.1, -0.2], dtype=torch.float64)
    with torch.no_grad():
        y = torch.randn(2, 3, dtype=torch.float64)
        z = y + 0.01 * torch.randn(2, 3, dtype=torch.float64)
        state = (y, z, func(t, z))
        after, _ = solver.step(func, t, h, state)
        back = solver.inverse(func, t, h, after)
    for a, b in zip(back, state, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


def test_needs_reversible_heun_method():
    y0 = torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"grad='reversible_heun'.*method='reversible_heun'.*'alf'"):
        physnode.odeint(Linear(-torch.eye(2, dtype=torch.float64)), y0, t, method="alf", grad="reversible_heun")


def test_fixed_step_needs_step_size():
    y0 = torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="step_size"):
        physnode.odeint(lambda t, y: -y, y0, t, method=METHOD, options={"adaptive": False})


def test_reconstruction_drift_raises_instead_of_a_wrong_gradient() -> None:
    # dy/dt = -30 y with 100 fixed steps between two observations: reversing the decay multiplies the rounding
    # errors by ~e^30, the rebuilt y0 is off by ~1e7 and the gradient used to be returned anyway.
    k = torch.tensor(30.0, dtype=torch.float64, requires_grad=True)
    sol = physnode.solve(
        lambda t, y: -k * y,
        torch.tensor([1.0, 0.5], dtype=torch.float64),
        torch.tensor([0.0, 1.0], dtype=torch.float64),
        method=METHOD,
        grad="reversible_heun",
        step_size=0.01,
        params=[k],
        options={"adaptive": False},
    )
    with pytest.raises(RuntimeError, match=r"reconstruction error of .* above the bound .*grad='aca'"):
        sol.ys.sum().backward()
    assert float(sol.stats.extra["reconstruction_error"].max()) > 1.0
