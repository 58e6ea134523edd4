"""Exceptions raised by physnode solves."""

from __future__ import annotations

__all__ = ["MaxStepsError", "NonFiniteError", "SolverError", "StepSizeUnderflowError", "StiffnessError"]


class SolverError(RuntimeError):
    """A solve failed for at least one trajectory.

    Attributes
    ----------
    trajectory
        Index of the first failed trajectory in the batch.
    time
        Time at which it failed.
    status
        Its :class:`~physnode.solution.Status`.
    """

    def __init__(self, message: str, *, trajectory: int, time: float, status: int) -> None:
        super().__init__(message)
        self.trajectory = trajectory
        self.time = time
        self.status = status


class MaxStepsError(SolverError):
    """More than ``max_steps`` steps were needed."""


class StepSizeUnderflowError(SolverError):
    """The adaptive step size fell below the resolution of the time variable."""


class NonFiniteError(SolverError, FloatingPointError):
    """The state or its derivative became NaN or Inf."""


class StiffnessError(SolverError):
    """The problem is stiff for the explicit method: its step size is pinned at the stability limit, so
    finishing the solve would take more than ``max_steps`` steps.

    Raised early (after a few dozen steps) instead of a :class:`MaxStepsError` after a long run. Turn the check
    off with ``options={"stiffness_check": False}``.
    """
