"""The asynchronous leapfrog solver (``method="alf"``) and its exact reversible gradient (``grad="mali"``)."""

from __future__ import annotations

import math

import pytest
import torch
from systems import MLP, Linear, ThreeBody, TimeDependent, three_body_y0

import physnode
from physnode.solvers.alf import ALF


def _grads(func, y0, t, grad, **kw):
    """Solve, contract the outputs with fixed random weights, return the solution and d(loss)/d(y0, params)."""
    y0 = y0.clone().requires_grad_()
    sol = physnode.solve(func, y0, t, grad=grad, **kw)
    w = torch.randn(sol.ys.shape, generator=torch.Generator().manual_seed(1), dtype=sol.ys.dtype).to(sol.ys.device)
    loss = (sol.ys * w).sum()
    inputs = [y0, *[p for p in func.parameters() if p.requires_grad]]
    return sol, torch.autograd.grad(loss, inputs)


def _max_rel(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> float:
    return max(float((x - y).abs().max() / y.abs().max().clamp(min=1e-300)) for x, y in zip(a, b, strict=True))


def _per_trajectory_times(B: int, T: int, device) -> torch.Tensor:
    t = torch.sort(torch.rand(B, T, dtype=torch.float64), dim=1).values * 2.0
    t[:, 0] = torch.linspace(-0.2, 0.1, B, dtype=torch.float64)
    return t.to(device)


@pytest.mark.parametrize(
    "kw",
    [
        dict(method="alf", rtol=1e-6, atol=1e-8, step_size=0.5),
        dict(method="alf", step_size=0.07, options={"adaptive": False}),
    ],
    ids=["adaptive", "fixed"],
)
def test_exact_vs_direct_mlp_batch(kw, device):
    func = MLP(2, 16).to(device)
    y0 = torch.randn(4, 2, dtype=torch.float64, device=device)
    t = _per_trajectory_times(4, 6, device)
    sol_d, g_direct = _grads(func, y0, t, "direct", **kw)
    sol_m, g_mali = _grads(func, y0, t, "mali", **kw)
    # same discrete solve: round-off only (a different step sequence would differ by ~rtol)
    torch.testing.assert_close(sol_m.ys, sol_d.ys, rtol=1e-13, atol=1e-13 * float(sol_d.ys.detach().abs().max()))
    assert _max_rel(g_mali, g_direct) <= 1e-10
    if kw.get("options") is None:  # the large first step forces rejected steps, which must be the identity
        assert int(sol_d.stats.n_rejected.sum()) > 0
    recon = sol_m.stats.extra["reconstruction_error"]
    assert recon.shape == (4,)
    assert float(recon.max()) < 1e-12
    assert sol_m.stats.nfe_backward > 0


def test_exact_vs_direct_three_body_masses():
    func = ThreeBody()
    y0 = three_body_y0().unsqueeze(0)
    t = torch.linspace(0.0, 0.2, 4, dtype=torch.float64)
    kw = dict(method="alf", rtol=1e-4, atol=1e-4)
    _, g_direct = _grads(func, y0, t, "direct", **kw)
    sol, g_mali = _grads(func, y0, t, "mali", **kw)
    assert _max_rel(g_mali, g_direct) <= 1e-10
    assert float(g_mali[1].abs().min()) > 0  # the masses do receive a gradient
    assert float(sol.stats.extra["reconstruction_error"].max()) < 1e-10


@pytest.mark.parametrize("adaptive", [True, False], ids=["adaptive", "fixed"])
def test_exact_vs_direct_time_dependent(adaptive):
    func = TimeDependent()
    y0 = torch.tensor([[1.0, 0.0], [0.3, -0.5]], dtype=torch.float64)
    t = torch.tensor([[0.0, 0.4, 1.1, 2.0], [0.5, 0.9, 1.7, 3.0]], dtype=torch.float64)
    kw = dict(method="alf", rtol=1e-4, atol=1e-6) if adaptive else dict(method="alf", step_size=0.05)
    if not adaptive:
        kw["options"] = {"adaptive": False}
    _, g_direct = _grads(func, y0, t, "direct", **kw)
    _, g_mali = _grads(func, y0, t, "mali", **kw)
    assert _max_rel(g_mali, g_direct) <= 1e-10


def test_params_argument_and_unbatched():
    k = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)

    def f(t, y):
        return torch.stack([y[..., 1], -k * torch.sin(y[..., 0])], dim=-1)

    grads = []
    for grad in ("direct", "mali"):
        ys = physnode.odeint(f, y0, t, method="alf", grad=grad, rtol=1e-5, atol=1e-7, params=[k])
        assert ys.shape == (5, 2)
        grads.append(torch.autograd.grad(ys.square().sum(), (y0, k)))
    assert _max_rel(grads[1], grads[0]) <= 1e-10


def test_float32_matches_direct():
    func = MLP(2, 8, dtype=torch.float32)
    y0 = torch.randn(3, 2)
    t = torch.linspace(0, 1, 4)
    kw = dict(method="alf", rtol=1e-4, atol=1e-5)
    _, g_direct = _grads(func, y0, t, "direct", **kw)
    _, g_mali = _grads(func, y0, t, "mali", **kw)
    assert all(g.dtype == torch.float32 for g in g_mali)
    assert _max_rel(g_mali, g_direct) <= 1e-4


def test_gradcheck_fixed_step():
    A = torch.tensor([[-0.1, 1.0], [-1.0, -0.2]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.3, 0.5], dtype=torch.float64)

    def run(y0, A):
        def f(t, y):
            return torch.tanh(y @ A.T)

        return physnode.odeint(
            f, y0, t, method="alf", grad="mali", step_size=0.1, params=[A], options={"adaptive": False, "eta": 1.0}
        )

    y0 = torch.tensor([[0.3, -0.4], [1.0, 0.2]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(run, (y0, A))


def test_damping_stabilises_dissipative_decay():
    """dy/dt = -20 y with h = 0.01 (z = -0.2): the undamped parasitic root -0.2 - sqrt(1.04) has modulus 1.22."""
    y0 = torch.tensor([1.0], dtype=torch.float64)
    t = torch.tensor([0.0, 5.0], dtype=torch.float64)

    def f(t, y):
        return -20.0 * y

    undamped = physnode.odeint(f, y0, t, method="alf", step_size=0.01, options={"adaptive": False})
    damped = physnode.odeint(f, y0, t, method="alf", step_size=0.01, options={"adaptive": False, "eta": 0.8})
    assert float(undamped[-1].abs()) > 1e6
    assert float(damped[-1].abs()) < 1e-10


def _order_slope(eta: float) -> float:
    A = torch.tensor([[-0.3, 1.0], [-1.0, -0.1]], dtype=torch.float64)
    func = Linear(A)
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    exact = torch.linalg.matrix_exp(2.0 * A) @ y0
    hs = [0.02, 0.01, 0.005, 0.0025]
    errs = []
    with torch.no_grad():
        for h in hs:
            ys = physnode.odeint(func, y0, t, method="alf", step_size=h, options={"adaptive": False, "eta": eta})
            errs.append(float((ys[-1] - exact).norm()))
    x = torch.log(torch.tensor(hs, dtype=torch.float64))
    y = torch.log(torch.tensor(errs, dtype=torch.float64))
    return float(((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).square().sum())


@pytest.mark.parametrize(("eta", "order"), [(1.0, 2), (0.8, 1)], ids=["undamped", "damped"])
def test_order(eta, order):
    assert ALF(eta=eta).order == order
    assert abs(_order_slope(eta) - order) < 0.3


def test_error_estimate_bounds_local_error():
    """From (y, f(y)) one undamped step has local error O(h^3); the estimate h (u - v) is O(h^2) and larger."""
    A = torch.tensor([[-0.3, 1.0], [-1.0, -0.1]], dtype=torch.float64)
    func = Linear(A)
    y = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    solver = ALF()
    t = torch.zeros(1, dtype=torch.float64)
    local = []
    with torch.no_grad():
        for h in (0.1, 0.01):
            hh = torch.full((1,), h, dtype=torch.float64)
            (y1, *_), err = solver.step(func, t, hh, solver.init(func, t, y, hh))
            true = y1 - y @ torch.linalg.matrix_exp(h * A).T
            assert float(err.norm()) > float(true.norm())
            local.append(float(true.norm()))
    assert math.log10(local[0] / local[1]) > 2.7  # local error O(h^3)


def test_inverse_recovers_state():
    func = MLP(3, 8)
    solver = ALF(eta=0.9)
    t = torch.tensor([0.0, 0.5], dtype=torch.float64)
    h = torch.tensor([0.1, -0.2], dtype=torch.float64)
    with torch.no_grad():
        y, v = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
        state = (y, v, *solver.init(func, t, y, h)[2:])
        after, _ = solver.step(func, t, h, state)
        back = solver.inverse(func, t, h, after)
    assert len(back) == len(state)
    for a, b in zip(back[:2], state[:2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


def test_mali_needs_alf():
    y0 = torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"grad='mali'.*method='alf'.*'dopri5'"):
        physnode.odeint(Linear(-torch.eye(2, dtype=torch.float64)), y0, t, method="dopri5", grad="mali")


@pytest.mark.parametrize(
    "eta", [0.5, 0.0, -0.3, 1.5, math.nan, True], ids=["half", "zero", "neg", "big", "nan", "bool"]
)
def test_invalid_eta(eta):
    y0 = torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    # A wrong type (bool) may be refused by the typed options check (TypeError) or by ALF's range check.
    with pytest.raises((ValueError, TypeError), match="eta"):
        physnode.odeint(lambda t, y: -y, y0, t, method="alf", options={"eta": eta})


def test_unknown_option_is_rejected():
    y0 = torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown option 'damping'"):
        physnode.odeint(lambda t, y: -y, y0, t, method="alf", options={"damping": 0.8})


def _decay_grad(grad: str, t: torch.Tensor, **kw) -> tuple[float, physnode.Solution]:
    """dL/dk of L = sum(y(t)) for dy/dt = -k y, y0 = (1, 0.5), k = 1 (float64)."""
    k = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    sol = physnode.solve(lambda t, y: -k * y, y0, t, method="alf", grad=grad, params=[k], **kw)
    sol.ys.sum().backward()
    return float(k.grad), sol


def test_damped_mali_refuses_an_amplifying_reconstruction() -> None:
    # eta = 0.9: the inverse divides by 1 - 2 eta = -0.8, amplifying rounding 1.25x per step; ~1000 adaptive steps
    # between the two observations used to give dL/dk ~ 1e72 (direct: -0.368) without a word.
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"eta=0.9 .*1\.25 per step.*\d+ accepted steps between two observations"):
        _decay_grad("mali", t, rtol=1e-6, atol=1e-8, options={"eta": 0.9})


@pytest.mark.parametrize(("step", "n_obs"), [(0.1, 2), (0.01, 11)], ids=["10-steps", "10-steps-per-obs"])
def test_damped_mali_short_runs_match_direct(step: float, n_obs: int) -> None:
    # At most 10 steps between observations (the reconstruction restarts at each): amplification 1.25**10 ~ 9,
    # so the gradient is that of direct backprop to round-off (1e-12 relative leaves 4 digits for it).
    t = torch.linspace(0, 1, n_obs, dtype=torch.float64)
    kw = dict(step_size=step, options={"adaptive": False, "eta": 0.9})
    g_mali, sol = _decay_grad("mali", t, **kw)
    g_direct, _ = _decay_grad("direct", t, **kw)
    assert abs(g_mali - g_direct) <= 1e-12 * abs(g_direct)
    assert float(sol.stats.extra["reconstruction_error"].max()) < 1e-13


def test_undamped_mali_equals_direct_on_decay() -> None:
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    g_mali, _ = _decay_grad("mali", t, rtol=1e-6, atol=1e-8)
    g_direct, _ = _decay_grad("direct", t, rtol=1e-6, atol=1e-8)
    assert abs(g_mali - g_direct) <= 1e-10 * abs(g_direct)  # ~3000 inverse steps of round-off
