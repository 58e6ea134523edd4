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
for _cls in (Direct,):
    GRADIENTS.register(_cls.name, _cls)
GRADIENTS.register(Mali.name, Mali)
GRADIENTS.register(ACA.name, ACA)
GRADIENTS.register(SymplecticAdjoint.name, SymplecticAdjoint)
GRADIENTS.register(ContinuousAdjoint.name, ContinuousAdjoint)
GRADIENTS.register(ReversibleHeunGradient.name, ReversibleHeunGradient)
