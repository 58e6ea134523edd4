"""The contract every solver fulfils: a stepping rule on a batch of per-trajectory states.

The integration loop (:mod:`physnode.integrate`) owns time, step-size control, landing on observation times
and per-trajectory accept/reject; a :class:`Solver` only knows how to take one step of size ``h`` (one per
trajectory) from a state. A state is a tuple of tensors whose first entry is the solution ``y`` of shape
``(B, D)``; further entries carry what the method needs between steps (a cached derivative for FSAL methods,
the velocity of the asynchronous leapfrog, ...), each with leading dimension ``B``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from torch import Tensor

__all__ = ["RHS", "Solver", "State"]

State = tuple[Tensor, ...]
"""A solver state: ``state[0]`` is ``y`` with shape ``(B, D)``; other entries have leading dimension ``B``."""

RHS = Callable[[Tensor, Tensor], Tensor]
"""A batched right-hand side ``f(t, y)``: ``t`` has shape ``(B,)``, ``y`` and the result ``(B, D)``."""


class Solver(ABC):
    """A one-step (or multi-stage) stepping rule.

    Subclasses set :attr:`order` and :attr:`adaptive` and implement :meth:`init` and :meth:`step`.
    """

    name: ClassVar[str]
    order: int
    adaptive: bool
    #: Order of the local error estimate, ``q + 1`` with ``q`` the lower of the two embedded orders;
    #: the step-size controller uses exponents ``1 / error_order``.
    error_order: int

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

    def check_compatible(self, func: object) -> None:  # noqa: B027 - optional hook
        """Raise a ``ValueError`` when this solver cannot integrate ``func`` (default: any ``func`` works)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
