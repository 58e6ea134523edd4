"""What :func:`physnode.solve` does with ``inputs=``, ``boluses=`` and ``breakpoints=``.

- ``inputs`` (:class:`~physnode.data.inputs.Inputs`): ``func`` becomes ``func(t, y, u)``; ``u`` is evaluated at
  every stage on the correct side of the input's knots (:mod:`physnode._breakpoints`), the knots become
  breakpoints, and ``values`` that require grad are added to the gradient method's ``params``.
- ``breakpoints`` (a tensor of times): known discontinuities of a plain ``func(t, y)`` (torchdiffeq's
  ``jump_t``): steps land on them, ``t`` is nudged into the step at its ends.
- ``boluses`` (:class:`~physnode.data.inputs.Boluses`): the solve runs in segments between the bolus times of
  each trajectory (:func:`solve_with_boluses`); the state jumps between two segments, so every gradient method
  differentiates through the jumps (with respect to ``y0``, the parameters and the bolus ``amounts``) by
  composition.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._validate import describe
from .data.inputs import Boluses, Inputs, PreparedInputs
from .integrate import CountingRHS
from .solution import Solution, Stats, Status

__all__ = ["Forcing", "build_forcing", "solve_with_boluses"]


@dataclass
class Forcing:
    """The prepared ``inputs`` / ``breakpoints`` of one solve (per trajectory, in the state's dtype and device).

    Attributes
    ----------
    inputs
        The input evaluator, or ``None`` for a plain ``func(t, y)``.
    breakpoints
        ``(B, K)`` breakpoints (NaN padding): the input knots and the given ``breakpoints``, or ``None``.
    params
        Tensors the inputs add to the gradient method's ``params`` (``values`` that require grad).
    """

    inputs: PreparedInputs | None
    breakpoints: Tensor | None
    params: tuple[Tensor, ...] = ()

    def rhs(self, func: Callable, unbatched: bool, t: Tensor) -> CountingRHS:
        """The counting right-hand side of the solve, for observation times ``t`` ``(B, T)``."""
        direction = torch.where(t[:, -1] < t[:, 0], -1.0, 1.0).to(t.dtype)
        return CountingRHS(func, unbatched, inputs=self.inputs, windowed=True, direction=direction)

    def first_call(self, func: Callable, t0: Tensor, y0: Tensor, unbatched: bool) -> object:
        """``func`` at the initial times ``t0`` ``(B,)`` and states ``y0`` ``(B, D)`` (the shape check of solve)."""
        if self.inputs is None:
            return func(t0[0], y0[0]) if unbatched else func(t0, y0)
        direction = torch.ones_like(t0)
        u0 = self.inputs(t0, None, direction)
        args = (t0[0], y0[0], u0[0]) if unbatched else (t0, y0, u0)
        return call_explained(
            func,
            args,
            lambda name: (
                f"with inputs=, func is called as func(t, y, u) (u: the inputs at t, shape (B, C)), but "
                f"{name} does not take three positional arguments; add the argument u (or drop inputs=)."
            ),
        )


def call_explained(func: Callable, args: tuple, explain: Callable[[str], str]) -> Any:
    """``func(*args)``; when that raises a TypeError because ``func`` does not take ``len(args)`` positional
    arguments, a TypeError with the message ``explain(name of func)`` instead (a TypeError of ``func``'s own body
    is raised as it is)."""
    try:
        return func(*args)
    except TypeError:
        if accepts_positional(func, len(args)):
            raise
        raise TypeError(explain(getattr(func, "__qualname__", type(func).__name__))) from None


def accepts_positional(func: Callable, n: int) -> bool:
    """Whether ``n`` positional arguments bind to ``func``'s signature (a module's ``forward``; ``True`` when it
    cannot be read)."""
    target = func.forward if isinstance(func, torch.nn.Module) else func
    try:
        inspect.signature(target).bind(*([None] * n))
    except TypeError:
        return False
    except ValueError:  # no signature (some builtins): assume it does
        return True
    return True


def _breakpoint_tensor(breakpoints: object, B: int, like: Tensor) -> Tensor:
    """``breakpoints`` as ``(B, K)`` in ``like``'s dtype and device (``(K,)`` is shared by every trajectory)."""
    if isinstance(breakpoints, Tensor):
        bp = breakpoints.detach()
    else:
        try:
            bp = torch.as_tensor(breakpoints, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"breakpoints must be a tensor of times (K,) or (B, K), got {describe(breakpoints)}."
            ) from exc
    if not (bp.is_floating_point()):
        raise TypeError(f"breakpoints must hold floating-point times, got dtype {bp.dtype}.")
    if bp.ndim == 1:
        bp = bp.unsqueeze(0).expand(B, -1)
    if bp.ndim != 2 or bp.shape[0] != B:
        raise ValueError(
            f"breakpoints must have shape (K,) (shared) or (B, K) = ({B}, K) (one row per trajectory, NaN padding); "
            f"got {tuple(bp.shape)}."
        )
    if bool(torch.isinf(bp).any()):
        raise ValueError("breakpoints must be finite times (NaN only as padding).")
    return bp.to(device=like.device, dtype=like.dtype)


def build_forcing(
    inputs: Inputs | None, breakpoints: object, y0b: Tensor, unbatched: bool
) -> tuple[Forcing | None, Boluses | None]:
    """Check ``inputs`` and ``breakpoints`` against the batch of ``y0b`` ``(B, D)``; returns the
    :class:`Forcing` (``None`` when neither is given) and the boluses carried by ``inputs``.

    Raises
    ------
    TypeError, ValueError
        ``inputs`` that is not an :class:`Inputs`, a batch that does not fit, breakpoints of the wrong shape.
    """
    if inputs is None and breakpoints is None:
        return None, None
    B = y0b.shape[0]
    prepared = None
    parts: list[Tensor] = []
    params: tuple[Tensor, ...] = ()
    boluses = None
    if inputs is not None:
        if not isinstance(inputs, Inputs):
            raise TypeError(
                f"inputs must be a physnode.data.Inputs (times, values, kinds per channel), got {describe(inputs)}."
            )
        if unbatched and inputs.batch != 1:
            raise ValueError(
                f"y0 is one state (D,) but inputs hold {inputs.batch} trajectories; give one input series "
                "(times (K,), values (K, C)) or a batch of initial states."
            )
        if inputs.values.device != y0b.device:
            raise ValueError(
                f"inputs are on {inputs.values.device} but y0 on {y0b.device}; move them with inputs.to(device)."
            )
        boluses = inputs.boluses
        params = inputs.differentiable()
        prepared = inputs.prepare(dtype=y0b.dtype, device=y0b.device, batch=B)
        parts.append(inputs.expand(B).breakpoints.to(y0b.dtype))
    if breakpoints is not None:
        parts.append(_breakpoint_tensor(breakpoints, B, y0b))
    bp = torch.cat(parts, dim=1) if parts else None
    return Forcing(prepared, bp, params), boluses


# ------------------------------------------------------------------------------------------------ boluses
Runner = Callable[[Tensor, Tensor], Solution]
"""``run(y0 (B, D), t (B, T)) -> Solution``: one solve of the segments (everything else fixed)."""


def _combine_stats(all_stats: list[Stats]) -> Stats:
    first = all_stats[0]
    out = Stats(
        sum(s.nfe for s in all_stats),
        sum((s.n_accepted for s in all_stats), torch.zeros_like(first.n_accepted)),
        sum((s.n_rejected for s in all_stats), torch.zeros_like(first.n_rejected)),
        first.status.clone(),
        all_stats[-1].t_final,
    )
    for s in all_stats:
        out.status = torch.where(out.status == int(Status.SUCCESS), s.status, out.status)
    out.extra["segments"] = len(all_stats)
    return out


def solve_with_boluses(run: Runner, y0: Tensor, t: Tensor, boluses: Boluses) -> Solution:
    """Solve through instantaneous state jumps: in rounds of segments between consecutive bolus times.

    Round ``r`` integrates every trajectory from its ``r``-th distinct bolus time inside ``(t0, t_end)`` (or from
    ``t0``) to its next one (or to ``t_end``), through its observation times in between; the state then jumps by
    the boluses at that time and starts the next round. Trajectories with fewer boluses take a short dummy segment
    after ``t_end`` whose outputs are discarded (``func`` always sees the whole batch). Rounds have one length:
    rows with fewer observation times get extra landing points in their last interval (outputs discarded). The
    state is right-continuous: a bolus at ``t0`` is added to ``y0``, an observation at a bolus time sees the state
    after the jump.

    Parameters
    ----------
    run
        One solve of all trajectories, ``run(y0 (B, D), t (B, T_r))``.
    y0
        ``(B, D)`` initial states.
    t
        ``(B, T)`` observation times, increasing.
    boluses
        The jumps (``B`` rows, or one shared row).

    Returns
    -------
    Solution
        ``ys`` ``(B, T, D)`` and the statistics summed over the rounds (``stats.extra["segments"]``).

    Raises
    ------
    ValueError
        Decreasing times (boluses need forward integration) or a bolus index outside the state.
    """
    B, T = t.shape
    D = y0.shape[-1]
    if bool((t[:, -1] < t[:, 0]).any()):
        raise ValueError("boluses need forward integration (increasing t); reverse the time axis of the problem.")
    bol = boluses.expand(B).to(device=y0.device, dtype=y0.dtype)
    if bool((bol.index >= D).any()):
        raise ValueError(
            f"a bolus adds to state component {int(bol.index.max())}, but the state has D = {D} components."
        )
    th = t.detach().cpu().double()
    bt = bol.times.detach().cpu().double()
    t0, t_end = th[:, :1], th[:, -1:]
    jump_rows: list[list[float]] = []
    for b in range(B):
        inside = bt[b][(bt[b] > t0[b]) & (bt[b] < t_end[b])]
        jump_rows.append(sorted(set(inside.tolist())))
    R = max((len(r) for r in jump_rows), default=0)

    def jump(y: Tensor, at: list[float]) -> Tensor:
        """``y`` ``(B, D)`` plus the boluses of row ``b`` at time ``at[b]`` (NaN: none)."""
        at_t = torch.tensor(at, dtype=torch.float64).unsqueeze(-1)
        hit = (bt == at_t).to(y.device)  # (B, M)
        amounts = torch.where(hit, bol.amounts, torch.zeros_like(bol.amounts))
        return y.scatter_add(1, bol.index, amounts)

    # Boluses at t0 act on y0 (right-continuous state).
    y = jump(y0, th[:, 0].tolist())
    if T == 1:  # nothing to integrate
        zeros = torch.zeros(B, dtype=torch.int64, device=y0.device)
        return Solution(ts=t, ys=y.unsqueeze(1), stats=Stats(0, zeros, zeros.clone(), zeros.clone(), t[:, 0]))
    ys_parts: list[tuple[Tensor, Tensor]] = []  # (observation index (B, T_r) with -1 for none, outputs)
    all_stats: list[Stats] = []
    starts = th[:, 0].clone()
    for r in range(R + 1):
        grids: list[list[float]] = []
        obs_idx: list[list[int]] = []
        ends: list[float] = []
        for b in range(B):
            if r <= len(jump_rows[b]):
                s = float(starts[b])
                e = jump_rows[b][r] if r < len(jump_rows[b]) else float(t_end[b])
                row_t = th[b].tolist()
                inner = [(k, x) for k, x in enumerate(row_t) if s < x < e]
                grid = [s] + [x for _, x in inner] + [e]
                idx = (
                    [_obs_index(row_t, s)]
                    + [k for k, _ in inner]
                    + [_obs_index(row_t, e) if r == len(jump_rows[b]) else -1]
                )
            else:  # finished: a short dummy segment after t_end, outputs discarded
                e0 = float(t_end[b])
                grid = [e0, e0 + 1e-3 * max(abs(e0), 1.0)]
                idx = [-1, -1]
                e = e0
            grids.append(grid)
            obs_idx.append(idx)
            ends.append(e)
        n = max(len(g) for g in grids)
        for b in range(B):
            grid, idx = grids[b], obs_idx[b]
            extra = n - len(grid)
            if extra:
                a, z = grid[-2], grid[-1]
                fill = [a + (z - a) * (k + 1) / (extra + 1) for k in range(extra)]
                grids[b] = grid[:-1] + fill + grid[-1:]
                obs_idx[b] = idx[:-1] + [-1] * extra + idx[-1:]
        t_r = torch.tensor(grids, dtype=torch.float64).to(device=t.device, dtype=t.dtype)
        sol = run(y, t_r)
        all_stats.append(sol.stats)
        ys_parts.append((torch.tensor(obs_idx, dtype=torch.long, device=y0.device), sol.ys))
        y_end = sol.ys[:, -1]
        # Rows that continue jump at their bolus time; finished rows keep their state.
        cont = [r < len(jump_rows[b]) for b in range(B)]
        at = [ends[b] if cont[b] else float("nan") for b in range(B)]
        y = jump(y_end, at)
        starts = torch.tensor(ends, dtype=torch.float64)
    # Assemble the outputs: observation k of row b from the round that holds it (the start of a round is the
    # state after the jump, so an observation at a bolus time sees it). Slot T collects what is discarded.
    ys = y0.new_zeros(B, T + 1, D)
    for where_obs, part in ys_parts:
        slot = torch.where(where_obs >= 0, where_obs, torch.full_like(where_obs, T))
        ys = ys.scatter(1, slot.unsqueeze(-1).expand(-1, -1, D), part)
    # Boluses at t_end act on the last output.
    ys = torch.cat([ys[:, : T - 1], jump(ys[:, T - 1], th[:, -1].tolist()).unsqueeze(1)], dim=1)
    return Solution(ts=t, ys=ys, stats=_combine_stats(all_stats))


def _obs_index(row: list[float], x: float) -> int:
    """Index of time ``x`` among the observation times ``row`` (``-1`` when it is not one)."""
    for k, v in enumerate(row):
        if v == x:
            return k
    return -1
