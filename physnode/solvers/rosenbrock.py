r"""Rosenbrock (linearly implicit Runge–Kutta) methods for stiff problems.

A step of size ``h`` from ``(t, y)`` with ``J = ∂f/∂y(t, y)``, ``f_t = ∂f/∂t(t, y)`` and ``W = I - hγ J``
computes ``s`` stage increments ``U_i`` from linear systems that all share ``W`` (Hairer & Wanner, *Solving
ODEs II*, section IV.7, the transformed form free of matrix-vector products with ``J``; multiplied through by
``hγ``):

.. math::

    W U_i = hγ\, f\Bigl(t + α_i h,\ y + \sum_{j<i} a_{ij} U_j\Bigr) + γ \sum_{j<i} c_{ij} U_j + γ d_i h^2 f_t,
    \qquad y_{new} = y + \sum_i m_i U_i, \qquad \hat y = y + \sum_i \hat m_i U_i.

No Newton iteration: per step one Jacobian (with ``f_t`` and ``f(t, y)``, from one evaluation of ``f`` and one
batched backward pass), one factorisation of ``W`` per trajectory (batched; kept as the inverse ``W^{-1}``, so a
stage solve is one batched matrix-vector product, as in :mod:`physnode.solvers.esdirk`) and ``s - 1`` further
evaluations of ``f``. Every trajectory takes its own ``h``; there is no host synchronisation in a step.

**Non-autonomous problems.** ``f_t`` is exact: the batch-summed ``f`` is differentiated with respect to the
``(B,)`` time tensor in the same batched backward pass as ``J`` (trajectory ``b``'s time only enters row ``b``).
A right-hand side that does not use ``t`` gets ``f_t = 0``.

**Gradients.** Without a graph (``torch.no_grad``, or nothing requires grad) ``J``, ``f_t`` and ``W^{-1}`` are
detached. When a graph is being built (``y`` or the right-hand side's parameters require grad) ``J`` and ``f_t``
are computed with ``create_graph=True`` and ``W^{-1}`` by a differentiable inverse, so ``grad="direct"`` is the
exact derivative of the discrete solve, the Jacobian's own dependence on ``y`` and the parameters included
(second derivatives of ``f``; the price of exactness, paid only with a graph). ``grad="aca"`` replays the same
step function (the step is a pure function of ``(t, h, state)``) and agrees with ``direct`` to round-off.

**Singular ``W``.** A trajectory whose ``W`` is singular (``1/(hγ)`` an eigenvalue of ``J``, only possible for
growing modes) keeps ``y`` and reports a huge but finite error estimate, so the loop rejects and shrinks its step.

**Dense output.** Methods with a continuous extension (RODAS's, Hairer & Wanner IV.7) give
``y(t + θh) = (1 - θ) y + θ (y_new + (1 - θ)(w_1 + θ w_2))`` with ``w_k = Σ_j e_kj U_j``, written for
:mod:`physnode.dense` as ``y + h Σ_{k=1}^{3} θ^k R_k``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from .base import RHS, Solver, State

__all__ = ["Rosenbrock", "RosenbrockTableau", "derivatives"]

_TOL = 1e-12


@dataclass(frozen=True)
class RosenbrockTableau:
    """A Rosenbrock method as data, in Hairer & Wanner's transformed form (*Solving ODEs II*, IV.7).

    Parameters
    ----------
    name
        Registry name, e.g. ``"rodas4"``.
    gamma
        The diagonal ``γ`` of the method (one matrix ``I - hγJ`` per step).
    alpha
        Stage times ``α_i`` (fractions of the step), length ``s``, ``α_0 = 0``.
    a
        Stage-argument coefficients ``a_ij`` (``j < i``): row ``i`` holds ``i`` entries, row 0 is empty.
    c
        Coefficients ``c_ij`` (``j < i``) of the earlier increments on the right-hand side, rows as ``a``.
    d
        Coefficients ``d_i = Σ_j γ_ij`` of ``h f_t`` (the ``γ_i`` of Hairer & Wanner), length ``s``; ``d_0 = γ``.
    m, m_hat
        Weights of the propagated and the embedded solution, length ``s``.
    order, embedded_order
        Classical orders of the two solutions.
    dense
        Continuous extension or ``None``: two rows ``e_1, e_2`` of length ``s`` giving ``w_k = Σ_j e_kj U_j`` in
        ``y(t + θh) = (1 - θ) y + θ (y_new + (1 - θ)(w_1 + θ w_2))``.
    dense_order
        Order of the continuous extension; required with ``dense``.
    source
        Where the coefficients come from.

    Raises
    ------
    ValueError
        When lengths or row sizes disagree, ``γ <= 0``, ``α_0 != 0``, ``d_0 != γ``, or ``dense`` and
        ``dense_order`` are not given together.
    """

    name: str
    gamma: float
    alpha: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    c: tuple[tuple[float, ...], ...]
    d: tuple[float, ...]
    m: tuple[float, ...]
    m_hat: tuple[float, ...]
    order: int
    embedded_order: int
    dense: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    dense_order: int | None = None
    source: str = ""
    m_err: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        s, who = len(self.alpha), f"Rosenbrock tableau {self.name!r}"
        lengths = {"a": len(self.a), "c": len(self.c), "d": len(self.d), "m": len(self.m), "m_hat": len(self.m_hat)}
        if any(n != s for n in lengths.values()):
            raise ValueError(f"{who}: alpha, a, c, d, m and m_hat need one entry per stage; got s={s}, {lengths}.")
        if not self.gamma > 0:
            raise ValueError(f"{who}: gamma must be positive, got {self.gamma!r}.")
        if self.alpha[0] != 0.0:
            raise ValueError(f"{who}: the first stage is at the start of the step (alpha[0] = 0), got {self.alpha[0]}.")
        for label, rows in (("a", self.a), ("c", self.c)):
            for i, row in enumerate(rows):
                if len(row) != i:
                    raise ValueError(
                        f"{who}: row {i} of {label} must hold {i} coefficients (strictly lower), got {row}."
                    )
        if abs(self.d[0] - self.gamma) > _TOL:
            raise ValueError(f"{who}: d[0] must equal gamma (d_i is the row sum of Γ), got {self.d[0]!r}.")
        if (self.dense is None) != (self.dense_order is None):
            raise ValueError(f"{who}: dense and dense_order must be given together.")
        if self.dense is not None and any(len(row) != s for row in self.dense):
            raise ValueError(f"{who}: each row of dense needs {s} entries.")
        object.__setattr__(self, "m_err", tuple(x - y for x, y in zip(self.m, self.m_hat, strict=True)))

    @property
    def stages(self) -> int:
        """Number of stages ``s``."""
        return len(self.alpha)

    def classical(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The method in its original form ``(α_ij, Γ = (γ_ij), b, b_hat)`` (``(s, s)``, ``(s, s)``, ``(s,)``,
        ``(s,)``), from ``Γ^{-1} = I/γ - C``, ``α = A Γ``, ``bᵀ = mᵀ Γ`` (Hairer & Wanner IV.7); the order
        conditions of Hairer & Wanner IV.7 are written in it."""
        s = self.stages
        A, C = np.zeros((s, s)), np.zeros((s, s))
        for i in range(s):
            A[i, :i] = self.a[i]
            C[i, :i] = self.c[i]
        Gamma = np.linalg.inv(np.eye(s) / self.gamma - C)
        return A @ Gamma, Gamma, np.asarray(self.m) @ Gamma, np.asarray(self.m_hat) @ Gamma


def derivatives(func: RHS, t: Tensor, y: Tensor, graph: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``f(t, y)`` ``(B, D)``, ``J = ∂f/∂y`` ``(B, D, D)`` and ``f_t = ∂f/∂t`` ``(B, D)`` from one evaluation.

    Trajectories are independent, so the batch-summed ``Σ_b f(t_b, y_b)`` ``(D,)`` differentiated with respect to
    ``y`` ``(B, D)`` and ``t`` ``(B,)`` holds every trajectory's Jacobian and time derivative: one backward pass
    batched over the ``D`` outputs, as :func:`physnode.solvers.esdirk.jacobian` with the time added.

    Without ``graph`` the results are detached (``torch.autograd.grad(..., is_grads_batched=True)`` on a detached
    copy of ``y``; ``D`` ordinary passes when ``f`` cannot be batched). With ``graph`` they stay on the graph of
    ``t``, ``y`` and ``f``'s parameters: ``torch.func.jacrev``, whose inner backward pass stops at its own copy of
    ``y`` (``torch.autograd.grad`` with ``create_graph`` would walk the whole solve's graph behind ``y`` at every
    step, quadratic in the number of steps).
    """
    B, D = y.shape
    if graph:

        def summed(x: Tensor, tt: Tensor) -> tuple[Tensor, Tensor]:
            f = func(tt, x)
            return f.sum(0), f

        try:
            (gy, gt), f = torch.func.jacrev(summed, argnums=(0, 1), has_aux=True)(y, t)
            return f, gy.permute(1, 0, 2), gt.transpose(0, 1)
        except (RuntimeError, NotImplementedError):  # f cannot run under torch.func (e.g. an old-style Function)
            pass
    x = y if graph and y.requires_grad else y.detach().requires_grad_()
    tx = t if graph and t.requires_grad else t.detach().requires_grad_()
    with torch.enable_grad():  # also inside a no-grad forward solve (grad="aca"): J needs one backward pass
        f = func(tx, x)
        out = f.sum(0)
    if not out.requires_grad:  # f depends on neither y nor t
        zero = torch.zeros_like(y)
        return f if graph else f.detach(), zero.new_zeros(B, D, D), zero
    if graph:  # D backward passes with create_graph: correct, but each walks the graph behind y
        gy, gt = _row_by_row(out, x, tx, graph)
    else:
        try:
            eye = torch.eye(D, dtype=out.dtype, device=out.device)
            gy, gt = torch.autograd.grad(out, (x, tx), eye, is_grads_batched=True, allow_unused=True)
        except (RuntimeError, NotImplementedError):  # f's backward cannot be batched
            gy, gt = _row_by_row(out, x, tx, graph)
    J = y.new_zeros(B, D, D) if gy is None else gy.permute(1, 0, 2)  # (D, B, D) -> [b, i, k] = ∂f_i/∂y_k
    ft = y.new_zeros(B, D) if gt is None else gt.transpose(0, 1)  # (D, B) -> (B, D)
    if graph:
        return f, J, ft
    return f.detach(), J.detach(), ft.detach()


def _row_by_row(out: Tensor, x: Tensor, tx: Tensor, graph: bool) -> tuple[Tensor, Tensor]:
    """``∂out/∂x`` ``(D, B, D)`` and ``∂out/∂tx`` ``(D, B)`` by ``D`` ordinary backward passes."""
    rows_y, rows_t = [], []
    D = out.shape[0]
    for i in range(D):
        ry, rt = torch.autograd.grad(
            out[i], (x, tx), retain_graph=graph or i + 1 < D, create_graph=graph, allow_unused=True
        )
        rows_y.append(torch.zeros_like(x) if ry is None else ry)
        rows_t.append(torch.zeros_like(tx) if rt is None else rt)
    return torch.stack(rows_y), torch.stack(rows_t)


class Rosenbrock(Solver):
    """Adaptive Rosenbrock method driven by a :class:`RosenbrockTableau`; subclasses only set :attr:`tableau`.

    The state is ``(y, probe)``: the solution ``(B, D)`` and an empty ``(B, 0)`` slice of ``f(t_0, y_0)`` whose
    ``requires_grad`` tells whether the right-hand side depends on parameters that require grad (so that a step
    builds the differentiable Jacobian only when a graph is wanted). See the module docstring for the step.

    Parameters
    ----------
    max_dense_dim
        Largest state dimension ``D`` for the dense ``(B, D, D)`` Jacobians and inverses.
    adaptive
        ``False`` runs the method with fixed steps (``step_size`` required), e.g. for order studies.

    Attributes
    ----------
    counters
        Work since construction: ``"jacobians"`` and ``"factorizations"`` (batched; one each per step), read by
        :func:`physnode.solve` into ``stats.njev`` / ``stats.nlu``.
    """

    tableau: ClassVar[RosenbrockTableau]
    #: Linearly implicit: meant for stiff problems (no stiffness warning); tests needing explicit stages skip it.
    implicit: ClassVar[bool] = True

    def __init__(self, max_dense_dim: int = 1024, adaptive: bool | None = None) -> None:
        if not (isinstance(max_dense_dim, int) and not isinstance(max_dense_dim, bool) and max_dense_dim >= 1):
            raise ValueError(f"max_dense_dim must be a positive integer, got {max_dense_dim!r}.")
        tab = self.tableau
        self.max_dense_dim = max_dense_dim
        self.order = tab.order
        self.adaptive = True if adaptive is None else bool(adaptive)
        self.error_order = min(tab.order, tab.embedded_order) + 1
        self.dense_order = tab.dense_order
        self.counters = {"jacobians": 0, "factorizations": 0}
        #: ``(y, h, y_new, w_1, w_2)`` of the last step, for :meth:`dense_terms` (references, no copies).
        self._last: tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None = None
        self._tensors: dict[tuple[torch.dtype, torch.device], tuple[list[Tensor], Tensor]] = {}

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.tableau.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_dense_dim={self.max_dense_dim}, adaptive={self.adaptive})"

    def init(self, func: RHS, t0: Tensor, y0: Tensor, h0: Tensor) -> State:
        B, D = y0.shape
        if not y0.is_floating_point():
            raise TypeError(f"method {self.name!r} needs a floating-point y0, got {y0.dtype}.")
        if D > self.max_dense_dim:
            raise ValueError(
                f"method {self.name!r} forms dense (B, D, D) Jacobians and factorisations; D = {D} exceeds "
                f"max_dense_dim = {self.max_dense_dim} ({B * D * D * y0.element_size() / 2**20:.0f} MiB per "
                "matrix). Raise options={'max_dense_dim': ...} if memory allows, or use an explicit method "
                "(e.g. method='dopri5') if the problem is not stiff."
            )
        return (y0, func(t0, y0)[:, :0])

    def step(self, func: RHS, t: Tensor, h: Tensor, state: State) -> tuple[State, Tensor | None]:
        tab = self.tableau
        y, probe = state[0], state[1]
        graph = torch.is_grad_enabled() and (y.requires_grad or probe.requires_grad)
        f0, J, ft = derivatives(func, t, y, graph)
        self.counters["jacobians"] += 1
        D = y.shape[-1]
        hh = h.unsqueeze(-1)
        hg = hh * tab.gamma  # (B, 1)
        W = torch.eye(D, dtype=y.dtype, device=y.device) - hg.unsqueeze(-1) * J
        # The inverse (one LU per trajectory inside, batched): each stage solve is then one batched matrix-vector
        # product, several times cheaper at small D than a triangular-solve pair (see physnode.solvers.esdirk).
        W_inv, info = torch.linalg.inv_ex(W)
        self.counters["factorizations"] += 1
        h2g_ft = hh * hg * ft  # h^2 γ f_t
        stage_coef, final_coef = self._coefficients(y)
        # Stage i: one matrix product of its (2, i + 1) coefficients with the earlier increments and h^2 γ f_t gives
        # the argument increment Σ a_ij U_j and the right-hand-side terms γ Σ c_ij U_j + γ d_i h^2 f_t together.
        Us: list[Tensor] = []
        for i in range(tab.stages):
            terms = torch.matmul(stage_coef[i], torch.stack([*Us, h2g_ft], dim=1))  # (B, 2, D)
            fi = f0 if i == 0 else func(t + tab.alpha[i] * h, y + terms[:, 0])
            rhs = torch.addcmul(terms[:, 1], hg, fi)
            Us.append(torch.bmm(W_inv, rhs.unsqueeze(-1)).squeeze(-1))
        # y_new - y, the error estimate and the dense-output combinations, in one product.
        final = torch.matmul(final_coef, torch.stack(Us, dim=1))  # (B, 4 or 2, D)
        y_new = y + final[:, 0]
        err = final[:, 1] if self.adaptive else None
        if tab.dense is not None:
            self._last = (y, h, y_new, final[:, 2], final[:, 3])
        if y.device.type == "cpu" and not bool(info.any()):  # host check, free on CPU: skip the merges below
            return (y_new, probe), err
        singular = (info != 0).unsqueeze(-1)  # (B, 1): W singular (only for growing modes with 1/(hγ) in J's spectrum)
        if err is None:
            return (torch.where(singular, torch.full_like(y_new, math.nan), y_new), probe), None
        with torch.no_grad():
            # Far beyond any tolerance yet finite (finfo.max^(1/4)), so the loop rejects the step with its smallest
            # factor instead of reporting a non-finite solution.
            big = (y.detach().abs() + 1).mul_(torch.finfo(y.dtype).max ** 0.25)
        return (torch.where(singular, y, y_new), probe), torch.where(singular, big, err)

    def _coefficients(self, like: Tensor) -> tuple[list[Tensor], Tensor]:
        """The tableau as tensors on ``like``'s dtype and device (cached): per stage ``i`` a ``(2, i + 1)`` matrix
        (rows ``a_i·`` and ``γ c_i·``, last column ``0`` and ``d_i`` for ``h^2 γ f_t``), and the ``(K, s)`` rows
        ``m``, ``m - m_hat`` and, with a continuous extension, its two rows."""
        key = (like.dtype, like.device)
        cached = self._tensors.get(key)
        if cached is None:
            tab = self.tableau
            stage = [
                torch.tensor(
                    [[*tab.a[i], 0.0], [*(tab.gamma * c for c in tab.c[i]), tab.d[i]]],
                    dtype=like.dtype,
                    device=like.device,
                )
                for i in range(tab.stages)
            ]
            rows = [tab.m, tab.m_err, *(tab.dense or ())]
            cached = (stage, torch.tensor(rows, dtype=like.dtype, device=like.device))
            self._tensors[key] = cached
        return cached

    def dense_terms(self, func: RHS | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(y_n (B, D), h (B,), R (B, 3, D))`` of the last step: ``y(t_n + θh) = y_n + h Σ_k θ^k R_k`` with
        ``R_1 = (y_new - y_n + w_1)/h``, ``R_2 = (w_2 - w_1)/h``, ``R_3 = -w_2/h`` (a row with ``h = 0`` has
        ``U = 0`` and gets ``R = 0``). Carries the step's graph when the step was taken with one; ``func`` is
        unused (no extra stages)."""
        if self._last is None:
            raise RuntimeError(f"{self!r} has taken no step with a continuous extension yet.")
        y, h, y_new, w1, w2 = self._last
        inv_h = torch.where(h == 0, torch.ones_like(h), h).reciprocal().unsqueeze(-1)
        R = torch.stack(((y_new - y + w1) * inv_h, (w2 - w1) * inv_h, -w2 * inv_h), dim=1)
        return y, h, R
