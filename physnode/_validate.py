"""Input checks shared by :func:`physnode.odeint`, :func:`physnode.sdeint` and :class:`physnode.SolveOptions`:
errors say what was received, what was expected and how to fix it. The checks of the solve options themselves
(tolerances, steps, names) live in :mod:`physnode.options`."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from torch import Tensor

__all__ = ["check_int", "check_real", "check_times", "check_y0", "describe"]


def describe(value: object) -> str:
    """``repr`` of a received value with its type, for error messages: ``True (bool)``, ``'1e-3' (str)``."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_real(name: str, value: object, what: str) -> float:
    """Return ``value`` as a Python float when it is a real number: ``int``, ``float``, NumPy scalars and 0-d
    real tensors qualify; ``bool`` does not (``True`` is no tolerance). ``what`` completes "must be ..."."""
    if isinstance(value, Tensor) and value.ndim == 0 and not value.is_complex() and value.dtype != torch.bool:
        if value.device.type == "meta":
            raise ValueError(f"{name} is a meta tensor (shape only, no value); pass a number.")
        return float(value.detach())
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {what}, got {describe(value)}.")
    return float(value)


def check_int(name: str, value: object, what: str) -> int:
    """Return ``value`` as an ``int`` when it is an integer (Python or NumPy, not ``bool``, not a float)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {what}, got {describe(value)}.")
    return int(value)


def check_y0(y0: object) -> Tensor:
    """Validate an initial state: a finite float32/float64 tensor of shape ``(D,)`` or ``(B, D)``."""
    if not isinstance(y0, Tensor):
        raise TypeError(f"y0 must be a torch.Tensor, got {type(y0).__name__}.")
    if y0.device.type == "meta":
        raise ValueError(
            "y0 is a meta tensor (shape only, no values) and cannot be integrated; create it on 'cpu' or 'cuda'."
        )
    if y0.layout != torch.strided:
        raise TypeError(f"y0 must be a dense tensor, got layout {y0.layout}; convert it with y0.to_dense().")
    if y0.is_complex():
        raise TypeError(
            f"y0 must be real (float32 or float64), got {y0.dtype}: physnode integrates real states. Stack the real "
            "and imaginary parts, torch.cat([y0.real, y0.imag], -1), and write func for that state."
        )
    if y0.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"y0 must be float32 or float64, got {y0.dtype}. Convert it with y0.double().")
    if y0.ndim not in (1, 2) or y0.shape[-1] == 0 or (y0.ndim == 2 and y0.shape[0] == 0):
        raise ValueError(f"y0 must have shape (D,) or (B, D) with B, D >= 1, got {tuple(y0.shape)}.")
    if not bool(torch.isfinite(y0.detach()).all()):
        bad = torch.nonzero(~torch.isfinite(y0.detach()))[0].tolist()
        raise ValueError(f"y0 contains NaN or Inf (first at index {tuple(bad)}).")
    return y0


def check_times(t: object, y0: Tensor, *, min_times: int = 1, forward_only: str | None = None) -> Tensor:
    """Validate observation times for ``y0`` and return them detached, in ``y0``'s dtype.

    Parameters
    ----------
    t
        ``(T,)`` or ``(B, T)`` times, strictly monotonic along the last axis.
    y0
        The (validated) initial state.
    min_times
        Smallest allowed ``T``.
    forward_only
        When given, the times must increase; the string says why (it ends the error message's first clause).
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"t must be a torch.Tensor of observation times, got {type(t).__name__}.")
    if t.layout != torch.strided:
        raise TypeError(f"t must be a dense tensor, got layout {t.layout}; convert it with t.to_dense().")
    if not t.is_floating_point():
        raise TypeError(f"t must have a floating-point dtype, got {t.dtype}. Convert it, e.g. t.to(y0.dtype).")
    if t.device != y0.device:
        raise ValueError(
            f"t is on {t.device} but y0 is on {y0.device}; move both to the same device (t.to(y0.device))."
        )
    if t.ndim not in (1, 2) or t.shape[-1] < min_times:
        extra = (
            f" with T >= {min_times} (the initial time and at least one observation)"
            if min_times > 1
            else " with T >= 1 (t[..., 0] is the initial time)"
        )
        raise ValueError(f"t must have shape (T,) or (B, T){extra}, got {tuple(t.shape)}.")
    if t.ndim == 2 and (y0.ndim != 2 or t.shape[0] != y0.shape[0]):
        raise ValueError(
            f"per-trajectory times t of shape {tuple(t.shape)} need y0 of shape (B, D) with B = {t.shape[0]}; "
            f"got y0 of shape {tuple(y0.shape)}."
        )
    if t.ndim == 2 and t.shape[0] == 0:
        raise ValueError(f"t must have shape (T,) or (B, T) with B >= 1, got {tuple(t.shape)}.")
    t = t.detach()
    if not bool(torch.isfinite(t).all()):
        bad = torch.nonzero(~torch.isfinite(t))[0].tolist()
        raise ValueError(f"t contains NaN or Inf (first at index {tuple(bad)}); observation times must be finite.")
    tt = t.to(y0.dtype)
    if not bool(torch.isfinite(tt).all()):
        raise ValueError(f"t overflows y0's dtype {y0.dtype}; rescale time.")
    if tt.shape[-1] > 1:
        d = tt.diff(dim=-1)
        sign = torch.ones_like(d[..., :1]) if forward_only else torch.sign(d[..., :1])
        bad = (d * sign) <= 0
        if bool(bad.any()):
            idx = torch.nonzero(bad)[0].tolist()
            k = idx[-1]
            at = ", ".join(map(str, (*idx[:-1], k + 1)))
            before = ", ".join(map(str, (*idx[:-1], k)))
            t_at, t_before = float(tt[(*idx[:-1], k + 1)]), float(tt[(*idx[:-1], k)])
            if forward_only:
                what = f"strictly increasing along its last axis ({forward_only}); t[{at}] = {t_at:.10g} <= "
            else:
                what = (
                    f"strictly monotonic along its last axis; t[{at}] = {t_at:.10g} does not continue the "
                    "direction set by t[..., 0] -> t[..., 1] after "
                )
            raise ValueError(
                f"t must be {what}t[{before}] = {t_before:.10g}. Sort the observation times of each trajectory and "
                "remove duplicates."
            )
    return tt
