"""``options={"compile": True}``: the compiled explicit Runge–Kutta step (physnode/compiled.py).

The fast tests cover the option, the fallbacks and the counting without compiling anything (the compiler is
replaced where a test needs it to fail). The slow test compiles once (tens of seconds on 2 cores): compiled and
eager solves take the same steps and give the same gradients, and a second solve reuses the compiled code.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import physnode
from physnode import compiled
from physnode.compiled import CompileWarning
from physnode.options import SolveOptions


def _decay(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -y


def test_compile_option_is_a_loop_option_defaulting_to_false() -> None:
    assert SolveOptions().compile is False
    assert SolveOptions(options={"compile": True}).compile is True
    with pytest.raises(TypeError, match="option 'compile' must be True or False"):
        SolveOptions(options={"compile": "yes"})
    # Round trip through the dict of result files.
    opts = SolveOptions(options={"compile": True})
    assert SolveOptions.from_dict(opts.to_dict()).compile is True


def test_a_method_that_cannot_be_compiled_warns_and_solves_eagerly() -> None:
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    ref = physnode.odeint(_decay, y0, t, method="kvaerno3")
    with pytest.warns(CompileWarning, match="not an explicit Runge–Kutta method"):
        out = physnode.odeint(_decay, y0, t, method="kvaerno3", options={"compile": True})
    # The same eager solve: identical operations, so equal to round-off (any difference would be a changed path).
    torch.testing.assert_close(out, ref, rtol=1e-14, atol=0)


def test_a_step_that_fails_to_compile_falls_back_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}

    def broken(*args: object) -> object:
        calls["n"] += 1
        raise RuntimeError("backend failed\nlong traceback")

    monkeypatch.setattr(compiled, "compiled_step_function", lambda: broken)
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    ref = physnode.solve(_decay, y0, t)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sol = physnode.solve(_decay, y0, t, options={"compile": True})
    msgs = [str(w.message) for w in caught if issubclass(w.category, CompileWarning)]
    assert len(msgs) == 1 and "RuntimeError: backend failed" in msgs[0] and "long traceback" not in msgs[0]
    assert calls["n"] == 1  # tried once, then eager for the rest of the solve
    torch.testing.assert_close(sol.ys, ref.ys, rtol=1e-14, atol=0)
    assert sol.stats.nfe == ref.stats.nfe  # the eager fallback counts its own evaluations


def test_a_genuine_error_of_the_right_hand_side_is_raised_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> object:
        raise RuntimeError("compiled failed")

    monkeypatch.setattr(compiled, "compiled_step_function", lambda: broken)
    n = {"calls": 0}

    def bad(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n["calls"] += 1
        if n["calls"] > 3:
            raise ZeroDivisionError("the user's own error")
        return -y

    with pytest.raises(ZeroDivisionError, match="the user's own error"):
        physnode.solve(
            bad,
            torch.ones(2, dtype=torch.float64),
            torch.linspace(0, 1, 3, dtype=torch.float64),
            options={"compile": True},
        )


def test_counting_without_the_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled path advances the evaluation counter by the tableau's new stages per step: with the eager
    step standing in for the compiled function, NFE equals the eager solve's."""

    def stand_in(solver, func, t, h, state):  # the compiled function's signature
        return compiled._rk_step(solver, func, t, h, state)

    monkeypatch.setattr(compiled, "compiled_step_function", lambda: stand_in)
    y0 = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    t = torch.linspace(0, 2, 7, dtype=torch.float64)
    for method in ("dopri5", "tsit5", "bosh3", "rk4"):
        kw = {"step_size": 0.1} if method == "rk4" else {}
        ref = physnode.solve(_decay, y0, t, method=method, **kw)
        sol = physnode.solve(_decay, y0, t, method=method, options={"compile": True}, **kw)
        assert sol.stats.nfe == ref.stats.nfe, method
        torch.testing.assert_close(sol.ys, ref.ys, rtol=1e-14, atol=0)


@pytest.mark.slow
def test_compiled_gradients_equal_eager_and_the_code_is_reused() -> None:
    from torch._dynamo.utils import counters

    class Osc(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor(1.3, dtype=torch.float64))

        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.stack([y[..., 1], -self.k * y[..., 0] - 0.1 * y[..., 1] ** 3], dim=-1)

    y0 = torch.tensor([[1.0, 0.0], [0.5, 0.3]], dtype=torch.float64)
    t = torch.linspace(0, 3, 11, dtype=torch.float64)
    for grad in ("direct", "aca"):
        grads = []
        for comp in (False, True):
            f = Osc()
            y = y0.clone().requires_grad_(True)
            sol = physnode.solve(f, y, t, grad=grad, rtol=1e-8, atol=1e-8, options={"compile": comp})
            sol.ys.square().sum().backward()
            grads.append((sol.ys.detach(), f.k.grad, y.grad, sol.stats.nfe))
        (ys0, k0, y00, n0), (ys1, k1, y01, n1) = grads
        assert n0 == n1, grad  # the same steps
        # Compiled kernels fuse operations and round differently: equal to round-off accumulated over the steps.
        torch.testing.assert_close(ys1, ys0, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(k1, k0, rtol=1e-11, atol=1e-14)
        torch.testing.assert_close(y01, y00, rtol=1e-11, atol=1e-14)
    # A further solve with new objects (new module, new solver) reuses the compiled code: no new frame compiled.
    before = counters["stats"]["unique_graphs"]
    f = Osc()
    y = y0.clone().requires_grad_(True)
    physnode.solve(f, y, t, grad="direct", rtol=1e-8, atol=1e-8, options={"compile": True}).ys.sum().backward()
    assert counters["stats"]["unique_graphs"] == before


def _eager_stand_in(solver, func, t, h, state):  # the compiled forward step's signature, run eagerly
    return compiled._rk_step(solver, func, t, h, state)


def test_adjoint_backward_uses_the_compiled_stages_with_the_counter_free_rhs(monkeypatch: pytest.MonkeyPatch) -> None:
    """grad='adjoint' with compile=True sends its backward steps through compiled_augmented_stages (here an eager
    stand-in): called with the uncounted wrapper of the user's function, same gradients as without the option."""
    seen: list[object] = []

    def stand_in(solver, func, t, h, z):  # the compiled backward stages' signature
        seen.append(func)
        return solver.stages(func, t, h, z)

    monkeypatch.setattr(compiled, "compiled_step_function", lambda: _eager_stand_in)
    monkeypatch.setattr(compiled, "compiled_augmented_stages", lambda: stand_in)
    k = torch.tensor(0.7, dtype=torch.float64)

    def run(comp: bool) -> tuple[torch.Tensor, torch.Tensor]:
        kk = k.clone().requires_grad_(True)
        y = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64, requires_grad=True)
        sol = physnode.solve(
            lambda t, y: -kk * y,
            y,
            torch.linspace(0, 2, 5, dtype=torch.float64),
            grad="adjoint",
            params=[kk],
            options={"compile": comp},
        )
        sol.ys.square().sum().backward()
        return kk.grad, y.grad

    ref = run(False)
    assert not seen
    out = run(True)
    assert seen and all(type(f) is compiled._Uncounted for f in seen)
    # The same eager operations on both paths: equal to round-off.
    torch.testing.assert_close(out, ref, rtol=1e-14, atol=0)


def test_adjoint_backward_that_fails_to_compile_falls_back_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> object:
        raise RuntimeError("backend failed\nlong traceback")

    monkeypatch.setattr(compiled, "compiled_step_function", lambda: _eager_stand_in)
    monkeypatch.setattr(compiled, "compiled_augmented_stages", lambda: broken)
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    grads = []
    for comp in (False, True):
        y = y0.clone().requires_grad_(True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            physnode.solve(_decay, y, t, grad="adjoint", options={"compile": comp}).ys.sum().backward()
        msgs = [str(w.message) for w in caught if issubclass(w.category, CompileWarning)]
        assert len(msgs) == comp  # one warning for the whole backward solve, none without the option
        grads.append(y.grad)
    assert "RuntimeError: backend failed" in msgs[0] and "long traceback" not in msgs[0]
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-14, atol=0)  # the same eager operations


@pytest.mark.slow
def test_compiled_adjoint_equals_eager_and_the_backward_code_is_reused() -> None:
    from torch._dynamo.utils import counters

    # A class of its own, not shared with the test above: the compiled forward step is specialised on the module's
    # code, so a shared class would reuse that test's compilation and ``new1 >= 2`` below would depend on test order.
    class Osc(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor(1.3, dtype=torch.float64))

        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.stack([y[..., 1], -self.k * y[..., 0] - 0.1 * y[..., 1] ** 3], dim=-1)

    y0 = torch.tensor([[1.0, 0.0], [0.5, 0.3]], dtype=torch.float64)
    t = torch.linspace(0, 3, 11, dtype=torch.float64)
    out = []
    for comp in (False, True, True):
        f = Osc()
        y = y0.clone().requires_grad_(True)
        before = counters["stats"]["unique_graphs"]
        with warnings.catch_warnings():
            warnings.simplefilter("error", CompileWarning)  # a fallback to eager would make this test meaningless
            sol = physnode.solve(f, y, t, grad="adjoint", rtol=1e-8, atol=1e-8, options={"compile": comp})
            sol.ys.square().sum().backward()
        out.append((f.k.grad, y.grad, counters["stats"]["unique_graphs"] - before))
    (k0, y00, _), (k1, y01, new1), (k2, y02, new2) = out
    assert new1 >= 2  # the forward step and the backward stages were compiled
    assert new2 == 0  # a new module and solve reuse both: no recompilation per solve
    # Same steps; compiled kernels fuse operations and round differently: equal to accumulated round-off (1e-15
    # observed).
    for k, yg in ((k1, y01), (k2, y02)):
        torch.testing.assert_close(k, k0, rtol=1e-11, atol=1e-14)
        torch.testing.assert_close(yg, y00, rtol=1e-11, atol=1e-14)
