"""Every exact gradient method equals backprop (``grad="direct"``) through the same discrete solve.

The list of methods is read from the registry, so a newly registered method is run through every test here.
The lists come from ``registries``: a method is tested on the solver it requires, else on the default method;
the tests "on every solver" run each method on every registered solver of its ``solvers`` family.
"""

from __future__ import annotations

import functools

import pytest
import torch
from registries import ALL_GRADIENTS, ALL_SOLVERS, EXACT_GRADIENTS, OWN_BACKWARD, RK, solver_for, solvers_for
from systems import MLP, ThreeBody, TimeDependent, three_body_y0

import physnode
from physnode.gradients import GRADIENTS
from physnode.solvers import SOLVERS, PIController

EXACT = EXACT_GRADIENTS
ALL = [n for n in ALL_GRADIENTS if n != "direct"]
method_for = solver_for


def tolerances(method: str, rtol: float, atol: float) -> dict:
    """``rtol``/``atol`` for a high-order solver; 1000x looser for low-order ones, which would otherwise need
    tens of thousands of steps (exactness does not depend on the tolerance, only on replaying the same steps)."""
    if SOLVERS.build(method).order < 4:
        return dict(rtol=max(rtol, 1e-4), atol=max(atol, 1e-6))
    return dict(rtol=rtol, atol=atol)


def gradients(func, y0, t, grad, extra=(), weights=None, **kw):
    """Solve, form a loss from every output and return (solution, grads w.r.t. y0, func's params, extra)."""
    y0 = y0.detach().clone().requires_grad_()
    sol = physnode.solve(func, y0, t, grad=grad, **kw)
    if weights is None:
        weights = torch.linspace(-1.0, 2.0, sol.ys.numel(), dtype=sol.ys.dtype, device=sol.ys.device)
        weights = weights.reshape(sol.ys.shape)
    loss = (weights * sol.ys).sum() + 0.5 * sol.ys.square().sum()
    params = list(func.parameters()) if isinstance(func, torch.nn.Module) else []
    inputs = [y0, *params, *extra]
    return sol, torch.autograd.grad(loss, inputs)


def assert_same_gradients(got, ref, tol, label=""):
    for i, (g, r) in enumerate(zip(got, ref, strict=True)):
        scale = float(r.abs().max())
        assert scale > 0, f"{label}: reference gradient {i} is zero, the test would be vacuous"
        rel = float((g - r).abs().max()) / scale
        assert rel <= tol, f"{label}: gradient {i} differs from direct backprop by {rel:.3e} (relative)"


def assert_same_solve(sol, ref):
    assert torch.equal(sol.stats.n_accepted, ref.stats.n_accepted)
    assert torch.equal(sol.stats.n_rejected, ref.stats.n_rejected)
    # Same steps, same forward operations: equal to round-off. A different step sequence would differ by ~rtol, far
    # above this bound; 1e-13 relative leaves room for a CPU or GPU that orders a reduction differently.
    torch.testing.assert_close(sol.ys, ref.ys, rtol=1e-13, atol=1e-13 * float(ref.ys.detach().abs().max()))


@pytest.mark.parametrize("grad", EXACT, ids=EXACT)
def test_mlp_batch_per_trajectory_times(grad: str, device: torch.device) -> None:
    func = MLP(dim=2, hidden=16).to(device)
    y0 = torch.randn(3, 2, dtype=torch.float64, device=device)
    t = torch.sort(torch.rand(3, 7, dtype=torch.float64, device=device) * 2.0, dim=1).values
    t = torch.cat([torch.zeros(3, 1, dtype=torch.float64, device=device), t], dim=1)
    method = method_for(grad)
    kw = tolerances(method, 1e-8, 1e-10)
    ref, g_ref = gradients(func, y0, t, "direct", method=method, **kw)
    sol, g = gradients(func, y0, t, grad, method=method, **kw)
    assert_same_solve(sol, ref)
    assert_same_gradients(g, g_ref, 1e-10, grad)
    assert int(ref.stats.n_rejected.sum()) + int(ref.stats.n_accepted.sum()) > 3 * 7


def _three_body_kwargs(method: str) -> dict:
    kw: dict = dict(method=method, rtol=1e-7, atol=1e-9)
    if SOLVERS.build(method).order < 4 and "adaptive" in SOLVERS.accepted_options(method):
        # A low-order method would need tens of thousands of adaptive steps here; exactness does not depend
        # on how the steps were chosen, so use 200 fixed steps.
        kw.update(step_size=5e-3, options={"adaptive": False})
    return kw


@functools.cache
def _three_body_reference(method: str):
    """Backprop through the three-body solve (computed once per solver and shared by the methods)."""
    t = torch.linspace(0.0, 1.0, 21, dtype=torch.float64)
    return gradients(ThreeBody(), three_body_y0(), t, "direct", **_three_body_kwargs(method))


@pytest.mark.parametrize("grad", EXACT, ids=EXACT)
def test_three_body_learnable_masses(grad: str) -> None:
    func = ThreeBody()
    y0 = three_body_y0()
    t = torch.linspace(0.0, 1.0, 21, dtype=torch.float64)
    method = method_for(grad)
    ref, g_ref = _three_body_reference(method)
    sol, g = gradients(func, y0, t, grad, **_three_body_kwargs(method))
    assert_same_solve(sol, ref)
    assert_same_gradients(g, g_ref, 1e-10, grad)


@pytest.mark.parametrize("grad", EXACT, ids=EXACT)
def test_time_dependent_with_extra_params(grad: str) -> None:
    """Forced oscillator (explicit t dependence) plus an extra tensor passed as ``params=``."""
    module = TimeDependent()
    scale = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)

    def func(t, y):
        return scale * module(t, y)

    y0 = torch.tensor([[1.0, 0.0], [0.3, -0.5]], dtype=torch.float64)
    t = torch.tensor([[0.0, 0.4, 1.1, 2.0, 3.0], [0.5, 0.9, 1.7, 2.2, 4.0]], dtype=torch.float64)
    method = method_for(grad)
    extra = (*module.parameters(), scale)
    kw = dict(method=method, params=list(extra), **tolerances(method, 1e-8, 1e-10))
    ref, g_ref = gradients(func, y0, t, "direct", extra=extra, **kw)
    sol, g = gradients(func, y0, t, grad, extra=extra, **kw)
    assert_same_solve(sol, ref)
    assert_same_gradients(g, g_ref, 1e-10, grad)


GRAD_SOLVER_PAIRS = [
    (g, m) for g in EXACT if GRADIENTS.cls(g).requires_method is None for m in solvers_for(g) if m in RK
]


@pytest.mark.parametrize(("grad", "method"), GRAD_SOLVER_PAIRS, ids=[f"{g}-{m}" for g, m in GRAD_SOLVER_PAIRS])
def test_every_rk_solver(grad: str, method: str) -> None:
    """The methods that take any Runge–Kutta solver are exact for each (FSAL or not, adaptive or not)."""
    func = MLP(dim=2, hidden=8)
    y0 = torch.randn(2, 2, dtype=torch.float64)
    t = torch.tensor([[0.0, 0.3, 1.0], [0.1, 0.5, 0.8]], dtype=torch.float64)
    kw: dict = dict(method=method, **tolerances(method, 1e-6, 1e-8))
    if not SOLVERS.build(method).adaptive:
        kw["step_size"] = 0.07
    ref, g_ref = gradients(func, y0, t, "direct", **kw)
    sol, g = gradients(func, y0, t, grad, **kw)
    assert_same_solve(sol, ref)
    assert_same_gradients(g, g_ref, 1e-10, f"{grad}/{method}")


@pytest.mark.parametrize("method", ALL_SOLVERS, ids=ALL_SOLVERS)
def test_aca_on_every_solver(method: str) -> None:
    """ACA only calls ``init``/``step``, so it is exact for every registered solver (leapfrog, ALF, ...)."""
    func = MLP(dim=2, hidden=8)
    y0 = torch.randn(2, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
    solver = SOLVERS.build(method)
    kw: dict = dict(method=method, **tolerances(method, 1e-6, 1e-8))
    if not solver.adaptive:
        kw["step_size"] = 0.05
    try:
        solver.check_compatible(func)
    except ValueError as exc:
        pytest.skip(f"{method} does not accept a generic right-hand side: {exc}")
    ref, g_ref = gradients(func, y0, t, "direct", **kw)
    sol, g = gradients(func, y0, t, "aca", **kw)
    assert_same_solve(sol, ref)
    assert_same_gradients(g, g_ref, 1e-10, f"aca/{method}")


@pytest.mark.parametrize("grad", ["direct", *EXACT], ids=["direct", *EXACT])
def test_initial_step_selection_does_not_leak(grad: str) -> None:
    """The automatically chosen first step is a constant: fixing it by hand gives the same gradient."""
    func = MLP(dim=2, hidden=8)
    y0 = torch.tensor([[0.4, -0.7]], dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.5], dtype=torch.float64)
    method = method_for(grad)
    solver = SOLVERS.build(method)
    tol = tolerances(method, 1e-7, 1e-9)
    ctrl = PIController(**tol)
    with torch.no_grad():
        t0 = t[:1]
        f0 = func(t0, y0)
        h0 = ctrl.initial_step(func, t0, y0, f0, t[-1:] - t0, solver.error_order - 1)
    _, g_auto = gradients(func, y0, t, grad, method=method, **tol)
    _, g_fixed = gradients(func, y0, t, grad, method=method, step_size=float(h0), **tol)
    _, g_direct = gradients(func, y0, t, "direct", method=method, step_size=float(h0), **tol)
    assert_same_gradients(g_auto, g_fixed, 1e-12, grad)
    assert_same_gradients(g_auto, g_direct, 1e-10, grad)


@pytest.mark.parametrize("grad", ALL, ids=ALL)
def test_float32_close_to_float64(grad: str) -> None:
    func64 = MLP(dim=2, hidden=8)
    func32 = MLP(dim=2, hidden=8, dtype=torch.float32)
    func32.load_state_dict({k: v.float() for k, v in func64.state_dict().items()})
    y0 = torch.tensor([[0.4, -0.7], [1.0, 0.2]], dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0, 1.5], dtype=torch.float64)
    method = method_for(grad)
    tol = tolerances(method, 1e-5, 1e-7)
    _, g64 = gradients(func64, y0, t, grad, method=method, **tol)
    sol, g32 = gradients(func32, y0.float(), t.float(), grad, method=method, **tol)
    assert sol.ys.dtype == torch.float32
    for i, (a, b) in enumerate(zip(g32, g64, strict=True)):
        assert a.dtype == torch.float32
        rel = float((a.double() - b).abs().max() / b.abs().max())
        assert rel < 1e-3, f"{grad}: float32 gradient {i} off by {rel:.2e} relative to float64"


@pytest.mark.parametrize("grad", [n for n in OWN_BACKWARD if GRADIENTS.cls(n).requires_method is None])
def test_backward_nfe_recorded(grad: str) -> None:
    func = MLP(dim=2, hidden=8)
    y0 = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    sol = physnode.solve(func, y0, torch.tensor([0.0, 1.0], dtype=torch.float64), grad=grad)
    assert sol.stats.nfe_backward == 0
    sol.ys.sum().backward()
    assert sol.stats.nfe_backward > 0


@pytest.mark.parametrize("grad", OWN_BACKWARD, ids=OWN_BACKWARD)
def test_closure_without_params_raises(grad: str) -> None:
    w = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="params="):
        physnode.odeint(
            lambda t, y: -w * y,
            torch.ones(2, dtype=torch.float64),
            torch.tensor([0.0, 1.0], dtype=torch.float64),
            grad=grad,
            method=method_for(grad),
        )


RK_ONLY = [g for g in ALL_GRADIENTS if set(solvers_for(g)) == set(RK)]


@pytest.mark.parametrize("grad", RK_ONLY, ids=RK_ONLY)
def test_rk_only_methods_reject_other_solvers(grad: str) -> None:
    others = [n for n in ALL_SOLVERS if n not in RK]
    if not others:
        pytest.skip("no non-Runge–Kutta solver is registered")
    func = MLP(dim=2, hidden=4)
    with pytest.raises(ValueError, match=f"grad='{grad}'.*explicit Runge–Kutta"):
        physnode.odeint(
            func,
            torch.ones(2, dtype=torch.float64),
            torch.tensor([0.0, 1.0], dtype=torch.float64),
            grad=grad,
            method=others[0],
            step_size=0.1,
        )


class _OutsideScale(torch.nn.Module):
    """``f(y) = -w * y`` with ``w`` an outside tensor: neither a parameter nor a buffer of the module."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.__dict__["w"] = w  # bypass nn.Module registration, as a closure or a global would

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.w * y


T01 = (0.0, 1.0)


@pytest.mark.parametrize("grad", OWN_BACKWARD, ids=OWN_BACKWARD)
def test_undeclared_tensor_raises(grad: str) -> None:
    # w used to get w.grad = None (direct: -0.1353) with y0 requiring grad and no word.
    w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(T01, dtype=torch.float64)
    with pytest.raises(
        ValueError,
        match=rf"grad='{grad}'.*func uses 1 other tensor that requires grad \(tensor of shape \(\), torch.float64\)"
        r".*nn.Parameter .*params=\[\.\.\.\]",
    ):
        physnode.odeint(_OutsideScale(w), y0, t, grad=grad, method=method_for(grad))


@pytest.mark.parametrize("grad", OWN_BACKWARD, ids=OWN_BACKWARD)
def test_declared_non_leaf_tensor_gets_its_gradient(grad: str) -> None:
    # params=[w] with w = exp(raw) computed outside: the walk stops at w, and raw gets its gradient through it.
    def raw_grad(g: str, declare: bool) -> float:
        raw = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        w = raw.exp()
        y = physnode.odeint(
            _OutsideScale(w),
            torch.ones(2, dtype=torch.float64),
            torch.tensor(T01, dtype=torch.float64),
            grad=g,
            method=method_for(grad),
            params=[w] if declare else None,
            **tolerances(method_for(grad), 1e-9, 1e-11),
        )
        y.sum().backward()
        return float(raw.grad)

    got, ref = raw_grad(grad, True), raw_grad("direct", False)
    tol = 1e-6 if not GRADIENTS.cls(grad).exact else 1e-9  # the continuous adjoint solves to 1e-9 / 1e-11
    assert abs(got - ref) <= tol * abs(ref)


@pytest.mark.parametrize("grad", OWN_BACKWARD, ids=OWN_BACKWARD)
def test_plain_function_without_grad_needs_no_params(grad: str) -> None:
    # Used to raise "pass params=..." although nothing requires grad; now the same solve as direct (it is the
    # same computation: no custom backward is attached), compared to 1e-12 relative.
    method = method_for(grad)
    kw = dict(method=method, **tolerances(method, 1e-8, 1e-10))
    y0, t = torch.tensor([1.0, 0.5], dtype=torch.float64), torch.tensor(T01, dtype=torch.float64)
    got = physnode.odeint(lambda t, y: -y, y0, t, grad=grad, **kw)
    ref = physnode.odeint(lambda t, y: -y, y0, t, grad="direct", **kw)
    assert not got.requires_grad
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("grad", OWN_BACKWARD, ids=OWN_BACKWARD)
def test_double_backward_raises_clearly(grad: str) -> None:
    # Used to fail with torch's "element 0 of tensors does not require grad and does not have a grad_fn".
    func = MLP(dim=2, hidden=4)
    y = physnode.odeint(
        func,
        torch.ones(2, dtype=torch.float64),
        torch.tensor(T01, dtype=torch.float64),
        grad=grad,
        method=method_for(grad),
    )
    (g,) = torch.autograd.grad(y.sum(), func.net[0].weight, create_graph=True)
    with pytest.raises(RuntimeError, match=rf"double backward .* only with grad='direct'; grad='{grad}'"):
        g.square().sum().backward()
