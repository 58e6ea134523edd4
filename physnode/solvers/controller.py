"""Per-trajectory step-size control: error norms, initial step selection and the PI controller."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from .base import RHS

__all__ = ["FixedController", "PIController", "StepController"]

_Norm = TypeVar("_Norm", np.ndarray, Tensor)


class StepController:
    """Decides step sizes; every quantity is per trajectory (leading dimension ``B``).

    The controller is never differentiated: all its computations run on detached tensors.
    """

    adaptive: bool = False
    #: Bounds on the magnitude of adaptive steps (time units). The loop fails a trajectory whose rejected step
    #: was no longer than ``min_step``, and stretches no step beyond ``max_step``.
    min_step: float = 0.0
    max_step: float = math.inf

    def initial_step(self, func: RHS, t0: Tensor, y0: Tensor, f0: Tensor, span: Tensor, order: int) -> Tensor:
        """Signed first step ``(B,)`` for trajectories starting at ``t0`` ``(B,)`` and spanning ``span``."""
        raise NotImplementedError

    def error_norm(self, err: Tensor, y: Tensor, y_new: Tensor) -> Tensor:
        """Scaled RMS norm ``(B,)`` of the local error estimate ``err`` ``(B, D)``."""
        raise NotImplementedError

    def adapt(
        self, h: np.ndarray, err_norm: np.ndarray, prev_err_norm: np.ndarray, accept: np.ndarray, error_order: int
    ) -> np.ndarray:
        """Next signed step ``(B,)`` from the step just tried (host arrays in the dtype of the solve)."""
        raise NotImplementedError

    def step_norm(self, err: Tensor | None, y: Tensor, y_new: Tensor) -> Tensor:
        """The norm ``(B,)`` that decides each trajectory's step (see :meth:`accepts`): the scaled error norm of
        ``err`` ``(B, D)`` for an adaptive controller; otherwise ``0`` where ``y_new`` ``(B, D)`` is finite and
        ``inf`` where it is not. Call without gradient.

        Raises
        ------
        RuntimeError
            When the controller is adaptive and the solver returned no error estimate (``err`` is ``None``).
        """
        if not self.adaptive:
            return torch.where(torch.isfinite(y_new).all(-1), 0.0, torch.inf)
        if err is None:
            raise RuntimeError("the solver returned no error estimate but the step size is adaptive.")
        return self.error_norm(err, y, y_new)

    @staticmethod
    def accepts(norm: _Norm) -> _Norm:
        """Whether each step is accepted, from its :meth:`step_norm` (host array or tensor): ``norm <= 1``. The one
        acceptance rule of the integration loop and of the backward solves that must reproduce its decisions."""
        return norm <= 1.0


@dataclass
class FixedController(StepController):
    """Constant step ``step_size`` (signed by the direction of integration of each trajectory)."""

    step_size: float

    def initial_step(self, func: RHS, t0: Tensor, y0: Tensor, f0: Tensor, span: Tensor, order: int) -> Tensor:
        return torch.sign(span) * self.step_size

    def adapt(
        self, h: np.ndarray, err_norm: np.ndarray, prev_err_norm: np.ndarray, accept: np.ndarray, error_order: int
    ) -> np.ndarray:
        return h


@dataclass
class PIController(StepController):
    """Proportional–integral step-size controller (Gustafsson; Hairer & Wanner, *Solving ODEs II*, IV.2).

    The next step is ``h * clip(safety * e_n^(-beta1/k) * e_(n-1)^(beta2/k), factor_min, factor_max)`` with
    ``e`` the scaled RMS error norms of the last two accepted steps and ``k`` the solver's error order.
    After a rejected step only the proportional part is used and the factor is at most 1.

    Parameters
    ----------
    rtol, atol
        Relative and absolute tolerances; ``atol`` may be a tensor broadcastable to ``(D,)``.
    first_step
        Optional magnitude of the first step (time units); chosen automatically when ``None``.
    min_step, max_step
        Bounds on the magnitude of every proposed step, the first included (time units).
    norm
        Error norm of the scaled error ``err / (atol + rtol max(|y|, |y_new|))`` ``(B, D) -> (B,)``; ``None``: RMS.
    """

    rtol: float
    atol: float | Tensor
    safety: float = 0.9
    factor_min: float = 0.2
    factor_max: float = 10.0
    beta1: float = 0.7
    beta2: float = 0.4
    first_step: float | None = None
    adaptive: bool = True
    min_step: float = 0.0
    max_step: float = math.inf
    norm: Callable[[Tensor], Tensor] | None = None

    def __post_init__(self) -> None:
        # Whether some component has atol = 0 (validated tolerances: one host check per solve, not per step).
        atol = self.atol
        self._zero_atol = bool((atol == 0).any()) if isinstance(atol, Tensor) else atol == 0

    def error_norm(self, err: Tensor, y: Tensor, y_new: Tensor) -> Tensor:
        scale = torch.maximum(y.abs(), y_new.abs()).mul_(self.rtol).add_(self.atol)
        if self._zero_atol:
            # A component that is exactly 0 under atol = 0 would give 0 / 0: the smallest normal number as floor
            # makes a zero error count as zero (and a nonzero one as far too large).
            scale.clamp_min_(torch.finfo(scale.dtype).tiny)
        # NaN (a non-finite trial state) propagates and is treated as a failed step by the loop.
        if self.norm is not None:
            return self._custom_norm(err.div(scale))
        return torch.linalg.vector_norm(err.div(scale), dim=-1).mul_(err.shape[-1] ** -0.5)

    def _custom_norm(self, scaled: Tensor) -> Tensor:
        """``norm(scaled)`` checked to be a real ``(B,)`` tensor (host metadata only: no synchronisation)."""
        assert self.norm is not None
        out = self.norm(scaled)
        B = scaled.shape[0]
        if not isinstance(out, Tensor) or out.shape != (B,) or not out.is_floating_point():
            got = f"{tuple(out.shape)} {out.dtype}" if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"norm must map the scaled error of shape {tuple(scaled.shape)} to one real value per trajectory, "
                f"shape ({B},); it returned {got}. Reduce over the last axis, e.g. lambda e: e.abs().amax(-1)."
            )
        # A negative norm would accept every step (norm <= 1) and let the steps grow without bound: it fails the
        # step like a NaN does (on the device, no synchronisation), and the loop names norm= as the cause.
        return torch.where(out >= 0, out, torch.full_like(out, math.nan))

    def initial_step(self, func: RHS, t0: Tensor, y0: Tensor, f0: Tensor, span: Tensor, order: int) -> Tensor:
        direction = torch.sign(span)
        if self.first_step is not None:
            h = torch.minimum(torch.full_like(span, self.first_step), span.abs())
            return direction * h
        return direction * self._bounded(self._automatic_step(func, t0, y0, f0, span, order))

    def _bounded(self, h: Tensor) -> Tensor:
        """``h`` (magnitudes) clipped to ``[min_step, max_step]``."""
        if self.min_step > 0 or self.max_step != math.inf:
            return h.clamp(min=self.min_step, max=self.max_step)
        return h

    def _automatic_step(self, func: RHS, t0: Tensor, y0: Tensor, f0: Tensor, span: Tensor, order: int) -> Tensor:
        """Magnitude of the first step ``(B,)`` by Hairer's rule."""
        direction = torch.sign(span)
        # Hairer, Nørsett & Wanner, Solving ODEs I, II.4 ("starting step size"), per trajectory.
        scale = y0.abs().mul(self.rtol).add_(self.atol)
        d0 = (y0 / scale).square().mean(-1).sqrt()
        d1 = (f0 / scale).square().mean(-1).sqrt()
        small = torch.as_tensor(1e-6, dtype=y0.dtype, device=y0.device)
        h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), small, 0.01 * d0 / d1)
        h0 = torch.minimum(h0, span.abs())
        y1 = y0 + (direction * h0).unsqueeze(-1) * f0
        f1 = func(t0 + direction * h0, y1)
        d2 = ((f1 - f0) / scale).square().mean(-1).sqrt() / h0
        dmax = torch.maximum(d1, d2)
        h1 = torch.where(
            dmax <= 1e-15,
            torch.maximum(small, h0 * 1e-3),
            (0.01 / dmax) ** (1.0 / (order + 1)),
        )
        h = torch.minimum(torch.minimum(100 * h0, h1), span.abs())
        return torch.nan_to_num(h, nan=1e-6)

    def adapt(
        self, h: np.ndarray, err_norm: np.ndarray, prev_err_norm: np.ndarray, accept: np.ndarray, error_order: int
    ) -> np.ndarray:
        k = float(error_order)
        # err_norm >= 1e-10 and prev_err_norm >= 1e-4 keep the powers finite; NaN (a non-finite trial step)
        # propagates without a floating-point warning and is mapped to the smallest factor below.
        e = np.maximum(err_norm, 1e-10)
        factor_acc = np.minimum(
            np.maximum(self.safety * e ** (-self.beta1 / k) * prev_err_norm ** (self.beta2 / k), self.factor_min),
            self.factor_max,
        )
        factor_rej = np.minimum(np.maximum(self.safety * e ** (-1.0 / k), self.factor_min), 1.0)
        factor = np.where(accept, factor_acc, factor_rej)
        factor[np.isnan(factor)] = self.factor_min
        h_new = h * factor
        if self.min_step > 0 or self.max_step != math.inf:
            h_new = np.sign(h) * np.clip(np.abs(h_new), self.min_step, self.max_step)
        return h_new.astype(h.dtype)
