r"""Dense output: the continuous extension of every accepted step, and the states it gives between steps.

An explicit Runge–Kutta step from ``(t_n, y_n)`` of size ``h`` with stage derivatives ``k_i`` carries a
continuous extension (:attr:`~physnode.solvers.tableau.Tableau.dense`)

.. math::

    y(t_n + θ h) ≈ y_n + h \sum_i b_i(θ) k_i = y_n + h \sum_{k=1}^{K} θ^k R_k, \qquad
    R_k = \sum_i P_{ik} k_i, \qquad 0 ≤ θ ≤ 1,

with ``P`` the tableau's polynomial coefficients. :func:`dense_terms` forms ``R`` ``(B, K, D)`` once per step and
:func:`evaluate` the states at any ``θ`` ``(B, M)`` with one batched matrix product. Both are plain tensor
operations, so the outputs are differentiable through the step like the step itself.

:class:`DenseOutput` keeps ``(t_n, h_n, y_n, R_n)`` of every iteration of a solve and answers
``Solution.interpolate(t)`` per trajectory (each trajectory its own steps).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["DenseOutput", "dense_terms", "evaluate", "theta_powers"]


def theta_powers(theta: Tensor, degree: int) -> Tensor:
    """``(..., degree)``: ``theta, theta^2, ..., theta^degree`` of ``theta`` ``(...)``."""
    return torch.cumprod(theta.unsqueeze(-1).expand(*theta.shape, degree), dim=-1)


def dense_terms(coefficients: Tensor, ks: list[Tensor]) -> Tensor:
    """``R`` ``(B, K, D)`` of one step: ``R_k = sum_i P_ik k_i`` from the stages ``ks`` (``s`` tensors ``(B, D)``)
    and the tableau's coefficients ``P`` as a ``(K, s)`` tensor (transposed)."""
    return torch.matmul(coefficients, torch.stack(ks, dim=1))


def evaluate(y: Tensor, h: Tensor, R: Tensor, theta: Tensor) -> Tensor:
    """States ``(B, M, D)`` at ``t_n + theta h`` of one step per trajectory.

    Parameters
    ----------
    y
        States at the start of the step, ``(B, D)``.
    h
        Steps, ``(B,)`` (time units, signed).
    R
        Polynomial terms of the step, ``(B, K, D)`` (:func:`dense_terms`).
    theta
        Fractions of the step, ``(B, M)``, in ``[0, 1]``.
    """
    weights = theta_powers(theta, R.shape[1]) * h.view(-1, 1, 1)
    return y.unsqueeze(1) + torch.bmm(weights, R)


class DenseOutput:
    """The continuous extension of every accepted step of a solve, per trajectory.

    Built by the integration loop (:meth:`append` once per iteration) when the solve asks for a dense solution;
    :meth:`__call__` evaluates it. The stored ``y_n`` and ``R_n`` keep their autograd graph (with
    ``grad="direct"`` the interpolated states are differentiable with respect to ``y0`` and the parameters).

    Parameters
    ----------
    t0, t_end
        Initial and last observation time of each trajectory, ``(B,)`` host float64 arrays.
    y0
        Initial states ``(B, D)``.
    """

    def __init__(self, t0: np.ndarray, t_end: np.ndarray, y0: Tensor) -> None:
        self.t0, self.t_end, self.y0 = t0, t_end, y0
        self.direction = np.where(t_end < t0, -1.0, 1.0)
        self._t: list[np.ndarray] = []
        self._h: list[np.ndarray] = []
        self._accept: list[np.ndarray] = []
        self._y: list[Tensor] = []
        self._R: list[Tensor] = []

    def append(self, t: np.ndarray, h: np.ndarray, accept: np.ndarray, y: Tensor, R: Tensor) -> None:
        """Record one iteration: start times ``t``, steps ``h``, accept mask ``(B,)``, ``y_n`` ``(B, D)`` and
        ``R_n`` ``(B, K, D)`` (rows that were rejected are kept but never evaluated)."""
        if accept.any():
            self._t.append(np.asarray(t, dtype=np.float64))
            self._h.append(np.asarray(h, dtype=np.float64))
            self._accept.append(accept.copy())
            self._y.append(y)
            self._R.append(R)

    def __call__(self, t: Tensor) -> Tensor:
        """States at times ``t`` ``(B, M)`` of each trajectory, ``(B, M, D)``.

        Raises
        ------
        ValueError
            A time outside the solved interval ``[t_0, t_end]`` of its trajectory, or not finite.
        """
        B, M = t.shape
        tq = t.detach().cpu().numpy().astype(np.float64)
        if not np.isfinite(tq).all():
            b, m = (int(x[0]) for x in np.nonzero(~np.isfinite(tq)))
            raise ValueError(
                f"t[{b}, {m}] = {float(tq[b, m])!r} is not a finite time; the dense output is evaluated at finite "
                "times within each trajectory's solved interval. Remove NaN/Inf entries (e.g. padding) first."
            )
        d = self.direction[:, None]
        outside = (d * (tq - self.t0[:, None]) < 0) | (d * (tq - self.t_end[:, None]) > 0)
        if outside.any():
            b, m = (int(x[0]) for x in np.nonzero(outside))
            raise ValueError(
                f"t[{b}, {m}] = {float(tq[b, m])!r} lies outside the solved interval [{float(self.t0[b])!r}, "
                f"{float(self.t_end[b])!r}] of "
                f"trajectory {b}: the dense output covers only the interval between the initial and the last "
                "observation time. Solve over a longer interval to evaluate there."
            )
        out = self.y0.unsqueeze(1).expand(B, M, self.y0.shape[-1])
        if not self._t:
            return out.clone()
        ts, hs, acc = np.stack(self._t), np.stack(self._h), np.stack(self._accept)  # (N, B)
        # Accepted steps of each trajectory first, in order: end times (direction-adjusted, +inf padding).
        order = np.argsort(~acc, axis=0, kind="stable")
        n_acc = acc.sum(axis=0)
        width = max(int(n_acc.max()), 1)
        order = order[:width]
        ends = np.take_along_axis((ts + hs) * self.direction, order, axis=0).T  # (B, width)
        ends[np.arange(width)[None, :] >= n_acc[:, None]] = np.inf
        # The first accepted step ending at or after the query covers it (a query at t_0 takes the first step).
        pos = torch.searchsorted(
            torch.from_numpy(np.ascontiguousarray(ends)), torch.from_numpy(np.ascontiguousarray(tq * d))
        ).numpy()
        pos = np.minimum(pos, np.maximum(n_acc[:, None] - 1, 0))
        it = np.take_along_axis(order.T, pos, axis=1)  # (B, M) iteration index
        rows = np.arange(B)[:, None]
        h = hs[it, rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            theta = np.where(h != 0, (tq - ts[it, rows]) / h, 0.0)
        theta = np.clip(theta, 0.0, 1.0)
        dev, dtype = self.y0.device, self.y0.dtype
        it_dev = torch.from_numpy(it).to(dev)
        rows_dev = torch.arange(B, device=dev)[:, None]
        y = torch.stack(self._y)[it_dev, rows_dev]  # (B, M, D)
        R = torch.stack(self._R)[it_dev, rows_dev]  # (B, M, K, D)
        h_dev = torch.from_numpy(h).to(device=dev, dtype=dtype)
        w = theta_powers(torch.from_numpy(theta).to(device=dev, dtype=dtype), R.shape[2]) * h_dev.unsqueeze(-1)
        interp = y + torch.einsum("bmk,bmkd->bmd", w, R)
        # Trajectories that took no accepted step (a failure at the start) keep y0; times after a failed
        # trajectory's last accepted step (raise_on_failure=False) have no solution: NaN, like its outputs.
        took = torch.from_numpy(n_acc > 0).to(dev).view(B, 1, 1)
        last = np.take_along_axis(ends, np.maximum(n_acc - 1, 0)[:, None], axis=1)[:, 0]
        reached = np.where(n_acc > 0, last, self.t0 * self.direction)
        beyond = tq * d > reached[:, None] + 64 * np.finfo(np.float64).eps * np.maximum(np.abs(tq), 1.0)
        result = torch.where(took, interp, out)
        if beyond.any():
            result = result.masked_fill(torch.from_numpy(beyond).to(dev).unsqueeze(-1), float("nan"))
        return result
