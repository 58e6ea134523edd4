"""Rosenbrock methods (Rodas4): coefficients against the order conditions, convergence and dense-output order on a
time-dependent problem, stiff problems against scipy Radau, per-trajectory steps, gradients, refusals."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import physnode
from physnode.bench.stiff import PROBLEMS, scaled_error, solve_physnode
from physnode.solvers import SOLVERS, Rosenbrock, RosenbrockTableau
from physnode.solvers.rodas4 import TABLEAU

F64 = torch.float64
ROSENBROCK = [n for n in SOLVERS.names() if issubclass(SOLVERS.cls(n), Rosenbrock)]


def _conditions(tab: RosenbrockTableau, weights: np.ndarray) -> list[float]:
    """Residuals of the order conditions up to order 4 of a Rosenbrock method (Hairer & Wanner, Solving ODEs II,
    section IV.7), in the original form: ``β_ij = α_ij + γ_ij`` (strictly lower), ``β'_i = Σ_j β_ij``,
    ``α_i = Σ_j α_ij``."""
    alpha, Gamma, _, _ = tab.classical()
    g = tab.gamma
    beta = alpha + Gamma - np.diag(np.diag(Gamma))
    bp, ai = beta.sum(1), alpha.sum(1)
    b = weights
    return [
        b.sum() - 1,  # order 1
        b @ bp - (0.5 - g),  # order 2
        b @ ai**2 - 1 / 3,  # order 3
        b @ (beta @ bp) - (1 / 6 - g + g * g),
        b @ ai**3 - 1 / 4,  # order 4
        b @ (ai * (alpha @ bp)) - (1 / 8 - g / 3),
        b @ (beta @ ai**2) - (1 / 12 - g / 3),
        b @ (beta @ (beta @ bp)) - (1 / 24 - g / 2 + 1.5 * g * g - g**3),
    ]


# ------------------------------------------------------------------------------------------------- tableau
def test_rodas4_is_registered() -> None:
    assert "rodas4" in ROSENBROCK
    solver = SOLVERS.build("rodas4")
    assert (solver.order, solver.error_order, solver.dense_order, solver.implicit) == (4, 4, 3, True)


def test_rodas4_coefficients_satisfy_the_order_conditions() -> None:
    """The 16-digit published coefficients satisfy the conditions to round-off (1e-13 leaves room for the inverse
    of Γ); the embedded solution meets those of order 3 and misses one of order 4 (it is order 3, not more)."""
    _, Gamma, b, b_hat = TABLEAU.classical()
    assert max(abs(r) for r in _conditions(TABLEAU, b)) < 1e-13
    embedded = _conditions(TABLEAU, b_hat)
    assert max(abs(r) for r in embedded[:4]) < 1e-13
    assert max(abs(r) for r in embedded[4:]) > 1e-3
    # d_i is the row sum of Γ (the coefficient of h f_t), α_i the row sum of the original α (the stage times).
    np.testing.assert_allclose(Gamma.sum(1), TABLEAU.d, atol=1e-13)
    np.testing.assert_allclose(TABLEAU.classical()[0].sum(1), TABLEAU.alpha, atol=1e-13)


def test_rodas4_is_l_stable() -> None:
    """On y' = λy a Rosenbrock step is R(z) = 1 + z bᵀ(I - zB)^-1 1 with B = α + Γ; |R| <= 1 on the left half-plane
    (sampled) and R(-∞) = 0 (checked at z = -1e8: |R| ~ 1/|z|)."""
    alpha, Gamma, b, _ = TABLEAU.classical()
    Bm = alpha + Gamma
    one = np.ones(6)

    def R(z: complex) -> complex:
        return complex(1 + z * b @ np.linalg.solve(np.eye(6) - z * Bm, one))

    zs = [complex(x, y) for x in (-1e-3, -0.1, -1, -10, -1e3) for y in (-100, -3, 0, 1, 30)]
    zs += [complex(0, y) for y in (0.5, 2, 20, 200)]
    assert max(abs(R(z)) for z in zs) <= 1 + 1e-12
    assert abs(R(-1e8)) < 1e-6


def test_tableau_checks_itself() -> None:
    kw = dict(TABLEAU.__dict__)
    kw.pop("m_err")
    with pytest.raises(ValueError, match="row 2 of a must hold 2 coefficients"):
        RosenbrockTableau(**{**kw, "a": ((), (1.0,), (1.0,), *TABLEAU.a[3:])})
    with pytest.raises(ValueError, match=r"d\[0\] must equal gamma"):
        RosenbrockTableau(**{**kw, "d": (0.3, *TABLEAU.d[1:])})
    with pytest.raises(ValueError, match="one entry per stage"):
        RosenbrockTableau(**{**kw, "m": TABLEAU.m[:-1]})


# --------------------------------------------------------------------------------------- order, f_t, dense
K = 3.0


def _forced(t: Tensor, y: Tensor) -> Tensor:
    """y' = -K (y - sin t): explicitly time-dependent; exact y = C e^(-Kt) + (K² sin t - K cos t) / (K² + 1)."""
    return -K * (y - torch.sin(t).unsqueeze(-1))


def _forced_exact(t: Tensor, y0: float) -> Tensor:
    p = (K * K * torch.sin(t) - K * torch.cos(t)) / (K * K + 1)
    return (y0 + K / (K * K + 1)) * torch.exp(-K * t) + p


def test_fixed_step_order_on_a_time_dependent_problem() -> None:
    """Fixed steps on [0, 2]: error ratio under step halving ≈ 2^4 (slope 4 within 0.3); this needs the exact
    f_t term (without it a Rosenbrock method drops to order 1 on a non-autonomous problem)."""
    t = torch.tensor([0.0, 2.0], dtype=F64)
    y0 = torch.tensor([[0.5]], dtype=F64)
    errs = []
    hs = [0.25, 0.125, 0.0625]
    for h in hs:
        sol = physnode.solve(_forced, y0, t, method="rodas4", step_size=h, options={"adaptive": False})
        errs.append(float((sol.ys[0, -1, 0] - _forced_exact(t[-1], 0.5)).abs()))
    slopes = [math.log2(errs[i] / errs[i + 1]) for i in range(len(hs) - 1)]
    assert all(abs(s - 4) < 0.3 for s in slopes), (errs, slopes)


def _one_step(h: float) -> tuple[Tensor, Tensor, Rosenbrock]:
    solver = SOLVERS.build("rodas4")
    t0 = torch.tensor([0.3], dtype=F64)
    y0 = _forced_exact(t0, 0.5).unsqueeze(-1)
    state = solver.init(_forced, t0, y0, torch.tensor([h], dtype=F64))
    (y1, _), err = solver.step(_forced, t0, torch.tensor([h], dtype=F64), state)
    assert err is not None
    return y1, err, solver


def test_local_error_and_embedded_estimate_orders() -> None:
    """One step from the exact solution (Y0 = 0.5 at t = 0): local error O(h^5), estimate O(h^4) (ratios under
    halving within 2^(p ± 0.5))."""
    true, est = [], []
    for h in (0.2, 0.1, 0.05):
        y1, err, _ = _one_step(h)
        true.append(float((y1[0, 0] - _forced_exact(torch.tensor(0.3 + h, dtype=F64), 0.5)).abs()))
        est.append(float(err.abs().max()))
    for seq, p in ((true, 5), (est, 4)):
        for a, b in itertools.pairwise(seq):
            assert abs(math.log2(a / b) - p) < 0.5, (seq, p)


def test_dense_output_order() -> None:
    """The continuous extension at θ = 0.3, 0.7 of one step from the exact solution: error O(h^4) (order 3), and it
    ends on the step's solution at θ = 1."""
    errs = []
    for h in (0.2, 0.1, 0.05):
        y1, _, solver = _one_step(h)
        y_n, hh, R = solver.dense_terms()
        theta = torch.tensor([[0.3, 0.7, 1.0]], dtype=F64)
        ys = physnode.dense.evaluate(y_n, hh, R, theta)[0, :, 0]
        exact = _forced_exact(0.3 + h * theta[0], 0.5)
        errs.append(float((ys[:2] - exact[:2]).abs().max()))
        # θ = 1 reproduces y_new: the same sums in another order, equal to round-off (1e-14 absolute, |y| < 1).
        assert abs(float(ys[2] - y1[0, 0])) < 1e-14
    for a, b in itertools.pairwise(errs):
        assert math.log2(a / b) > 3.5, errs


def test_interpolated_outputs_events_and_dense_solution() -> None:
    """outputs="interpolate", Solution.interpolate and an event on the continuous extension, against the closed
    form at rtol 1e-8 (bounds 1e-6: the interpolant's error at these steps stays within ~100 rtol)."""
    y0 = torch.tensor([[0.5]], dtype=F64)
    t = torch.linspace(0.0, 3.0, 61, dtype=F64)
    kw: dict = dict(method="rodas4", rtol=1e-8, atol=1e-10)
    sol = physnode.solve(_forced, y0, t, outputs="interpolate", **kw)
    assert float((sol.ys[0, :, 0] - _forced_exact(t, 0.5)).abs().max()) < 1e-6
    landed = physnode.solve(_forced, y0, t[[0, -1]], dense=True, **kw)
    tm = torch.linspace(0.05, 2.95, 30, dtype=F64)
    assert float((landed.interpolate(tm)[0, :, 0] - _forced_exact(tm, 0.5)).abs().max()) < 1e-6
    # y crosses 0.3 once going up: the event time solves the closed form (bisection on it as the reference).
    ev = physnode.odeint_event(
        _forced, torch.tensor([0.0], dtype=F64), 0.0, lambda t, y: y[..., 0] - 0.3, t_end=3.0, **kw
    )
    lo, hi = 0.0, 3.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if float(_forced_exact(torch.tensor(mid, dtype=F64), 0.0)) < 0.3 else (lo, mid)
    assert abs(float(ev.t_events.reshape(-1)[0]) - lo) < 1e-6


# --------------------------------------------------------------------------------------------- stiff problems
@pytest.mark.parametrize(
    "problem",
    # Non-slow: Robertson and Van der Pol (about 1 s each); HIRES and OREGO marked slow.
    [pytest.param(p, marks=[] if p in ("robertson", "van-der-pol") else [pytest.mark.slow]) for p in PROBLEMS],
    ids=list(PROBLEMS),
)
def test_stiff_problems_against_scipy_radau(problem: str) -> None:
    """The four problems of bench stiff on their shortened intervals (Robertson [0, 40], Van der Pol μ = 1000
    [0, 1000], HIRES [0, 5], OREGO [0, 30]) against Radau at rtol 1e-10: scaled error within 100 rtol (the bound of
    tests/test_solvers_stiff.py: the global error is a sum of local errors ~rtol)."""
    pytest.importorskip("scipy")
    prob = PROBLEMS[problem]
    y, counts = solve_physnode(prob, "rodas4", prob.quick_t_end, rtol=1e-6)
    err = scaled_error(y, prob.reference(prob.quick_t_end), 1e-6, prob.atol)
    assert err <= 100 * 1e-6, f"{problem}: scaled error {err:.2e}, counts {counts}"
    assert counts["njev"] == counts["nlu"] == counts["steps"]  # one Jacobian and one factorisation per step


def _prothero_robinson(t: Tensor, y: Tensor) -> Tensor:
    """y' = -1e5 (y - cos t) - sin t: very stiff, time-dependent, exact y = cos t."""
    return -1e5 * (y - torch.cos(t).unsqueeze(-1)) - torch.sin(t).unsqueeze(-1)


def test_prothero_robinson_stiff_and_time_dependent() -> None:
    """Stiff and non-autonomous: the solution follows cos t to ~rtol in few steps (an explicit method needs
    ~1e5 steps per unit time here; a wrong f_t term leaves an O(h) error in the stiff limit)."""
    t = torch.linspace(0.0, 10.0, 11, dtype=F64)
    sol = physnode.solve(_prothero_robinson, torch.ones(1, dtype=F64), t, method="rodas4", rtol=1e-6, atol=1e-9)
    assert float((sol.ys[:, 0] - torch.cos(t)).abs().max()) < 1e-5
    assert int(sol.stats.n_accepted) < 300, sol.stats


class Relaxation(nn.Module):
    """dy/dt = -rate_b (y - cos t) per trajectory: stiff for large rates; ``rates`` a parameter (gradients)."""

    def __init__(self, rates: Tensor) -> None:
        super().__init__()
        self.rates = nn.Parameter(rates)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -self.rates.unsqueeze(-1) * (y - torch.cos(t).unsqueeze(-1)) + 0.1 * y.flip(-1)


def test_batch_with_own_times_equals_individual_solves() -> None:
    """Stiff and non-stiff trajectories with their own times: same steps as alone, values equal to round-off of
    a batched vs a single inverse (1e-12 relative)."""
    rates = torch.tensor([1e5, 0.5, 30.0], dtype=F64)
    y0 = torch.tensor([[0.0, 1.0], [2.0, -1.0], [1.0, 0.5]], dtype=F64)
    t = torch.tensor([[0.0, 0.5, 2.0], [0.0, 1.0, 3.0], [-1.0, 0.2, 0.4]], dtype=F64)
    kw: dict = dict(method="rodas4", rtol=1e-7, atol=1e-9)
    with torch.no_grad():
        both = physnode.solve(Relaxation(rates), y0, t, **kw)
        for b in range(3):
            alone = physnode.solve(Relaxation(rates[b : b + 1]), y0[b : b + 1], t[b : b + 1], **kw)
            torch.testing.assert_close(both.ys[b], alone.ys[0], rtol=1e-12, atol=1e-14)
            assert int(both.stats.n_accepted[b]) == int(alone.stats.n_accepted[0])
    assert len(set(both.stats.n_accepted.tolist())) == 3


# ------------------------------------------------------------------------------------------------ gradients
def _loss(grad: str, rates: Tensor, y0: Tensor, **kw: object) -> tuple[Tensor, Relaxation, Tensor]:
    func = Relaxation(rates.clone())
    y0 = y0.clone().requires_grad_()
    t = torch.tensor([0.0, 0.3, 1.0], dtype=F64)
    sol = physnode.solve(func, y0, t, method="rodas4", grad=grad, **kw)
    w = torch.linspace(-1.0, 2.0, sol.ys.numel(), dtype=F64).reshape(sol.ys.shape)
    return (w * sol.ys).sum() + sol.ys.square().sum(), func, y0


def test_direct_gradient_against_finite_differences() -> None:
    """Fixed steps (a smooth discrete map): backprop, through the Jacobian's own dependence on the parameters, equals
    central differences of the same discrete solve (step 1e-6: truncation ~1e-12, round-off ~1e-10 relative;
    bound 1e-6)."""
    rates = torch.tensor([40.0, 2.0], dtype=F64)
    y0 = torch.tensor([[0.3, -0.2], [1.0, 0.4]], dtype=F64)
    kw: dict = dict(step_size=0.05, options={"adaptive": False})
    loss, func, y0_leaf = _loss("direct", rates, y0, **kw)
    g_rates, g_y0 = torch.autograd.grad(loss, [func.rates, y0_leaf])
    eps = 1e-6
    with torch.no_grad():
        for i in range(2):
            d = torch.zeros(2, dtype=F64)
            d[i] = eps
            fd = (_loss("direct", rates + d, y0, **kw)[0] - _loss("direct", rates - d, y0, **kw)[0]) / (2 * eps)
            assert abs(float(fd - g_rates[i])) <= 1e-6 * max(1.0, abs(float(fd))), (i, float(fd), float(g_rates[i]))
        for b, k in ((0, 0), (1, 1)):
            d = torch.zeros_like(y0)
            d[b, k] = eps
            fd = (_loss("direct", rates, y0 + d, **kw)[0] - _loss("direct", rates, y0 - d, **kw)[0]) / (2 * eps)
            assert abs(float(fd - g_y0[b, k])) <= 1e-6 * max(1.0, abs(float(fd)))


def test_aca_equals_direct_on_the_same_adaptive_solve() -> None:
    """ACA replays the same step function: equal to backprop through the adaptive solve to round-off (1e-10)."""
    rates = torch.tensor([200.0, 2.0], dtype=F64)
    y0 = torch.tensor([[0.3, -0.2], [1.0, 0.4]], dtype=F64)
    kw: dict = dict(rtol=1e-6, atol=1e-8)
    grads = {}
    for grad in ("direct", "aca"):
        loss, func, y0_leaf = _loss(grad, rates, y0, **kw)
        grads[grad] = torch.autograd.grad(loss, [func.rates, y0_leaf])
    for g, r in zip(grads["aca"], grads["direct"], strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("grad", ["adjoint", "symplectic"], ids=["adjoint", "symplectic"])
def test_unsupported_gradient_methods_refuse(grad: str) -> None:
    func = Relaxation(torch.tensor([3.0], dtype=F64))
    y0 = torch.ones(1, 2, dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match="rodas4"):
        physnode.solve(func, y0, torch.tensor([0.0, 1.0], dtype=F64), method="rodas4", grad=grad)


def test_bad_options_fail_clearly() -> None:
    with pytest.raises(ValueError, match="max_dense_dim must be a positive integer, got 0"):
        physnode.solve(
            _forced,
            torch.ones(1, dtype=F64),
            torch.tensor([0.0, 1.0], dtype=F64),
            method="rodas4",
            options={"max_dense_dim": 0},
        )
    with pytest.raises(ValueError, match="D = 3 exceeds max_dense_dim = 2"):
        physnode.solve(
            lambda t, y: -y,
            torch.ones(3, dtype=F64),
            torch.tensor([0.0, 1.0], dtype=F64),
            method="rodas4",
            options={"max_dense_dim": 2},
        )
    with pytest.raises(ValueError, match="newton_rtol"):  # an ESDIRK option, not one of rodas4's
        physnode.solve(
            _forced,
            torch.ones(1, dtype=F64),
            torch.tensor([0.0, 1.0], dtype=F64),
            method="rodas4",
            options={"newton_rtol": 1e-9},
        )


class _Cube(torch.autograd.Function):
    """x³ as an autograd Function without ``setup_context``: it cannot run under ``torch.func`` transforms."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return 3 * x * x * g


class CubicDecay(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(30.0, dtype=F64))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -self.k * _Cube.apply(y) + torch.sin(t).unsqueeze(-1)


def test_direct_gradient_when_f_cannot_run_under_torch_func() -> None:
    """The graph-mode Jacobian falls back to create_graph backward passes: same finite-difference check (fixed
    steps, central differences with step 1e-6, bound 1e-6 relative)."""
    y0 = torch.tensor([[0.8, -0.5]], dtype=F64)
    t = torch.tensor([0.0, 0.5], dtype=F64)
    kw: dict = dict(method="rodas4", step_size=0.05, options={"adaptive": False})

    def loss(func: CubicDecay) -> Tensor:
        return physnode.solve(func, y0, t, **kw).ys[:, -1].square().sum()

    func = CubicDecay()
    (g,) = torch.autograd.grad(loss(func), [func.k])
    with torch.no_grad():
        func.k += 1e-6
        up = loss(func)
        func.k -= 2e-6
        down = loss(func)
    fd = (up - down) / 2e-6
    assert abs(float(fd - g)) <= 1e-6 * max(1.0, abs(float(fd))), (float(fd), float(g))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu_without_host_synchronisation_in_a_step() -> None:
    """On CUDA: Robertson as on the CPU (a borderline accept may flip: steps within 2, values within 1e-6 scaled),
    and a step (after a warm-up one, which moves the coefficients to the device) synchronises with the host 0 times."""
    from physnode.bench.gpu import count_syncs

    prob = PROBLEMS["robertson"]
    y_cpu, c_cpu = solve_physnode(prob, "rodas4", prob.quick_t_end, rtol=1e-6)
    y_gpu, c_gpu = solve_physnode(prob, "rodas4", prob.quick_t_end, rtol=1e-6, device="cuda")
    assert abs(c_gpu["steps"] - c_cpu["steps"]) <= 2, (c_cpu, c_gpu)
    assert scaled_error(y_gpu, y_cpu, 1e-6, prob.atol) <= 1e-6
    dev = torch.device("cuda")
    solver = SOLVERS.build("rodas4")
    y0 = torch.tensor([[0.5, -0.2], [1.0, 0.3]], dtype=F64, device=dev)
    t0 = torch.zeros(2, dtype=F64, device=dev)
    h = torch.full((2,), 0.01, dtype=F64, device=dev)
    func = Relaxation(torch.tensor([1e3, 2.0], dtype=F64)).to(dev)
    with torch.no_grad():
        state = solver.init(func, t0, y0, h)
        solver.step(func, t0, h, state)
        assert count_syncs(lambda: solver.step(func, t0, h, state), dev) == 0
