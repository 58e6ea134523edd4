r"""Continuous adjoint (Chen, Rubanova, Bettencourt & Duvenaud, NeurIPS 2018), ``grad="adjoint"``.

The forward solve keeps only the outputs. The backward pass solves, backward in time between consecutive
observation times of each trajectory, the augmented system

.. math::

    \frac{dy}{dt} = f(t, y), \qquad
    \frac{da}{dt} = -\Bigl(\frac{∂f}{∂y}\Bigr)^{\!T} a, \qquad
    \frac{dg}{dt} = -\Bigl(\frac{∂f}{∂θ}\Bigr)^{\!T} a,

from ``(y(t_{j+1}), a(t_{j+1}^+) + ∂L/∂y(t_{j+1}), g)`` to ``t_j``: ``y`` is re-solved backward (restarted
from the forward output at every observation), ``a`` is the adjoint of the state (it jumps by ``∂L/∂ys[j]``
at observation ``j``) and ``g`` accumulates ``∂L/∂θ``. At ``t_0``, ``a = ∂L/∂y0`` and ``g = ∂L/∂θ``.

The backward solves use physnode's own per-trajectory loop (:func:`~physnode.integrate.integrate`) with
the forward method's tableau, step-size control on ``[y, a]`` with ``adjoint_rtol``/``adjoint_atol``
(the parameter part ``g`` is a pure quadrature and is left out of the error norm: the backward norm is always the
*seminorm* that torchdiffeq offers as ``adjoint_options=dict(norm="seminorm")``; with a user ``norm=`` the
backward norm is the larger of ``norm`` of the ``y`` part and of the ``a`` part). Every stage costs one
evaluation of ``f`` with a graph and one vector-Jacobian product giving both ``aᵀ∂f/∂y`` and
``aᵀ∂f/∂θ``. Since the trajectories take different steps, the quadrature of ``g`` is accumulated over the
batch with per-trajectory weights ``h_b b_i`` folded into the cotangent; the contributions of rejected
steps are removed again (one extra pass over the stages, only for iterations with a rejection).

The result is the gradient of the exact flow, not of the discrete solve: its error shrinks with the
tolerances of both solves. Memory ``O(L + s·Z)`` plus the outputs.

**Implicit (ESDIRK) solves.** With ``method="kvaerno3"/"kvaerno4"/"kvaerno5"`` the forward solve is usually
stiff, and re-solving ``y`` backward in time is then unstable (a mode decaying like ``e^(-1000 t)`` forward grows
like ``e^(1000 |t|)`` backward: on a test problem with rates 1, 2 and 1000 the explicit path's parameter gradient
came out as 1e204). So the forward solve keeps its accepted states ``(y, f)`` and the backward pass solves only the
adjoint equation ``da/dt = -(∂f/∂y)ᵀ a`` along the cubic Hermite interpolant of the forward solution, with the same
ESDIRK method (Newton matrix ``I + hγ Jᵀ``, ``J = ∂f/∂y`` by autodiff; the stiff modes of ``a`` decay backward in
time, so the implicit method is as effective as forward). ``g`` is the quadrature with the method's weights at the
converged stages (:attr:`~physnode.solvers.esdirk.ESDIRK.last_stages`). Memory: the forward states, ``O(N·Z)``.

**Error control of the quadrature.** ``g`` itself is not part of the backward state, but its quadrature error
matters: where the backward steps do not resolve a stiff transient of ``a`` (right after each observation's jump),
the internal stage values of ``a`` are inaccurate although the step's end value is accurate (L-stability), and an
uncontrolled quadrature gave ``-24.5`` instead of ``6.5e-4`` for the gradient of a stiff rate constant. So each
step also estimates, per trajectory, the error of the quadrature along one fixed random unit direction ``v`` in
parameter space, ``h Σ_i (b_i - b̂_i) a_iᵀ (∂f/∂θ) v`` (``(∂f/∂θ) v`` by differentiating a vector-Jacobian product
once more with respect to its cotangent: one double backward per stage), relative to
``atol + rtol (|g·v| + |step's share|)``, and the step's error norm is raised to at least that ratio. On the
problem above the parameter gradient then agrees with ``grad="aca"`` to ``3e-4`` relative at ``rtol=1e-7`` (``1e-6``
at ``adjoint_rtol=1e-11``). A quadrature error orthogonal to ``v`` is not seen (unlikely for a random ``v``, not
impossible).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor

from ..integrate import CountingRHS, Integration, Problem, Trace, integrate
from ..solvers.base import RHS, Solver, State
from ..solvers.controller import PIController, StepController
from ..solvers.esdirk import ESDIRK, jacobian
from ..solvers.rk import ExplicitRK, linear_combination, weighted_sum
from ._replay import ReplayGradient, vjp

__all__ = ["ContinuousAdjoint"]


class _AugmentedRK(Solver):
    """The forward tableau applied to ``z = [y, a]`` (``(B, 2D)``), accumulating ``g`` on the side.

    ``step`` ignores the ``func`` it is handed (the loop's counting wrapper of the augmented dynamics, used
    for the initial step) and evaluates ``f`` itself, so that each stage's product also yields the
    parameter part.
    """

    def __init__(
        self,
        rk: ExplicitRK,
        f: RHS,
        params: tuple[Tensor, ...],
        controller: StepController,
        dim: int,
        compiled: bool = False,
    ) -> None:
        self.rk, self.f, self.params, self.controller, self.dim = rk, f, params, controller, dim
        self.order, self.adaptive, self.error_order = rk.order, rk.adaptive, rk.error_order
        self.g_params = [torch.zeros_like(p) for p in params]
        # options={"compile": True} (physnode.compiled): the stages run as one compiled function that calls the
        # user's function through a wrapper without the call counter (a counter would change its guards per call).
        self.uncounted: RHS | None = None
        if compiled and type(f) is CountingRHS and not f.windowed:
            from ..compiled import _Uncounted

            self.uncounted = _Uncounted(f.func, f.unbatched)
        self._compile_failed = False

    @property
    def name(self) -> str:  # type: ignore[override]  # internal solver, named after the one it wraps
        return f"adjoint({self.rk.name})"

    def init(self, func: RHS, t0: Tensor, y0: Tensor, h0: Tensor) -> State:
        return (y0,)

    def _stage(self, f: RHS, t: Tensor, z: Tensor, h: Tensor, weight: float) -> tuple[Tensor, list[Tensor]]:
        """Augmented derivative ``[f, -aᵀ∂f/∂y]`` at ``z`` and ``Σ_b h_b aᵀ∂f/∂θ`` (empty when ``weight == 0``)."""
        D = self.dim
        y, a = z[:, :D].detach().requires_grad_(), z[:, D:]
        hh = h.unsqueeze(-1)
        active = hh != 0
        w = torch.where(active, hh, 1.0)
        cot = torch.where(active, a * hh, 0.0)
        wrt = [y, *self.params] if weight != 0.0 else [y]
        with torch.enable_grad():
            fy = f(t, y)
            grads = vjp([fy], wrt, [cot])
        return torch.cat([fy.detach(), -grads[0] / w], dim=-1), grads[1:]

    def stages(
        self, f: RHS, t: Tensor, h: Tensor, z: Tensor
    ) -> tuple[Tensor, Tensor | None, list[Tensor], list[Tensor] | None]:
        """One step's stages: ``(z_new, err, stage states, psi)`` with ``psi = Σ_i b_i Σ_b h_b a_bᵀ ∂f_b/∂θ``
        (``None`` without parameters). What the compiled function of
        :func:`physnode.compiled.compiled_augmented_stages` runs."""
        tab = self.rk.tableau
        hh = h.unsqueeze(-1)
        ks: list[Tensor] = []
        zs: list[Tensor] = []
        psi: list[Tensor] | None = None
        for i in range(tab.stages):
            dz = linear_combination(tab.a[i], ks) if i else None
            zi = z if dz is None else torch.addcmul(z, hh, dz)
            ti = t + tab.c[i] * h if i else t
            k, gp = self._stage(f, ti, zi, h, tab.b[i])
            ks.append(k)
            zs.append(zi)
            if gp:
                psi = (
                    [g * tab.b[i] for g in gp]
                    if psi is None
                    else [torch.add(p, g, alpha=tab.b[i]) for p, g in zip(psi, gp, strict=True)]
                )
        z_new = torch.addcmul(z, hh, weighted_sum(tab.b, ks))
        err = hh * weighted_sum(tab.b_err, ks) if self.adaptive and tab.b_err is not None else None
        return z_new, err, zs, psi

    def _run_stages(
        self, t: Tensor, h: Tensor, z: Tensor
    ) -> tuple[Tensor, Tensor | None, list[Tensor], list[Tensor] | None]:
        """:meth:`stages`, compiled where requested and possible (else eager, with one :class:`CompileWarning`)."""
        raw = self.uncounted
        if raw is not None and not self._compile_failed:
            from ..compiled import CompileWarning, compiled_augmented_stages

            try:
                out = compiled_augmented_stages()(self, raw, t, h, z)
            except Exception as exc:  # any failure of the compiler; the eager stages below re-raise a genuine error
                self._compile_failed = True
                out = self.stages(self.f, t, h, z)
                msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                warnings.warn(
                    f"options={{'compile': True}}: the adjoint's backward step could not be compiled ({msg}); "
                    "solving it eagerly. The results are the same; drop the option to silence this warning.",
                    CompileWarning,
                    stacklevel=2,
                )
                return out
            cast(CountingRHS, self.f).nfe += self.rk.tableau.stages  # the evaluations the compiled stages made
            return out
        return self.stages(self.f, t, h, z)

    def _params_only(self, t: Tensor, z: Tensor, h: Tensor, rows: Tensor) -> list[Tensor]:
        D = self.dim
        y = z[:, :D].detach().requires_grad_()
        cot = torch.where(rows.unsqueeze(-1), z[:, D:] * h.unsqueeze(-1), 0.0)
        with torch.enable_grad():
            return vjp([self.f(t, y)], list(self.params), [cot])

    def step(self, func: RHS, t: Tensor, h: Tensor, state: State) -> tuple[State, Tensor | None]:
        tab = self.rk.tableau
        z = state[0]
        z_new, err, zs, psi = self._run_stages(t, h, z)
        if psi is None or not self.params:
            return (z_new,), err
        # The controller's accept rule (the loop's), evaluated here because g is summed over the batch.
        with torch.no_grad():
            ctrl = self.controller
            ok = ctrl.accepts(ctrl.step_norm(None if err is None else err.detach(), z.detach(), z_new.detach()))
            rejected = (h != 0) & ~ok
        if bool(rejected.any()):
            for i in range(tab.stages):
                if tab.b[i] != 0.0:
                    ti = t + tab.c[i] * h if i else t
                    for p, g in zip(psi, self._params_only(ti, zs[i], h, rejected), strict=True):
                        p.sub_(g, alpha=tab.b[i])
        # dg/dt = -aᵀ∂f/∂θ, so g += h Σ_i b_i (-aᵀ∂f/∂θ)_i, with h folded into psi.
        for g, p in zip(self.g_params, psi, strict=True):
            g.sub_(p)
        return (z_new,), err


class _ForwardPath:
    """The forward solution ``y(t)`` of each trajectory between its accepted steps: cubic Hermite interpolation of
    the recorded states and derivatives (``(y, f(t, y))``, the first two entries of an ESDIRK state)."""

    def __init__(self, problem: Problem, result: Integration) -> None:
        records = cast(Trace, result.records)
        B = problem.y0.shape[0]
        times: list[list[Tensor]] = [[] for _ in range(B)]
        ys: list[list[Tensor]] = [[] for _ in range(B)]
        fs: list[list[Tensor]] = [[] for _ in range(B)]
        for rec in records:
            assert rec.state is not None
            for b in torch.nonzero(rec.accept).flatten().tolist():
                times[b].append(rec.t[b])
                ys[b].append(rec.state[0][b])
                fs[b].append(rec.state[1][b])
        final = result.final_state
        t_end = problem.t[:, -1]
        for b in range(B):
            times[b].append(t_end[b])
            ys[b].append(final[0][b].detach())
            fs[b].append(final[1][b].detach())
        M = max(len(x) for x in times)
        self.direction = torch.where(problem.t[:, -1] < problem.t[:, 0], -1.0, 1.0).to(problem.y0.dtype)
        self.count = torch.tensor([len(x) for x in times], device=problem.y0.device)
        pad = [M - len(x) for x in times]
        self.t = torch.stack([torch.stack(x + [x[-1]] * n) for x, n in zip(times, pad, strict=True)])  # (B, M)
        self.y = torch.stack([torch.stack(x + [x[-1]] * n) for x, n in zip(ys, pad, strict=True)])  # (B, M, D)
        self.f = torch.stack([torch.stack(x + [x[-1]] * n) for x, n in zip(fs, pad, strict=True)])
        keys = self.t * self.direction.unsqueeze(-1)
        # Padding repeats the last knot; +inf keys keep each row sorted for the search.
        col = torch.arange(M, device=keys.device).unsqueeze(0)
        self.keys = torch.where(col < self.count.unsqueeze(-1), keys, torch.inf).contiguous()

    def __call__(self, t: Tensor) -> Tensor:
        """``y(t)`` ``(B, D)`` at ``t`` ``(B,)`` (inside each trajectory's solved interval)."""
        key = (t * self.direction).unsqueeze(-1).contiguous()
        i = torch.searchsorted(self.keys, key, right=True).squeeze(-1) - 1
        i = torch.minimum(i.clamp(min=0), (self.count - 2).clamp(min=0))
        j = torch.minimum(i + 1, self.count - 1)
        from ..events import hermite  # late: physnode.events imports the solve entry points, which import this

        rows = torch.arange(t.shape[0], device=t.device)
        t_a, t_b = self.t[rows, i], self.t[rows, j]
        h = t_b - t_a
        theta = torch.where(h != 0, (t - t_a) / torch.where(h != 0, h, 1.0), 0.0)
        return hermite(theta, h, self.y[rows, i], self.f[rows, i], self.y[rows, j], self.f[rows, j])


class _AdjointESDIRK(Solver):
    """The forward ESDIRK method applied to the adjoint equation ``da/dt = -(∂f/∂y)ᵀ a`` along the interpolated
    forward solution (``z = a``, ``(B, D)``), accumulating ``g`` on the side from the converged stages of each
    accepted step (see the module docstring)."""

    implicit = True

    def __init__(
        self, esdirk: ESDIRK, f: RHS, params: tuple[Tensor, ...], controller: StepController, path: _ForwardPath
    ) -> None:
        inner = copy.copy(esdirk)  # its own counters and Newton tolerances; the tableau is shared data
        inner.counters = dict.fromkeys(esdirk.counters, 0)
        if isinstance(controller, PIController):
            inner.set_tolerances(controller.rtol, controller.atol)

        def adjoint_jacobian(func: RHS, t: Tensor, a: Tensor) -> Tensor:
            inner.counters["jacobians"] += 1
            return -jacobian(f, t, path(t)).transpose(1, 2)

        setattr(inner, "_jacobian", adjoint_jacobian)  # noqa: B010  # instance attribute shadowing the method
        self.inner, self.f, self.params, self.controller, self.path = inner, f, params, controller, path
        self.order, self.adaptive, self.error_order = inner.order, inner.adaptive, inner.error_order
        self.g_params = [torch.zeros_like(p) for p in params]
        # A fixed unit direction over the parameters: the quadrature's error is estimated along it per trajectory.
        gen = torch.Generator().manual_seed(0)
        direction = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        total = sum(float(d.square().sum()) for d in direction) ** 0.5 or 1.0
        self.direction = [
            (d / total).to(device=p.device, dtype=p.dtype) for d, p in zip(direction, params, strict=True)
        ]
        self.running = torch.zeros(path.t.shape[0], dtype=path.t.dtype, device=path.t.device)
        self._quad = self.running

    @property
    def name(self) -> str:  # type: ignore[override]  # internal solver, named after the one it wraps
        return f"adjoint({self.inner.name})"

    def rhs(self, t: Tensor, a: Tensor) -> Tensor:
        """``-(∂f/∂y)ᵀ a`` at ``(t, y(t))``: one evaluation of ``f`` and one vector-Jacobian product."""
        y = self.path(t).detach().requires_grad_()
        with torch.enable_grad():
            (ja,) = vjp([self.f(t, y)], [y], [a])
        return -ja

    def init(self, func: RHS, t0: Tensor, y0: Tensor, h0: Tensor) -> State:
        return self.inner.init(func, t0, y0, h0)

    def _param_jvp(self, t: Tensor, y: Tensor) -> Tensor:
        """``(∂f/∂θ) v`` ``(B, D)`` at ``(t, y)`` for the fixed unit direction ``v`` over the parameters (a
        vector-Jacobian product differentiated once more with respect to its cotangent)."""
        u = torch.zeros_like(y, requires_grad=True)
        with torch.enable_grad():
            fy = self.f(t, y.detach())
            ws = torch.autograd.grad(fy, list(self.params), u, create_graph=True, allow_unused=True)
            terms = [(w * v).sum() for w, v in zip(ws, self.direction, strict=True) if w is not None]
            if not terms:
                return torch.zeros_like(y)
            (jv,) = torch.autograd.grad(torch.stack(terms).sum(), u, allow_unused=True)
        return torch.zeros_like(y) if jv is None else jv.detach()

    def _quadrature_error(self, t: Tensor, h: Tensor, err: Tensor, state: State) -> Tensor:
        """``err`` ``(B, D)`` scaled up so that its norm is at least the error estimate of the ``g`` quadrature along
        the direction ``v`` (embedded weights), relative to the controller's tolerances."""
        tab = self.inner.tableau
        quad = torch.zeros_like(h)
        est = torch.zeros_like(h)
        for i, a in enumerate(self.inner.last_stages):
            w, w_err = tab.b[i], tab.b_err[i]
            if w == 0.0 and w_err == 0.0:
                continue
            ti = t + tab.c[i] * h
            s = (a.detach() * self._param_jvp(ti, self.path(ti))).sum(-1)
            quad = quad + w * s
            est = est + w_err * s
        ctrl = cast(PIController, self.controller)
        atol = float(ctrl.atol.max()) if isinstance(ctrl.atol, Tensor) else float(ctrl.atol)
        scale = atol + ctrl.rtol * (self.running.abs() + (h * quad).abs())
        ratio = (h * est).abs() / scale
        base = ctrl.step_norm(err.detach(), state[0].detach(), state[0].detach())
        factor = torch.where(base > 0, ratio / torch.where(base > 0, base, 1.0), 0.0).clamp(min=1.0)
        fallback = ratio.unsqueeze(-1) * (state[0].detach().abs() * ctrl.rtol + atol)  # RMS ``ratio`` when err = 0
        out = torch.where((base > 0).unsqueeze(-1), err * factor.unsqueeze(-1), torch.maximum(err.abs(), fallback))
        self._quad = h * quad
        return out

    def step(self, func: RHS, t: Tensor, h: Tensor, state: State) -> tuple[State, Tensor | None]:
        new_state, err = self.inner.step(func, t, h, state)
        if not self.params:
            return new_state, err
        if err is not None and isinstance(self.controller, PIController):
            err = self._quadrature_error(t, h, err, state)
        with torch.no_grad():
            ctrl = self.controller
            norm = ctrl.step_norm(None if err is None else err.detach(), state[0].detach(), new_state[0].detach())
            accept = ctrl.accepts(norm) & (h != 0)  # the loop's rule: only accepted steps add to g
            if err is not None and isinstance(self.controller, PIController):
                self.running = torch.where(accept, self.running + self._quad, self.running)
        tab = self.inner.tableau
        for i, (w, a) in enumerate(zip(tab.b, self.inner.last_stages, strict=True)):
            if w == 0.0:
                continue
            ti = t + tab.c[i] * h
            cot = torch.where(accept.unsqueeze(-1), a.detach() * (h * w).unsqueeze(-1), 0.0)
            with torch.enable_grad():
                grads = vjp([self.f(ti, self.path(ti))], list(self.params), [cot])
            for g, gp in zip(self.g_params, grads, strict=True):
                g.sub_(gp)  # dg/dt = -aᵀ∂f/∂θ: g += h Σ_i b_i (-aᵀ∂f/∂θ)_i
        return new_state, err


def _pair_norm(norm: Callable[[Tensor], Tensor] | None, D: int) -> Callable[[Tensor], Tensor] | None:
    """The backward error norm of ``[y, a]`` ``(B, 2D) -> (B,)`` from the forward solve's user ``norm``
    (``(B, D) -> (B,)``): the larger of the norm of the ``y`` part and of the ``a`` part, as torchdiffeq's adjoint
    does with a forward ``norm``. ``None`` (RMS over ``[y, a]``) without one."""
    if norm is None:
        return None
    user = norm

    def pair(scaled: Tensor) -> Tensor:
        return torch.maximum(user(scaled[:, :D]), user(scaled[:, D:]))

    return pair


class ContinuousAdjoint(ReplayGradient):
    """Continuous adjoint method (``grad="adjoint"``): the adjoint ODE solved backward in time.

    Not exact for the discrete solve (``exact = False``); its error is controlled by ``adjoint_rtol`` and
    ``adjoint_atol``. Memory ``O(L + s·Z)`` plus the outputs, independent of the number of steps. Needs an
    explicit Runge–Kutta solver (its tableau is reused backward) or an ESDIRK method (the backward equation is
    then solved implicitly with the same method).

    Parameters
    ----------
    adjoint_rtol, adjoint_atol
        Tolerances of the backward solve; ``None`` (default) uses the forward ``rtol`` / ``atol``.
    """

    name = "adjoint"
    exact = False
    solvers = ExplicitRK
    record = None

    def __init__(self, adjoint_rtol: float | None = None, adjoint_atol: float | None = None) -> None:
        for label, v in (("adjoint_rtol", adjoint_rtol), ("adjoint_atol", adjoint_atol)):
            if v is not None and not (isinstance(v, (int, float)) and v >= 0 and v == v and v != float("inf")):
                raise ValueError(f"{label} must be a non-negative finite number or None, got {v!r}.")
        if adjoint_rtol == 0 and adjoint_atol == 0:
            raise ValueError("adjoint_rtol and adjoint_atol cannot both be zero.")
        self.adjoint_rtol = adjoint_rtol
        self.adjoint_atol = adjoint_atol

    def __repr__(self) -> str:
        return f"ContinuousAdjoint(adjoint_rtol={self.adjoint_rtol}, adjoint_atol={self.adjoint_atol})"

    @classmethod
    def supports(cls, solver: type[Solver] | Solver) -> bool:
        """Explicit Runge–Kutta and ESDIRK methods (the backward equation is solved with the forward method)."""
        solver_cls = solver if isinstance(solver, type) else type(solver)
        return issubclass(solver_cls, (ExplicitRK, ESDIRK))

    def check(self, problem: Problem) -> None:
        if not self.supports(problem.solver):
            raise ValueError(
                f"grad='adjoint' solves the adjoint equation with the forward method and needs an explicit "
                f"Runge–Kutta method (e.g. method='dopri5') or an ESDIRK one (e.g. method='kvaerno5'); got "
                f"method={problem.solver.name!r} ({type(problem.solver).__name__}). Use grad='aca' for other solvers."
            )

    def _controller(self, problem: Problem, D: int) -> StepController:
        ctrl = problem.controller
        if not isinstance(ctrl, PIController):
            return ctrl  # fixed steps: the same step size backward
        rtol = ctrl.rtol if self.adjoint_rtol is None else self.adjoint_rtol
        atol = ctrl.atol if self.adjoint_atol is None else self.adjoint_atol
        if isinstance(atol, Tensor):
            atol = atol.expand(D).repeat(2)
        return PIController(rtol=rtol, atol=atol, norm=_pair_norm(ctrl.norm, D))

    def forward_solve(self, problem: Problem) -> Integration:
        """The forward solve; with an ESDIRK method it keeps every state (the backward pass interpolates them)."""
        return integrate(problem, record="states" if isinstance(problem.solver, ESDIRK) else None)

    def _implicit_backward(
        self, problem: Problem, result: Integration, grad_ys: Tensor, params: tuple[Tensor, ...]
    ) -> tuple[Tensor, list[Tensor]]:
        """The adjoint equation alone, solved backward with the forward ESDIRK method along the interpolated forward
        solution (module docstring)."""
        T = grad_ys.shape[1]
        t = problem.t
        ctrl = problem.controller
        if isinstance(ctrl, PIController):
            rtol = ctrl.rtol if self.adjoint_rtol is None else self.adjoint_rtol
            atol = ctrl.atol if self.adjoint_atol is None else self.adjoint_atol
            ctrl = PIController(rtol=rtol, atol=atol, norm=ctrl.norm)  # the state is the adjoint a alone
        solver = _AdjointESDIRK(cast(ESDIRK, problem.solver), problem.func, params, ctrl, _ForwardPath(problem, result))
        a = grad_ys[:, T - 1]
        for j in range(T - 2, -1, -1):
            sub = Problem(
                func=CountingRHS(solver.rhs, False),
                y0=a,
                t=torch.stack([t[:, j + 1], t[:, j]], dim=1),
                solver=solver,
                controller=ctrl,
                max_steps=problem.max_steps,
            )
            a = integrate(sub).ys[:, 1] + grad_ys[:, j]
        return a, solver.g_params

    def backward(
        self, problem: Problem, result: Integration, grad_ys: Tensor, params: tuple[Tensor, ...]
    ) -> tuple[Tensor, list[Tensor]]:
        _, T, D = grad_ys.shape
        ys, t, f = result.ys.detach(), problem.t, problem.func
        ctrl = self._controller(problem, D)
        if isinstance(problem.solver, ESDIRK):
            return self._implicit_backward(problem, result, grad_ys, params)
        rk = cast(ExplicitRK, problem.solver)  # checked by check()
        compiled = getattr(rk.step, "compiled_for", None) is f  # options={"compile": True} (physnode.compiled)
        aug_solver = _AugmentedRK(rk, f, params, ctrl, D, compiled=compiled)

        def augmented(tt: Tensor, z: Tensor) -> Tensor:
            y = z[:, :D].detach().requires_grad_()
            with torch.enable_grad():
                fy = f(tt, y)
                (ja,) = vjp([fy], [y], [z[:, D:]])
            return torch.cat([fy.detach(), -ja], dim=-1)

        a = grad_ys[:, T - 1]
        for j in range(T - 2, -1, -1):
            sub = Problem(
                func=CountingRHS(augmented, False),
                y0=torch.cat([ys[:, j + 1], a], dim=-1),
                t=torch.stack([t[:, j + 1], t[:, j]], dim=1),
                solver=aug_solver,
                controller=ctrl,
                max_steps=problem.max_steps,
                breakpoints=problem.breakpoints,  # the backward solve lands on them too
            )
            a = integrate(sub).ys[:, 1, D:] + grad_ys[:, j]
        return a, aug_solver.g_params
