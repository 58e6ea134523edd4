"""Per-patient treatment schedules (infusions) as piecewise-constant input series ``u(t)`` with their breakpoints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..data.inputs import Inputs

__all__ = ["TreatmentSchedule"]


class TreatmentSchedule:
    """Infusions of each patient as a piecewise-constant input series ``u(t)`` of ``C`` channels.

    Patient ``b`` receives infusions ``(start, end, rate)``: channel ``c`` of ``u`` is the sum of the rates of the
    infusions of that channel running at ``t`` (``start <= t < end``). ``u`` is constant between consecutive
    *breakpoints* (the starts and ends), so an ODE solve that lands on them never steps over a discontinuity.

    Parameters
    ----------
    breaks
        ``(B, K)`` sorted breakpoints of each patient (time units of the data); unused entries ``+inf``.
    levels
        ``(B, K, C)`` value of ``u`` on ``[breaks[b, k], breaks[b, k + 1])`` (input units, e.g. mg/day); ``u = 0``
        before the first breakpoint.
    channels
        ``C`` channel names (default ``u0, u1, ...``).

    Examples
    --------
    >>> s = TreatmentSchedule.from_infusions([[(1.0, 2.0, 50.0)], []])
    >>> s(torch.tensor([1.5, 1.5])).squeeze(-1).tolist()
    [50.0, 0.0]
    """

    def __init__(self, breaks: Tensor, levels: Tensor, channels: Sequence[str] | None = None) -> None:
        if not isinstance(breaks, Tensor) or not isinstance(levels, Tensor):
            raise TypeError(
                f"breaks and levels must be tensors of shapes (B, K) and (B, K, C), got {type(breaks).__name__} and "
                f"{type(levels).__name__}."
            )
        if breaks.ndim != 2 or levels.ndim != 3 or levels.shape[:2] != breaks.shape:
            raise ValueError(
                f"breaks must be (B, K) and levels (B, K, C) with the same B and K, got {tuple(breaks.shape)} and "
                f"{tuple(levels.shape)}."
            )
        if bool(torch.isnan(breaks).any()) or bool((breaks.diff(dim=1) < 0).any()):
            raise ValueError("breaks must be sorted along each row (unused entries +inf), without NaN.")
        self.breaks = breaks
        self.levels = levels
        C = levels.shape[-1]
        self.channels = list(channels) if channels is not None else [f"u{c}" for c in range(C)]
        if len(self.channels) != C:
            raise ValueError(f"channels must name the {C} input channels, got {self.channels}.")

    @classmethod
    def from_infusions(
        cls,
        infusions: Sequence[Sequence[Sequence[float]]],
        *,
        n_channels: int = 1,
        channels: Sequence[str] | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> TreatmentSchedule:
        """Schedules from per-patient lists of infusions.

        Parameters
        ----------
        infusions
            One list per patient of ``(start, end, rate)`` (channel 0) or ``(start, end, rate, channel)`` entries,
            ``start < end`` (time units), ``rate`` in input units (e.g. mg/day).
        n_channels
            Number of input channels ``C``.
        """
        from ..data.inputs import parse_infusions

        parsed = parse_infusions(infusions, n_channels, unit="patient")
        B = len(parsed)
        rows = [sorted({x for start, end, _, _ in items for x in (start, end)}) for items in parsed]
        K = max(1, max(len(r) for r in rows))
        breaks = torch.full((B, K), float("inf"), dtype=dtype)
        levels = torch.zeros((B, K, n_channels), dtype=dtype)
        for b, (r, items) in enumerate(zip(rows, parsed, strict=True)):
            for k, tk in enumerate(r):
                breaks[b, k] = tk
                for start, end, rate, c in items:
                    if start <= tk < end:
                        levels[b, k, c] += rate
        return cls(breaks, levels, channels)

    @classmethod
    def from_metadata(cls, traj: Any, key: str = "infusions", dtype: torch.dtype = torch.float64) -> TreatmentSchedule:
        """The schedules stored in each trajectory's metadata ``key`` (rows ``[start, end, rate]``), e.g. of the
        ``pkpd`` dataset."""
        try:
            rows = [m[key] for m in traj.metadata]
        except (KeyError, TypeError):
            raise ValueError(
                f"every trajectory's metadata must hold {key!r} (a list of [start, end, rate] infusions)."
            ) from None
        return cls.from_infusions(rows, dtype=dtype).to(traj.device)

    @property
    def n_trajectories(self) -> int:
        """Number of patients ``B``."""
        return int(self.breaks.shape[0])

    @property
    def n_channels(self) -> int:
        """Number of input channels ``C``."""
        return int(self.levels.shape[-1])

    @property
    def breakpoints(self) -> Tensor:
        """``(B, K)`` times where ``u`` may jump (``+inf`` padded)."""
        return self.breaks

    def __call__(self, t: Tensor) -> Tensor:
        """``u(t)``: ``t`` of shape ``(B,)`` (one time per patient) or ``(B, T)`` -> ``(B, C)`` or ``(B, T, C)``."""
        squeeze = t.ndim == 1
        tt = t.unsqueeze(-1) if squeeze else t
        tt = tt.to(self.breaks.dtype)
        k = torch.searchsorted(self.breaks.contiguous(), tt.contiguous(), right=True) - 1  # (B, T)
        idx = k.clamp(min=0).unsqueeze(-1).expand(-1, -1, self.n_channels)
        u = self.levels.gather(1, idx)
        u = torch.where((k >= 0).unsqueeze(-1), u, torch.zeros((), dtype=u.dtype, device=u.device))
        return u.squeeze(1) if squeeze else u

    def __getitem__(self, idx: int | slice | Sequence[int] | Tensor) -> TreatmentSchedule:
        """The schedules of a subset of patients."""
        if isinstance(idx, int):
            idx = [idx]
        return TreatmentSchedule(self.breaks[idx], self.levels[idx], self.channels)

    def __len__(self) -> int:
        return self.n_trajectories

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TreatmentSchedule:
        """A copy on ``device`` with floating-point ``dtype``."""
        return TreatmentSchedule(self.breaks.to(device, dtype), self.levels.to(device, dtype), self.channels)

    def to_inputs(self, t0: float = 0.0) -> Inputs:
        """The same series as a :class:`physnode.data.Inputs` starting at ``t0`` (piecewise constant).

        Knots: ``t0`` (with the level ``u(t0)``) and every breakpoint after it; the solve of
        :func:`physnode.odeint` then lands on each of them (``inputs=``).

        Parameters
        ----------
        t0
            Initial time of the solves that read the series (time units of the data).

        Returns
        -------
        Inputs
            ``B`` series of ``C`` ``"constant"`` channels named as :attr:`channels`, in the dtype of ``levels``.
        """
        from ..data.inputs import Inputs

        B = self.n_trajectories
        br = self.breaks
        later = torch.isfinite(br) & (br > t0)
        times, order = torch.sort(torch.where(later, br, torch.full_like(br, math.nan)), dim=1)  # NaN sort last
        levels = self.levels.gather(1, order.unsqueeze(-1).expand(-1, -1, self.n_channels))
        first_t = torch.full((B, 1), float(t0), dtype=br.dtype, device=br.device)
        first_u = self(first_t.squeeze(1)).unsqueeze(1).to(levels.dtype)
        K = int(later.sum(1).max()) if B else 0
        times = torch.cat([first_t, times[:, :K]], dim=1)
        values = torch.cat([first_u, torch.where(later.gather(1, order)[:, :K, None], levels[:, :K], 0.0)], dim=1)
        return Inputs(times, values, "constant", names=self.channels)

    def scaled(self, factor: float | Tensor) -> TreatmentSchedule:
        """The same schedule with every rate multiplied by ``factor`` (a counterfactual plan: double, halve, stop)."""
        return TreatmentSchedule(self.breaks, self.levels * factor, self.channels)

    def __repr__(self) -> str:
        n, k = self.n_trajectories, self.breaks.shape[1]
        return f"TreatmentSchedule(patients={n}, breakpoints<={k}, channels={self.channels})"
