"""Yoshida's 4th-order symplectic integrator: a symmetric composition of three leapfrog steps.

Substep fractions ``(w₁, w₀, w₁)`` with ``w₁ = 1 / (2 − 2^{1/3})`` and ``w₀ = −2^{1/3} / (2 − 2^{1/3})``
(H. Yoshida, Phys. Lett. A 150, 262, 1990). The middle substep goes backwards in time. Same separability
assumptions as :mod:`physnode.solvers.leapfrog`.
"""

from __future__ import annotations

from .leapfrog import SplitComposition

__all__ = ["Yoshida4"]

_CBRT2 = 2.0 ** (1.0 / 3.0)
_W1 = 1.0 / (2.0 - _CBRT2)
_W0 = -_CBRT2 / (2.0 - _CBRT2)


class Yoshida4(SplitComposition):
    """4th-order Yoshida composition of kick-drift-kick leapfrog (``method="yoshida4"``): fixed step,
    7 evaluations per step, symplectic and time-reversible for separable systems. Needs ``step_size=``."""

    name = "yoshida4"
    order = 4
    weights = (_W1, _W0, _W1)
