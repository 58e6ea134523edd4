"""Gradient methods (``grad=``), one file per method, and their registry."""

from __future__ import annotations

from .._registry import Registry
from .base import GradientMethod
from .direct import Direct

__all__ = ["GRADIENTS", "GradientMethod"]

GRADIENTS: Registry[GradientMethod] = Registry("grad", GradientMethod)
for _cls in (Direct,):
    GRADIENTS.register(_cls.name, _cls)
