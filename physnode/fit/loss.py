"""Masked losses of a fit: weighted least squares (``"mse"``) and a Gaussian likelihood (``"gaussian_nll"``).

Both compare the observed model state with the data only where ``mask`` is true; entries outside the mask are
never read into the arithmetic (``torch.where``), so they may hold NaN or garbage. Both are *sums* over the
observed entries divided by a normalising count ``n_norm`` that the caller computes over the whole data set (all
ranks of a distributed fit), so the loss of a shard is an exact share of the global loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["LOSSES", "TIME_WEIGHTS", "gaussian_nll", "masked_errors", "mse", "time_weights"]

#: Accepted ``loss=`` names.
LOSSES: tuple[str, ...] = ("mse", "gaussian_nll")

#: Accepted ``time_weight=`` names; ``s = (t - t_lo) / (t_hi - t_lo)`` runs from 0 to 1 over the data's times.
TIME_WEIGHTS: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda s: 1.0 + s,
    "exp": torch.exp,
}


def masked_errors(pred: Tensor, values: Tensor, mask: Tensor) -> Tensor:
    """``pred - values`` where ``mask`` is true and exactly ``0`` elsewhere; shapes ``(N, T, D)``."""
    return torch.where(mask, pred - torch.where(mask, values, torch.zeros_like(values)), torch.zeros_like(pred))


def mse(errors: Tensor, weight: Tensor | None, n_norm: float) -> Tensor:
    """``Σ w(t) e² / n_norm`` over the entries of ``errors (N, T, D)`` (zeros where unobserved).

    ``weight`` is ``(N, T)`` (time weights) or ``None`` (all 1). Returns a 0-d tensor.
    """
    sq = errors.square()
    if weight is not None:
        sq = sq * weight.unsqueeze(-1)
    return sq.sum() / n_norm


def gaussian_nll(errors: Tensor, mask: Tensor, log_sigma: Tensor, weight: Tensor | None, n_norm: float) -> Tensor:
    """Negative log-likelihood of independent Gaussian noise with a learnable standard deviation per channel.

    ``Σ_observed w(t) [e² / (2 σ_d²) + log σ_d + ½ log 2π] / n_norm`` with ``σ_d = exp(log_sigma[d])`` in the
    units of channel ``d``; ``errors`` and ``mask`` are ``(N, T, D)``, ``log_sigma`` is ``(D,)``.
    """
    inv_var = torch.exp(-2.0 * log_sigma)
    per = 0.5 * errors.square() * inv_var + log_sigma + 0.5 * math.log(2.0 * math.pi)
    per = torch.where(mask, per, torch.zeros_like(per))
    if weight is not None:
        per = per * weight.unsqueeze(-1)
    return per.sum() / n_norm


def time_weights(
    spec: str | Callable[[Tensor], Tensor] | None, times: Tensor, t_lo: float, t_hi: float
) -> Tensor | None:
    """Per-time weights ``(N, T)`` of the loss, or ``None`` for uniform weights.

    Parameters
    ----------
    spec
        ``None``; ``"linear"``: ``w = 1 + s``; ``"exp"``: ``w = exp(s)``, where ``s = (t - t_lo) / (t_hi - t_lo)``
        runs from 0 at the first to 1 at the last observation time of the data set, so later observations (the
        ones that pin down the slow, long-range effects, as in the ACA three-body experiment) weigh up to 2 or
        ``e`` times more; or a callable ``w(t)`` of the times ``(N, T)`` returning non-negative weights of a
        shape broadcastable to ``(N, T)``.
    times
        ``(N, T)`` times of the solve grid (time units).
    t_lo, t_hi
        First and last valid observation time over the whole data set.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec not in TIME_WEIGHTS:
            raise ValueError(
                f"unknown time_weight {spec!r}; choose one of {sorted(TIME_WEIGHTS)} or pass a callable w(t) -> "
                "weights of shape (N, T)."
            )
        span = t_hi - t_lo if t_hi > t_lo else 1.0
        return TIME_WEIGHTS[spec]((times - t_lo) / span)
    if not callable(spec):
        raise TypeError(f"time_weight must be None, 'linear', 'exp' or a callable w(t), got {type(spec).__name__}.")
    w = spec(times)
    if not isinstance(w, Tensor):
        try:
            w = torch.as_tensor(w, dtype=times.dtype, device=times.device)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"time_weight(t) must return weights (a tensor of shape {tuple(times.shape)} or one that "
                f"broadcasts to it), got {type(w).__name__} {w!r:.60}."
            ) from None
    try:
        w = torch.broadcast_to(w.to(device=times.device, dtype=times.dtype), times.shape)
    except RuntimeError:
        raise ValueError(
            f"time_weight(t) returned shape {tuple(w.shape)}, not broadcastable to the times' shape "
            f"{tuple(times.shape)}."
        ) from None
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("time_weight(t) must return finite, non-negative weights.")
    return w
