"""The contract of a gradient method: how a solve is differentiated."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from ..integrate import Integration, Problem

__all__ = ["GradientMethod"]


class GradientMethod(ABC):
    """Turns a :class:`~physnode.integrate.Problem` into outputs whose autograd graph gives the gradient.

    Attributes
    ----------
    name
        Registry name (the ``grad=`` string).
    requires_method
        The ``method=`` this gradient method needs, if any.
    exact
        Whether it reproduces backprop through the same discrete solve.
    needs_params
        Whether the method must know every tensor to differentiate explicitly (it builds the gradient in a
        custom backward pass). For such methods a plain callable that closes over tensors requiring grad must
        come with ``params=``; an undeclared tensor that requires grad raises ``ValueError`` naming it, and
        when nothing requires grad the solve runs without the custom backward. They are first order: a second
        differentiation raises ``RuntimeError`` (use ``grad="direct"``).
    """

    name: ClassVar[str]
    needs_params: ClassVar[bool] = False
    #: The solver this method is tied to (``"alf"`` for MALI), or ``None`` when any compatible solver works.
    requires_method: ClassVar[str | None] = None
    #: Whether the gradient equals backprop through the same discrete solve (all but the continuous adjoint).
    exact: ClassVar[bool] = True

    def check(self, problem: Problem) -> None:  # noqa: B027 - optional hook
        """Raise ``ValueError`` when this method cannot differentiate ``problem`` (e.g. wrong solver)."""

    @abstractmethod
    def solve(self, problem: Problem) -> Integration:
        """Solve ``problem``; the returned ``ys`` carries the gradient to ``y0`` and ``problem.params``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
