"""Explicit Runge–Kutta stepping driven by a :class:`~physnode.solvers.tableau.Tableau`."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from .._breakpoints import fresh_derivative
from ..dense import dense_terms, theta_powers
from .base import RHS, Solver, State
from .tableau import Tableau

__all__ = ["ExplicitRK", "linear_combination", "weighted_sum"]


def linear_combination(coeffs: tuple[float, ...], ks: list[Tensor]) -> Tensor | None:
    """Return ``sum_j coeffs[j] * ks[j]`` skipping zero coefficients (``None`` when all are zero)."""
    acc: Tensor | None = None
    for a, k in zip(coeffs, ks, strict=False):
        if a == 0.0:
            continue
        acc = k * a if acc is None else acc.add_(k, alpha=a)
    return acc


def weighted_sum(coeffs: tuple[float, ...], ks: list[Tensor]) -> Tensor:
    """Return ``sum_j coeffs[j] * ks[j]`` (zeros shaped like ``ks[0]`` when every coefficient is zero)."""
    acc = linear_combination(coeffs, ks)
    return torch.zeros_like(ks[0]) if acc is None else acc


class ExplicitRK(Solver):
    """Explicit Runge–Kutta method; subclasses only set :attr:`tableau` (the ``name`` comes from it).

    With an FSAL tableau the state is ``(y, f(t, y))`` so the first stage of a step reuses the last stage of
    the previous accepted step; otherwise the state is ``(y,)``.

    Parameters
    ----------
    adaptive
        ``None`` (default): adaptive exactly when the tableau has an embedded error estimate. ``False`` runs an
        embedded pair with fixed steps (``step_size`` required), e.g. for order studies.
    """

    tableau: ClassVar[Tableau]

    def __init__(self, adaptive: bool | None = None) -> None:
        tab = self.tableau
        if adaptive and not tab.adaptive:
            raise ValueError(
                f"method {tab.name!r} has no embedded error estimate and cannot adapt its step; pass step_size=... "
                "or choose an adaptive method such as 'dopri5'."
            )
        self.order = tab.order
        self.adaptive = tab.adaptive if adaptive is None else bool(adaptive)
        low = tab.order if tab.embedded_order is None else min(tab.order, tab.embedded_order)
        self.error_order = low + 1
        self._pair = tab.stiffness_pair if self.adaptive else None
        # FSAL tableaux whose last stage is evaluated at the new solution (last row of a = b, b_s = 0: dopri5,
        # tsit5, bosh3): that stage input is y_new, computed by the same operations, so it is reused.
        last = tab.stages - 1
        self._last_is_new = (
            tab.fsal and tab.b[last] == 0.0 and tuple(tab.a[last][:last]) == tuple(tab.b[:last]) and tab.c[last] == 1.0
        )
        self.stability_boundary = tab.real_stability_boundary if self._pair is not None else None
        #: ``(k_i, k_j, Y_i, Y_j)`` of the last step for :meth:`stiffness_terms` (references, no copies).
        self._probe: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
        self.dense_order = tab.dense_order
        #: ``(t, y, h, ks)`` of the last step for :meth:`dense_terms` (references, no copies).
        self._last: tuple[Tensor, Tensor, Tensor, list[Tensor]] | None = None
        #: The extra stages of the last step's continuous extension, once evaluated (``tableau.dense_c``).
        self._extra: list[Tensor] | None = None
        self._dense_P: Tensor | None = None

    def init(self, func: RHS, t0: Tensor, y0: Tensor, h0: Tensor) -> State:
        if self.tableau.fsal:
            return (y0, func(t0, y0))
        return (y0,)

    def stages(
        self, func: RHS, t: Tensor, h: Tensor, y: Tensor, k1: Tensor | None = None, keep: dict | None = None
    ) -> list[Tensor]:
        """Evaluate all stage derivatives ``k_i`` of one step (``k1`` reused when given); the stage inputs
        ``Y_i`` whose indices are keys of ``keep`` are stored there."""
        tab = self.tableau
        hh = h.unsqueeze(-1)
        ks = [func(t, y) if k1 is None else k1]
        if keep is not None and 0 in keep:
            keep[0] = y
        for i in range(1, tab.stages):
            dy = linear_combination(tab.a[i], ks)
            yi = y if dy is None else torch.addcmul(y, hh, dy)
            if keep is not None and i in keep:
                keep[i] = yi
            ks.append(func(torch.add(t, h, alpha=tab.c[i]), yi))
        return ks

    def step(self, func: RHS, t: Tensor, h: Tensor, state: State) -> tuple[State, Tensor | None]:
        tab = self.tableau
        y = state[0]
        pair = self._pair
        keep: dict[int, Tensor | None] | None = None if pair is None else dict.fromkeys(pair[:2])
        if self._last_is_new:
            keep = {**(keep or {}), tab.stages - 1: None}
        # FSAL: the cached derivative, re-evaluated on a step that starts on a breakpoint (its right limit).
        ks = self.stages(func, t, h, y, fresh_derivative(func, t, y, state[1]) if tab.fsal else None, keep)
        hh = h.unsqueeze(-1)
        y_last = None if keep is None else keep.get(tab.stages - 1)
        y_new = y_last if self._last_is_new and y_last is not None else torch.addcmul(y, hh, weighted_sum(tab.b, ks))
        err = None
        if self.adaptive and tab.b_err is not None:  # adaptive implies an embedded pair (checked in __init__)
            err = hh * weighted_sum(tab.b_err, ks)
        new_state = (y_new, ks[-1]) if tab.fsal else (y_new,)
        if tab.dense is not None:
            self._last = (t, y, h, ks)  # kept until the next step (references only)
            self._extra = None
        if pair is not None and keep is not None:
            i, j = pair[:2]
            yi, yj = keep[i], keep[j]
            if yi is not None and yj is not None:
                self._probe = (ks[i], ks[j], yi, yj)  # kept until the next step (references only)
        return new_state, err

    def dense_coefficients(self, like: Tensor) -> Tensor:
        """The tableau's dense-output coefficients as a ``(K, s)`` tensor on ``like``'s device and dtype:
        ``b_i(theta) = sum_k P[k, i] theta^(k+1)``."""
        dense = self.tableau.dense
        if dense is None:
            raise ValueError(f"method {self.tableau.name!r} has no continuous extension (its tableau has no dense).")
        P = self._dense_P
        if P is None or P.device != like.device or P.dtype != like.dtype:
            P = torch.tensor(dense, dtype=like.dtype, device=like.device).T.contiguous()
            self._dense_P = P
        return P

    def dense_terms(self, func: RHS | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(y_n (B, D), h (B,), R (B, K, D))`` of the last step taken: its continuous extension is
        ``y(t_n + theta h) = y_n + h sum_k theta^k R_k`` (:func:`physnode.dense.evaluate`). Carries the step's graph
        when the step was taken with one.

        A tableau whose extension has extra stages (``tableau.dense_c``, e.g. dopri8's DOP853 extension) evaluates
        them here with ``func`` (the step's right-hand side), once per step; call it inside the step's window
        (:func:`physnode._breakpoints.window`) when the solve has breakpoints.
        """
        if self._last is None:
            raise RuntimeError(f"{self!r} has taken no step with a continuous extension yet.")
        t, y, h, ks = self._last
        if self.tableau.dense_c:
            if self._extra is None:
                if func is None:
                    raise RuntimeError(
                        f"{self!r}: the continuous extension of {self.tableau.name!r} has extra stages; pass the "
                        "step's right-hand side to dense_terms(func)."
                    )
                self._extra = self.extra_stages(func, t, h, y, ks)
            ks = ks + self._extra
        return y, h, dense_terms(self.dense_coefficients(y), ks)

    def extra_stages(self, func: RHS, t: Tensor, h: Tensor, y: Tensor, ks: list[Tensor]) -> list[Tensor]:
        """The derivatives ``k_(s+1) ..`` of the continuous extension's extra stages (``tableau.dense_c`` /
        ``dense_a``) of the step ``(t, h)`` from ``y`` with stage derivatives ``ks`` (``s`` tensors ``(B, D)``)."""
        tab = self.tableau
        hh = h.unsqueeze(-1)
        every = list(ks)
        for cm, row in zip(tab.dense_c, tab.dense_a, strict=True):
            dy = linear_combination(row, every)
            every.append(func(torch.add(t, h, alpha=cm), y if dy is None else torch.addcmul(y, hh, dy)))
        return every[len(ks) :]

    def dense_weights(self, theta: Tensor) -> Tensor:
        """Stage weights ``b_i(theta)`` ``(..., s')`` of the continuous extension at ``theta`` ``(...)``
        (``s'`` the tableau's :attr:`~physnode.solvers.tableau.Tableau.dense_stages`)."""
        P = self.dense_coefficients(theta)
        return theta_powers(theta, P.shape[0]) @ P

    def stiffness_terms(self) -> Tensor | None:
        """``(2, B)``: ``||k_j - k_i||`` and ``||Y_j - Y_i||`` of the last step, two of its stages (see
        :attr:`Tableau.stiffness_pair`); their ratio times ``|h|`` estimates ``h |lambda|``. ``None`` before the
        first adaptive step."""
        if self._probe is None:
            return None
        ki, kj, yi, yj = self._probe
        with torch.no_grad():
            return torch.linalg.vector_norm(torch.stack((kj, yj)) - torch.stack((ki, yi)), dim=-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(adaptive={self.adaptive})"
