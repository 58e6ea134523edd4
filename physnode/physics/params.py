"""Named physical quantities: known constants (buffers) or learnable unknowns kept in their domain."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["Param"]


def _inverse_softplus(x: Tensor) -> Tensor:
    """``softplus^{-1}(x) = x + log(1 - exp(-x))`` for ``x > 0``, stable for small and large ``x``."""
    return x + torch.log(-torch.expm1(-x))


class Param(nn.Module):
    """A named physical quantity of a :class:`~physnode.physics.PhysicsModel`.

    A known constant (``learnable=False``) is stored as a buffer. A learnable unknown is stored as an
    unconstrained ``nn.Parameter`` ``raw`` and mapped onto its domain each time it is read:

    ============================  ==========================================  ===========================
    constraint                    value = map(raw)                            domain
    ============================  ==========================================  ===========================
    none                          ``raw``                                     the real line
    ``positive=True``             ``max(softplus(raw), tiny)``                ``value > 0``
    ``bounds=(lo, hi)``           ``lo + (hi - lo) * sigmoid(raw)``           ``lo <= value <= hi``
    ============================  ==========================================  ===========================

    so any optimiser step, however large, keeps the value in its domain (up to floating-point saturation of
    the sigmoid: a saturated sigmoid returns the bound itself; ``tiny`` is the smallest normal number of the dtype).

    Parameters
    ----------
    value
        Initial (or known) value: a number, or a list / tensor for a vector of quantities (e.g. the masses of
        :class:`~physnode.physics.NBodyGravity`). Numbers are stored in float64 so physical constants keep
        their digits (scalar parameters do not promote a float32 state: 0-d tensors follow the state's dtype);
        a floating-point tensor keeps its dtype. ``model.to(dtype)`` converts them like any module.
    learnable
        Whether the quantity is fitted (``nn.Parameter``) or a known constant (buffer).
    positive
        Constrain the value to be strictly positive (softplus map); the initial value must be ``> 0``.
    bounds
        ``(lo, hi)`` with ``lo < hi``: constrain the value to the interval (sigmoid map); the initial value of a
        learnable quantity must lie strictly inside. With ``positive=True`` ``lo`` must be ``>= 0``.
    units
        Free-text units (e.g. ``"N/m"``), kept for read-back and reports; not used in computations.

    Examples
    --------
    >>> k = Param(2.0, positive=True, units="N/m")
    >>> float(k())
    2.0
    """

    raw: Tensor

    def __init__(
        self,
        value: float | Sequence[float] | Tensor,
        *,
        learnable: bool = True,
        positive: bool = False,
        bounds: tuple[float, float] | None = None,
        units: str | None = None,
    ) -> None:
        super().__init__()
        for flag_name, flag in (("learnable", learnable), ("positive", positive)):
            if not isinstance(flag, bool):
                raise TypeError(f"Param {flag_name} must be True or False, got {flag!r}.")
        if units is not None and not isinstance(units, str):
            raise TypeError(f"Param units must be a string such as 'N/m' (or None), got {type(units).__name__}.")
        v = self._as_tensor(value)
        if v.numel() == 0:
            raise ValueError(
                f"Param value must hold at least one number, got an empty {type(value).__name__} of shape "
                f"{tuple(v.shape)}; give a number (Param(1.0)) or a non-empty list."
            )
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"Param value must be finite, got {v.tolist()}.")
        if positive and not bool((v > 0).all()):
            raise ValueError(
                f"Param(positive=True) needs a strictly positive value, got {v.tolist()}. Give a positive "
                "initial guess or drop positive=True."
            )
        lo = hi = None
        if bounds is not None:
            if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
                raise ValueError(f"Param bounds must be a pair (lo, hi), got {bounds!r}.")
            try:
                lo, hi = float(bounds[0]), float(bounds[1])
            except (TypeError, ValueError):
                raise ValueError(f"Param bounds must be two numbers (lo, hi), got {bounds!r}.") from None
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"Param bounds must be finite, got ({lo}, {hi}); use positive=True for (0, inf).")
            if not lo < hi:
                raise ValueError(f"Param bounds must satisfy lo < hi, got lo = {lo} >= hi = {hi}. Swap them.")
            if positive and lo < 0:
                raise ValueError(f"Param(positive=True) with bounds ({lo}, {hi}) needs lo >= 0.")
            if learnable:
                inside = (v > lo) & (v < hi)
                if not bool(inside.all()):
                    raise ValueError(
                        f"a learnable Param with bounds ({lo}, {hi}) needs an initial value strictly inside "
                        f"them, got {v.tolist()}."
                    )
            elif not bool(((v >= lo) & (v <= hi)).all()):
                raise ValueError(f"Param value {v.tolist()} lies outside its bounds ({lo}, {hi}).")
        self.learnable = learnable
        self.positive = positive
        self.bounds = None if lo is None else (lo, hi)
        self.units = units
        if not learnable:
            self.register_buffer("raw", v)
        else:
            self.raw = nn.Parameter(self._to_raw(v))

    @staticmethod
    def _as_tensor(value: Any) -> Tensor:
        if isinstance(value, Tensor):
            if value.is_complex():
                raise TypeError(f"Param value must be real, got a complex tensor ({value.dtype}).")
            v = value.detach().clone()
            if not v.is_floating_point():
                v = v.to(torch.get_default_dtype())
            return v
        if isinstance(value, bool):
            raise TypeError(f"Param value must be a number, got {value!r}.")
        try:
            return torch.tensor(value, dtype=torch.float64)
        except OverflowError:
            raise ValueError(
                f"Param value {str(value)[:40]} is beyond the float64 range (largest 1.8e308); rescale the quantity "
                "(choose other units)."
            ) from None
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"Param value must be a number, a list of numbers or a tensor, got {type(value).__name__} {value!r}."
            ) from None

    def _to_raw(self, v: Tensor) -> Tensor:
        if self.bounds is not None:
            lo, hi = self.bounds
            return torch.logit((v - lo) / (hi - lo))
        if self.positive:
            return _inverse_softplus(v)
        return v

    def forward(self) -> Tensor:
        """The constrained value (same shape as the initial value)."""
        raw = self.raw
        if not self.learnable:
            return raw
        if self.bounds is not None:
            lo, hi = self.bounds
            return lo + (hi - lo) * torch.sigmoid(raw)
        if self.positive:
            # The floor keeps the value strictly positive where the softplus underflows (raw << 0).
            return F.softplus(raw).clamp_min(torch.finfo(raw.dtype).tiny)
        return raw

    @property
    def shape(self) -> torch.Size:
        """Shape of the value (``()`` for a scalar quantity)."""
        return self.raw.shape

    @torch.no_grad()
    def set_(self, value: float | Sequence[float] | Tensor) -> Param:
        """Set the (constrained) value in place, e.g. to restart a fit; returns ``self``."""
        v = self._as_tensor(value).to(self.raw)
        if v.shape != self.raw.shape:
            raise ValueError(f"Param.set_ got shape {tuple(v.shape)}, expected {tuple(self.raw.shape)}.")
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"Param.set_ needs a finite value, got {v.tolist()}.")
        if self.positive and not bool((v > 0).all()):
            raise ValueError(f"Param.set_ on a positive Param needs a value > 0, got {v.tolist()}.")
        if self.bounds is not None:
            lo, hi = self.bounds
            if not bool(((v >= lo) & (v <= hi)).all()):
                raise ValueError(f"Param.set_ needs a value inside the bounds ({lo}, {hi}), got {v.tolist()}.")
        self.raw.copy_(self._to_raw(v) if self.learnable else v)
        return self

    def to_config(self) -> dict[str, Any]:
        """This quantity as a ``[model.params]`` table of :func:`~physnode.physics.from_config`.

        ``{"value": v, "learnable": ..., "positive": ..., "bounds": [lo, hi], "units": ...}`` (only the constraints
        that are set); ``v`` is the current value, a number or a list. A learnable value that saturated on one of its
        bounds is moved to the middle of the interval (a learnable ``Param`` must start strictly inside); the exact
        tensor ``raw`` is part of the model's state dict.
        """
        value = self.forward().detach()
        if self.learnable and self.bounds is not None:
            lo, hi = self.bounds
            value = torch.where((value > lo) & (value < hi), value, torch.full_like(value, (lo + hi) / 2))
        spec: dict[str, Any] = {"value": value.cpu().to(torch.float64).tolist(), "learnable": self.learnable}
        if self.positive:
            spec["positive"] = True
        if self.bounds is not None:
            spec["bounds"] = list(self.bounds)
        if self.units is not None:
            spec["units"] = self.units
        return spec

    def extra_repr(self) -> str:
        value = self.forward().detach()
        parts = [f"value={value.item() if value.ndim == 0 else value.tolist()}", f"learnable={self.learnable}"]
        if self.positive:
            parts.append("positive=True")
        if self.bounds is not None:
            parts.append(f"bounds={self.bounds}")
        if self.units is not None:
            parts.append(f"units={self.units!r}")
        return ", ".join(parts)
