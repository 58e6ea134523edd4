"""The contract every solver fulfils: a stepping rule on a batch of per-trajectory states.

The integration loop (:mod:`physnode.integrate`) owns time, step-size control, landing on observation times
and per-trajectory accept/reject; a :class:`Solver` only knows how to take one step of size ``h`` (one per
trajectory) from a state. A state is a tuple of tensors whose first entry is the solution ``y`` of shape
``(B, D)``; further entries carry what the method needs between steps (a cached derivative for FSAL methods,
the velocity of the asynchronous leapfrog, ...), each with leading dimension ``B``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor

from .._registry import ContractAttribute, ContractMeta, is_bool, is_int, is_name

__all__ = ["RHS", "Solver", "State"]

State = tuple[Tensor, ...]
"""A solver state: ``state[0]`` is ``y`` with shape ``(B, D)``; other entries have leading dimension ``B``."""

RHS = Callable[[Tensor, Tensor], Tensor]
"""A batched right-hand side ``f(t, y)``: ``t`` has shape ``(B,)``, ``y`` and the result ``(B, D)``."""


class Solver(metaclass=ContractMeta):
    """A one-step (or multi-stage) stepping rule.

    Subclasses implement :meth:`init` and :meth:`step` and provide the contract attributes below, at class level
    or (when they depend on constructor arguments) in ``__init__``. The contract is checked: a class attribute
    of the wrong type fails when the class is defined, and a missing or invalid attribute when an instance is
    built, with a :class:`~physnode._registry.ContractError` naming the class and the attribute. A subclass that
    sets a ``tableau`` class attribute (explicit and implicit Runge–Kutta methods) takes its ``name`` from it.

    Attributes
    ----------
    name
        Registry name (the ``method=`` string), a non-empty string.
    order
        Convergence order of the solution, an int ``>= 1``.
    adaptive
        Whether :meth:`step` returns an error estimate that the controller adapts the step to.
    error_order
        Order of the local error estimate, ``q + 1`` with ``q`` the lower of the two embedded orders, an int
        ``>= 1``; the step-size controller uses exponents ``1 / error_order``.
    implicit
        Whether a step solves nonlinear equations (Newton iterations); tests that need explicit stages skip
        such solvers. Default ``False``.
    """

    __contract__: ClassVar[tuple[ContractAttribute, ...]] = (
        ContractAttribute("name", is_name, "a non-empty string (the method= name)"),
        ContractAttribute("order", is_int(1), "an int >= 1 (convergence order)"),
        ContractAttribute("adaptive", is_bool, "True or False (whether step returns an error estimate)"),
        ContractAttribute("error_order", is_int(1), "an int >= 1 (order of the local error estimate)"),
        ContractAttribute("implicit", is_bool, "True or False (whether a step solves nonlinear equations)"),
    )

    name: ClassVar[str]
    order: int
    adaptive: bool
    error_order: int
    implicit: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        tableau = vars(cls).get("tableau")
        if tableau is not None and "name" not in vars(cls) and isinstance(getattr(tableau, "name", None), str):
            cls.name = tableau.name

    @abstractmethod
    def init(self, func: RHS, t0: Tensor, y0: Tensor, h0: Tensor) -> State:
        """Build the state at the initial time.

        Parameters
        ----------
        func
            Batched right-hand side.
        t0
            Initial times, ``(B,)``.
        y0
            Initial states, ``(B, D)``.
        h0
            First step sizes, ``(B,)`` (signed), for methods whose state depends on it.
        """

    @abstractmethod
    def step(self, func: RHS, t: Tensor, h: Tensor, state: State) -> tuple[State, Tensor | None]:
        """Take one step of size ``h`` from ``state`` at times ``t``.

        Parameters
        ----------
        func
            Batched right-hand side.
        t
            Current time of each trajectory, ``(B,)``.
        h
            Signed step of each trajectory, ``(B,)``; zero for trajectories that must not move.
        state
            Current state, ``state[0]`` of shape ``(B, D)``.

        Returns
        -------
        new_state, error
            The candidate state after the step and the local error estimate ``(B, D)`` (``None`` for
            fixed-step methods). The loop decides per trajectory whether to accept it.
        """

    #: Order of the method's continuous extension (dense output), or ``None`` when it has none; methods with one
    #: implement ``dense_terms(func)`` (see :class:`~physnode.solvers.rk.ExplicitRK`; ``func`` evaluates extra stages).
    dense_order: int | None = None

    #: Length of the stability interval on the negative real axis (``h |lambda|`` beyond which a step is
    #: unstable on ``y' = lambda y``), for methods that can estimate ``h |lambda|``; ``None`` otherwise.
    stability_boundary: float | None = None

    def stiffness_terms(self) -> Tensor | None:
        """``(2, B)`` norms ``||f(t', Y_j) - f(t', Y_i)||`` and ``||Y_j - Y_i||`` of two states the step just
        taken evaluated at (about) the same time ``t'``: their ratio estimates ``|lambda|``, the dominant
        eigenvalue of the Jacobian along the step, so ``|h|`` times it is ``h |lambda|``. Computed without
        gradient and without a host synchronisation (the loop moves it with the error norms); ``None`` when the
        method has no estimate (the default). The loop compares ``h |lambda|`` with :attr:`stability_boundary`."""
        return None

    def set_tolerances(self, rtol: float | Tensor, atol: float | Tensor) -> None:
        """Receive the solve's ``rtol`` / ``atol`` before a solve (default: ignored). Implicit methods derive the
        tolerances of their Newton iterations from them."""

    def check_compatible(self, func: object) -> None:
        """Raise a ``ValueError`` when this solver cannot integrate ``func`` (default: any ``func`` works)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
