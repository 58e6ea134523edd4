"""Direct backpropagation through the accepted steps of the solve."""

from __future__ import annotations

from ..integrate import Integration, Problem, integrate
from .base import GradientMethod

__all__ = ["Direct"]


class Direct(GradientMethod):
    """Backprop through every operation of the accepted steps (``grad="direct"``).

    Exact for the discrete solve; memory grows as O(N·s·L) for N steps of s stages with a one-evaluation
    graph of size L. The step-size controller is differentiated with ``options={"step_grad": True}``
    (:mod:`physnode.step_grad`); the initial-step selection never is.
    Supports double backward.
    """

    name = "direct"
    step_grad = True

    def solve(self, problem: Problem) -> Integration:
        return integrate(problem)
