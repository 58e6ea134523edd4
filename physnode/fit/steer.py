"""STEER (Ghosh et al. 2020): a random end of the fitting window per epoch, as a regulariser.

The original samples the end time of the integration uniformly in ``[T − b, T + b]``; for observation windows we
sample ``t_end`` the same way per epoch (``T`` the last observation time of the data set) and use only the
observations at ``t <= t_end`` in that epoch's loss. Epochs with ``t_end >= T`` use all the data.
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_steer", "sample_end_time"]


def check_steer(b: float | None, t_lo: float, t_hi: float) -> float | None:
    """Validate ``steer=b``: ``0 < b < t_hi - t_lo`` (time units), so every epoch keeps some observations."""
    if b is None:
        return None
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or not b > 0:
        raise ValueError(f"steer must be a positive number b (time units) or None, got {b!r}.")
    if not b < t_hi - t_lo:
        raise ValueError(
            f"steer={b} must be smaller than the span of the observation times, {t_hi - t_lo:.6g} (from {t_lo:.6g} "
            f"to {t_hi:.6g}), so that t_end ~ U[T - b, T + b] keeps some observations."
        )
    return float(b)


def sample_end_time(b: float, t_hi: float, generator: torch.Generator) -> float:
    """``t_end = t_hi - b + 2 b u`` with ``u ~ U[0, 1)`` drawn from ``generator`` (one draw)."""
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    return t_hi - b + 2.0 * b * u
