"""Implicit (ESDIRK) solvers for stiff problems: tableaux, order, L-stability, stiff benchmarks against scipy
Radau, per-trajectory Newton, and gradients by the implicit-function theorem."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import physnode
from physnode.bench.stiff import PROBLEMS, scaled_error, solve_physnode
from physnode.solvers import ESDIRK, SOLVERS, ImplicitTableau

IMPLICIT = [n for n in SOLVERS.names() if issubclass(SOLVERS.cls(n), ESDIRK)]
F64 = torch.float64


def _tab(name: str) -> ImplicitTableau:
    return SOLVERS.cls(name).tableau


def _solver(name: str, **kw: object) -> ESDIRK:
    return SOLVERS.build(name, kw)


# ------------------------------------------------------------------------------------------------- tableaux
def test_every_kvaerno_method_is_registered() -> None:
    assert {"kvaerno3", "kvaerno4", "kvaerno5"} <= set(IMPLICIT)


@pytest.mark.parametrize("name", IMPLICIT, ids=IMPLICIT)
def test_tableau_order_conditions(name: str) -> None:
    """Quadrature conditions b·c^(k-1) = 1/k up to the order, and b·A·c = 1/6 from order 3 (for b and b_hat)."""
    tab = _tab(name)
    A, c = tab.matrix(), np.asarray(tab.c)
    for w, p in ((np.asarray(tab.b), tab.order), (np.asarray(tab.b_hat), tab.embedded_order)):
        for k in range(1, p + 1):
            # The coefficients are 11-17 digit decimals (Kvaerno3's gamma has 11): 1e-9 is far below any
            # failed condition (which is off by O(1/k!)).
            assert w @ c ** (k - 1) == pytest.approx(1 / k, abs=1e-9), (name, k)
        if p >= 3:
            assert w @ A @ c == pytest.approx(1 / 6, abs=1e-9)
    assert sum(tab.b_err) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", IMPLICIT, ids=IMPLICIT)
def test_l_stability(name: str) -> None:
    """|R(z)| <= 1 on the closed left half-plane (sampled) and R(z) -> 0 as z -> -inf."""
    tab = _tab(name)
    # R(z) = R(-inf) + C/z with |C| ~ 6 for these methods; larger |z| loses digits to cancellation in
    # 1 + z bᵀ(I - zA)⁻¹1. A method with R(-inf) != 0 (A- but not L-stable) would stay O(1) here.
    assert abs(tab.stability(-1e7)[0]) < 1e-5
    assert abs(tab.stability(-1e7)[0]) < 0.011 * abs(tab.stability(-1e5)[0])  # decays like 1/z
    r = np.logspace(-3, 6, 60)
    for angle in np.linspace(np.pi / 2, np.pi, 7):
        z = r * np.exp(1j * angle)
        assert np.all(np.abs(tab.stability(z)) <= 1 + 1e-12), (name, angle)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"a": ((0.5,), (0.25, 0.25))}, "first stage must be explicit"),
        ({"a": ((0.0,), (0.5, 0.4))}, "differs from gamma"),
        ({"c": (0.0, 0.7)}, r"row 1 of a sums to"),
        ({"b": (0.6, 0.4), "b_hat": (0.6, 0.4)}, "stiffly accurate"),
        ({"b_hat": (0.3, 0.3)}, "b_hat sums to"),
    ],
    ids=["implicit-first", "diagonal", "row-sum", "not-stiffly-accurate", "b_hat-sum"],
)
def test_tableau_rejects_inconsistent_coefficients(change: dict, match: str) -> None:
    # The trapezoidal rule as an ESDIRK (gamma = 1/2), modified by ``change``.
    kw = dict(
        name="bad", gamma=0.5, c=(0.0, 1.0), a=((0.0,), (0.5, 0.5)), b=(0.5, 0.5), b_hat=(1.0, 0.0), order=2,
        embedded_order=1,
    )  # fmt: skip
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        ImplicitTableau(**kw)


# ---------------------------------------------------------------------------------------------------- order
A_LIN = torch.tensor([[-0.1, 1.0, 0.0], [-1.0, -0.1, 0.3], [0.0, -0.3, -0.5]], dtype=F64)


def _fixed_step_error(name: str, h: float) -> float:
    y0 = torch.tensor([1.0, 0.5, -0.2], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    opts = {"adaptive": False, "newton_rtol": 1e-14, "newton_atol": 1e-15}
    ys = physnode.odeint(lambda t, y: A_LIN @ y, y0, t, method=name, step_size=h, options=opts)
    return float((ys[-1] - torch.linalg.matrix_exp(A_LIN) @ y0).abs().max())


@pytest.mark.parametrize("name", IMPLICIT, ids=IMPLICIT)
def test_convergence_order(name: str) -> None:
    order = _tab(name).order
    hs = [1 / 4, 1 / 8, 1 / 16]  # asymptotic regime, errors well above round-off for orders 3-5
    errs = [_fixed_step_error(name, h) for h in hs]
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - order) <= 0.3, f"{name}: observed order {slope:.2f}, expected {order} (errors {errs})"


# ------------------------------------------------------------------------------------------- stiff problems
def _prothero_robinson(t: Tensor, y: Tensor) -> Tensor:
    return -1e6 * (y - torch.cos(t).unsqueeze(-1))


@pytest.mark.parametrize("name", IMPLICIT, ids=IMPLICIT)
def test_very_stiff_scalar_in_few_steps(name: str) -> None:
    """dy/dt = -1e6 (y - cos t) on [0, 10]: explicit methods need ~1e7 steps; an L-stable method follows cos t."""
    t = torch.linspace(0, 10, 11, dtype=F64)
    sol = physnode.solve(_prothero_robinson, torch.ones(1, dtype=F64), t, method=name, rtol=1e-6, atol=1e-9)
    lam = 1e6
    exact = (lam**2 * torch.cos(t) + lam * torch.sin(t)) / (lam**2 + 1)  # y(0) = 1 is on the slow solution
    # Global error within ~10 rtol (|y| <= 1): errors are damped at rate 1e6, so they do not accumulate.
    assert float((sol.ys[:, 0] - exact).abs().max()) < 1e-5
    assert int(sol.stats.n_accepted) < 400, sol.stats


def test_filtered_error_estimate() -> None:
    """filter_error applies (I - h gamma J)^-1 to the estimate: same accuracy, no more steps on a stiff problem."""
    t = torch.linspace(0, 10, 11, dtype=F64)
    runs = {}
    for filt in (False, True):
        solver = _solver("kvaerno5", filter_error=filt)
        runs[filt] = physnode.solve(
            _prothero_robinson, torch.ones(1, dtype=F64), t, method=solver, rtol=1e-6, atol=1e-9
        )
    torch.testing.assert_close(runs[True].ys, runs[False].ys, rtol=1e-5, atol=1e-5)  # both within ~rtol of cos t
    assert int(runs[True].stats.n_accepted) <= int(runs[False].stats.n_accepted)


# Bound: the scaled error (per component relative to max(|y_ref|, atol/rtol)) within 100 rtol. The global
# error of a stiff solve is a sum of local errors, each controlled to ~rtol, partly damped; measured worst
# cases are ~20 rtol (kvaerno3, Van der Pol). A wrong coefficient or a wrong Newton solution gives O(1) errors.
MULTIPLE = 100.0
SCIPY_CASES = [(p, m) for p in PROBLEMS for m in IMPLICIT]


@pytest.mark.parametrize(
    ("problem", "name"),
    # Non-slow: kvaerno5 on every problem (1-2 s each on a quiet core); the lower orders are marked slow.
    [pytest.param(p, m, marks=[] if m == "kvaerno5" else [pytest.mark.slow]) for p, m in SCIPY_CASES],
    ids=[f"{p}-{m}" for p, m in SCIPY_CASES],
)
def test_stiff_problems_against_scipy_radau(problem: str, name: str) -> None:
    """Robertson, Van der Pol (mu = 1000), HIRES, OREGO on shortened intervals vs Radau(rtol=1e-10, atol=1e-12)."""
    pytest.importorskip("scipy")
    prob = PROBLEMS[problem]
    y, counts = solve_physnode(prob, name, prob.quick_t_end, rtol=1e-6)
    err = scaled_error(y, prob.reference(prob.quick_t_end), 1e-6, prob.atol)
    assert err <= MULTIPLE * 1e-6, f"{problem}/{name}: scaled error {err:.2e}, counts {counts}"


@pytest.mark.slow
@pytest.mark.parametrize("problem", list(PROBLEMS), ids=list(PROBLEMS))
def test_stiff_problems_full_interval(problem: str) -> None:
    pytest.importorskip("scipy")
    prob = PROBLEMS[problem]
    y, counts = solve_physnode(prob, "kvaerno5", prob.t_end, rtol=1e-6)
    err = scaled_error(y, prob.reference(prob.t_end), 1e-6, prob.atol)
    assert err <= MULTIPLE * 1e-6, f"{problem}: scaled error {err:.2e}, counts {counts}"


# ------------------------------------------------------------------------------------------ per trajectory
class Relaxation(nn.Module):
    """dy/dt = -lambda_b (y - cos t) with one rate per trajectory: stiff for large rates."""

    def __init__(self, rates: Tensor) -> None:
        super().__init__()
        self.register_buffer("rates", rates)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -self.rates.unsqueeze(-1) * (y - torch.cos(t).unsqueeze(-1))


def test_stiff_and_nonstiff_trajectories_in_one_batch() -> None:
    """Each trajectory takes its own steps and Newton decisions: the batch equals the trajectories solved alone."""
    rates = torch.tensor([1e5, 0.5], dtype=F64)
    y0 = torch.tensor([[0.0], [2.0]], dtype=F64)
    t = torch.tensor([[0.0, 0.5, 2.0], [0.0, 1.0, 3.0]], dtype=F64)
    kw = dict(method="kvaerno4", rtol=1e-7, atol=1e-9)
    both = physnode.solve(Relaxation(rates), y0, t, **kw)
    for b in range(2):
        alone = physnode.solve(Relaxation(rates[b : b + 1]), y0[b : b + 1], t[b : b + 1], **kw)
        # Same steps and the same Newton iterations per row; only batched vs single LU round-off may differ.
        torch.testing.assert_close(both.ys[b], alone.ys[0], rtol=1e-12, atol=1e-14)
        assert int(both.stats.n_accepted[b]) == int(alone.stats.n_accepted[0])
    assert int(both.stats.n_accepted[0]) != int(both.stats.n_accepted[1])


class CubicRelaxation(nn.Module):
    """dy/dt = -lambda_b (d + d^3), d = y - cos t: nonlinear, stiff for large rates."""

    def __init__(self, rates: Tensor) -> None:
        super().__init__()
        self.register_buffer("rates", rates)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        d = y - torch.cos(t).unsqueeze(-1)
        return -self.rates.unsqueeze(-1) * (d + d**3)


@pytest.mark.parametrize("copies", [1, 5], ids=["rows", "arrays"])  # B = 2 and B = 10 > ROW_BATCH
def test_newton_failure_of_one_trajectory_leaves_the_others_alone(copies: int) -> None:
    """A trajectory whose Newton iterations fail rejects its own step only: each row equals its solo solve."""
    rates = torch.tensor([1e4, 1.0] * copies, dtype=F64)
    y0 = torch.full((2 * copies, 1), 3.0, dtype=F64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)

    def run(r: Tensor, y: Tensor) -> tuple[physnode.Solution, ESDIRK]:
        solver = _solver("kvaerno3", newton_max_iter=3)
        kw = dict(method=solver, rtol=1e-6, atol=1e-9, step_size=0.5)
        return physnode.solve(CubicRelaxation(r), y, t, **kw), solver

    both, solver = run(rates, y0)
    assert solver.counters["newton_failures"] > 0
    for b in range(2):
        alone, _ = run(rates[b : b + 1], y0[b : b + 1])
        torch.testing.assert_close(both.ys[b], alone.ys[0], rtol=1e-12, atol=1e-14)  # batched LU round-off only
        assert int(both.stats.n_rejected[b]) == int(alone.stats.n_rejected[0])


def test_factorisation_is_reused_while_h_gamma_changes_less_than_lu_rate() -> None:
    """lu_rate = 0.2 reuses (I - hγJ)^-1 across steps whose hγ moved less than 20 %: fewer factorisations than
    steps, and the result stays within the tolerance-driven bound of scipy Radau's reference."""
    pytest.importorskip("scipy")
    prob = PROBLEMS["robertson"]
    t_end = prob.quick_t_end
    t = torch.tensor([0.0, t_end], dtype=F64)
    stats = {}
    for rate in (0.0, 0.2):
        solver = _solver("kvaerno5", lu_rate=rate)
        solver.set_tolerances(1e-6, prob.atol)
        sol = physnode.solve(prob.func, prob.y0_tensor(), t, method=solver, rtol=1e-6, atol=prob.atol)
        steps = int(sol.stats.n_accepted + sol.stats.n_rejected)
        stats[rate] = (int(sol.stats.nlu), steps)
        # Tolerance-proportional bound (as for the other scipy comparisons): a reused matrix changes only the
        # Newton contraction, not the equations the stages satisfy.
        err = scaled_error(sol.ys[-1].numpy(), prob.reference(t_end), 1e-6, prob.atol)
        assert err <= MULTIPLE * 1e-6, f"lu_rate={rate}: scaled error {err:.2e}"
    nlu, steps = stats[0.2]
    assert nlu < 0.9 * steps, stats
    assert nlu < stats[0.0][0], stats


def test_fixed_steps_factorise_only_with_a_fresh_jacobian() -> None:
    """With a constant h the matrix changes only with J: one factorisation per Jacobian, not one per step."""
    solver = _solver("kvaerno3", adaptive=False)
    t = torch.linspace(0.0, 1.0, 41, dtype=F64)
    sol = physnode.solve(
        CubicRelaxation(torch.tensor([50.0], dtype=F64)), torch.ones(1, 1, dtype=F64), t, method=solver, step_size=0.025
    )
    assert int(sol.stats.n_accepted) == 40
    assert solver.counters["factorizations"] == solver.counters["jacobians"] < 40


def test_newton_test_in_python_floats_equals_the_vectorised_one() -> None:
    """CPU batches of up to ROW_BATCH rows run the convergence test in Python floats, larger ones on NumPy
    arrays: a batch of ROW_BATCH + 1 trajectories equals each trajectory solved alone (same steps)."""
    from physnode.solvers.esdirk import ROW_BATCH

    rates = torch.logspace(-1, 4, ROW_BATCH + 1, dtype=F64)
    y0 = torch.linspace(0.5, 2.0, ROW_BATCH + 1, dtype=F64).unsqueeze(-1)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    kw = dict(method="kvaerno4", rtol=1e-6, atol=1e-9)
    batch = physnode.solve(CubicRelaxation(rates), y0, t, **kw)
    for b in (0, ROW_BATCH):
        alone = physnode.solve(CubicRelaxation(rates[b : b + 1]), y0[b : b + 1], t, **kw)
        torch.testing.assert_close(batch.ys[b], alone.ys[0], rtol=1e-12, atol=1e-14)  # batched round-off only
        assert int(batch.stats.n_accepted[b]) == int(alone.stats.n_accepted[0])
        assert int(batch.stats.n_rejected[b]) == int(alone.stats.n_rejected[0])


@pytest.mark.parametrize(
    ("batch", "form"), [(1, "rows"), (9, "arrays"), (3, "tensors")], ids=["rows", "arrays", "tensors"]
)
def test_diverging_newton_iteration_fails(batch: int, form: str) -> None:
    """A correction that grows (θ >= 1, so η = θ / (1 - θ) < 0) is a failure, not a convergence, in both forms
    of the convergence test: z_(m+1) - z* = -3 (z_m - z*) for the linear stage equation z = hγ(-z)."""
    solver = _solver("kvaerno3", newton_max_iter=4)
    B = batch
    hg = torch.full((B, 1), 0.5, dtype=F64)
    psi = torch.zeros(B, 1, dtype=F64)
    N_inv = torch.full((B, 1, 1), 4.0 / 1.5, dtype=F64)  # exact would be 1 / 1.5: 1 - 1.5 * N_inv = -3
    weight = torch.ones(B, 1, dtype=F64)
    args = (lambda t, y: -y, torch.zeros(B, dtype=F64), hg, psi, torch.ones(B, 1, dtype=F64), N_inv, weight)
    if form == "tensors":  # the form used off CPU: (B,) tensors, newton_max_iter iterations, no host reads
        _z, failed, _, theta = solver._newton_arrays(*args, torch.ones(B, dtype=F64))
        failed, theta = failed.numpy(), theta.numpy()
    else:
        _z, failed, _, theta = solver._newton(*args, np.ones(B))
    assert failed.all(), (failed, theta)
    np.testing.assert_allclose(theta, 3.0, rtol=1e-12)  # |z_2 - z_1| / |z_1 - z_0|: round-off only


def test_newton_failure_rejects_the_step_instead_of_failing() -> None:
    """A first step far too long for Newton to converge is rejected and shrunk; the solve then succeeds."""
    prob = PROBLEMS["robertson"]
    solver = _solver("kvaerno3", newton_max_iter=2, jacobian_rate=0.0)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    sol = physnode.solve(prob.func, prob.y0_tensor(), t, method=solver, rtol=1e-4, atol=1e-8, step_size=1.0)
    assert int(sol.stats.status) == 0
    assert solver.counters["newton_failures"] > 0
    assert int(sol.stats.n_rejected) > 0


def test_float32() -> None:
    t = torch.linspace(0, 2, 3)
    sol = physnode.solve(_prothero_robinson, torch.ones(1), t, method="kvaerno5", rtol=1e-5, atol=1e-6)
    assert sol.ys.dtype == torch.float32
    assert float((sol.ys[:, 0] - torch.cos(t)).abs().max()) < 1e-4  # float32 round-off ~1e-7 times the steps


def test_large_state_is_refused_with_advice() -> None:
    with pytest.raises(ValueError, match="max_dense_dim.*explicit method"):
        physnode.odeint(lambda t, y: -y, torch.ones(40, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                        method="kvaerno3", options={"max_dense_dim": 32})  # fmt: skip


def test_newton_tolerances_follow_the_solve_unless_given() -> None:
    from physnode.solvers.esdirk import NEWTON_KAPPA

    auto, fixed = _solver("kvaerno5"), _solver("kvaerno5", newton_rtol=1e-5, newton_atol=1e-6)
    for s in (auto, fixed):
        s.set_tolerances(1e-4, 1e-7)
    assert (auto.newton_rtol, auto.newton_atol) == (NEWTON_KAPPA * 1e-4, NEWTON_KAPPA * 1e-7)
    assert (fixed.newton_rtol, fixed.newton_atol) == (1e-5, 1e-6)


def test_odeint_hands_its_tolerances_to_the_newton_iterations() -> None:
    """A solve at rtol 1e-4 iterates Newton to NEWTON_KAPPA * 1e-4, not to the defaults meant for rtol 1e-7."""
    from physnode.solvers.esdirk import NEWTON_KAPPA

    solver = _solver("kvaerno5")
    y0, t = torch.ones(2, 1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    physnode.odeint(lambda t, y: -1e3 * (y - torch.cos(t).unsqueeze(-1)), y0, t, method=solver, rtol=1e-4, atol=1e-6)
    assert solver.newton_rtol == pytest.approx(NEWTON_KAPPA * 1e-4, rel=1e-12)
    assert float(solver.newton_atol) == pytest.approx(NEWTON_KAPPA * 1e-6, rel=1e-12)


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("newton_rtol", -1.0, "newton_rtol"),
        ("newton_max_iter", 0, "newton_max_iter"),
        ("jacobian_rate", 1.0, "jacobian_rate"),
        ("lu_rate", -0.1, "lu_rate must be in"),
    ],
    ids=["rtol", "max-iter", "rate", "lu-rate"],
)
def test_bad_options_are_explained(option: str, value: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _solver("kvaerno5", **{option: value})


class _OldStyleCube(torch.autograd.Function):
    """An autograd.Function without ``setup_context``: torch.func transforms refuse it."""

    @staticmethod
    def forward(ctx: object, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx: object, g: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return 3 * x * x * g


def test_jacobian_falls_back_when_torch_func_refuses_the_rhs() -> None:
    from physnode.solvers.esdirk import jacobian

    A = torch.tensor([[0.0, 1.0], [-2.0, -0.3]], dtype=F64)
    y, t = torch.randn(3, 2, dtype=F64), torch.zeros(3, dtype=F64)
    got = jacobian(lambda t, y: _OldStyleCube.apply(y) @ A.T, t, y)
    expected = jacobian(lambda t, y: (y**3) @ A.T, t, y)  # torch.func path
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=1e-14)
    # and per trajectory: J_b = A diag(3 y_b^2)
    torch.testing.assert_close(got[1], A * (3 * y[1] ** 2), rtol=1e-14, atol=1e-14)


def test_jacobian_of_a_right_hand_side_independent_of_y_is_zero() -> None:
    from physnode.solvers.esdirk import jacobian

    y, t = torch.randn(2, 3, dtype=F64), torch.zeros(2, dtype=F64)
    assert torch.equal(jacobian(lambda t, y: torch.ones_like(y), t, y), torch.zeros(2, 3, 3, dtype=F64))
    # partly independent: column 0 of f does not depend on y (no gradient flows to it)
    got = jacobian(lambda t, y: torch.stack([torch.ones_like(y[:, 0]), y[:, 0] * y[:, 1], y[:, 2]], -1), t, y)
    expected = torch.zeros(2, 3, 3, dtype=F64)
    expected[:, 1, 0], expected[:, 1, 1], expected[:, 2, 2] = y[:, 1], y[:, 0], 1.0
    torch.testing.assert_close(got, expected, rtol=1e-15, atol=0.0)  # products of the inputs, exact


# ---------------------------------------------------------------------------------------------- gradients
class Kinetics(nn.Module):
    """A stiff two-species reaction with learnable log-rates: y1' = -k1 y1 + k2 y2^2, y2' = k1 y1 - k2 y2^2 - k3 y2."""

    def __init__(self) -> None:
        super().__init__()
        self.log_k = nn.Parameter(torch.tensor([0.0, math.log(1e3), math.log(50.0)], dtype=F64))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        k1, k2, k3 = self.log_k.exp().unbind()
        y1, y2 = y[..., 0], y[..., 1]
        r = k2 * y2 * y2
        return torch.stack([-k1 * y1 + r, k1 * y1 - r - k3 * y2], dim=-1)


Y0 = torch.tensor([[1.0, 0.0], [0.5, 0.2]], dtype=F64)
T_OBS = torch.tensor([0.0, 0.3, 1.0], dtype=F64)
WEIGHTS = torch.tensor([[[0.0, 0.0], [1.0, -2.0], [0.5, 3.0]], [[0.0, 0.0], [-1.0, 1.0], [2.0, 0.7]]], dtype=F64)


def _grads(func: nn.Module, grad: str, **kw: object) -> tuple[Tensor, list[Tensor]]:
    y0 = Y0.clone().requires_grad_()
    ys = physnode.odeint(func, y0, T_OBS, grad=grad, **kw)
    loss = (ys * WEIGHTS).sum()
    gs = torch.autograd.grad(loss, [y0, *func.parameters()])
    return ys.detach(), list(gs)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[] if n == "kvaerno5" else [pytest.mark.slow]) for n in IMPLICIT], ids=IMPLICIT
)
def test_direct_equals_aca(name: str) -> None:
    """ACA replays the same step function (Newton without graph + IFT correction): equal to round-off."""
    func = Kinetics()
    kw = dict(method=name, rtol=1e-5, atol=1e-7)
    ys_d, g_d = _grads(func, "direct", **kw)
    ys_a, g_a = _grads(func, "aca", **kw)
    torch.testing.assert_close(ys_a, ys_d, rtol=1e-13, atol=1e-15)
    for a, d in zip(g_a, g_d, strict=True):
        # 1e-10 relative: a sum over ~100 steps of vector-Jacobian products that differ in order of operations.
        assert float((a - d).norm()) <= 1e-10 * float(d.norm()), (a, d)


def test_direct_gradient_matches_finite_differences() -> None:
    """Fixed steps (same grid for every perturbation): the IFT gradient is the derivative of the discrete map,
    so central differences of the map agree to O(eps^2) plus Newton noise (tolerance 1e-12, up to 30 iterations)."""
    func = Kinetics()
    opts = {"adaptive": False, "newton_rtol": 1e-12, "newton_atol": 1e-12, "newton_max_iter": 30}
    # Steps short enough for simplified Newton with one Jacobian per step to converge on this nonlinear problem.
    kw = dict(method="kvaerno3", step_size=0.002, options=opts)
    t = torch.tensor([0.0, 0.01, 0.02], dtype=F64)
    y0 = Y0.clone().requires_grad_()
    (g_y0, g_k) = torch.autograd.grad((physnode.odeint(func, y0, t, **kw) * WEIGHTS).sum(), [y0, func.log_k])

    def loss(y0: Tensor) -> float:
        with torch.no_grad():
            return float((physnode.odeint(func, y0, t, **kw) * WEIGHTS).sum())

    eps = 1e-6
    fd_y0 = torch.zeros_like(Y0)
    for idx in np.ndindex(*Y0.shape):
        e = torch.zeros_like(Y0)
        e[idx] = eps
        fd_y0[idx] = (loss(Y0 + e) - loss(Y0 - e)) / (2 * eps)
    fd_k = torch.zeros(3, dtype=F64)
    for i in range(3):
        with torch.no_grad():
            func.log_k[i] += eps
            up = loss(Y0)
            func.log_k[i] -= 2 * eps
            down = loss(Y0)
            func.log_k[i] += eps
        fd_k[i] = (up - down) / (2 * eps)
    # Central differences: truncation ~eps^2 |L'''| ~ 1e-12, round-off ~1e-16 |L| / eps ~ 1e-10.
    torch.testing.assert_close(g_y0, fd_y0, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(g_k, fd_k, rtol=1e-6, atol=1e-7)


def test_gradient_converges_to_the_exact_sensitivity() -> None:
    """Adaptive direct gradient at tight tolerance vs a scipy forward-sensitivity solve of the linear stiff
    problem y' = -k (y - cos t), for which dy(1)/dk is known in closed form through the solution."""
    k = torch.tensor(200.0, dtype=F64, requires_grad=True)
    y0 = torch.tensor([0.0], dtype=F64)
    ys = physnode.odeint(lambda t, y: -k * (y - torch.cos(t)), y0, torch.tensor([0.0, 1.0], dtype=F64),
                         method="kvaerno5", rtol=1e-9, atol=1e-11, params=[k])  # fmt: skip
    (g,) = torch.autograd.grad(ys[-1, 0], k)
    # y(t) = (k^2 cos t + k sin t - k^2 e^{-kt}) / (k^2 + 1); differentiate in k at t = 1.
    kk = torch.tensor(200.0, dtype=F64, requires_grad=True)
    t1 = torch.tensor(1.0, dtype=F64)
    exact = (kk**2 * torch.cos(t1) + kk * torch.sin(t1) - kk**2 * torch.exp(-kk * t1)) / (kk**2 + 1)
    (g_exact,) = torch.autograd.grad(exact, kk)
    # The gradient of the discrete solve converges to the exact one with the tolerance (~1e-9 local).
    assert float(g) == pytest.approx(float(g_exact), rel=1e-6)


# grad="adjoint" solves its backward equation with the ESDIRK method itself (tests/test_adjoint_implicit.py).
@pytest.mark.parametrize("grad", ["symplectic"])
def test_rk_only_gradient_methods_refuse_implicit_solvers_clearly(grad: str) -> None:
    with pytest.raises(ValueError, match=f"grad='{grad}'.*(explicit Runge–Kutta|aca)"):
        physnode.odeint(Kinetics(), Y0, T_OBS, grad=grad, method="kvaerno5")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_newton_on_tensors_equals_cpu() -> None:
    """Off CPU the convergence test runs on (B,) tensors for newton_max_iter iterations (converged rows frozen):
    the same steps as on CPU, values equal up to the devices' round-off."""
    prob = PROBLEMS["robertson"]
    y_cpu, c_cpu = solve_physnode(prob, "kvaerno5", prob.quick_t_end, rtol=1e-6)
    y_gpu, c_gpu = solve_physnode(prob, "kvaerno5", prob.quick_t_end, rtol=1e-6, device="cuda")
    assert abs(c_gpu["steps"] - c_cpu["steps"]) <= 2, (c_cpu, c_gpu)  # round-off may flip a borderline decision
    err = scaled_error(y_gpu, y_cpu, 1e-6, prob.atol)
    assert err <= 1e-6, err  # well within the solve's tolerance


def test_device_form_of_the_newton_test_equals_the_host_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """The form used off CPU ((B,) tensors, newton_max_iter iterations, converged rows frozen), run on CPU: the
    same steps and Newton decisions as the host form, so the same result up to round-off."""
    from physnode.solvers import esdirk

    rates = torch.tensor([1e4, 1.0, 30.0], dtype=F64)
    y0 = torch.tensor([[3.0], [3.0], [0.5]], dtype=F64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    kw = dict(rtol=1e-6, atol=1e-9)
    host_solver = _solver("kvaerno4", newton_max_iter=4)
    host = physnode.solve(CubicRelaxation(rates), y0, t, method=host_solver, **kw)
    monkeypatch.setattr(esdirk, "_on_host", lambda y: False)
    dev_solver = _solver("kvaerno4", newton_max_iter=4)
    dev = physnode.solve(CubicRelaxation(rates), y0, t, method=dev_solver, **kw)
    torch.testing.assert_close(dev.ys, host.ys, rtol=1e-12, atol=1e-14)  # frozen rows: round-off only
    assert torch.equal(dev.stats.n_accepted, host.stats.n_accepted)
    assert torch.equal(dev.stats.n_rejected, host.stats.n_rejected)
    # The device form always runs newton_max_iter iterations; the host form stops when every row is done.
    assert dev_solver.counters["newton_iterations"] > host_solver.counters["newton_iterations"]
