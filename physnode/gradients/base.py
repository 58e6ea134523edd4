"""The contract of a gradient method: how a solve is differentiated."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

from .._registry import ContractAttribute, ContractMeta, is_bool, is_name
from ..integrate import Integration, Problem
from ..solvers.base import Solver

__all__ = ["GradientMethod"]


def _is_optional_name(v: Any) -> bool:
    return v is None or is_name(v)


def _is_solver_class(v: Any) -> bool:
    return isinstance(v, type) and issubclass(v, Solver)


class GradientMethod(metaclass=ContractMeta):
    """Turns a :class:`~physnode.integrate.Problem` into outputs whose autograd graph gives the gradient.

    The attributes below are a checked contract (as for :class:`~physnode.solvers.base.Solver`): a class
    attribute of the wrong type fails when the class is defined, a missing one when an instance is built, with a
    :class:`~physnode._registry.ContractError` naming the class and the attribute.

    Attributes
    ----------
    name
        Registry name (the ``grad=`` string).
    requires_method
        The ``method=`` this gradient method needs, if any.
    solvers
        The solver class (family) this method can differentiate: ``Solver`` for any, ``ExplicitRK`` for the
        methods built on a Butcher tableau, the reversible solver for the reversible methods. Tests pick the
        solvers of each method from it; :meth:`supports` reads it.
    exact
        Whether it reproduces backprop through the same discrete solve.
    needs_params
        Whether the method must know every tensor to differentiate explicitly (it builds the gradient in a
        custom backward pass). For such methods a plain callable that closes over tensors requiring grad must
        come with ``params=``; an undeclared tensor that requires grad raises ``ValueError`` naming it, and
        when nothing requires grad the solve runs without the custom backward. They are first order: a second
        differentiation raises ``RuntimeError`` (use ``grad="direct"``).
    """

    __contract__: ClassVar[tuple[ContractAttribute, ...]] = (
        ContractAttribute("name", is_name, "a non-empty string (the grad= name)"),
        ContractAttribute("needs_params", is_bool, "True or False"),
        ContractAttribute("requires_method", _is_optional_name, "None or a method= name"),
        ContractAttribute("exact", is_bool, "True or False"),
        ContractAttribute("solvers", _is_solver_class, "a Solver subclass (the solvers it differentiates)"),
    )

    name: ClassVar[str]
    needs_params: ClassVar[bool] = False
    #: The solver this method is tied to (``"alf"`` for MALI), or ``None`` when any compatible solver works.
    requires_method: ClassVar[str | None] = None
    #: Whether the gradient equals backprop through the same discrete solve (all but the continuous adjoint).
    exact: ClassVar[bool] = True
    #: Whether it differentiates through the step-size controller with ``options={"step_grad": True}``
    #: (:mod:`physnode.step_grad`); the others hold the steps constant and refuse the option.
    step_grad: ClassVar[bool] = False
    #: The solvers this method differentiates (instances of this class).
    solvers: ClassVar[type[Solver]] = Solver  # type: ignore[type-abstract]  # the abstract base: any solver

    @classmethod
    def supports(cls, solver: type[Solver] | Solver) -> bool:
        """Whether this method can differentiate solves of ``solver`` (a class or an instance)."""
        solver_cls = solver if isinstance(solver, type) else type(solver)
        return issubclass(solver_cls, cls.solvers)

    def check(self, problem: Problem) -> None:
        """Raise ``ValueError`` when this method cannot differentiate ``problem`` (e.g. wrong solver)."""

    @abstractmethod
    def solve(self, problem: Problem) -> Integration:
        """Solve ``problem``; the returned ``ys`` carries the gradient to ``y0`` and ``problem.params``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
