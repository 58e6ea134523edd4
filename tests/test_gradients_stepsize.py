"""Differentiating through the step-size controller (``options={"step_grad": True}``, :mod:`physnode.step_grad`).

Checked two ways: against central finite differences of the same discrete solve (the host decisions do not change
under a perturbation of 1e-7, so the discrete solve is smooth there and its derivative includes ``dh/dθ``), and
``grad="aca"`` and ``grad="symplectic"`` against ``grad="direct"`` on the same solve (every adaptive solver).
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from registries import ADAPTIVE, ALL_GRADIENTS, solvers_for
from systems import ThreeBody, TimeDependent, three_body_y0

import physnode
from physnode import step_grad
from physnode.gradients import GRADIENTS
from physnode.options import SolveOptions

STEP_GRAD = {"step_grad": True}


def _setup(batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    y0 = three_body_y0(torch.float64).repeat(batch, 1)
    if batch > 1:
        y0[1:, :3] += 0.01 * torch.arange(1, batch, dtype=torch.float64).unsqueeze(-1)
    return y0, torch.linspace(0.0, 0.2, 6, dtype=torch.float64)


def _loss_and_grad(masses: torch.Tensor, grad: str, options: dict, want: bool = True):
    y0, t = _setup()
    f = ThreeBody(masses)
    sol = physnode.solve(f, y0, t, grad=grad, rtol=1e-6, atol=1e-6, options=options)
    loss = sol.ys[..., :9].square().sum()
    g = torch.autograd.grad(loss, f.masses)[0] if want else None
    return loss.detach(), g, sol.stats


def _central_difference(loss_at, x0: torch.Tensor, v: torch.Tensor, n_accepted, eps: float = 1e-7) -> float:
    """``(L(x0 + eps v) - L(x0 - eps v)) / (2 eps)`` of ``loss_at(x) -> (loss, _, stats)``. Both sides must take the
    solve's accepted steps (same host decisions), else the difference would cross a jump of the discrete solve."""
    lp, _, sp = loss_at(x0 + eps * v)
    lm, _, sm = loss_at(x0 - eps * v)
    assert int(sp.n_accepted) == int(sm.n_accepted) == int(n_accepted)  # no jump of the discrete solve
    return float(lp - lm) / (2 * eps)


def test_step_grad_equals_finite_differences_of_the_discrete_solve():
    m0 = torch.tensor([1.1, 1.1, 0.9], dtype=torch.float64)
    _, g, stats = _loss_and_grad(m0, "direct", STEP_GRAD)
    _, g_const, _ = _loss_and_grad(m0, "direct", {})
    basis = torch.eye(3, dtype=torch.float64)
    loss_at = partial(_loss_and_grad, grad="direct", options=STEP_GRAD, want=False)
    fd = [_central_difference(loss_at, m0, basis[i], stats.n_accepted) for i in range(3)]
    fd_t = torch.tensor(fd, dtype=torch.float64)
    scale = float(fd_t.abs().max())
    # Central differences at eps = 1e-7 on an O(1) loss: truncation ~eps^2, round-off ~1e-16 / eps ~ 1e-9.
    assert float((g - fd_t).abs().max()) <= 1e-6 * scale
    # The constant-step gradient misses dh/dθ: it is farther from this solve's derivative than the bound above
    # (measured ~3e-5 relative), so the test sees whether the controller is on the graph.
    assert float((g_const - fd_t).abs().max()) > 1e-6 * scale


@pytest.mark.parametrize("grad", ["aca", "symplectic"], ids=str)
def test_replay_equals_direct_with_step_grad(grad):
    y0, t = _setup(batch=2)
    grads = {}
    for g in ("direct", grad):
        f = ThreeBody()
        y = y0.clone().requires_grad_()
        sol = physnode.solve(f, y, t, grad=g, rtol=1e-6, atol=1e-6, options=STEP_GRAD)
        assert int(sol.stats.n_rejected.sum()) > 0  # rejected steps shape the next step: they must be replayed
        loss = sol.ys[..., :9].square().sum() + sol.ys.sum()
        grads[g] = torch.autograd.grad(loss, (f.masses, y))
    for a, d in zip(grads[grad], grads["direct"], strict=True):
        # Same discrete solve, same operations replayed: equal to round-off (1e-10 leaves room for reordering).
        torch.testing.assert_close(a, d, rtol=1e-10, atol=1e-10 * float(d.abs().max()))


def test_step_grad_values_do_not_depend_on_grad_mode():
    y0, t = _setup(batch=2)
    f = ThreeBody()
    with torch.no_grad():
        plain = physnode.solve(f, y0, t, rtol=1e-6, atol=1e-6, options=STEP_GRAD)
    graphed = physnode.solve(f, y0.clone().requires_grad_(), t, rtol=1e-6, atol=1e-6, options=STEP_GRAD)
    assert torch.equal(plain.stats.n_accepted, graphed.stats.n_accepted)
    # The graph is grafted onto host values (value + (g - g.detach()) adds an exact zero): same steps, same
    # operations; 1e-13 relative leaves room for a device that orders a reduction differently.
    torch.testing.assert_close(graphed.ys.detach(), plain.ys, rtol=1e-13, atol=1e-13)


#: Every method that differentiates through the controller, other than direct, on every adaptive solver it supports.
CASES = [
    (grad, method)
    for grad in ALL_GRADIENTS
    if GRADIENTS.cls(grad).step_grad and grad != "direct"
    for method in solvers_for(grad)
    if method in ADAPTIVE
]


@pytest.mark.slow
@pytest.mark.parametrize(("grad", "method"), CASES, ids=[f"{g}-{m}" for g, m in CASES])
def test_every_step_grad_method_equals_direct_on_every_adaptive_solver(grad, method):
    # A forced oscillator (f depends on t: the time adjoint through f is exercised), two trajectories with their own
    # observation times, loose tolerances so that steps are rejected.
    y0 = torch.tensor([[1.0, 0.0], [0.5, -0.3]], dtype=torch.float64)
    t = torch.stack([torch.linspace(0.0, 1.5, 4), torch.linspace(0.1, 1.2, 4)]).double()
    grads = {}
    for g in ("direct", grad):
        f = TimeDependent()
        y = y0.clone().requires_grad_()
        sol = physnode.solve(f, y, t, method=method, grad=g, rtol=1e-3, atol=1e-5, options=STEP_GRAD)
        loss = (sol.ys * torch.linspace(-1.0, 2.0, sol.ys.numel(), dtype=torch.float64).view_as(sol.ys)).sum()
        grads[g] = torch.autograd.grad(loss, (f.theta, y))
    for a, d in zip(grads[grad], grads["direct"], strict=True):
        # Same discrete solve (the same host decisions), the derivatives replayed: equal to round-off.
        torch.testing.assert_close(a, d, rtol=1e-9, atol=1e-9 * float(d.abs().max()))


@pytest.mark.parametrize("grad", [g for g in ALL_GRADIENTS if not GRADIENTS.cls(g).step_grad], ids=str)
def test_methods_that_hold_steps_constant_refuse_step_grad(grad):
    with pytest.raises(ValueError, match=r"step_grad.*not supported by grad="):
        SolveOptions(grad=grad, options=STEP_GRAD)


def test_step_grad_option_validated_and_round_trips():
    opts = SolveOptions(grad="aca", options=STEP_GRAD)
    assert opts.step_grad and not SolveOptions().step_grad
    assert SolveOptions.from_dict(opts.to_dict()) == opts
    with pytest.raises(TypeError, match="'step_grad' must be True or False"):
        SolveOptions(options={"step_grad": 1})


@pytest.mark.slow
def test_adaptive_reversible_heun_steps_fewer_as_the_tolerance_loosens():
    # The ACA three-body problem, 100 observations on [0, 1]: with the raw Heun–Euler difference as estimate the
    # method's parasitic component (z - y, growing on this Hamiltonian system) dominated it, and rtol = 1e-5 took
    # more evaluations (18,120) than 1e-6 (12,129). A property of the counts, not a timing. (1e-8 takes about
    # 84,000 evaluations, too slow for the test suite; `physnode bench gradients --sweep` style runs show it.)
    y0 = three_body_y0(torch.float64)
    t = torch.linspace(0.0, 1.0, 100, dtype=torch.float64)
    nfe = []
    for tol in (1e-5, 1e-6, 1e-7):
        with torch.no_grad():  # default max_steps: a MaxStepsError fails the test
            sol = physnode.solve(ThreeBody(), y0, t, method="reversible_heun", rtol=tol, atol=tol)
        nfe.append(sol.stats.nfe)
    assert nfe[0] < nfe[1] < nfe[2], nfe


def test_fixed_step_solves_ignore_step_grad():
    # Nothing to differentiate: the same steps and the same gradient with and without the option.
    y0, t = _setup()
    grads = []
    for options in ({}, STEP_GRAD):
        f = ThreeBody()
        sol = physnode.solve(f, y0, t, method="rk4", step_size=0.02, options=options)
        grads.append(torch.autograd.grad(sol.ys.square().sum(), f.masses)[0])
    # Same operations in the same order: equal to round-off (1e-13 relative).
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-13, atol=0.0)


def _interpolated(masses: torch.Tensor, grad: str, y0: torch.Tensor, want: bool = True, integral: bool = False):
    f = ThreeBody(masses)
    y = y0.clone().requires_grad_(want)
    t = torch.linspace(0.0, 0.5, 23, dtype=torch.float64)  # more observations than steps: several per step
    options = {**STEP_GRAD, "integral_controller": integral}
    sol = physnode.solve(f, y, t, grad=grad, rtol=1e-6, atol=1e-6, outputs="interpolate", options=options)
    loss = sol.ys[..., :9].square().sum() + sol.ys.sum()
    grads = torch.autograd.grad(loss, (f.masses, y)) if want else None
    return loss.detach(), grads, sol.stats


def test_interpolated_step_grad_equals_finite_differences_of_the_discrete_solve():
    # theta = (t_obs - t_n) / h_n on the graph: without it this gradient is wrong by more than 100% (measured 1.1
    # relative), so the bound below sees whether the fractions are differentiated.
    m0 = torch.tensor([1.1, 1.1, 0.9], dtype=torch.float64)
    y0 = three_body_y0(torch.float64)
    _, grads, stats = _interpolated(m0, "direct", y0)
    basis = torch.eye(3, dtype=torch.float64)
    loss_at = partial(_interpolated, grad="direct", y0=y0, want=False)
    fd = [_central_difference(loss_at, m0, basis[i], stats.n_accepted) for i in range(3)]
    fd_t = torch.tensor(fd, dtype=torch.float64)
    # Central differences at eps = 1e-7 on an O(10) loss: truncation ~eps^2, round-off ~1e-15 / eps ~ 1e-8.
    assert float((grads[0] - fd_t).abs().max()) <= 1e-6 * float(fd_t.abs().max())


@pytest.mark.parametrize("integral", [False, True], ids=["pi", "integral"])
def test_aca_equals_direct_with_interpolated_step_grad(integral):
    y0 = three_body_y0(torch.float64).repeat(2, 1)
    y0[1, :3] += 0.01
    m0 = torch.tensor([1.1, 1.1, 0.9], dtype=torch.float64)
    _, direct, stats = _interpolated(m0, "direct", y0, integral=integral)
    _, aca, _ = _interpolated(m0, "aca", y0, integral=integral)
    assert int(stats.n_rejected.sum()) > 0  # rejected steps are replayed too
    if integral:  # the option reaches the controller: another sequence of steps than the PI controller's
        _, _, pi_stats = _interpolated(m0, "direct", y0, want=False)
        assert not torch.equal(stats.n_accepted, pi_stats.n_accepted)
    for a, d in zip(aca, direct, strict=True):
        # Same discrete solve, same operations replayed: equal to round-off (1e-10 leaves room for reordering).
        torch.testing.assert_close(a, d, rtol=1e-10, atol=1e-10 * float(d.abs().max()))


@pytest.mark.parametrize(
    "grad", [g for g in ALL_GRADIENTS if GRADIENTS.cls(g).step_grad and g not in ("direct", "aca")]
)
def test_interpolated_step_grad_refused_where_theta_is_not_differentiated(grad):
    with pytest.raises(ValueError, match=r"interpolate.*step_grad.*grad='direct' and grad='aca' only"):
        SolveOptions(grad=grad, method="dopri5", outputs="interpolate", options=STEP_GRAD)


def _first_step_loss(y0: torch.Tensor, grad: str, want: bool = True):
    f = ThreeBody()
    y = y0.clone().requires_grad_(want)
    t = torch.linspace(0.0, 0.2, 4, dtype=torch.float64)
    sol = physnode.solve(f, y, t, grad=grad, rtol=1e-3, atol=1e-3, outputs="interpolate", options=STEP_GRAD)
    loss = sol.ys[..., :9].square().sum()
    return loss.detach(), torch.autograd.grad(loss, y)[0] if want else None, sol.stats


@pytest.mark.parametrize("grad", ["direct", "aca"], ids=str)
def test_first_step_on_the_graph_equals_finite_differences_in_y0(grad, monkeypatch):
    # The first proposal h_0(y_0, f(t_0, y_0)) (Hairer's rule) is differentiated too: the directional derivative of
    # the loss in y_0 equals central differences of the whole discrete solve, the step selection included.
    y0 = three_body_y0(torch.float64)
    v = torch.linspace(-1.0, 1.0, y0.numel(), dtype=torch.float64).view_as(y0).cos()
    _, g, stats = _first_step_loss(y0, grad)
    fd = _central_difference(partial(_first_step_loss, grad=grad, want=False), y0, v, stats.n_accepted)
    # Central differences at eps = 1e-7 of a loss of about 5: truncation ~eps^2, round-off ~1e-15 / eps ~ 1e-8
    # absolute on a derivative of about 20 (measured 1.8e-10 relative).
    assert abs(float((g * v).sum()) - fd) <= 2e-8 * abs(fd)
    # With the first step held constant the same derivative is off by 3.0e-7 relative (measured): the bound above
    # sees whether dh_0/dy_0 is on the graph.
    monkeypatch.setattr(step_grad, "first_step", lambda problem, y0: None)
    _, g_const, _ = _first_step_loss(y0, grad)
    assert abs(float((g_const * v).sum()) - fd) > 1e-7 * abs(fd)


def test_torchode_configuration_gives_torchode_gradient():
    # torchode's configuration: observations interpolated, integral controller, its dopri5 error estimate, steps
    # (the first one included) on the graph. Then physnode runs torchode's discrete solve and both libraries
    # differentiate it exactly, so the gradients agree to round-off, not only to the solver's tolerance.
    to = pytest.importorskip("torchode")
    y0 = three_body_y0(torch.float64)
    t = torch.linspace(0.0, 0.2, 11, dtype=torch.float64)
    tol = 1e-6

    f = ThreeBody()
    y = y0.clone().requires_grad_()
    term = to.ODETerm(f)
    solver = to.AutoDiffAdjoint(to.Dopri5(term=term), to.IntegralController(atol=tol, rtol=tol, term=term))
    ts = t.unsqueeze(0)
    sol = solver.solve(to.InitialValueProblem(y0=y.unsqueeze(0), t_start=ts[:, 0], t_end=ts[:, -1], t_eval=ts))
    ref = torch.autograd.grad(sol.ys[..., :9].square().sum(), (f.masses, y))
    options = {**STEP_GRAD, "integral_controller": True, "error_estimate": "torchdiffeq"}
    for grad in ("direct", "aca"):
        f = ThreeBody()
        y = y0.clone().requires_grad_()
        ys = physnode.odeint(f, y, t, grad=grad, rtol=tol, atol=tol, outputs="interpolate", options=options)
        got = torch.autograd.grad(ys[..., :9].square().sum(), (f.masses, y))
        for a, r in zip(got, ref, strict=True):
            # The same floating-point steps in another order of operations: 1e-10 relative (measured 2.5e-14 here,
            # 4e-12 on the benchmark's 100 observations at 1e-7).
            torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10 * float(r.abs().max()))


@pytest.mark.slow
def test_bench_sweep_shows_torchode_configuration_level_with_torchode(capsys):
    # `physnode bench gradients --sweep`: the rows of torchode's configuration print torchode's errors (the same
    # discrete solve, differentiated exactly) at every tolerance of the quick sweep.
    pytest.importorskip("torchode")
    from physnode.bench import gradients as bench_gradients

    assert bench_gradients.run(["--sweep", "--quick", "--markdown"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1e-")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    for tol in sorted({r[0] for r in rows}):
        peer = next(r for r in rows if r[0] == tol and r[1] == "torchode")
        ours = [r for r in rows if r[0] == tol and r[1] == "physnode" and r[2].endswith("torchdiffeq estimate")]
        assert {r[2].split(",")[0] for r in ours} == {"grad='direct'", "grad='aca'"}
        for r in ours:
            # Errors printed to three digits: equal gradients (4e-12 apart) print the same digits.
            assert (r[5], r[6]) == (peer[5], peer[6]), (r, peer)
