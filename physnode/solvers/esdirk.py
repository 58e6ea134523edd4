r"""Singly diagonally implicit Runge–Kutta methods with an explicit first stage (ESDIRK) for stiff problems.

A step of size ``h`` from ``(t, y)`` solves, stage after stage, the equations

.. math::

    z_0 = y, \qquad
    z_i = \underbrace{y + h \sum_{j<i} a_{ij} k_j}_{\psi_i} + h γ f(t + c_i h, z_i), \qquad
    k_i = f(t + c_i h, z_i), \qquad i = 1, \dots, s - 1,

and, the methods being stiffly accurate, ``y_new = z_(s-1)``. Each implicit stage is solved by a simplified
Newton iteration with the matrix ``N = I - h γ J`` (``J`` the Jacobian of ``f`` at the start of the step, or a
reused one, see below), factorised once per step and shared by every stage because the diagonal ``γ`` is the
same:

.. math::

    N Δ^{(m)} = -\bigl(z^{(m)} - ψ_i - h γ f(t_i, z^{(m)})\bigr), \qquad z^{(m+1)} = z^{(m)} + Δ^{(m)}.

Stage derivatives are taken as ``k_i = (z_i - ψ_i) / (h γ)`` (equal to ``f(t_i, z_i)`` at convergence, no
extra evaluation, and not amplified by the stiff part of ``f`` when the iteration stops at its tolerance).

**Convergence test** (Hairer & Wanner, *Solving ODEs II*, IV.8): with ``‖·‖`` the RMS norm scaled by
``newton_atol + newton_rtol |y|`` and the contraction rate ``θ_m = ‖Δ^(m)‖ / ‖Δ^(m-1)‖``, a trajectory's
stage has converged when ``η_m ‖Δ^(m)‖ <= 1`` with ``η_m = θ_m / (1 - θ_m)`` (for the first iteration ``η``
carried over from the previous stage or step as ``max(η, ε)^0.8``). It has failed when ``θ_m >= 1``, when
``θ_m^(m_max - m) / (1 - θ_m) ‖Δ^(m)‖ > 1`` (it cannot converge within the remaining iterations), or
after ``newton_max_iter`` iterations. Every quantity is a ``(B,)`` tensor: each trajectory converges (and
stops moving) on its own. A trajectory whose Newton iteration failed keeps ``y`` and reports a huge but
finite error estimate (``(|y| + 1) finfo.max^(1/4)``), so the loop rejects the step and shrinks it by the
controller's smallest factor; an infinite or NaN estimate is avoided so that a failed
Newton iteration is not reported as a non-finite solution.

**Host synchronisation and per-iteration cost.** On CPU the per-trajectory bookkeeping of the convergence
test (rates, masks, the ``(B,)`` quantities above) runs on host NumPy arrays: reading ``‖Δ‖`` costs no
synchronisation there, and a NumPy operation on a few numbers costs a fraction of a torch dispatch. The loop
stops as soon as every trajectory has converged or failed, and a converged trajectory is frozen
(``torch.where`` only while some rows are done). On other devices the same code runs on ``(B,)`` tensors and
always performs ``newton_max_iter`` iterations with the masks on the device; since converged trajectories are
frozen, both give the same result. Besides the loop's own synchronisation each step reads at most three
booleans: whether any trajectory needs a fresh Jacobian, a fresh factorisation, and whether a Newton failure
with a reused Jacobian or factorisation calls for a retry. The Newton matrix is kept as its inverse
``N^{-1}`` (computed from its LU factorisation, counted as one): a solve is then one batched matrix-vector
product, about 10x cheaper per call than a pair of triangular solves at these sizes.

**Jacobian reuse.** ``J`` (``(B, D, D)``, by reverse-mode autodiff of the batch-summed right-hand side: one
evaluation and a vectorised backward pass) is part of the solver state. It is recomputed at the start of a
step when the previous step's worst contraction rate exceeded ``jacobian_rate`` or its Newton iteration
failed, and within a step when the Newton iteration fails with a reused ``J`` (the step is then redone with
a fresh one, as in Hairer's codes).

**Factorisation reuse.** ``N^{-1}`` and the ``hγ`` it was formed with are part of the state too. A step reuses it
while ``|hγ / hγ_N - 1| <= lu_rate`` and ``J`` was not refreshed; the simplified Newton iteration converges with
such a matrix, its rate in the stiff components growing to about ``|1 - hγ/hγ_N|``. This is the rule of SUNDIALS'
CVODE/ARKODE (refactorise when ``γ`` changed by more than ``dgmax``, 0.3 / 0.2; Hindmarsh et al., ACM TOMS 31 (2005)
363–396) rather than Radau5's (Hairer & Wanner IV.8: keep ``h`` itself unchanged while the proposed ratio stays in
``[1, 1.2]``), since here the integration loop's controller owns ``h``. A slow contraction (``θ > jacobian_rate``)
with a reused factorisation whose ``hγ`` differs asks for a new factorisation at the next step, not a new Jacobian;
a Newton failure with one redoes the step with a fresh ``J`` and ``N``. The default ``lu_rate = 0`` refactorises
whenever ``h`` changes (it reuses ``N^{-1}`` only for an ``h`` unchanged up to round-off, e.g. fixed steps): on the
problems of ``physnode bench stiff`` (2 to 8 states) ``lu_rate = 0.1–0.3`` saved 0–47 % of the factorisations for -3
to +12 % right-hand-side calls and no measurable time, since a factorisation there costs about one Newton iteration.
Keeping ``J`` and ``N^{-1}`` in the state (not on the solver object) makes a step a pure function of its inputs, so
that ACA's replay of a step reproduces it exactly.

**Gradients by the implicit-function theorem.** The Newton iterations run without a graph. When a graph is
being built, each converged stage ``z_i*`` is followed by one differentiable correction

.. math::

    δ_i = -M_i^{-1} G_i(z_i^*), \qquad G_i(z) = z - ψ_i - h γ f(t_i, z), \qquad
    M_i = I - h γ \frac{∂f}{∂y}(t_i, z_i^*) \ \text{(detached)}, \qquad z_i = z_i^* + (δ_i - \operatorname{sg}(δ_i)),

whose value is exactly ``z_i*`` (``x - x = 0`` in floating point, so a solve with a graph takes the same steps
as one without) and whose derivative is the implicit-function-theorem derivative
``dz_i = M_i^{-1}(dψ_i + h γ ∂f/∂θ dθ)`` of the converged stage equation; the Newton iterations themselves
are never differentiated. This costs, per implicit stage and only when a graph is built (grad mode on and
``y`` or the cached ``f(t, y)`` of the state carrying a graph), one evaluation of ``f`` with a graph, one
Jacobian and one factorisation. ``grad="direct"`` backpropagates through it and
``grad="aca"`` replays the same step function, so the two agree to round-off; ACA's records then include
the Jacobian in the state, ``O(N·B·D²)`` for ``N`` iterations. Second derivatives are not exact (``M_i`` is
detached). The continuous adjoint (``grad="adjoint"``) solves its backward equation with the same method
(:class:`physnode.gradients.adjoint.ContinuousAdjoint`), reading each step's stages from :attr:`ESDIRK.last_stages`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import Tensor

from .._breakpoints import fresh_derivative
from .base import RHS, Solver, State

__all__ = ["ESDIRK", "NEWTON_KAPPA", "ImplicitTableau", "jacobian"]

_TOL = 1e-12
#: Largest batch whose Newton convergence test runs in Python floats on CPU (larger ones: NumPy arrays).
ROW_BATCH = 8
#: Newton tolerances relative to the solve's (Hairer & Wanner's ``κ``, IV.8, suggested in [0.01, 0.1]): the
#: Newton error stays well below the local error the step-size controller accepts.
NEWTON_KAPPA = 0.01


@dataclass(frozen=True)
class ImplicitTableau:
    """An ESDIRK method as data: lower-triangular ``A`` with an explicit first stage and a constant diagonal.

    Parameters
    ----------
    name
        Registry name of the method, e.g. ``"kvaerno5"``.
    gamma
        The diagonal coefficient ``γ = a_ii`` of every implicit stage.
    c
        Stage times ``c_i`` (fractions of the step), length ``s``; ``c_0 = 0``.
    a
        Lower-triangular stage coefficients *including* the diagonal: row ``i`` holds ``a_i0 .. a_ii``
        (``i + 1`` entries); row 0 is ``(0.0,)`` (explicit first stage) and ``a_ii = γ`` for ``i >= 1``.
    b
        Weights of the propagated solution; equal to the last row of ``a`` (stiffly accurate).
    b_hat
        Weights of the embedded solution, length ``s``, summing to 1.
    order, embedded_order
        Classical orders of the propagated and the embedded solution.
    source
        Where the coefficients come from.

    Raises
    ------
    ValueError
        When the coefficients are inconsistent: lengths, a non-explicit first stage, an unequal diagonal, row
        sums of ``a`` that differ from ``c``, weights that do not sum to one, or a method that is not stiffly
        accurate.
    """

    name: str
    gamma: float
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_hat: tuple[float, ...]
    order: int
    embedded_order: int
    source: str = ""
    b_err: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        s, who = len(self.c), f"implicit tableau {self.name!r}"
        if len(self.a) != s or len(self.b) != s or len(self.b_hat) != s:
            raise ValueError(
                f"{who}: c, a, b and b_hat need one entry per stage; got len(c)={s}, len(a)={len(self.a)}, "
                f"len(b)={len(self.b)}, len(b_hat)={len(self.b_hat)}."
            )
        if s < 2:
            raise ValueError(f"{who}: an ESDIRK method needs at least 2 stages, got {s}.")
        if tuple(self.a[0]) != (0.0,) or self.c[0] != 0.0:
            raise ValueError(
                f"{who}: the first stage must be explicit (a[0] = (0.0,), c[0] = 0); got a[0]={self.a[0]}."
            )
        if not self.gamma > 0:
            raise ValueError(f"{who}: gamma must be positive for an A-stable method, got {self.gamma!r}.")
        for i, row in enumerate(self.a):
            if len(row) != i + 1:
                raise ValueError(f"{who}: row {i} of a must hold {i + 1} coefficients (lower triangle with diagonal).")
            if i and abs(row[i] - self.gamma) > _TOL:
                raise ValueError(f"{who}: diagonal a[{i}][{i}] = {row[i]!r} differs from gamma = {self.gamma!r}.")
            if abs(math.fsum(row) - self.c[i]) > 1e-10 * max(1.0, max(abs(x) for x in row)):
                raise ValueError(f"{who}: row {i} of a sums to {math.fsum(row)!r}, expected c[{i}]={self.c[i]!r}.")
        for label, w in (("b", self.b), ("b_hat", self.b_hat)):
            if abs(math.fsum(w) - 1.0) > 1e-10:
                raise ValueError(f"{who}: {label} sums to {math.fsum(w)!r}, expected 1.")
        if any(abs(x - y) > _TOL for x, y in zip(self.b, self.a[-1], strict=True)):
            raise ValueError(f"{who}: b must equal the last row of a (stiffly accurate: y_new is the last stage).")
        object.__setattr__(self, "b_err", tuple(x - y for x, y in zip(self.b, self.b_hat, strict=True)))

    @property
    def stages(self) -> int:
        """Number of stages ``s`` (the first one explicit)."""
        return len(self.c)

    def matrix(self) -> np.ndarray:
        """The full ``(s, s)`` Butcher matrix ``A``."""
        A = np.zeros((self.stages, self.stages))
        for i, row in enumerate(self.a):
            A[i, : i + 1] = row
        return A

    def stability(self, z: complex | np.ndarray, weights: tuple[float, ...] | None = None) -> np.ndarray:
        """Stability function ``R(z) = 1 + z bᵀ (I - z A)⁻¹ 1`` (``weights`` default ``b``; ``b_hat`` for the
        embedded method). For an L-stable method ``|R(z)| <= 1`` on ``Re z <= 0`` and ``R(-∞) = 0``."""
        A = self.matrix()
        w = np.asarray(self.b if weights is None else weights)
        zs = np.atleast_1d(np.asarray(z, dtype=complex))
        one = np.ones(self.stages)
        out = [1 + zz * w @ np.linalg.solve(np.eye(self.stages) - zz * A, one) for zz in zs]
        return np.asarray(out)


def jacobian(func: RHS, t: Tensor, y: Tensor) -> Tensor:
    """Jacobian ``∂f/∂y`` ``(B, D, D)`` of a batched right-hand side at ``(t (B,), y (B, D))``, detached.

    Trajectories are independent (row ``b`` of ``f`` depends on row ``b`` of ``y`` only), so the Jacobian of
    ``y ↦ Σ_b f(t, y)_b`` holds every trajectory's Jacobian: one evaluation of ``f`` and one backward pass
    batched over the ``D`` output components (``torch.autograd.grad(..., is_grads_batched=True)``; on CPU about
    1.8x cheaper than ``torch.func.jacrev`` for 2 to 8 states). A right-hand side whose backward cannot be
    batched falls back to ``D`` ordinary backward passes through the same graph.
    """
    x = y.detach().requires_grad_()
    with torch.enable_grad():
        out = func(t, x).sum(0)  # (D,)
    D = out.shape[0]
    if not out.requires_grad:  # f does not depend on y (or on anything differentiable)
        return torch.zeros(y.shape[0], D, y.shape[-1], dtype=y.dtype, device=y.device)
    try:
        eye = torch.eye(D, dtype=out.dtype, device=out.device)
        (jac,) = torch.autograd.grad(out, x, eye, retain_graph=True, is_grads_batched=True, allow_unused=True)
    except (RuntimeError, NotImplementedError):
        rows = []
        for i in range(D):
            (g,) = torch.autograd.grad(out[i], x, retain_graph=i + 1 < D, allow_unused=True)
            rows.append(torch.zeros_like(x) if g is None else g)
        jac = torch.stack(rows)
    if jac is None:
        return torch.zeros(y.shape[0], D, y.shape[-1], dtype=y.dtype, device=y.device)
    return jac.detach().permute(1, 0, 2)  # (D, B, D) -> (B, D, D): [b, i, k] = ∂f_i(y_b) / ∂y_bk


def _rms(x: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x, dim=-1).mul_(x.shape[-1] ** -0.5)


Array = np.ndarray | Tensor  # per-trajectory (B,) flags and rates: host arrays on CPU, tensors elsewhere


def _on_host(y: Tensor) -> bool:
    """Whether the per-trajectory Newton bookkeeping of a step on ``y`` runs on host arrays (CPU tensors)."""
    return y.device.type == "cpu"


def _xp(a: Array) -> Any:
    """The array namespace of ``a``: :mod:`numpy` for host arrays, :mod:`torch` for tensors."""
    return np if isinstance(a, np.ndarray) else torch


def _tensor(a: Array) -> Tensor:
    """``a`` as a tensor (a host array shares its memory)."""
    return torch.from_numpy(a) if isinstance(a, np.ndarray) else a


def _merge(mask: Array, new: Tensor, old: Tensor) -> Tensor:
    """Rows of ``new`` where ``mask`` ``(B,)``, of ``old`` elsewhere; ``new`` itself when a host mask is all true."""
    if isinstance(mask, np.ndarray):
        if mask.all():
            return new
        mask = torch.from_numpy(mask).to(new.device)
    return torch.where(mask.view(mask.shape + (1,) * (new.ndim - 1)), new, old)


class ESDIRK(Solver):
    """Adaptive ESDIRK method with simplified Newton iterations; subclasses only set :attr:`tableau`.

    The state is ``(y, f(t, y), J, jac_stale, eta, N_inv, hg_N)``: the solution ``(B, D)``, the
    first-same-as-last derivative ``(B, D)``, the Jacobian kept for reuse ``(B, D, D)``, whether it must be
    recomputed ``(B,)`` (bool), the last Newton rate estimate ``(B,)``, the inverse Newton matrix
    ``(I - hγ J)^{-1}`` kept for reuse ``(B, D, D)`` and the ``hγ`` it was formed with ``(B,)`` (``0``: none yet,
    or a refactorisation requested). See the module docstring for the iteration, its convergence test, the
    reuse rules and the gradient.

    Parameters
    ----------
    newton_rtol, newton_atol
        Tolerances of the Newton iterations: a stage has converged when its predicted remaining error, in the
        RMS norm scaled by ``newton_atol + newton_rtol |y|``, is at most 1. Keep them 10–100 times below the
        solve's ``rtol``/``atol``. ``None`` (default): :data:`NEWTON_KAPPA` times the solve's tolerances when
        the caller hands them over with :meth:`set_tolerances`, otherwise ``1e-9`` and ``1e-11`` (0.01 times
        the default ``rtol=1e-7``, ``atol=1e-9`` of :func:`physnode.solve`). ``newton_rtol`` is raised to at
        least ``50 ε`` of the dtype (below that the iteration stalls on round-off).
    newton_max_iter
        Maximum Newton iterations per stage; a trajectory that has not converged by then rejects its step.
    jacobian_rate
        Reuse the Jacobian in the next step while the worst Newton contraction rate of a step stays below
        this (``0`` recomputes it every step). On the four problems of ``physnode bench stiff`` (kvaerno5,
        shortened intervals) 0.03 took the least time: 0 needs 2x the Jacobians for 7% fewer evaluations,
        0.1 and 0.3 save Jacobians but pay 18% and 44% more evaluations in slower Newton iterations.
    lu_rate
        Reuse ``(I - hγ J)^{-1}`` in a step whose ``hγ`` differs from the one it was formed with by at most this
        fraction (and whose ``J`` was not refreshed); ``0`` (default) refactorises whenever ``h`` changes beyond
        round-off. Values of 0.1–0.3 (SUNDIALS' CVODE/ARKODE use 0.3/0.2) save factorisations for a few more
        Newton iterations: worth it when a factorisation (``O(D³)``) costs more than a right-hand side.
    filter_error
        Apply ``(I - h γ J)^{-1}`` to the error estimate (Hairer & Wanner IV.8), which damps the stiff
        components of the estimate; off by default since Kværnø's embedded solutions are themselves
        stiffly accurate.
    max_dense_dim
        Largest state dimension ``D`` for the dense ``(B, D, D)`` Jacobians and factorisations.
    adaptive
        ``False`` runs the pair with fixed steps (``step_size`` required), e.g. for order studies.

    Attributes
    ----------
    counters
        Work done since construction: ``"jacobians"`` (batched Jacobian evaluations), ``"factorizations"``
        (batched LU factorisations), ``"newton_iterations"`` (batched) and ``"newton_failures"`` (trajectory-steps;
        counted on CPU only, where reading it costs no device synchronisation).
    """

    tableau: ClassVar[ImplicitTableau]
    #: Marks a method that needs no stiffness warning: it is meant for stiff problems.
    implicit: ClassVar[bool] = True

    def __init__(
        self,
        newton_rtol: float | None = None,
        newton_atol: float | None = None,
        newton_max_iter: int = 7,
        jacobian_rate: float = 0.03,
        lu_rate: float = 0.0,
        filter_error: bool = False,
        max_dense_dim: int = 1024,
        adaptive: bool | None = None,
    ) -> None:
        for label, v in (("newton_rtol", newton_rtol), ("newton_atol", newton_atol)):
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{label} must be a non-negative finite number or None, got {v!r}.")
        if newton_rtol == 0 and newton_atol == 0:
            raise ValueError("newton_rtol and newton_atol cannot both be zero.")
        if not (isinstance(newton_max_iter, int) and newton_max_iter >= 1):
            raise ValueError(f"newton_max_iter must be a positive integer, got {newton_max_iter!r}.")
        if not (isinstance(jacobian_rate, (int, float)) and 0 <= jacobian_rate < 1):
            raise ValueError(f"jacobian_rate must be in [0, 1), got {jacobian_rate!r}.")
        if not (isinstance(lu_rate, (int, float)) and 0 <= lu_rate < 1):
            raise ValueError(
                f"lu_rate must be in [0, 1), got {lu_rate!r}: the largest relative change of hγ for which the "
                "factorisation of I - hγ J is reused (0 refactorises whenever h changes)."
            )
        tab = self.tableau
        self._auto_rtol, self._auto_atol = newton_rtol is None, newton_atol is None
        self.newton_rtol: float = 1e-9 if newton_rtol is None else float(newton_rtol)
        self.newton_atol: float | Tensor = 1e-11 if newton_atol is None else float(newton_atol)
        self.newton_max_iter, self.jacobian_rate = newton_max_iter, float(jacobian_rate)
        self.lu_rate = float(lu_rate)
        self.filter_error, self.max_dense_dim = bool(filter_error), int(max_dense_dim)
        self.order = tab.order
        self.adaptive = True if adaptive is None else bool(adaptive)
        self.error_order = min(tab.order, tab.embedded_order) + 1
        self.counters = {"jacobians": 0, "factorizations": 0, "newton_iterations": 0, "newton_failures": 0}
        #: The stage values ``z_0 .. z_(s-1)`` ``(B, D)`` of the last step (``z_0`` its initial state).
        self.last_stages: list[Tensor] = []

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.tableau.name

    def set_tolerances(self, rtol: float | Tensor, atol: float | Tensor) -> None:
        """Derive the Newton tolerances not given explicitly from the solve's: ``NEWTON_KAPPA * rtol`` and
        ``NEWTON_KAPPA * atol`` (``atol`` may be a tensor broadcastable to ``(D,)``).

        Call it with the step-size controller's tolerances before a solve; explicit ``newton_rtol`` /
        ``newton_atol`` are left alone.
        """
        if self._auto_rtol:
            self.newton_rtol = NEWTON_KAPPA * float(rtol)
        if self._auto_atol:
            self.newton_atol = NEWTON_KAPPA * atol

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(newton_rtol={self.newton_rtol}, newton_atol={self.newton_atol}, "
            f"newton_max_iter={self.newton_max_iter}, jacobian_rate={self.jacobian_rate}, adaptive={self.adaptive})"
        )

    # ---------------------------------------------------------------------------------------------- state
    def init(self, func: RHS, t0: Tensor, y0: Tensor, h0: Tensor) -> State:
        B, D = y0.shape
        if D > self.max_dense_dim:
            raise ValueError(
                f"method {self.name!r} forms dense (B, D, D) Jacobians and LU factorisations; D = {D} exceeds "
                f"max_dense_dim = {self.max_dense_dim} ({B * D * D * y0.element_size() / 2**20:.0f} MiB per "
                "matrix). Raise options={'max_dense_dim': ...} if memory allows, or use an explicit method "
                "(e.g. method='dopri5') if the problem is not stiff; matrix-free Newton–Krylov is not available."
            )
        if not y0.is_floating_point():
            raise TypeError(f"method {self.name!r} needs a floating-point y0, got {y0.dtype}.")
        J = y0.new_zeros(B, D, D)
        stale = torch.ones(B, dtype=torch.bool, device=y0.device)
        eta = torch.ones(B, dtype=y0.dtype, device=y0.device)
        # No factorisation yet (hγ_N = 0 forces one); the identity keeps a product with it finite.
        N_inv = torch.eye(D, dtype=y0.dtype, device=y0.device).expand(B, D, D).clone()
        return (y0, func(t0, y0), J, stale, eta, N_inv, torch.zeros_like(eta))

    # ----------------------------------------------------------------------------------------- algebra
    def _factor(self, J: Tensor, hg: Tensor) -> Tensor:
        """``(I - hγ J)^{-1}`` ``(B, D, D)`` from its LU factorisation (partial pivoting).

        The Newton iterations then cost one batched matrix-vector product per solve instead of a triangular
        solve pair (on CPU about 5 µs against 50 µs for ``D`` up to 64: per-call overhead, not arithmetic). The
        simplified Newton iteration tolerates the inverse's round-off: it only changes the contraction rate, the
        residual that decides convergence is evaluated exactly. A singular matrix gives a non-finite inverse
        (no exception): the Newton iteration then fails and the step is rejected and shrunk.
        """
        D = J.shape[-1]
        eye = torch.eye(D, dtype=J.dtype, device=J.device)
        self.counters["factorizations"] += 1
        LU, piv, _ = torch.linalg.lu_factor_ex(eye - hg.view(-1, 1, 1) * J)
        return torch.linalg.lu_solve(LU, piv, eye.expand_as(LU))

    @staticmethod
    def _solve(N_inv: Tensor, rhs: Tensor) -> Tensor:
        """``N_inv @ rhs`` for ``N_inv`` ``(B, D, D)`` and ``rhs`` ``(B, D)``."""
        return torch.bmm(N_inv, rhs.unsqueeze(-1)).squeeze(-1)

    def _correction(self, func: RHS, ti: Tensor, hgv: Tensor, psi: Tensor, z: Tensor, N_inv: Tensor) -> Tensor:
        """``-Δ = N^{-1} (z - psi - hγ f(ti, z))`` ``(B, D)``: one simplified Newton correction, sign flipped."""
        return self._solve(N_inv, torch.addcmul(z - psi, hgv, func(ti, z), value=-1))

    def _jacobian(self, func: RHS, t: Tensor, y: Tensor) -> Tensor:
        self.counters["jacobians"] += 1
        return jacobian(func, t, y)

    def _newton(
        self,
        func: RHS,
        ti: Tensor,
        hgv: Tensor,
        psi: Tensor,
        z: Tensor,
        N_inv: Tensor,
        weight: Tensor,
        eta: Array,
    ) -> tuple[Tensor, Array, Array, Array]:
        """Simplified Newton for ``z = psi + hγ f(ti, z)`` (no graph); ``weight`` ``(B, D)`` turns a correction
        into its scaled RMS norm. Returns ``(z, failed, eta, theta_max)``, the last three ``(B,)``: NumPy arrays
        when ``eta`` is one (CPU), tensors otherwise.

        On CPU a batch of at most :data:`ROW_BATCH` trajectories keeps its convergence test in Python floats
        (:meth:`_newton_rows`, a NumPy operation on one number costs more than the arithmetic of a whole
        row); larger batches and other devices run the same test vectorised (:meth:`_newton_arrays`).
        """
        if isinstance(eta, np.ndarray) and eta.shape[0] <= ROW_BATCH:
            return self._newton_rows(func, ti, hgv, psi, z, N_inv, weight, eta)
        return self._newton_arrays(func, ti, hgv, psi, z, N_inv, weight, eta)

    def _newton_rows(
        self,
        func: RHS,
        ti: Tensor,
        hgv: Tensor,
        psi: Tensor,
        z: Tensor,
        N_inv: Tensor,
        weight: Tensor,
        eta_in: np.ndarray,
    ) -> tuple[Tensor, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_newton` with the per-trajectory test in Python floats (CPU, small batches)."""
        kmax = self.newton_max_iter
        eps = float(torch.finfo(z.dtype).eps)
        eta = [max(e, eps) ** 0.8 for e in eta_in.tolist()]
        B = len(eta)
        moving, done, theta_max = [True] * B, [False] * B, [0.0] * B
        prev = [0.0] * B
        for m in range(kmax):
            delta = self._correction(func, ti, hgv, psi, z, N_inv)  # -Δ
            nd = torch.linalg.vector_norm(delta * weight, dim=-1).tolist()
            self.counters["newton_iterations"] += 1
            if all(moving):
                z = z - delta
            else:
                z = torch.where(torch.tensor(moving).unsqueeze(-1), z - delta, z)
            for b in range(B):
                if not moving[b]:
                    continue
                n = nd[b]
                hopeless = not math.isfinite(n)
                if m and not hopeless:
                    theta = n / prev[b]  # > 0: a row still moving had a nonzero, finite correction
                    theta_max[b] = max(theta_max[b], theta)
                    eta[b] = theta / (1 - theta) if theta != 1 else math.inf
                    # θ >= 1 diverges; θ^(kmax-m) ‖Δ‖ / (1 - θ) > 1 cannot converge in the iterations left.
                    hopeless = theta >= 1 or theta ** (kmax - m) * n > 1 - theta
                elif m:
                    theta_max[b] = math.nan
                if not hopeless and (eta[b] * n <= 1 or n == 0):
                    done[b], moving[b] = True, False
                elif hopeless:
                    moving[b] = False
                prev[b] = n
            if not any(moving):
                break
        dtype = eta_in.dtype
        return z, ~np.array(done), np.array(eta, dtype=dtype), np.array(theta_max, dtype=dtype)

    def _newton_arrays(
        self,
        func: RHS,
        ti: Tensor,
        hgv: Tensor,
        psi: Tensor,
        z: Tensor,
        N_inv: Tensor,
        weight: Tensor,
        eta: Array,
    ) -> tuple[Tensor, Array, Array, Array]:
        """:meth:`_newton` with the per-trajectory test on ``(B,)`` NumPy arrays (CPU) or tensors (elsewhere)."""
        kmax = self.newton_max_iter
        host = isinstance(eta, np.ndarray)
        xp: Any = np if host else torch
        moving = xp.ones(eta.shape, dtype=bool if host else torch.bool)  # neither converged nor failed yet
        if not host:
            moving = moving.to(eta.device)
        done = ~moving
        theta_max = eta * 0
        eps = float(torch.finfo(z.dtype).eps)
        eta = (np.maximum(eta, eps) if host else cast(Tensor, eta).clamp(min=eps)) ** 0.8
        prev: Array | None = None
        with np.errstate(all="ignore"):  # host arrays: 0/0 and overflow of masked rows are harmless
            for m in range(kmax):
                delta = self._correction(func, ti, hgv, psi, z, N_inv)  # -Δ
                nd_dev = torch.linalg.vector_norm(delta * weight, dim=-1)
                nd = nd_dev.numpy() if host else nd_dev
                hopeless = ~xp.isfinite(nd)
                if prev is not None:
                    # Rows still moving have prev > 0 (a zero correction converges); other rows are masked below.
                    theta = nd / prev
                    theta_max = xp.where(moving, xp.maximum(theta_max, theta), theta_max)
                    eta = xp.where(moving, theta / (1 - theta), eta)
                    # θ >= 1 diverges; θ^(kmax-m) ‖Δ‖ / (1 - θ) > 1 cannot converge in the iterations left.
                    hopeless |= (theta >= 1) | (theta ** (kmax - m) * nd > 1 - theta)
                self.counters["newton_iterations"] += 1
                if host and np.count_nonzero(moving) == moving.size:
                    z = z - delta
                else:
                    mask = torch.from_numpy(moving) if host else moving
                    z = torch.where(mask.unsqueeze(-1), z - delta, z)
                # A diverging row (θ >= 1, η < 0) has failed, whatever η ‖Δ‖ says.
                converged = moving & ~hopeless & ((eta * nd <= 1) | (nd == 0))
                done |= converged
                moving &= ~(converged | hopeless)
                prev = nd
                if host and not np.count_nonzero(moving):
                    break
        return z, ~done, eta, theta_max

    def _stages(
        self, func: RHS, t: Tensor, h: Tensor, y: Tensor, k0: Tensor, eta: Array, N_inv: Tensor
    ) -> tuple[list[Tensor], list[Tensor], Array, Array, Array]:
        """All stages of one step with the inverse Newton matrix ``N_inv``. Returns ``(zs, ks, failed, eta,
        theta_max)`` (the last three as :meth:`_newton` returns them); ``zs``/``ks`` carry the
        implicit-function-theorem graph when grad mode is on."""
        tab = self.tableau
        hg = h * tab.gamma
        hh = h.unsqueeze(-1)
        hgv = hg.unsqueeze(-1)
        safe_hg = torch.where(hgv == 0, torch.ones_like(hgv), hgv)
        with torch.no_grad():
            rtol = max(self.newton_rtol, 50 * torch.finfo(y.dtype).eps)
            atol = self.newton_atol
            if isinstance(atol, Tensor):
                atol = atol.to(dtype=y.dtype, device=y.device)
            scale = y.detach().abs().mul(rtol).add_(atol)
            if not isinstance(atol, Tensor) and atol == 0:
                scale.clamp_(min=torch.finfo(y.dtype).tiny)
            weight = scale.reciprocal_().mul_(y.shape[-1] ** -0.5)  # ‖Δ · weight‖₂ = RMS of Δ / scale
            hgv_d = hgv.detach()
        zs, ks = [y], [k0]
        # A graph is built only when the step's inputs carry one: y, or the FSAL derivative k0 (which depends on
        # the parameters whenever f does, since init evaluates it with grad). A plain solve in grad mode with
        # nothing to differentiate thus pays no extra evaluation.
        graph = torch.is_grad_enabled() and (y.requires_grad or k0.requires_grad)
        failed = eta < 0  # all False
        theta_max = eta * 0
        for i in range(1, tab.stages):
            row = tab.a[i]
            acc = None
            for j in range(i):
                if row[j] != 0.0:
                    acc = ks[j] * row[j] if acc is None else acc + ks[j] * row[j]
            psi = y if acc is None else y + hh * acc
            ti = t + tab.c[i] * h
            with torch.no_grad():
                psi_d = psi.detach()
                z0 = torch.addcmul(psi_d, hgv_d, ks[i - 1].detach())  # predictor: previous stage derivative
                z_star, f_i, eta, th = self._newton(func, ti, hgv_d, psi_d, z0, N_inv, weight, eta)
                # A failed row continues from a finite value (its step is rejected), so that no NaN or
                # overflow enters the later stages or, through a zero cotangent, the gradient.
                if not isinstance(f_i, np.ndarray):
                    z_star = torch.where(f_i.unsqueeze(-1), psi_d, z_star)
                elif f_i.any():  # host arrays: the merge only when some row failed
                    z_star = torch.where(torch.from_numpy(f_i).unsqueeze(-1), psi_d, z_star)
            failed, theta_max = failed | f_i, _xp(th).maximum(theta_max, th)
            z = z_star
            if graph:
                g = z_star - psi - hgv * func(ti, z_star)
                if g.requires_grad:
                    with torch.no_grad():
                        m_lu = self._factor(self._jacobian(func, ti, z_star), hg)
                    delta = -self._solve(m_lu, g)
                    z = z_star + (delta - delta.detach())
            zs.append(z)
            ks.append((z - psi) / safe_hg)
        return zs, ks, failed, eta, theta_max

    # -------------------------------------------------------------------------------------------- step
    def _newton_matrix(
        self, func: RHS, t: Tensor, h: Tensor, y: Tensor, state: State, retry: Array | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Array, Array, Array]:
        """The Jacobian and ``(I - hγ J)^{-1}`` for a step from ``(t, y)``, reused from ``state`` where
        the reuse rules allow (see the module docstring); ``retry`` (``(B,)``) forces fresh ones on those rows.

        Returns ``(J, N_inv, hγ_N, fresh_J, fresh_N, exact_N)``, the last three ``(B,)`` (host arrays on CPU);
        ``exact_N``: the matrix is fresh or was formed with this step's ``hγ`` up to round-off."""
        _, _, J, stale, _, N_inv, hg_lu = state
        host = _on_host(y)
        with torch.no_grad():
            J = J.detach()
            hg = h.detach() * self.tableau.gamma
            if host:
                stale_x: Array = stale.numpy()
                hg_x: Array = hg.numpy()
                hg_lu_x: Array = hg_lu.numpy()
            else:
                stale_x, hg_x, hg_lu_x = stale, hg, hg_lu
            fresh_j = stale_x if retry is None else retry
            # Refactorise where J is new, where nothing was factorised yet (hγ_LU = 0), and where hγ left the band
            # |hγ / hγ_LU - 1| <= lu_rate; a row with h = 0 (finished) needs no matrix.
            xp = _xp(hg_x)
            # Up to round-off (64 ε: a landing step's h differs from the proposal by a few ulps) hγ is unchanged.
            tiny = 64 * float(torch.finfo(y.dtype).eps)
            change = xp.abs(hg_x - hg_lu_x)
            moved = change > max(self.lu_rate, tiny) * xp.abs(hg_lu_x)
            same = change <= tiny * xp.abs(hg_lu_x)
            fresh_lu = (hg_x != 0) & (fresh_j | (hg_lu_x == 0) | moved) if retry is None else retry
            if bool(fresh_j.any()):  # host check (free on CPU): one per step
                J = _merge(fresh_j, self._jacobian(func, t, y), J)
            if bool(fresh_lu.any()):
                N_inv = _merge(fresh_lu, self._factor(J, hg), N_inv)
                hg_lu = _merge(fresh_lu, hg, hg_lu)
        return J, N_inv, hg_lu, fresh_j, fresh_lu, fresh_lu | same

    def step(self, func: RHS, t: Tensor, h: Tensor, state: State) -> tuple[State, Tensor | None]:
        tab = self.tableau
        y, k0, _, _, eta, *_ = state
        k0 = fresh_derivative(func, t, y, k0)  # re-evaluated on a step that starts on a breakpoint
        host = _on_host(y)
        eta0: Array = eta.detach().numpy() if host else eta.detach()
        h_x: Array = h.detach().numpy() if host else h.detach()
        J, lu, hg_lu, fresh_j, fresh_lu, exact = self._newton_matrix(func, t, h, y, state)
        zs, ks, failed, eta_new, theta_max = self._stages(func, t, h, y, k0, eta0, lu)
        if self.jacobian_rate > 0 or self.lu_rate > 0:
            # Newton failed with a reused Jacobian or factorisation: redo the step with fresh ones (Hairer's codes).
            retry = failed & ~(fresh_j & fresh_lu) & (h_x != 0)
            if bool(retry.any()):
                J, lu2, hg_lu2, _, _, _ = self._newton_matrix(func, t, h, y, (y, k0, J, *state[3:5], lu, hg_lu), retry)
                zs2, ks2, failed2, eta2, theta2 = self._stages(func, t, h, y, k0, eta0, lu2)
                zs = [_merge(retry, a, b) for a, b in zip(zs2, zs, strict=True)]
                ks = [_merge(retry, a, b) for a, b in zip(ks2, ks, strict=True)]
                xp = _xp(retry)
                failed = xp.where(retry, failed2, failed)
                eta_new = xp.where(retry, eta2, eta_new)
                theta_max = xp.where(retry, theta2, theta_max)
                fresh_j, fresh_lu, exact = fresh_j | retry, fresh_lu | retry, exact | retry
                lu, hg_lu = lu2, hg_lu2
        failed = failed & (h_x != 0)
        if host:
            self.counters["newton_failures"] += int(failed.sum())
        self.last_stages = zs  # the stage values of this step, for quadratures along it (the continuous adjoint)
        y_new = zs[-1]
        k_last = ks[-1]
        hh = h.unsqueeze(-1)
        xp = _xp(failed)
        # A slow contraction with the step's own matrix (fresh, or reused with the same hγ) calls for a new
        # Jacobian; with a reused one whose hγ differs, only for a new factorisation (hγ_N = 0 forces one).
        slow = theta_max > self.jacobian_rate
        stale_new = failed | (slow & exact)
        eta_new = xp.where(failed, xp.ones_like(eta_new), eta_new)
        refactor = slow & ~exact
        failed_t = _tensor(failed)
        stale_t, eta_t, refactor_t = _tensor(stale_new), _tensor(eta_new), _tensor(refactor)
        hg_lu = torch.where(refactor_t, torch.zeros_like(hg_lu), hg_lu)
        tail = (J, stale_t, eta_t, lu, hg_lu)
        fv = failed_t.unsqueeze(-1)
        if not self.adaptive:
            # Fixed steps cannot be rejected: a failed Newton iteration must not pass silently.
            y_new = torch.where(fv, torch.full_like(y, math.nan), y_new)
            return (y_new, k_last, *tail), None
        err = None
        for w, k in zip(tab.b_err, ks, strict=True):
            if w != 0.0:
                err = k * w if err is None else err + k * w
        assert err is not None
        err = hh * err
        if self.filter_error:
            err = self._solve(lu, err)
        if host and not failed.any():
            return (y_new, k_last, *tail), err
        with torch.no_grad():
            # Far beyond any tolerance (finfo.max^(1/4): 1e77 in float64, 4e9 in float32) yet finite after the
            # controller divides it by rtol |y| + atol, so the loop rejects the step with its smallest factor.
            big = (y.detach().abs() + 1).mul_(torch.finfo(y.dtype).max ** 0.25)
        y_new = torch.where(fv, y, y_new)
        k_last = torch.where(fv, k0, k_last)
        err = torch.where(fv, big, err)
        return (y_new, k_last, *tail), err
