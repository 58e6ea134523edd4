"""The opt-in compiled step: one explicit Runge–Kutta step (stages, right-hand side, error estimate) as one
``torch.compile``-d function.

``options={"compile": True}`` in :func:`physnode.solve` / :func:`physnode.odeint` replaces the solver's ``step``
with a compiled one for that solve. Everything that calls ``solver.step`` then runs the compiled code: the forward
loop and the replayed steps of the custom-backward gradient methods (``aca``, ``symplectic``), whose backward pass
goes through AOTAutograd's compiled backward. The continuous adjoint's backward solve (``grad="adjoint"``) steps
the augmented system ``[y, a]`` with a solver of its own; its stages, vector-Jacobian products included, run as a
second compiled function (:func:`compiled_augmented_stages`).

No recompilation per step or per solve: the compiled function takes the solver and the right-hand side as
*arguments* (TorchDynamo guards on their attribute values, not on the objects), and the right-hand side it sees
is :class:`_Uncounted`, a wrapper without the call counter of :class:`~physnode.integrate.CountingRHS` (a counter
that changes on every call would invalidate the guards on every call). The counter is advanced on the host by
the solver's number of new evaluations per step instead. A new batch size, dtype or device, or a change between
gradient and no-gradient mode compiles once more (the guards of ``dynamic=False``); TorchDynamo's cache limit
bounds that.

Where compiling is impossible — a solver that is not an explicit Runge–Kutta method (implicit Newton iterations
and the reversible solvers have data-dependent control flow), or a right-hand side TorchDynamo or the backend
cannot compile — the solve warns once with :class:`CompileWarning` and runs eagerly; a genuine error of the
right-hand side is raised as in an eager solve. The first compilation takes seconds to a minute (Inductor
generates and builds C++ or Triton code; it is cached on disk across processes); it pays off over many steps
(see ``physnode bench gradients --compile``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ._breakpoints import current_window
from .integrate import CountingRHS
from .solvers.base import Solver, State
from .solvers.rk import ExplicitRK

__all__ = ["CompileWarning", "compile_step", "compiled_augmented_stages", "compiled_step_function"]


class CompileWarning(UserWarning):
    """``compile=True`` could not be honoured: the solve runs eagerly (same results, no speed-up)."""


class _Uncounted:
    """A batched right-hand side without a call counter or per-call checks (the first evaluation of the solve was
    checked by :func:`physnode.solve`): what the compiled step calls."""

    def __init__(self, func: Callable[[Tensor, Tensor], Tensor], unbatched: bool) -> None:
        self.func = func
        self.unbatched = unbatched

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        if self.unbatched:
            return self.func(t[0], y[0]).unsqueeze(0)
        return self.func(t, y)


def _rk_step(solver: ExplicitRK, func: _Uncounted, t: Tensor, h: Tensor, state: State) -> tuple[State, Tensor | None]:
    return ExplicitRK.step(solver, func, t, h, state)


_COMPILED: dict[str, Callable[..., Any]] = {}


def compiled_step_function() -> Callable[..., Any]:
    """The one compiled explicit Runge–Kutta step ``(solver, func, t, h, state) -> (state, err)``, built on first
    use and shared by every solve of the process (so its compiled code and guards are reused)."""
    fn = _COMPILED.get("rk")
    if fn is None:
        fn = torch.compile(_rk_step, dynamic=False)
        _COMPILED["rk"] = fn
    return fn


def _augmented_stages(solver: Any, func: _Uncounted, t: Tensor, h: Tensor, z: Tensor) -> Any:
    return solver.stages(func, t, h, z)


def compiled_augmented_stages() -> Callable[..., Any]:
    """The one compiled step of the continuous adjoint's backward solve (``grad="adjoint"``): the stages of the
    augmented system ``[y, a]`` with their vector-Jacobian products,
    ``(solver, func, t, h, z) -> (z_new, err, stage states, psi)`` (see
    :meth:`physnode.gradients.adjoint._AugmentedRK.stages`), shared by every solve of the process.

    The vector-Jacobian products (``torch.autograd.grad`` inside the step) are traced into the graph
    (TorchDynamo's ``trace_autograd_ops``, set for these calls only); ``fullgraph=True``, so a graph break is an
    error and the caller falls back to the eager stages with a :class:`CompileWarning`.
    """
    fn = _COMPILED.get("adjoint")
    if fn is None:
        inner = torch.compile(_augmented_stages, dynamic=False, fullgraph=True)

        def fn(*args: Any) -> Any:
            with torch._dynamo.config.patch(trace_autograd_ops=True), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is not a leaf")
                return inner(*args)

        _COMPILED["adjoint"] = fn
    return fn


def evaluations_per_step(solver: ExplicitRK) -> int:
    """New right-hand-side evaluations of one step: the tableau's stages, less the first of an FSAL tableau."""
    tab = solver.tableau
    return tab.stages - (1 if tab.fsal else 0)


def compile_step(solver: Solver, rhs: CountingRHS) -> bool:
    """Replace ``solver.step`` (on this instance) by the compiled step for calls with ``rhs``; ``True`` when done.

    Calls with another right-hand side (e.g. a gradient method's augmented system) go to the eager step. Warns
    with :class:`CompileWarning` and leaves the solver eager when it is not an explicit Runge–Kutta method.
    """
    if not isinstance(solver, ExplicitRK):
        warnings.warn(
            f"options={{'compile': True}}: method {type(solver).__name__} ({getattr(solver, 'name', '?')!r}) is not an "
            "explicit Runge–Kutta method and cannot be compiled (its step has data-dependent control flow); solving "
            "eagerly. Use an explicit method such as 'dopri5' or 'tsit5' to compile, or drop the option.",
            CompileWarning,
            stacklevel=4,
        )
        return False
    if type(rhs) is not CountingRHS:
        warnings.warn(
            "options={'compile': True}: solves with external inputs (inputs=, boluses=) are not compiled yet; "
            "solving eagerly.",
            CompileWarning,
            stacklevel=4,
        )
        return False
    raw = _Uncounted(rhs.func, rhs.unbatched)
    per_step = evaluations_per_step(solver)
    eager = solver.step  # the class's method, bound to this instance
    compiled = compiled_step_function()
    failed: list[str] = []

    def step(func: Any, t: Tensor, h: Tensor, state: State) -> tuple[State, Tensor | None]:
        if func is not rhs or failed:
            return eager(func, t, h, state)
        win = current_window()
        if win is not None and win.fresh is not None:  # a step starting on a breakpoint: the eager step handles it
            return eager(func, t, h, state)
        try:
            with warnings.catch_warnings():
                # TorchDynamo reads ``.grad`` of the traced tensors while it compiles; not the user's concern.
                warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that is not a leaf")
                out = compiled(solver, raw, t, h, state)
        except Exception as exc:  # any failure of the compiler; the eager step below re-raises a genuine error
            out = eager(func, t, h, state)  # raises when the right-hand side itself fails
            failed.append(f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
            warnings.warn(
                f"options={{'compile': True}}: the step could not be compiled ({failed[0]}); solving eagerly. The "
                "results are the same; drop the option to silence this warning.",
                CompileWarning,
                stacklevel=2,
            )
            return out
        rhs.nfe += per_step
        return out

    step.compiled_for = rhs  # type: ignore[attr-defined]  # read by grad='adjoint' (its compiled backward)
    solver.step = step  # type: ignore[method-assign]  # instance attribute: this solve only
    return True
