"""Multiple shooting: split each trajectory's time grid into segments with learnable starting states.

A long horizon is cut into ``K`` segments of (almost) equal numbers of grid points. Segment ``k`` starts at
grid index ``b_k = k (L - 1)`` from its own learnable state ``s_{i,k}`` (segment 0 from the trajectory's
initial state) and runs to ``b_{k+1}``; all ``N·K`` segments are solved as one batch. A continuity penalty
``penalty · Σ |y_{k-1}(t_{b_k}) − s_{i,k}|² / n_cont`` (``n_cont`` the number of matched components) pulls the
pieces together. Each observation is counted once: a boundary point belongs to the segment that ends there,
except the last point of the grid. With ``segments=1`` the layout is the plain single-shooting solve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.trajectories import solver_ready_times

__all__ = ["MultipleShooting", "SegmentLayout", "resolve_shooting"]


@dataclass(frozen=True)
class MultipleShooting:
    """Multiple-shooting options.

    Parameters
    ----------
    segments
        Number of segments ``K >= 1`` per trajectory (``1`` is single shooting).
    penalty
        Weight of the continuity penalty (``>= 0``), relative to the data term.
    """

    segments: int
    penalty: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.segments, int) or isinstance(self.segments, bool) or self.segments < 1:
            raise ValueError(f"multiple_shooting segments must be a positive integer, got {self.segments!r}.")
        if not isinstance(self.penalty, (int, float)) or isinstance(self.penalty, bool) or not self.penalty >= 0:
            raise ValueError(f"multiple_shooting penalty must be a non-negative number, got {self.penalty!r}.")
        if not math.isfinite(self.penalty):
            raise ValueError(f"multiple_shooting penalty must be finite, got {self.penalty!r}.")


def resolve_shooting(spec: int | Mapping | MultipleShooting | None) -> MultipleShooting:
    """``None`` -> one segment; an int ``K`` -> ``MultipleShooting(K)``; a dict -> ``MultipleShooting(**dict)``."""
    if spec is None:
        return MultipleShooting(1)
    if isinstance(spec, MultipleShooting):
        return spec
    if isinstance(spec, int) and not isinstance(spec, bool):
        return MultipleShooting(spec)
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"segments", "penalty"}
        if unknown or "segments" not in spec:
            raise ValueError(
                f"multiple_shooting dict needs 'segments' and optionally 'penalty'; got keys {sorted(spec)}."
            )
        return MultipleShooting(**spec)
    raise TypeError(
        "multiple_shooting must be None, a number of segments, a dict {'segments': K, 'penalty': w} or a "
        f"MultipleShooting, got {type(spec).__name__}."
    )


class SegmentLayout:
    """Index bookkeeping of ``K`` segments of ``L`` points on an ``(N, T)`` solve grid.

    Parameters
    ----------
    times
        ``(N, T)`` solver-ready solve grid.
    lengths
        ``(N,)`` valid points of each row of the grid.
    segments
        ``K``; must satisfy ``K <= T - 1`` when ``K > 1``.
    """

    def __init__(self, times: Tensor, lengths: Tensor, segments: int) -> None:
        N, T = times.shape
        K = segments
        if K > 1 and K > T - 1:
            raise ValueError(
                f"multiple_shooting with {K} segments needs at least {K + 1} grid points per trajectory; the data "
                f"have {T}. Use fewer segments."
            )
        self.K = K
        self.L = T if K == 1 else math.ceil((T - 1) / K) + 1
        T_ext = K * (self.L - 1) + 1
        self.T, self.T_ext = T, T_ext
        if T_ext > T:
            pad = torch.full((N, T_ext - T), math.nan, dtype=times.dtype, device=times.device)
            times = solver_ready_times(torch.cat([times, pad], dim=1), lengths)
        k = torch.arange(K, device=times.device).unsqueeze(1)
        j = torch.arange(self.L, device=times.device).unsqueeze(0)
        self.index = k * (self.L - 1) + j  # (K, L) positions on the extended grid
        self.times = times[:, self.index]  # (N, K, L)
        keep = (j < self.L - 1) | (k == K - 1)
        self.keep = keep & (self.index < T)  # (K, L): points whose data this segment scores

    def gather(self, x: Tensor, fill: float | bool) -> Tensor:
        """``x (N, T, ...)`` on the segment layout ``(N, K, L, ...)``; grid extension entries get ``fill``."""
        if self.T_ext > self.T:
            shape = (x.shape[0], self.T_ext - self.T, *x.shape[2:])
            x = torch.cat([x, torch.full(shape, fill, dtype=x.dtype, device=x.device)], dim=1)
        return x[:, self.index]

    def starts(self, trajectory: Tensor) -> Tensor:
        """``(N, K-1, S)`` states of a full-grid trajectory ``(N, T, S)`` at the segment starts ``b_1 .. b_{K-1}``."""
        b = self.index[1:, 0]
        return trajectory[:, b]
