r"""External inputs (controls, treatments, forcings) as data: :class:`Inputs` and :class:`Boluses`.

An :class:`Inputs` holds, per trajectory, a series of input values at its own knot times and one
interpolation kind per channel:

``"constant"``
    piecewise constant and right-continuous, ``u(t) = u_k`` for ``tau_k <= t < tau_{k+1}`` (an infusion rate
    switched at the knots);
``"linear"``
    piecewise linear between the knots;
``"cubic"``
    piecewise cubic Hermite with the monotone slopes of Fritsch & Carlson (SIAM J. Numer. Anal. 17, 1980) in the
    form of Fritsch & Butland (1984) used by MATLAB's and SciPy's ``pchip``: at an interior knot the weighted
    harmonic mean of the two neighbouring secants when they have the same sign, else 0; at the end knots the
    one-sided three-point formula, set to 0 when its sign differs from the first secant and limited to three
    times that secant when the first two secants differ in sign. It never overshoots the data (no negative dose
    rate from non-negative samples) and is continuously differentiable.

Before the first knot and after the last one every kind holds the end value. Every knot is a *breakpoint*
(:attr:`Inputs.breakpoints`): a constant channel jumps there, a linear one has a kink, a cubic one a jump of its
second derivative, and the extrapolation starts there; a solve with ``inputs=`` lands a step on each of them.

:class:`Boluses` are instantaneous jumps of the state: at ``times[b, m]`` the state component ``index[b, m]``
of trajectory ``b`` jumps by ``amounts[b, m]`` (a dose injected at once).

Shapes: ``B`` trajectories, ``K`` knots (rows with fewer are padded at the end with NaN times), ``C`` channels,
``M`` boluses. Times are in the unit of the solve's time axis; values in the channel's ``units``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["KINDS", "Boluses", "Inputs", "PreparedInputs", "parse_infusions"]

#: The interpolation kinds of a channel.
KINDS = ("constant", "linear", "cubic")


def check_target(device: object, dtype: object) -> torch.device | None:
    """The ``device`` of a ``.to(device, dtype)`` as a ``torch.device`` (or ``None``), refused when it is not a
    device of this machine or ``dtype`` is not a floating torch dtype."""
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch dtype such as torch.float64, got {dtype!r}.")
    if device is None:
        return None
    try:
        dev = torch.device(device)  # type: ignore[call-overload]  # checked here
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r} is not a torch device; use e.g. 'cpu', 'cuda' or 'cuda:1'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r}: CUDA is not available on this machine; use 'cpu'.")
    return dev


def _as_float_tensor(name: str, x: object) -> Tensor:
    if isinstance(x, Tensor):
        if not (x.is_floating_point()):
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; pass e.g. {name}.double().")
        return x
    try:
        out = torch.as_tensor(x, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be a tensor or a nested list of numbers, got {type(x).__name__}.") from exc
    return out


def _check_knot_times(name: str, times: Tensor) -> Tensor:
    """``(B, K)`` times: finite increasing prefix per row, NaN padding after it; returns the lengths ``(B,)``."""
    if times.shape[-1] < 1:
        raise ValueError(f"{name} has no knot (shape {tuple(times.shape)}); give at least one time per trajectory.")
    valid = ~torch.isnan(times)
    lengths = valid.sum(-1)
    K = times.shape[-1]
    ar = torch.arange(K, device=times.device)
    if bool((valid != (ar < lengths.unsqueeze(-1))).any()):
        b = int(torch.nonzero((valid != (ar < lengths.unsqueeze(-1))).any(-1))[0, 0])
        raise ValueError(
            f"{name}[{b}] has NaN times before valid ones ({times[b].tolist()}); NaN may only pad the end of a row "
            "that has fewer knots than the others."
        )
    if bool((lengths == 0).any()):
        b = int(torch.nonzero(lengths == 0)[0, 0])
        raise ValueError(f"{name}[{b}] has no valid time (all NaN); every trajectory needs at least one knot.")
    if bool(torch.isinf(times).any()):
        raise ValueError(f"{name} contains an infinite time; knot times must be finite (NaN only as padding).")
    if K > 1:
        d = times[..., 1:] - times[..., :-1]
        bad = (d <= 0) & valid[..., 1:]
        if bool(bad.any()):
            b, k = (int(i) for i in torch.nonzero(bad)[0])
            raise ValueError(
                f"{name} must be strictly increasing along each row; {name}[{b}, {k + 1}] = "
                f"{float(times[b, k + 1])!r} <= {name}[{b}, {k}] = {float(times[b, k])!r}. Sort the knots of each "
                "trajectory (and merge duplicates)."
            )
    return lengths


class Inputs:
    """Per-trajectory external input series ``u(t)`` with their own knot times and one interpolation per channel.

    Parameters
    ----------
    times
        Knot times ``(B, K)``, or ``(K,)`` for one series (shared by every trajectory of a solve); strictly
        increasing along each row, rows with fewer knots padded at the end with NaN. Time units of the solve.
    values
        Input values at the knots ``(B, K, C)`` (or ``(K, C)`` with ``(K,)`` times); finite at the valid knots
        (padding may be anything, e.g. NaN). May require grad: the solution is differentiable with respect to
        them (dose optimisation), with every gradient method.
    kinds
        One of :data:`KINDS` for every channel, or a sequence of ``C`` of them (default ``"constant"``).
    names
        Channel names, ``C`` distinct strings (default ``"u0"``, ``"u1"``, ...).
    units
        Channel units, ``C`` strings (default ``""``, unknown / dimensionless).
    boluses
        Instantaneous jumps of the state applied with these inputs (:class:`Boluses`), or ``None``.

    Raises
    ------
    TypeError, ValueError
        Shapes that do not fit, NaN inside a row, unsorted knots, non-finite values at valid knots, unknown kinds;
        the message names what was received and what to change.

    Examples
    --------
    An infusion of 2 mg/h from t = 1 h to t = 3 h, then none::

        u = Inputs(torch.tensor([0.0, 1.0, 3.0]), torch.tensor([[0.0], [2.0], [0.0]]), "constant",
                   names=["rate"], units=["mg/h"])
        physnode.odeint(lambda t, y, u: -0.5 * y + u, y0, t, inputs=u)
    """

    def __init__(
        self,
        times: Tensor | Sequence,
        values: Tensor | Sequence,
        kinds: str | Sequence[str] = "constant",
        names: Sequence[str] | None = None,
        units: Sequence[str] | None = None,
        boluses: Boluses | None = None,
    ) -> None:
        times = _as_float_tensor("times", times)
        values = _as_float_tensor("values", values)
        self.batched = times.ndim == 2
        if times.ndim not in (1, 2):
            raise ValueError(f"times must have shape (K,) or (B, K), got {tuple(times.shape)}.")
        if values.ndim != times.ndim + 1 or values.shape[: times.ndim] != times.shape:
            want = "(K, C)" if times.ndim == 1 else "(B, K, C)"
            raise ValueError(
                f"values must have shape {want} for times of shape {tuple(times.shape)}, got {tuple(values.shape)}; "
                "give one value per knot and channel (a single channel is values[..., None])."
            )
        if values.device != times.device:
            raise ValueError(f"times are on {times.device} but values on {values.device}; put them on one device.")
        if not self.batched:
            times, values = times.unsqueeze(0), values.unsqueeze(0)
        self.times = times
        self.values = values
        C = values.shape[-1]
        self.lengths = _check_knot_times("times", times.detach())
        K = times.shape[1]
        valid = torch.arange(K, device=times.device) < self.lengths.unsqueeze(-1)
        if not bool(torch.isfinite(values.detach()[valid]).all()):
            raise ValueError("values must be finite at every valid knot (NaN or Inf found); only padding may be NaN.")
        if isinstance(kinds, str):
            kinds = [kinds] * C
        kinds = list(kinds)
        if len(kinds) != C:
            raise ValueError(f"kinds must name one interpolation per channel ({C}), got {len(kinds)}: {kinds}.")
        for k in kinds:
            if k not in KINDS:
                raise ValueError(f"unknown interpolation kind {k!r}; choose one of {', '.join(KINDS)} per channel.")
        self.kinds: list[str] = kinds
        for what, given in (("names", names), ("units", units)):
            if isinstance(given, str):
                raise TypeError(
                    f"{what} must be a list of {C} strings (one per channel), got the string {given!r}; write "
                    f"[{given!r}]."
                )
        self.names: list[str] = [f"u{i}" for i in range(C)] if names is None else [str(n) for n in names]
        self.units: list[str] = [""] * C if units is None else [str(u) for u in units]
        if len(self.names) != C or len(set(self.names)) != C:
            raise ValueError(f"names must be {C} distinct strings (one per channel), got {self.names}.")
        if len(self.units) != C:
            raise ValueError(f"units must be {C} strings (one per channel), got {self.units}.")
        if boluses is not None and not isinstance(boluses, Boluses):
            raise TypeError(f"boluses must be a Boluses or None, got {type(boluses).__name__}.")
        self.boluses = boluses

    @classmethod
    def from_infusions(
        cls,
        infusions: Sequence[Sequence[Sequence[float]]],
        *,
        t0: float = 0.0,
        names: Sequence[str] | None = None,
        units: Sequence[str] | None = None,
        boluses: Boluses | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> Inputs:
        """Piecewise-constant inputs from per-trajectory infusions.

        Parameters
        ----------
        infusions
            One list per trajectory (possibly empty) of ``(start, end, rate)`` (channel 0) or ``(start, end, rate,
            channel)``, ``t0 <= start < end`` (time units), ``rate`` in the channel's units (e.g. mg/h). Channel ``c``
            of ``u(t)`` is the sum of the rates of its infusions running at ``t`` (``start <= t < end``).
        t0
            Start of the series: the first knot of every trajectory (``u = 0`` there unless an infusion starts
            there).
        names, units
            Channel names and units; their number sets the number of channels ``C`` (default one channel, or as
            many as the highest channel used).
        boluses
            Instantaneous doses carried along (:class:`Boluses`).
        dtype
            Floating dtype of the knots and values.

        Raises
        ------
        ValueError
            An infusion that is not ``(start, end, rate[, channel])`` with ``t0 <= start < end`` or whose channel
            does not exist.
        """
        B = len(infusions)
        used = [int(item[3]) for items in infusions for item in items if len(item) == 4]
        C = len(names) if names is not None else (len(units) if units is not None else max([0, *used]) + 1)
        parsed = parse_infusions(infusions, C, t0=t0)
        knots = [sorted({float(t0), *(x for s, e, _, _ in rows for x in (s, e))}) for rows in parsed]
        K = max(len(k) for k in knots)
        times = torch.full((B, K), float("nan"), dtype=dtype)
        values = torch.full((B, K, C), float("nan"), dtype=dtype)
        for b, (row_knots, rows) in enumerate(zip(knots, parsed, strict=True)):
            for k, tk in enumerate(row_knots):
                times[b, k] = tk
                level = [0.0] * C
                for start, end, rate, c in rows:
                    if start <= tk < end:
                        level[c] += rate
                values[b, k] = torch.tensor(level, dtype=dtype)
        return cls(times, values, "constant", names=names, units=units, boluses=boluses)

    # ------------------------------------------------------------------------------------------------ shape
    @property
    def batch(self) -> int:
        """Number of trajectories ``B`` (1 for a shared series)."""
        return int(self.times.shape[0])

    @property
    def channels(self) -> int:
        """Number of channels ``C``."""
        return int(self.values.shape[-1])

    def __len__(self) -> int:
        return self.batch

    def __repr__(self) -> str:
        chans = ", ".join(f"{n} [{u}] {k}" for n, u, k in zip(self.names, self.units, self.kinds, strict=True))
        return f"Inputs(B={self.batch}, K={self.times.shape[1]}, channels=({chans}))"

    @property
    def breakpoints(self) -> Tensor:
        """``(B, K)`` the times at which some channel is not smooth: every valid knot (NaN padding)."""
        return self.times.detach()

    def differentiable(self) -> tuple[Tensor, ...]:
        """The tensors a solve differentiates (added to a gradient method's ``params`` automatically):
        ``values`` and the bolus ``amounts`` when they require grad."""
        out = [self.values] if self.values.requires_grad else []
        if self.boluses is not None and self.boluses.amounts.requires_grad:
            out.append(self.boluses.amounts)
        return tuple(out)

    # ------------------------------------------------------------------------------------------------ copies
    def _replace(self, times: Tensor, values: Tensor, boluses: Boluses | None) -> Inputs:
        out = Inputs.__new__(Inputs)
        out.__dict__.update(self.__dict__)
        out.times, out.values, out.boluses = times, values, boluses
        out.lengths = (~torch.isnan(times)).sum(-1)
        return out

    def padded_values(self) -> Tensor:
        """``values`` with NaN at the padded knots (whatever was stored there), detached."""
        valid = ~torch.isnan(self.times.detach())
        return torch.where(valid.unsqueeze(-1), self.values.detach(), float("nan"))

    def detach(self) -> Inputs:
        """A copy whose ``values`` (and bolus ``amounts``) are detached from any graph (data, not parameters)."""
        b = None if self.boluses is None else self.boluses.detach()
        return self._replace(self.times.detach(), self.values.detach(), b)

    def same(self, other: object) -> bool:
        """Whether ``other`` holds the same knots, values, kinds, names, units and boluses (bitwise, same dtype)."""
        if not isinstance(other, Inputs):
            return False
        meta = (self.kinds, self.names, self.units) == (other.kinds, other.names, other.units)
        tensors = all(
            a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.detach().cpu(), b.detach().cpu())
            for a, b in (
                (self.times.nan_to_num(-1e300), other.times.nan_to_num(-1e300)),
                (self.padded_values().nan_to_num(-1e300), other.padded_values().nan_to_num(-1e300)),
            )
        )
        if (self.boluses is None) != (other.boluses is None):
            return False
        if self.boluses is not None and other.boluses is not None and not self.boluses.same(other.boluses):
            return False
        return meta and tensors

    @staticmethod
    def concat(items: Sequence[Inputs]) -> Inputs:
        """Stack the trajectories of several :class:`Inputs` with the same channels (names, kinds, units), padding
        the knots with NaN; boluses are stacked too (all or none of the items must carry them)."""
        items = list(items)
        if not items:
            raise ValueError("Inputs.concat needs at least one Inputs.")
        first = items[0]
        for k, it in enumerate(items[1:], 1):
            if (it.names, it.kinds, it.units) != (first.names, first.kinds, first.units):
                raise ValueError(
                    f"inputs[{k}] have channels {it.names} / kinds {it.kinds} / units {it.units}; expected "
                    f"{first.names} / {first.kinds} / {first.units} as inputs[0]."
                )
        if len({it.boluses is None for it in items}) > 1:
            raise ValueError("either every Inputs carries boluses or none does; give empty boluses (NaN) instead.")
        K = max(it.times.shape[1] for it in items)
        dt = first.values.dtype

        def pad(x: Tensor) -> Tensor:
            if x.shape[1] == K:
                return x.to(dt)
            shape = (x.shape[0], K - x.shape[1], *x.shape[2:])
            return torch.cat([x.to(dt), torch.full(shape, float("nan"), dtype=dt, device=x.device)], dim=1)

        times = torch.cat([pad(it.times) for it in items])
        values = torch.cat([pad(it.values) for it in items])
        b = None
        if first.boluses is not None:
            b = Boluses.concat([it.boluses for it in items if it.boluses is not None])
        out = first._replace(times, values, b)
        out.batched = True
        return out

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Inputs:
        """A copy on ``device`` and/or in ``dtype`` (differentiable: the graph to ``values`` is kept)."""
        device = check_target(device, dtype)
        b = None if self.boluses is None else self.boluses.to(device, dtype)
        return self._replace(self.times.to(device=device, dtype=dtype), self.values.to(device=device, dtype=dtype), b)

    def __getitem__(self, index: Any) -> Inputs:
        """The trajectories ``index`` (an int, slice, list or index tensor) as a batched :class:`Inputs`."""
        if isinstance(index, int):
            index = [index]
        if not self.batched:
            raise IndexError("a shared (unbatched) input series has no trajectories to select; use it as it is.")
        idx = torch.as_tensor(index, device=self.times.device) if isinstance(index, list) else index
        times = self.times[idx]
        values = self.values[idx]
        b = None if self.boluses is None else self.boluses[index]
        keep = int((~torch.isnan(times)).sum(-1).max()) if times.shape[0] else 1
        return self._replace(times[:, :keep], values[:, :keep], b)

    def expand(self, batch: int) -> Inputs:
        """The inputs for ``batch`` trajectories: a shared series (or a batch of one) is repeated; a batch of
        ``batch`` comes back as it is.

        Raises
        ------
        ValueError
            Another batch size.
        """
        if self.batch == batch:
            return self
        if self.batch != 1:
            raise ValueError(
                f"inputs hold {self.batch} trajectories but the solve has {batch}; give one input series per "
                "trajectory (B first) or one shared series."
            )
        b = None if self.boluses is None else self.boluses.expand(batch)
        return self._replace(self.times.expand(batch, -1), self.values.expand(batch, -1, -1), b)

    # ------------------------------------------------------------------------------------------------ evaluation
    def prepare(
        self, dtype: torch.dtype | None = None, device: torch.device | None = None, batch: int | None = None
    ) -> PreparedInputs:
        """The evaluator a solve uses (:class:`PreparedInputs`), in ``dtype`` on ``device``, for ``batch``
        trajectories (default: this batch; a shared series is repeated), differentiable w.r.t. ``values``."""
        return PreparedInputs(self, self.batch if batch is None else batch, dtype=dtype, device=device)

    def __call__(self, t: Tensor | float) -> Tensor:
        """``u(t)``, right-continuous at the knots.

        Parameters
        ----------
        t
            ``(B,)`` one time per trajectory (or a 0-d tensor / float for every trajectory).

        Returns
        -------
        Tensor
            ``(B, C)``; ``(C,)`` for a shared (unbatched) series and a 0-d ``t``. Differentiable w.r.t. ``values``.
        """
        prep = self.prepare()
        tt = torch.as_tensor(t, dtype=self.times.dtype, device=self.times.device)
        scalar = tt.ndim == 0
        tt = tt.expand(self.batch) if scalar else tt
        u = prep(tt, None, None)
        return u[0] if scalar and not self.batched else u


class PreparedInputs:
    """The evaluator of :class:`Inputs` inside a solve (built by :meth:`Inputs.prepare`).

    ``prepared(t (B,), window, side)`` gives ``u (B, C)``. The piece of the interpolant used is chosen from the
    current step window (:class:`physnode._breakpoints.Window`: the piece that contains the step, so the right
    limit at a step's start and the left limit at its end), or, outside a step, from ``t`` itself approached from
    ``side`` (``(B,)``, ``+1.0`` right-continuous, the default).

    The values (masked, converted, and the cubic slopes) are derived from ``inputs.values`` at every evaluation
    made with grad mode on while ``values`` requires grad, so that each evaluation has its own graph back to the
    user's tensor (gradient methods with their own backward pass take one vector-Jacobian product per stage);
    otherwise they are computed once.

    Parameters
    ----------
    inputs
        The inputs (a shared series is expanded to ``batch`` rows).
    batch
        Number of trajectories ``B`` of the solve.
    dtype, device
        Those of the solve's state.
    """

    def __init__(
        self, inputs: Inputs, batch: int, dtype: torch.dtype | None = None, device: torch.device | None = None
    ) -> None:
        self.inputs, self.batch, self.dtype, self.device = inputs, batch, dtype, device
        times = inputs.expand(batch).times.detach().to(device=device, dtype=dtype)
        K = times.shape[1]
        self.lengths = (~torch.isnan(times)).sum(-1)
        self.valid = torch.arange(K, device=times.device) < self.lengths.unsqueeze(-1)
        # Padding: +inf times (searchsorted needs sorted rows), zero values (never used; keeps gradients finite).
        self.knots = torch.where(self.valid, times, torch.full_like(times, float("inf"))).contiguous()
        self._times0 = torch.where(self.valid, times, torch.zeros_like(times))
        kinds = inputs.kinds
        self.groups = {k: [i for i, x in enumerate(kinds) if x == k] for k in KINDS}
        self.order = torch.tensor(
            [i for k in KINDS for i in self.groups[k]], dtype=torch.long, device=times.device
        ).argsort()
        self._cache: tuple[Tensor, Tensor | None] | None = None

    def derived(self) -> tuple[Tensor, Tensor | None]:
        """``(values (B, K, C), slopes (B, K, C_cubic) or None)`` in the solve's dtype, padding zeroed."""
        fresh_graph = torch.is_grad_enabled() and self.inputs.values.requires_grad
        if self._cache is not None and not fresh_graph:
            return self._cache
        values = self.inputs.expand(self.batch).values.to(device=self.device, dtype=self.dtype)
        values = torch.where(self.valid.unsqueeze(-1), values, torch.zeros_like(values))
        slopes = None
        if self.groups["cubic"]:
            slopes = pchip_slopes(self._times0, values[..., self.groups["cubic"]], self.lengths)
        if not fresh_graph:
            self._cache = (values, slopes)
        return values, slopes

    def __call__(self, t: Tensor, window: Any, side: Tensor | None) -> Tensor:
        B = self.knots.shape[0]
        all_values, all_slopes = self.derived()
        if t.shape[0] != B:
            raise ValueError(f"inputs hold {B} trajectories but f was evaluated for {t.shape[0]}.")
        t = t.to(self.knots.dtype)
        if window is not None:
            ref, s = window.t.to(self.knots.dtype), window.side
        else:
            ref = t
            s = torch.ones_like(t) if side is None else side
        q = ref.unsqueeze(-1).contiguous()
        right = torch.searchsorted(self.knots, q, right=True).squeeze(-1)
        left = torch.searchsorted(self.knots, q, right=False).squeeze(-1)
        i = torch.where(s > 0, right, left)  # number of knots before the piece
        n = self.lengths
        lo = (i - 1).clamp(min=0)
        lo = torch.minimum(lo, n - 1)
        hi = torch.minimum(i, n - 1)
        inside = (i >= 1) & (i < n)
        t_lo = self.knots.gather(1, lo.unsqueeze(-1)).squeeze(-1)
        t_hi = self.knots.gather(1, hi.unsqueeze(-1)).squeeze(-1)
        span = torch.where(inside, t_hi - t_lo, torch.ones_like(t_lo))
        x = torch.where(inside, (t - t_lo) / span, torch.zeros_like(t)).unsqueeze(-1)  # (B, 1)
        parts = []
        for kind in KINDS:
            chans = self.groups[kind]
            if not chans:
                continue
            v = all_values[..., chans]
            Cg = len(chans)
            v_lo = v.gather(1, lo.view(B, 1, 1).expand(B, 1, Cg)).squeeze(1)
            if kind == "constant":
                parts.append(v_lo)
                continue
            v_hi = v.gather(1, hi.view(B, 1, 1).expand(B, 1, Cg)).squeeze(1)
            if kind == "linear":
                parts.append(v_lo + x * (v_hi - v_lo))
                continue
            assert all_slopes is not None
            m_lo = all_slopes.gather(1, lo.view(B, 1, 1).expand(B, 1, Cg)).squeeze(1)
            m_hi = all_slopes.gather(1, hi.view(B, 1, 1).expand(B, 1, Cg)).squeeze(1)
            x2, x3 = x * x, x * x * x
            sp = span.unsqueeze(-1) * inside.unsqueeze(-1)
            h00 = 2 * x3 - 3 * x2 + 1
            h10 = x3 - 2 * x2 + x
            h01 = -2 * x3 + 3 * x2
            h11 = x3 - x2
            parts.append(h00 * v_lo + h10 * sp * m_lo + h01 * v_hi + h11 * sp * m_hi)
        u = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)[..., self.order]
        return u


def pchip_slopes(times: Tensor, values: Tensor, lengths: Tensor) -> Tensor:
    """Monotone cubic Hermite slopes (Fritsch–Carlson, in the Fritsch–Butland form of MATLAB/SciPy ``pchip``).

    Parameters
    ----------
    times
        ``(B, K)`` knot times (entries beyond ``lengths`` are ignored, any finite value).
    values
        ``(B, K, C)`` values at the knots (padding ignored, finite).
    lengths
        ``(B,)`` valid knots per row.

    Returns
    -------
    Tensor
        ``(B, K, C)`` slopes ``du/dt`` at the knots (zero on padding); differentiable w.r.t. ``values``.
    """
    B, K, _ = values.shape
    dev = values.device
    m = torch.zeros_like(values)
    if K < 2:
        return m
    n = lengths.view(B, 1, 1)
    ar = torch.arange(K, device=dev).view(1, K, 1)
    pair_ok = ar[:, : K - 1] < (n - 1)  # (1|B, K-1, 1): interval k is valid
    h = (times[:, 1:] - times[:, :-1]).unsqueeze(-1)
    h = torch.where(pair_ok, h, torch.ones_like(h))
    delta = torch.where(pair_ok, (values[:, 1:] - values[:, :-1]) / h, torch.zeros_like(values[:, 1:]))
    if K >= 3:
        # Interior knots k = 1..K-2: weighted harmonic mean where the secants agree in sign.
        d0, d1 = delta[:, :-1], delta[:, 1:]
        h0, h1 = h[:, :-1], h[:, 1:]
        same = (d0 * d1 > 0) & (ar[:, 1 : K - 1] < (n - 1))
        w1, w2 = 2 * h1 + h0, h1 + 2 * h0
        sd0 = torch.where(same, d0, torch.ones_like(d0))
        sd1 = torch.where(same, d1, torch.ones_like(d1))
        interior = torch.where(same, (w1 + w2) / (w1 / sd0 + w2 / sd1), torch.zeros_like(d0))
        m = torch.cat([m[:, :1], interior, m[:, -1:]], dim=1)

    def end_slope(h0: Tensor, h1: Tensor, d0: Tensor, d1: Tensor) -> Tensor:
        s = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        s = torch.where(torch.sign(s) != torch.sign(d0), torch.zeros_like(s), s)
        limit = (torch.sign(d0) != torch.sign(d1)) & (s.abs() > 3 * d0.abs())
        return torch.where(limit, 3 * d0, s)

    def at(x: Tensor, k: Tensor) -> Tensor:  # x (B, K-1, C) at per-row index k (B,)
        return x.gather(1, k.view(B, 1, 1).expand(B, 1, x.shape[-1])).squeeze(1)

    nb = lengths
    zero = torch.zeros_like(nb)
    last = (nb - 2).clamp(min=0)
    prev = (nb - 3).clamp(min=0)
    three = (nb >= 3).view(B, 1)
    two = (nb == 2).view(B, 1)
    first = torch.where(
        three,
        end_slope(
            at(h, zero), at(h, zero + 1 if K > 2 else zero), at(delta, zero), at(delta, zero + 1 if K > 2 else zero)
        ),
        at(delta, zero),
    )
    final = torch.where(three, end_slope(at(h, last), at(h, prev), at(delta, last), at(delta, prev)), at(delta, last))
    some = three | two
    first = torch.where(some, first, torch.zeros_like(first))
    final = torch.where(some, final, torch.zeros_like(final))
    idx_first = ar == 0
    idx_last = ar == (n - 1)
    inside = ar < n
    m = torch.where(idx_first, first.unsqueeze(1), m)
    m = torch.where(idx_last & (n > 1), final.unsqueeze(1), m)
    return torch.where(inside, m, torch.zeros_like(m))


class Boluses:
    """Instantaneous jumps of the state (bolus doses): at ``times[b, m]`` state component ``index[b, m]`` of
    trajectory ``b`` jumps by ``amounts[b, m]``.

    Parameters
    ----------
    times
        ``(B, M)`` (or ``(M,)`` shared by every trajectory) bolus times, non-decreasing along each row, NaN padding
        at the end of rows with fewer boluses. Time units of the solve.
    amounts
        ``(B, M)`` (or ``(M,)``) jump sizes in the unit of the state component they add to; may require grad.
    index
        The state component each bolus adds to: an int for all of them, or an integer tensor ``(B, M)`` / ``(M,)``.

    Notes
    -----
    The state is right-continuous at a bolus: an observation at a bolus time sees the state *after* the jump.
    Boluses at the same time add up.
    """

    def __init__(self, times: Tensor | Sequence, amounts: Tensor | Sequence, index: int | Tensor | Sequence = 0):
        times = _as_float_tensor("bolus times", times)
        amounts = _as_float_tensor("bolus amounts", amounts)
        if times.ndim not in (1, 2) or amounts.shape != times.shape:
            raise ValueError(
                f"bolus times and amounts must have the same shape (M,) or (B, M); got {tuple(times.shape)} and "
                f"{tuple(amounts.shape)}."
            )
        self.batched = times.ndim == 2
        if not self.batched:
            times, amounts = times.unsqueeze(0), amounts.unsqueeze(0)
        if isinstance(index, (bool, str)) or not isinstance(index, (int, Tensor, Sequence)):
            raise TypeError(f"index must be an int or an integer tensor, got {type(index).__name__}.")
        try:
            idx = torch.as_tensor(index, device=times.device)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"index must hold integers (state components), got {index!r}.") from None
        if idx.is_floating_point() or idx.dtype == torch.bool:
            raise TypeError(f"index must hold integers (state components), got dtype {idx.dtype}.")
        idx = idx.long()
        if idx.ndim == 1 and not self.batched:
            idx = idx.unsqueeze(0)
        if idx.ndim not in (0, 2) or (idx.ndim == 2 and idx.shape != times.shape):
            raise ValueError(
                f"index must be an int or have the shape of the bolus times {tuple(times.shape)}, got "
                f"{tuple(idx.shape)}."
            )
        valid = ~torch.isnan(times)
        lengths = valid.sum(-1)
        M = times.shape[-1]
        if bool((valid != (torch.arange(M, device=times.device) < lengths.unsqueeze(-1))).any()):
            raise ValueError("bolus times may be NaN only as padding at the end of a row; sort each row's boluses.")
        if bool(torch.isinf(times).any()):
            raise ValueError("bolus times must be finite (NaN only as padding).")
        if M > 1 and bool(((times[:, 1:] < times[:, :-1]) & valid[:, 1:]).any()):
            raise ValueError("bolus times must be non-decreasing along each row; sort each trajectory's boluses.")
        if not bool(torch.isfinite(amounts.detach()[valid]).all()):
            raise ValueError("bolus amounts must be finite at every valid bolus time.")
        if bool((idx < 0).any()):
            raise ValueError(f"index must be non-negative state components, got {idx.tolist()}.")
        self.times, self.amounts = times, amounts
        self.index = idx.expand(times.shape) if idx.ndim == 0 else idx

    @property
    def batch(self) -> int:
        """Number of trajectories ``B`` (1 for a shared schedule)."""
        return int(self.times.shape[0])

    def __len__(self) -> int:
        return self.batch

    def __repr__(self) -> str:
        return f"Boluses(B={self.batch}, M={self.times.shape[1]})"

    def _replace(self, times: Tensor, amounts: Tensor, index: Tensor) -> Boluses:
        out = Boluses.__new__(Boluses)
        out.batched, out.times, out.amounts, out.index = True, times, amounts, index
        return out

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Boluses:
        """A copy on ``device`` and/or in ``dtype`` (differentiable w.r.t. ``amounts``)."""
        device = check_target(device, dtype)
        out = self._replace(
            self.times.to(device=device, dtype=dtype),
            self.amounts.to(device=device, dtype=dtype),
            self.index.to(device=device),
        )
        out.batched = self.batched
        return out

    def detach(self) -> Boluses:
        """A copy with ``amounts`` detached."""
        out = self._replace(self.times.detach(), self.amounts.detach(), self.index)
        out.batched = self.batched
        return out

    def same(self, other: object) -> bool:
        """Whether ``other`` holds the same times, amounts and indices (bitwise, same dtype)."""
        if not isinstance(other, Boluses):
            return False
        return all(
            a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.detach().cpu(), b.detach().cpu())
            for a, b in (
                (self.times.nan_to_num(-1e300), other.times.nan_to_num(-1e300)),
                (self.amounts.nan_to_num(-1e300), other.amounts.nan_to_num(-1e300)),
                (self.index, other.index),
            )
        )

    @staticmethod
    def concat(items: Sequence[Boluses]) -> Boluses:
        """Stack the trajectories of several :class:`Boluses`, padding with NaN times and amounts."""
        items = list(items)
        M = max(it.times.shape[1] for it in items)
        dt = items[0].amounts.dtype

        def pad(x: Tensor, fill: float) -> Tensor:
            if x.shape[1] == M:
                return x
            extra = torch.full((x.shape[0], M - x.shape[1]), fill, dtype=x.dtype, device=x.device)
            return torch.cat([x, extra], dim=1)

        return items[0]._replace(
            torch.cat([pad(it.times.to(dt), float("nan")) for it in items]),
            torch.cat([pad(it.amounts.to(dt), float("nan")) for it in items]),
            torch.cat([pad(it.index, 0) for it in items]),
        )

    def __getitem__(self, index: Any) -> Boluses:
        """The trajectories ``index`` as a batched :class:`Boluses`."""
        if isinstance(index, int):
            index = [index]
        idx = torch.as_tensor(index, device=self.times.device) if isinstance(index, list) else index
        return self._replace(self.times[idx], self.amounts[idx], self.index[idx])

    def expand(self, batch: int) -> Boluses:
        """The schedule for ``batch`` trajectories (a batch of one is repeated)."""
        if self.batch == batch:
            return self
        if self.batch != 1:
            raise ValueError(f"boluses hold {self.batch} trajectories but the solve has {batch}.")
        return self._replace(self.times.expand(batch, -1), self.amounts.expand(batch, -1), self.index.expand(batch, -1))


def parse_infusions(
    infusions: Sequence[Sequence[Sequence[float]]],
    n_channels: int,
    *,
    t0: float | None = None,
    unit: str = "trajectory",
) -> list[list[tuple[float, float, float, int]]]:
    """Check and normalise per-trajectory infusion lists (shared by :meth:`Inputs.from_infusions` and
    :meth:`physnode.latent.TreatmentSchedule.from_infusions`).

    Parameters
    ----------
    infusions
        One list per trajectory (possibly empty) of ``(start, end, rate)`` (channel 0) or ``(start, end, rate,
        channel)``.
    n_channels
        Number of channels ``C``: a channel must lie in ``[0, C)``.
    t0
        When given, every infusion must start at or after it.
    unit
        What one list describes, for the error messages (``"trajectory"``, ``"patient"``).

    Returns
    -------
    list of list of (start, end, rate, channel)
        Floats and an int channel, in the order given.

    Raises
    ------
    ValueError
        No list at all, an entry that is not ``(start, end, rate[, channel])``, ``start >= end`` (or ``start < t0``),
        a non-finite value, or a channel outside ``[0, C)``.
    """
    if len(infusions) == 0:
        raise ValueError(f"infusions must hold one list (possibly empty) per {unit}, got none.")
    parsed: list[list[tuple[float, float, float, int]]] = []
    for b, items in enumerate(infusions):
        rows = []
        for item in items:
            if len(item) not in (3, 4):
                raise ValueError(f"infusion {item!r} of {unit} {b} must be (start, end, rate[, channel]).")
            start, end, rate = float(item[0]), float(item[1]), float(item[2])
            c = int(item[3]) if len(item) == 4 else 0
            if not all(math.isfinite(x) for x in (start, end, rate)):
                raise ValueError(f"infusion {item!r} of {unit} {b} has a non-finite start, end or rate.")
            if t0 is not None and not t0 <= start < end:
                raise ValueError(f"infusion {item!r} of {unit} {b} needs t0 = {t0} <= start < end.")
            if not start < end:
                raise ValueError(f"infusion {item!r} of {unit} {b} has start >= end; give start < end.")
            if not 0 <= c < n_channels:
                raise ValueError(f"infusion {item!r} of {unit} {b}: channel {c} not in [0, {n_channels}).")
            rows.append((start, end, rate, c))
        parsed.append(rows)
    return parsed
