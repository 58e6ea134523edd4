"""Every exact gradient method equals backprop (``grad="direct"``) through the same discrete solve with external
inputs, breakpoints and boluses, including the gradient with respect to the input values and bolus amounts; and
``direct`` agrees with finite differences."""

from __future__ import annotations

import pytest
import torch
from registries import ALL_SOLVERS, EXACT_GRADIENTS, RK, solver_for, solvers_for
from torch import Tensor, nn

import physnode
from physnode.data import Boluses, Inputs
from physnode.gradients import GRADIENTS
from physnode.solvers import SOLVERS

NAN = float("nan")


class Driven(nn.Module):
    """``dy/dt = tanh-MLP(y) + B u + 0.3 sin(2 t)``: a learnable field driven by two input channels."""

    def __init__(self, dim: int = 2, channels: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 8), nn.Tanh(), nn.Linear(8, dim)).double()
        self.B = nn.Parameter(torch.randn(dim, channels, dtype=torch.float64))

    def forward(self, t: Tensor, y: Tensor, u: Tensor) -> Tensor:
        return self.net(y) + u @ self.B.T + 0.3 * torch.sin(2.0 * t).unsqueeze(-1)


def _inputs(kinds=("constant", "cubic")) -> Inputs:
    times = torch.tensor([[0.0, 0.35, 0.6, 1.1, NAN], [0.2, 0.3, 0.75, 0.9, 1.6]], dtype=torch.float64)
    values = torch.randn(2, 5, 2, dtype=torch.float64)
    return Inputs(times, values.requires_grad_(), list(kinds))


def _run(func, y0, t, grad, u, extra=(), **kw):
    """Solve, form a loss from every output, return (solution, grads w.r.t. y0, func's params, input values)."""
    y0 = y0.detach().clone().requires_grad_()
    sol = physnode.solve(func, y0, t, grad=grad, inputs=u, **kw)
    w = torch.linspace(-1.0, 2.0, sol.ys.numel(), dtype=sol.ys.dtype).reshape(sol.ys.shape)
    loss = (w * sol.ys).sum() + 0.5 * sol.ys.square().sum()
    wrt = [y0, *func.parameters(), *extra]
    return sol, torch.autograd.grad(loss, wrt)


def _assert_same(sol, ref, g, g_ref, label: str) -> None:
    assert torch.equal(sol.stats.n_accepted, ref.stats.n_accepted), label
    # Same steps and operations: round-off only (1e-13 relative to the largest output / gradient entry).
    torch.testing.assert_close(sol.ys, ref.ys, rtol=1e-13, atol=1e-13 * float(ref.ys.detach().abs().max()))
    for i, (a, b) in enumerate(zip(g, g_ref, strict=True)):
        scale = float(b.abs().max())
        assert scale > 0, f"{label}: reference gradient {i} is zero"
        assert float((a - b).abs().max()) / scale <= 1e-10, f"{label}: gradient {i} differs from direct"


def _kw(method: str) -> dict:
    """Solve keywords: adaptive for the high-order pairs (rejections and FSAL re-evaluations after breakpoints are
    part of what is replayed); fixed steps of 0.07 for the others (low-order adaptive solves would need thousands of
    steps here, and exactness does not depend on how the steps were chosen; every step still lands on the
    breakpoints)."""
    solver = SOLVERS.build(method)
    if not solver.adaptive:
        return {"method": method, "step_size": 0.07}
    if solver.order < 4:
        options = {"adaptive": False} if "adaptive" in SOLVERS.accepted_options(method) else {}
        if options:
            return {"method": method, "step_size": 0.07, "options": options}
        return {"method": method, "rtol": 1e-4, "atol": 1e-6}
    return {"method": method, "rtol": 1e-5, "atol": 1e-7}


def _slow_unless(fast: set, values: list) -> list:
    """``values`` as parameters, those not in ``fast`` marked slow (every combination still runs in CI)."""
    return [v if v in fast else pytest.param(v, marks=pytest.mark.slow) for v in values]


@pytest.mark.parametrize("grad", EXACT_GRADIENTS, ids=EXACT_GRADIENTS)
def test_exact_with_inputs(grad: str) -> None:
    torch.manual_seed(1)
    func = Driven()
    u = _inputs()
    y0 = torch.randn(2, 2, dtype=torch.float64)
    t = torch.tensor([[0.0, 0.35, 0.8, 1.4], [0.1, 0.5, 0.9, 2.0]], dtype=torch.float64)
    kw = _kw(solver_for(grad))
    ref, g_ref = _run(func, y0, t, "direct", u, extra=(u.values,), **kw)
    sol, g = _run(func, y0, t, grad, u, extra=(u.values,), **kw)
    _assert_same(sol, ref, g, g_ref, grad)


PAIRS = [(g, m) for g in EXACT_GRADIENTS if GRADIENTS.cls(g).requires_method is None for m in solvers_for(g) if m in RK]
#: Run in the quick suite: an FSAL pair and a fixed-step method for each (the others are marked slow).
FAST_PAIRS = {("symplectic", "bosh3"), ("symplectic", "rk4"), ("aca", "tsit5")}


@pytest.mark.parametrize(
    ("grad", "method"),
    [p if p in FAST_PAIRS else pytest.param(*p, marks=pytest.mark.slow) for p in PAIRS],
    ids=[f"{g}-{m}" for g, m in PAIRS],
)
def test_every_rk_solver_with_inputs(grad: str, method: str) -> None:
    """FSAL or not, adaptive or not: the re-evaluated derivative after a breakpoint is replayed exactly."""
    torch.manual_seed(2)
    func = Driven()
    u = _inputs(("constant", "linear"))
    y0 = torch.randn(2, 2, dtype=torch.float64)
    t = torch.tensor([[0.0, 0.5, 1.2], [0.1, 0.6, 1.7]], dtype=torch.float64)
    kw = _kw(method)
    ref, g_ref = _run(func, y0, t, "direct", u, extra=(u.values,), **kw)
    sol, g = _run(func, y0, t, grad, u, extra=(u.values,), **kw)
    _assert_same(sol, ref, g, g_ref, f"{grad}/{method}")


@pytest.mark.parametrize("method", _slow_unless({"alf", "nag", "leapfrog"}, ALL_SOLVERS), ids=ALL_SOLVERS)
def test_aca_on_every_solver_with_inputs(method: str) -> None:
    torch.manual_seed(3)
    func = Driven()
    u = _inputs()
    y0 = torch.randn(2, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 0.45, 1.3], dtype=torch.float64)
    try:
        SOLVERS.build(method).check_compatible(func)
    except ValueError as exc:
        pytest.skip(f"{method} does not accept a generic right-hand side: {exc}")
    kw = _kw(method)
    ref, g_ref = _run(func, y0, t, "direct", u, extra=(u.values,), **kw)
    sol, g = _run(func, y0, t, "aca", u, extra=(u.values,), **kw)
    _assert_same(sol, ref, g, g_ref, f"aca/{method}")


@pytest.mark.parametrize("grad", EXACT_GRADIENTS, ids=EXACT_GRADIENTS)
def test_exact_with_plain_breakpoints(grad: str) -> None:
    """A plain func(t, y) with a jump at declared breakpoints (torchdiffeq's jump_t)."""
    torch.manual_seed(4)
    module = Driven(channels=1)
    bp = torch.tensor([[0.4, 0.9], [0.3, NAN]], dtype=torch.float64)

    def func(t, y):
        step = (t >= 0.4).to(y.dtype) - 0.5 * (t >= 0.9).to(y.dtype)
        return module.net(y) + step.unsqueeze(-1) * module.B.T

    y0 = torch.randn(2, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 0.6, 1.5], dtype=torch.float64)
    kw = dict(_kw(solver_for(grad)), params=list(module.parameters()), breakpoints=bp)
    outs = {}
    for g_name in ("direct", grad):
        y0r = y0.clone().requires_grad_()
        sol = physnode.solve(func, y0r, t, grad=g_name, **kw)
        loss = (sol.ys * torch.linspace(-1, 2, sol.ys.numel(), dtype=torch.float64).reshape(sol.ys.shape)).sum()
        outs[g_name] = (sol, torch.autograd.grad(loss, [y0r, *module.parameters()]))
    _assert_same(outs[grad][0], outs["direct"][0], outs[grad][1], outs["direct"][1], grad)


def test_input_value_gradient_matches_finite_differences() -> None:
    torch.manual_seed(5)
    func = Driven()
    u = _inputs(("constant", "cubic"))
    y0 = torch.randn(2, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    kw = dict(rtol=1e-10, atol=1e-12)

    def loss(values: Tensor) -> Tensor:
        ui = Inputs(u.times, values, u.kinds)
        return physnode.odeint(func, y0, t, inputs=ui, **kw).square().sum()

    values = u.values.detach().clone().requires_grad_()
    (g,) = torch.autograd.grad(loss(values), [values])
    eps = 1e-6
    fd = torch.zeros_like(values)
    with torch.no_grad():
        for idx in [(0, 1, 0), (1, 2, 1), (0, 0, 1)]:
            e = torch.zeros_like(values)
            e[idx] = eps
            fd[idx] = (loss(values + e) - loss(values - e)) / (2 * eps)
            # Central differences of a solve at rtol 1e-10: truncation ~eps^2, solver noise ~1e-10 / eps.
            assert abs(float(fd[idx] - g[idx])) <= 1e-5 * max(1.0, abs(float(g[idx]))), idx
    # Padding (row 0, knot 4) and the constant channel's value after the last time (row 1, knot 4 at 1.6) get no
    # gradient (the cubic channel's does: it shapes the slope at the previous knot).
    assert float(g[0, 4].abs().max()) == 0.0 and float(g[1, 4, 0]) == 0.0


@pytest.mark.parametrize("grad", ["direct", *EXACT_GRADIENTS, "adjoint"])
def test_bolus_amount_gradient(grad: str) -> None:
    """d loss / d amounts by finite differences (direct), and the other methods equal to direct."""
    k = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

    def func(t, y):
        return -k * y + 0.1 * torch.cos(t).unsqueeze(-1)

    amounts = torch.tensor([[2.0, 1.0], [3.0, NAN]], dtype=torch.float64, requires_grad=True)
    times = torch.tensor([[0.5, 1.5], [1.0, NAN]], dtype=torch.float64)
    y0 = torch.tensor([[1.0, 0.5], [0.2, -0.3]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    method = "dopri5" if grad in ("direct", "adjoint") else solver_for(grad)
    kw: dict = dict(params=[k], **_kw(method))
    if method == "dopri5":
        kw.update(rtol=1e-10, atol=1e-12)

    def loss(a: Tensor, g: str = grad) -> Tensor:
        bol = Boluses(times, a, index=torch.tensor([[1, 0], [1, 0]]))
        return physnode.odeint(func, y0, t, boluses=bol, grad=g, **kw).square().sum()

    grads = torch.autograd.grad(loss(amounts), [amounts, y0, k])
    ref = torch.autograd.grad(loss(amounts, "direct"), [amounts, y0, k])  # the same solver, backpropagated
    tol = 1e-6 if grad == "adjoint" else 1e-10  # the continuous adjoint is exact only to its tolerance
    for a, b in zip(grads, ref, strict=True):
        assert torch.allclose(torch.nan_to_num(a), torch.nan_to_num(b), rtol=tol, atol=tol)
    if grad == "direct":
        eps = 1e-6
        with torch.no_grad():
            for idx in [(0, 0), (0, 1), (1, 0)]:
                e = torch.zeros_like(amounts)
                e[idx] = eps
                fd = (loss(amounts + e) - loss(amounts - e)) / (2 * eps)
                assert abs(float(fd - grads[0][idx])) < 1e-6, idx
        assert float(grads[0][1, 1]) == 0.0  # padding


def test_continuous_adjoint_with_inputs_is_close_to_direct() -> None:
    """The continuous adjoint (not exact for the discrete solve) lands its backward solve on the breakpoints too:
    its gradients, input values included, agree with direct to the solves' tolerance."""
    torch.manual_seed(6)
    func = Driven()
    u = _inputs(("constant", "linear"))
    y0 = torch.randn(2, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.2], dtype=torch.float64)
    kw = {"method": "dopri5", "rtol": 1e-10, "atol": 1e-12}
    _, g_ref = _run(func, y0, t, "direct", u, extra=(u.values,), **kw)
    _, g = _run(func, y0, t, "adjoint", u, extra=(u.values,), **kw)
    for a, b in zip(g, g_ref, strict=True):
        # Both converge to the exact-flow gradient; at rtol 1e-10 they agree to ~1e-8 relative.
        assert float((a - b).abs().max()) <= 1e-7 * float(b.abs().max())
