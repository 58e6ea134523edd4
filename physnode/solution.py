"""Results of a solve: per-trajectory status codes, statistics and the :class:`Solution`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .dense import DenseOutput

__all__ = ["Solution", "Stats", "Status"]


class Status(enum.IntEnum):
    """Outcome of the solve of one trajectory."""

    SUCCESS = 0
    MAX_STEPS = 1
    STEP_UNDERFLOW = 2
    NON_FINITE = 3
    STIFF = 4

    @property
    def message(self) -> str:
        """A sentence describing the status and what to change."""
        return stiff_advice() if self is Status.STIFF else _MESSAGES[self]


def stiff_advice() -> str:
    """What to do about a stiff problem: the one place that words it. Names the registered implicit methods
    (solver classes with ``implicit = True``) or, when there are none, scipy's."""
    from .solvers import SOLVERS  # late: the registry imports the solvers, which import this module's users

    implicit = [n for n in SOLVERS.names() if getattr(SOLVERS.cls(n), "implicit", False)]
    if implicit:
        use = "solve it with an implicit method: " + " or ".join(f"method={n!r}" for n in implicit)
    else:
        use = (
            "physnode has no implicit solver yet: solve it with an implicit method such as "
            "scipy.integrate.solve_ivp(method='Radau' or 'BDF')"
        )
    return (
        "this looks stiff: the step size is held at the stability limit of the explicit method, so finishing "
        f"would take more than max_steps steps; {use}, or rescale the fast dynamics (e.g. replace a fast "
        "relaxation by its equilibrium). To keep going anyway, raise max_steps or pass "
        "options={'stiffness_check': False}"
    )


_MESSAGES = {
    Status.SUCCESS: "reached the last observation time",
    Status.MAX_STEPS: "exceeded max_steps; raise max_steps, loosen rtol/atol, or check the system for stiffness",
    Status.STEP_UNDERFLOW: (
        "the step size fell below the resolution of the time variable; the system may be stiff or singular "
        "there (loosen rtol/atol, rescale time, or check the right-hand side)"
    ),
    Status.NON_FINITE: (
        "the state or its derivative became NaN or Inf; check the right-hand side for divisions by zero or "
        "overflow, or use a smaller step"
    ),
}


@dataclass
class Stats:
    """Solver statistics.

    Attributes
    ----------
    nfe
        Number of batched right-hand-side evaluations in the forward solve (one evaluation covers the batch).
    n_accepted, n_rejected
        Accepted and rejected steps per trajectory, ``(B,)`` int64.
    status
        :class:`Status` code per trajectory, ``(B,)`` int64.
    t_final
        Time each trajectory reached, ``(B,)``; for a failed trajectory, where it failed.
    nfe_backward
        Right-hand-side evaluations (or vector-Jacobian products) spent by the gradient method in the backward
        pass, filled in after ``backward()`` for the methods that run one.
    njev, nlu
        Implicit solvers: batched Jacobian evaluations and batched LU factorisations in the forward solve
        (scipy's ``njev`` / ``nlu``; one call covers the batch); ``0`` for explicit solvers.
    """

    nfe: int
    n_accepted: Tensor
    n_rejected: Tensor
    status: Tensor
    t_final: Tensor
    nfe_backward: int = 0
    njev: int = 0
    nlu: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        """Whether every trajectory reached its last observation time (one host synchronisation)."""
        return bool((self.status == Status.SUCCESS).all())


@dataclass
class Solution:
    """The solution of an initial-value problem at the observation times.

    Attributes
    ----------
    ts
        Observation times, ``(T,)`` or ``(B, T)`` as given.
    ys
        States at ``ts``: ``(T, D)`` or ``(B, T, D)``; entries after a failure are NaN.
    stats
        :class:`Stats` of the solve.
    dense
        With ``dense=True``: the continuous extension of every step (:class:`~physnode.dense.DenseOutput`), which
        :meth:`interpolate` evaluates; ``None`` otherwise.
    unbatched
        Whether the solve was unbatched (``y0`` of shape ``(D,)``).
    """

    ts: Tensor
    ys: Tensor
    stats: Stats
    dense: DenseOutput | None = None
    unbatched: bool = False

    def interpolate(self, t: Tensor) -> Tensor:
        """The solution at any times of the solved interval, from the continuous extension of the steps.

        Each trajectory is evaluated on its own steps. Differentiable with respect to ``y0`` and the parameters
        when the solve was differentiated with ``grad="direct"`` (other gradient methods solve without a graph:
        the values are then constants).

        Parameters
        ----------
        t
            Times ``(M,)`` shared by the batch, or ``(B, M)`` one row per trajectory (time units); each within
            the trajectory's solved interval between its initial and last observation time.

        Returns
        -------
        Tensor
            States ``(M, D)`` for an unbatched solve, else ``(B, M, D)``.

        Raises
        ------
        ValueError
            The solve was not dense (pass ``dense=True``), ``t`` has the wrong shape, or a time is not finite or
            lies outside the solved interval.
        """
        if self.dense is None:
            raise ValueError(
                "this Solution keeps no continuous extension: solve with dense=True (an explicit Runge–Kutta method "
                "such as 'dopri5') to interpolate it."
            )
        y0 = self.dense.y0
        B = y0.shape[0]
        if not isinstance(t, Tensor):
            t = torch.as_tensor(t, dtype=y0.dtype)
        if t.ndim == 1:
            tb = t.unsqueeze(0).expand(B, -1)
        elif t.ndim == 2 and t.shape[0] == B and not self.unbatched:
            tb = t
        else:
            want = "(M,)" if self.unbatched else f"(M,) or ({B}, M)"
            raise ValueError(f"t must have shape {want} for this solution, got {tuple(t.shape)}.")
        out = self.dense(tb)
        return out[0] if self.unbatched else out

    @property
    def status(self) -> Tensor:
        """Per-trajectory :class:`Status` codes, ``(B,)`` (``(1,)`` for an unbatched solve)."""
        return self.stats.status

    def failed(self) -> Tensor:
        """Indices of the trajectories that did not succeed."""
        return torch.nonzero(self.stats.status != Status.SUCCESS).flatten()
