"""Gradient methods (``grad=``), one file per method, and their registry."""

from __future__ import annotations

from .._registry import Registry
from .aca import ACA
from .adjoint import ContinuousAdjoint
from .base import GradientMethod
from .direct import Direct
from .mali import Mali
from .reversible_heun import ReversibleHeunGradient
from .symplectic import SymplecticAdjoint

__all__ = ["GRADIENTS", "GradientMethod"]

GRADIENTS: Registry[GradientMethod] = Registry("grad", GradientMethod)
for _cls in (Direct, Mali, ACA, SymplecticAdjoint, ContinuousAdjoint, ReversibleHeunGradient):
    GRADIENTS.register(_cls)
