"""Argument checks shared by the blocks of :mod:`physnode.nn` (errors say what was received, expected, and the fix)."""

from __future__ import annotations

from torch import Tensor

__all__ = ["check_dim", "check_last_dim", "check_returned"]


def check_dim(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an ``int >= minimum``, or a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def check_last_dim(name: str, x: object, expected: int, fix: str) -> Tensor:
    """``x`` as a tensor of at least one dimension whose last axis has size ``expected``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(x).__name__}.")
    if x.ndim < 1 or x.shape[-1] != expected:
        raise ValueError(f"{name} must have shape (..., {expected}), got {tuple(x.shape)}. {fix}")
    return x


def check_returned(who: str, out: object, expected: tuple[int, ...], fix: str) -> Tensor:
    """The value returned by a user callable ``who``: a tensor of shape ``expected``."""
    if not isinstance(out, Tensor):
        raise TypeError(f"{who} must return a tensor, got {type(out).__name__}.")
    if tuple(out.shape) != tuple(expected):
        raise ValueError(f"{who} returned shape {tuple(out.shape)}; expected {tuple(expected)}. {fix}")
    return out
