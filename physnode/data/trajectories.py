"""The :class:`Trajectories` container: irregularly sampled, padded, masked trajectory data."""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .inputs import Inputs, check_target

#: Tensor dtypes that index trajectories (besides bool masks).
_INDEX_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)

__all__ = ["PAD_RELATIVE_STEP", "RESERVED_NAMES", "Trajectories", "solver_ready_times"]

#: Padded time entries continue the last valid time of a trajectory with this step, relative to
#: ``max(1, |t|_max, span)`` of that trajectory (about 16 float32 ulps; harmless for float64).
PAD_RELATIVE_STEP = 1e-6

#: Names a channel may not take: they are variables, dimensions or coordinates of the file schema.
RESERVED_NAMES = frozenset(
    {
        "time",
        "trajectory",
        "obs",
        "channel",
        "mask",
        "trajectory_id",
        "metadata",
        # the optional external inputs and boluses (physnode.data.io)
        "input_obs",
        "input_time",
        "input_value",
        "input_channel",
        "input_kind",
        "input_units",
        "bolus",
        "bolus_time",
        "bolus_amount",
        "bolus_index",
    }
)

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _canonical_json(obj: Any, what: str) -> Any:
    """Round-trip ``obj`` through JSON so that in-memory metadata equals what a file gives back."""
    try:
        text = json.dumps(obj, sort_keys=True, allow_nan=True)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply to be stored as JSON; flatten it.") from None
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{what} must be JSON-serialisable (dicts with str keys, lists, str, int, float, bool, None); "
            f"{err}. Convert tensors with .tolist()."
        ) from None
    return json.loads(text)


#: Longest unit string or trajectory id (characters).
_MAX_TEXT = 1000


def _check_text(s: str, what: str) -> None:
    """Unit strings and ids are stored as file attributes and strings: short, valid text, no NUL or surrogates."""
    if len(s) > _MAX_TEXT:
        raise ValueError(f"{what} is {len(s)} characters long; at most {_MAX_TEXT} are allowed.")
    if "\x00" in s:
        raise ValueError(f"{what} = {s!r} contains a NUL character, which files cannot store; remove it.")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} = {s!r} is not valid Unicode text (it holds a lone surrogate).") from None


def _checked_inputs(inputs: object, N: int, device: torch.device) -> Inputs | None:
    """The inputs of ``N`` trajectories on ``device``, detached (``None`` stays ``None``)."""
    if inputs is None:
        return None
    if not isinstance(inputs, Inputs):
        raise TypeError(f"inputs must be a physnode.data.Inputs or None, got {type(inputs).__name__}.")
    if inputs.batch not in (1, N):
        raise ValueError(
            f"inputs hold {inputs.batch} trajectories but the data has {N}; give one input series per trajectory "
            "(or one shared series)."
        )
    if inputs.times.device != device:
        raise ValueError(f"inputs are on {inputs.times.device} but the data on {device}; move them together.")
    for j, (n, u) in enumerate(zip(inputs.names, inputs.units, strict=True)):
        _check_text(n, f"inputs.names[{j}]")
        _check_text(u, f"inputs.units[{j}]")
    out = inputs.expand(N).detach()
    out = out._replace(out.times, out.padded_values(), out.boluses)  # padding: NaN, whatever was given
    out.batched = True
    if out.boluses is not None:
        out.boluses.batched = True
    return out


def solver_ready_times(times: Tensor, lengths: Tensor) -> Tensor:
    """Fill the padded entries of ``times`` so that every row is strictly increasing.

    Parameters
    ----------
    times
        ``(N, T)`` times; entries ``times[i, :lengths[i]]`` are valid and strictly increasing, the rest are
        ignored (NaN allowed).
    lengths
        ``(N,)`` number of valid times of each trajectory, ``>= 1``.

    Returns
    -------
    Tensor
        ``(N, T)`` copy whose padded entries are ``t_last + k * delta`` (``k = 1, 2, ...``) with ``delta =
        PAD_RELATIVE_STEP * max(1, max|t_valid|, span)`` per trajectory, computed in float64 and cast back.
        Deterministic: the result depends only on the valid entries.
    """
    T = times.shape[1]
    if lengths.shape != times.shape[:1] or bool(((lengths < 1) | (lengths > T)).any()):
        raise ValueError(
            f"lengths must hold one count per trajectory, shape ({times.shape[0]},), each between 1 and T = {T} "
            f"(the number of valid times of that row); got {lengths.tolist()}."
        )
    t64 = times.detach().to(torch.float64)
    idx = torch.arange(T, device=times.device)
    valid = idx.unsqueeze(0) < lengths.unsqueeze(1)
    t_valid = torch.where(valid, t64, torch.zeros((), dtype=torch.float64, device=times.device))
    last = t64.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1))  # (N, 1)
    first = t64[:, :1]
    scale = torch.maximum(t_valid.abs().amax(dim=1, keepdim=True), (last - first).abs()).clamp(min=1.0)
    k = (idx.unsqueeze(0) - lengths.unsqueeze(1) + 1).to(torch.float64)
    padded = last + k * (PAD_RELATIVE_STEP * scale)
    return torch.where(valid, t64, padded).to(times.dtype)


class Trajectories:
    """A batch of ``N`` trajectories, each with its own observation times and number of observations.

    Storage is padded to a common length ``T``: trajectory ``i`` has ``lengths[i]`` valid times
    ``times[i, :lengths[i]]``; later entries are padding. The stored ``times`` are *solver-ready*: padded
    entries continue the last valid time with tiny increments (see :func:`solver_ready_times`), so a fitting
    loop can call ``physnode.odeint(model, y0, traj.times)`` directly and compare the result with
    ``traj.values`` where ``traj.mask`` is true. Values at masked-out entries are stored as ``0``.

    Parameters
    ----------
    times
        ``(N, T)`` (or ``(T,)``, shared by all trajectories) observation times, in ``time_units``; strictly
        increasing among the valid entries. Padded entries may be NaN.
    values
        ``(N, T, D)`` observations of ``D`` channels. Entries where ``mask`` is false may hold anything (NaN
        included); they are replaced by ``0``.
    mask
        ``(N, T, D)`` bool, true where a channel is observed. Default: the finite entries of ``values`` at
        valid times. Must be false at padded times and where ``values`` is not finite.
    lengths
        ``(N,)`` integer count of valid times per trajectory (``1 <= lengths[i] <= T``). Default: the number of
        leading non-NaN entries of each row of ``times`` (a NaN followed by a valid time is an error).
    channels
        ``D`` channel names (identifiers such as ``"x1"``; not one of :data:`RESERVED_NAMES`). Default
        ``y0, y1, ...``.
    units
        ``D`` unit strings of the channels (UDUNITS style, ``"1"`` for dimensionless). Default ``"1"``.
    time_units
        Unit string of ``times`` (default ``"1"``, dimensionless).
    metadata
        ``N`` JSON-serialisable dicts, one per trajectory (e.g. ``{"initial_state": [...], "parameters":
        {...}}``). Default: empty dicts.
    attrs
        JSON-serialisable dict of global attributes (dataset name, options, ...).
    ids
        ``N`` unique trajectory identifiers (default ``"0", "1", ...``).
    inputs
        External inputs of the trajectories (:class:`~physnode.data.Inputs`: their own knot times in
        ``time_units``, channels, interpolation kinds, units, and optional boluses), ``N`` rows or one shared series
        (repeated), or ``None``. Stored detached (data); selection, batching, ``to``, splitting and files keep them.

    Raises
    ------
    ValueError, TypeError
        Inconsistent shapes, non-floating dtypes, NaN or non-increasing valid times, a mask that marks
        padded or non-finite entries as observed, bad names or non-JSON metadata.
    """

    def __init__(
        self,
        times: Tensor,
        values: Tensor,
        mask: Tensor | None = None,
        lengths: Tensor | Sequence[int] | None = None,
        *,
        channels: Sequence[str] | None = None,
        units: Sequence[str] | None = None,
        time_units: str = "1",
        metadata: Sequence[Mapping[str, Any]] | None = None,
        attrs: Mapping[str, Any] | None = None,
        ids: Sequence[str] | None = None,
        inputs: Inputs | None = None,
    ) -> None:
        if not isinstance(values, Tensor):
            raise TypeError(f"values must be a torch.Tensor of shape (N, T, D), got {type(values).__name__}.")
        if not isinstance(times, Tensor):
            raise TypeError(f"times must be a torch.Tensor of shape (N, T) or (T,), got {type(times).__name__}.")
        if not values.is_floating_point():
            raise TypeError(f"values must have a floating-point dtype, got {values.dtype}; use values.double().")
        if not times.is_floating_point():
            raise TypeError(f"times must have a floating-point dtype, got {times.dtype}; use times.double().")
        if values.ndim != 3:
            raise ValueError(f"values must have shape (N, T, D), got {tuple(values.shape)}.")
        N, T, D = values.shape
        if N < 1 or T < 1 or D < 1:
            raise ValueError(f"values must have N, T, D >= 1, got shape {tuple(values.shape)}.")
        if times.ndim == 1:
            times = times.unsqueeze(0).expand(N, -1)
        if times.shape != (N, T):
            raise ValueError(
                f"times must have shape (N, T) = {(N, T)} to match values of shape {tuple(values.shape)}, "
                f"got {tuple(times.shape)}."
            )
        if times.device != values.device:
            raise ValueError(f"times is on {times.device} but values is on {values.device}; move them together.")
        device = values.device
        times = times.detach()
        values = values.detach()

        # lengths: given, or leading non-NaN entries of the times.
        nan_t = torch.isnan(times)
        if lengths is None:
            lengths_t = (~nan_t).to(torch.int64).cumprod(dim=1).sum(dim=1)
        else:
            lengths_t = torch.as_tensor(lengths, device=device)
            if lengths_t.is_floating_point() or lengths_t.dtype == torch.bool:
                raise TypeError(f"lengths must be integers, got dtype {lengths_t.dtype}.")
            lengths_t = lengths_t.to(torch.int64)
            if lengths_t.shape != (N,):
                raise ValueError(f"lengths must have shape (N,) = ({N},), got {tuple(lengths_t.shape)}.")
        bad_len = (lengths_t < 1) | (lengths_t > T)
        if bool(bad_len.any()):
            i = int(torch.nonzero(bad_len)[0])
            raise ValueError(
                f"trajectory {i} has {int(lengths_t[i])} valid times; each trajectory needs between 1 and T = {T} "
                "(its first time must not be NaN)."
            )
        valid_t = torch.arange(T, device=device).unsqueeze(0) < lengths_t.unsqueeze(1)
        bad = valid_t & ~torch.isfinite(times)
        if bool(bad.any()):
            i, k = torch.nonzero(bad)[0].tolist()
            raise ValueError(
                f"times[{i}, {k}] = {float(times[i, k])} is not finite although trajectory {i} has "
                f"{int(lengths_t[i])} valid times; NaN is allowed only as trailing padding."
            )
        if lengths is None:
            # A NaN followed by a valid time is a hole, not padding.
            hole = (~valid_t) & ~nan_t
            if bool(hole.any()):
                i, k = torch.nonzero(hole)[0].tolist()
                raise ValueError(
                    f"times[{i}, {k}] = {float(times[i, k])} follows a NaN time in trajectory {i}; NaN times "
                    "are allowed only as trailing padding. Remove the NaN entry or pass lengths=."
                )
        if T > 1:
            d = times.diff(dim=1)
            bad = (d <= 0) & valid_t[:, 1:]
            if bool(bad.any()):
                i, k = torch.nonzero(bad)[0].tolist()
                raise ValueError(
                    f"times must be strictly increasing within each trajectory; times[{i}, {k + 1}] = "
                    f"{float(times[i, k + 1]):.10g} <= times[{i}, {k}] = {float(times[i, k]):.10g}. Sort the "
                    "observation times of each trajectory and remove duplicates."
                )

        valid_obs = valid_t.unsqueeze(-1).expand(N, T, D)
        finite = torch.isfinite(values)
        if mask is None:
            mask = finite & valid_obs
        else:
            if not isinstance(mask, Tensor):
                raise TypeError(f"mask must be a bool torch.Tensor of shape (N, T, D), got {type(mask).__name__}.")
            if mask.dtype != torch.bool:
                raise TypeError(f"mask must have dtype torch.bool, got {mask.dtype}; use mask.bool().")
            if mask.shape != values.shape:
                raise ValueError(
                    f"mask shape {tuple(mask.shape)} does not match values shape {tuple(values.shape)}; both "
                    "must be (N, T, D)."
                )
            mask = mask.detach().to(device)
            bad = mask & ~valid_obs
            if bool(bad.any()):
                i, k, j = torch.nonzero(bad)[0].tolist()
                raise ValueError(
                    f"mask[{i}, {k}, {j}] is True at a padded time (trajectory {i} has {int(lengths_t[i])} valid "
                    "times); padded entries cannot be observed."
                )
            bad = mask & ~finite
            if bool(bad.any()):
                i, k, j = torch.nonzero(bad)[0].tolist()
                raise ValueError(
                    f"mask/value mismatch: values[{i}, {k}, {j}] = {float(values[i, k, j])} is marked observed "
                    "(mask True); set mask False for missing or non-finite values."
                )
        values = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=device))

        if isinstance(channels, str):
            raise TypeError(
                f"channels must be a list of D = {D} names, got the string {channels!r}; write [{channels!r}]."
            )
        channels = [f"y{j}" for j in range(D)] if channels is None else list(channels)
        if len(channels) != D:
            raise ValueError(f"got {len(channels)} channel names for D = {D} channels.")
        for c in channels:
            if not isinstance(c, str) or not _NAME_RE.match(c) or c in RESERVED_NAMES:
                raise ValueError(
                    f"channel name {c!r} is not allowed: use an identifier (letters, digits, underscore) that is "
                    f"not one of {sorted(RESERVED_NAMES)}."
                )
        if len(set(channels)) != D:
            raise ValueError(f"channel names must be unique, got {channels}.")
        if isinstance(units, str):
            raise TypeError(f"units must be a list of D = {D} strings, got the string {units!r}; write [{units!r}].")
        units = ["1"] * D if units is None else list(units)
        if len(units) != D or not all(isinstance(u, str) for u in units):
            raise ValueError(f"units must be {D} strings (one per channel), got {units!r}.")
        if not isinstance(time_units, str):
            raise TypeError(f"time_units must be a string such as 's' or '1', got {type(time_units).__name__}.")
        for j, u in enumerate(units):
            _check_text(u, f"units[{j}] (channel {channels[j]!r})")
        _check_text(time_units, "time_units")
        if isinstance(ids, str):
            raise TypeError(f"ids must be a list of N = {N} strings, got the string {ids!r}; write [{ids!r}].")
        ids = [str(i) for i in range(N)] if ids is None else list(ids)
        if len(ids) != N or not all(isinstance(s, str) for s in ids):
            raise ValueError(f"ids must be {N} strings (one per trajectory), got {len(ids)} entries.")
        for i, s in enumerate(ids):
            _check_text(s, f"ids[{i}]")
        if len(set(ids)) != N:
            raise ValueError("trajectory ids must be unique.")
        metadata = [{} for _ in range(N)] if metadata is None else list(metadata)
        if len(metadata) != N:
            raise ValueError(f"metadata must hold one dict per trajectory ({N}), got {len(metadata)}.")
        for i, m in enumerate(metadata):
            if not isinstance(m, Mapping):
                raise TypeError(f"metadata[{i}] must be a dict, got {type(m).__name__}.")
        attrs = {} if attrs is None else attrs
        if not isinstance(attrs, Mapping):
            raise TypeError(f"attrs must be a dict, got {type(attrs).__name__}.")

        self.lengths: Tensor = lengths_t
        self.times: Tensor = solver_ready_times(times, lengths_t)
        self.values: Tensor = values
        self.mask: Tensor = mask
        self.channels: list[str] = channels
        self.units: list[str] = units
        self.time_units: str = time_units
        self.ids: list[str] = ids
        self.metadata: list[dict[str, Any]] = [
            _canonical_json(dict(m), f"metadata[{i}]") for i, m in enumerate(metadata)
        ]
        self.attrs: dict[str, Any] = _canonical_json(dict(attrs), "attrs")
        self.inputs: Inputs | None = _checked_inputs(inputs, N, device)

    # ------------------------------------------------------------------ shape and views
    @property
    def n_trajectories(self) -> int:
        """Number of trajectories ``N``."""
        return self.values.shape[0]

    @property
    def n_times(self) -> int:
        """Padded number of times ``T``."""
        return self.values.shape[1]

    @property
    def n_channels(self) -> int:
        """Number of channels ``D``."""
        return self.values.shape[2]

    @property
    def device(self) -> torch.device:
        """Device of the tensors."""
        return self.values.device

    @property
    def time_mask(self) -> Tensor:
        """``(N, T)`` bool: true at valid (non-padded) times."""
        return torch.arange(self.n_times, device=self.device).unsqueeze(0) < self.lengths.unsqueeze(1)

    def __len__(self) -> int:
        return self.n_trajectories

    def __repr__(self) -> str:
        return (
            f"Trajectories(N={self.n_trajectories}, T={self.n_times}, channels={self.channels}, "
            f"lengths={self.lengths.min().item()}..{self.lengths.max().item()}, "
            f"observed={self.mask.float().mean().item():.3f}, dtype={self.values.dtype}, device={self.device})"
        )

    def _replace(self, idx: Tensor) -> Trajectories:
        lengths = self.lengths[idx]
        T = int(lengths.max())
        return Trajectories(
            self.times[idx, :T],
            self.values[idx, :T],
            self.mask[idx, :T],
            lengths,
            channels=self.channels,
            units=self.units,
            time_units=self.time_units,
            metadata=[self.metadata[i] for i in idx.tolist()],
            attrs=self.attrs,
            ids=[self.ids[i] for i in idx.tolist()],
            inputs=None if self.inputs is None else self.inputs[idx],
        )

    def __getitem__(self, key: int | slice | Sequence[int] | Tensor) -> Trajectories:
        """Select trajectories (an int keeps a batch of one). The padded length is trimmed to the longest."""
        n = self.n_trajectories
        if isinstance(key, bool):
            raise TypeError("index Trajectories with an int, slice, list of ints or an index/bool tensor.")
        if isinstance(key, int):
            if not -n <= key < n:
                raise IndexError(f"trajectory index {key} out of range for {n} trajectories.")
            idx = torch.tensor([key % n])
        elif isinstance(key, slice):
            idx = torch.arange(n)[key]
        else:
            try:
                idx = torch.as_tensor(key)
            except (TypeError, ValueError, RuntimeError):
                idx = None
            if idx is None or not (idx.dtype == torch.bool or idx.dtype in _INDEX_DTYPES):
                raise TypeError(
                    f"index Trajectories with an int, slice, list of ints or an index/bool tensor, got {key!r}; "
                    "select trajectories by id with traj[[traj.ids.index(i) for i in wanted]]."
                )
            if idx.dtype == torch.bool:
                if idx.shape != (n,):
                    raise IndexError(f"a bool index must have shape ({n},), got {tuple(idx.shape)}.")
                idx = torch.nonzero(idx).flatten()
            elif idx.is_floating_point() or idx.ndim != 1:
                raise TypeError("index Trajectories with an int, slice, list of ints or an index/bool tensor.")
            idx = idx.cpu().to(torch.int64)
            if bool(((idx < -n) | (idx >= n)).any()):
                raise IndexError(f"trajectory index out of range for {n} trajectories: {idx.tolist()}.")
            idx = idx % n
        if idx.numel() == 0:
            raise IndexError("the selection is empty; a Trajectories object needs at least one trajectory.")
        return self._replace(idx.to(self.device))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Trajectories:
        """Copy to ``device`` and/or floating ``dtype`` (times and values; the mask stays bool)."""
        device = check_target(device, dtype)
        out = object.__new__(Trajectories)
        out.__dict__.update(self.__dict__)
        # Re-derive padding in the new dtype so the times stay strictly increasing.
        times = self.times.to(device=device, dtype=dtype)
        out.lengths = self.lengths.to(device)
        out.times = solver_ready_times(times, out.lengths)
        out.values = self.values.to(device=device, dtype=dtype)
        out.mask = self.mask.to(device)
        out.metadata = [dict(m) for m in self.metadata]
        out.attrs = dict(self.attrs)
        out.inputs = None if self.inputs is None else self.inputs.to(device=device, dtype=dtype)
        return out

    # ------------------------------------------------------------------ combining and splitting
    @staticmethod
    def concat(items: Sequence[Trajectories]) -> Trajectories:
        """Stack trajectories with the same channels, units and time units (padding to the longest).

        A static method: ``Trajectories.concat([a, b])`` (``a.concat(b)`` would stack ``b`` alone, and is refused).
        """
        if isinstance(items, Trajectories):
            raise TypeError(
                "concat takes a list of Trajectories and is a static method: write Trajectories.concat([a, b]), "
                "not a.concat(b) (which would return b's trajectories alone)."
            )
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise TypeError(f"concat takes a list of Trajectories, got {type(items).__name__}.")
        items = list(items)
        for k, it in enumerate(items):
            if not isinstance(it, Trajectories):
                raise TypeError(f"concat takes a list of Trajectories; items[{k}] is a {type(it).__name__}.")
        if not items:
            raise ValueError("concat needs at least one Trajectories object.")
        first = items[0]
        for k, it in enumerate(items[1:], 1):
            if it.channels != first.channels or it.units != first.units or it.time_units != first.time_units:
                raise ValueError(
                    f"items[{k}] has channels {it.channels} / units {it.units} / time units {it.time_units!r}; "
                    f"expected {first.channels} / {first.units} / {first.time_units!r} as items[0]."
                )
        T = max(it.n_times for it in items)
        dt = first.values.dtype

        def pad(x: Tensor, fill: float | bool) -> Tensor:
            if x.shape[1] == T:
                return x
            shape = (x.shape[0], T - x.shape[1], *x.shape[2:])
            return torch.cat([x, torch.full(shape, fill, dtype=x.dtype, device=x.device)], dim=1)

        ids = [s for it in items for s in it.ids]
        if len(set(ids)) != len(ids):
            ids = None  # renumber: the parts came from different collections
        if len({it.inputs is None for it in items}) > 1:
            raise ValueError("either every item carries inputs or none does; concat cannot invent missing inputs.")
        ins = [it.inputs for it in items if it.inputs is not None]
        return Trajectories(
            torch.cat([pad(it.times.to(dt), math.nan) for it in items]),
            torch.cat([pad(it.values.to(dt), 0.0) for it in items]),
            torch.cat([pad(it.mask, False) for it in items]),
            torch.cat([it.lengths for it in items]),
            channels=first.channels,
            units=first.units,
            time_units=first.time_units,
            metadata=[m for it in items for m in it.metadata],
            attrs=first.attrs,
            ids=ids,
            inputs=Inputs.concat(ins) if ins else None,
        )

    def split_by_trajectory(self, fractions: Sequence[float], *, seed: int | None = 0) -> tuple[Trajectories, ...]:
        """Split the trajectories into groups, e.g. train/validation/test.

        Parameters
        ----------
        fractions
            Fractions of the trajectories in each group, summing to 1 (e.g. ``(0.8, 0.2)``). Counts are
            rounded down and the remainder goes to the first group; each group gets at least one trajectory.
        seed
            Seed of the shuffle (a ``torch.Generator``); ``None`` keeps the original order.
        """
        if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Iterable):
            raise TypeError(
                f"fractions must be a sequence of fractions summing to 1, e.g. (0.8, 0.2), got {fractions!r} "
                f"({type(fractions).__name__})."
            )
        try:
            fr = [float(f) for f in fractions]
        except (TypeError, ValueError):
            raise TypeError(f"fractions must be numbers summing to 1, e.g. (0.8, 0.2), got {fractions!r}.") from None
        if len(fr) < 1 or any(not (f > 0) for f in fr) or abs(sum(fr) - 1) > 1e-9:
            raise ValueError(f"fractions must be positive and sum to 1, got {fractions!r}.")
        n = self.n_trajectories
        counts = [math.floor(f * n) for f in fr]
        counts[0] += n - sum(counts)
        if any(c < 1 for c in counts):
            raise ValueError(f"cannot split {n} trajectories into groups of fractions {fr}: a group would be empty.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed must be an integer or None (keep the order), got {seed!r}.")
        if seed is None:
            perm = torch.arange(n)
        else:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
        out, start = [], 0
        for c in counts:
            out.append(self[perm[start : start + c]])
            start += c
        return tuple(out)

    def split_by_time(self, t_split: float) -> tuple[Trajectories, Trajectories]:
        """Split each trajectory into an observation window ``t <= t_split`` and a forecast window ``t > t_split``.

        Returns ``(observe, forecast)``, both with all ``N`` trajectories (same ids and metadata).

        Raises
        ------
        ValueError
            If some trajectory has no valid time on one side of ``t_split``.
        """
        t_split = float(t_split)
        tm = self.time_mask
        before = tm & (self.times <= t_split)
        after = tm & (self.times > t_split)
        n_before, n_after = before.sum(1), after.sum(1)
        for name, cnt in (("observation window t <= t_split", n_before), ("forecast window t > t_split", n_after)):
            if bool((cnt == 0).any()):
                i = int(torch.nonzero(cnt == 0)[0])
                raise ValueError(
                    f"trajectory {i} has no valid time in the {name} = {t_split}; its times span "
                    f"[{float(self.times[i, 0])}, {float(self.times[i, int(self.lengths[i]) - 1])}]."
                )
        T_a = int(n_before.max())
        observe = Trajectories(
            self.times[:, :T_a],
            self.values[:, :T_a],
            self.mask[:, :T_a] & before[:, :T_a, None],
            n_before,
            **self._descr(),
        )
        # Forecast: shift each row left by n_before[i] entries.
        T_b = int(n_after.max())
        k = torch.arange(T_b, device=self.device).unsqueeze(0)
        src = (n_before.unsqueeze(1) + k).clamp(max=self.n_times - 1)
        keep = k < n_after.unsqueeze(1)
        times_b = torch.where(keep, self.times.gather(1, src), torch.full_like(self.times[:, :1], math.nan))
        src3 = src.unsqueeze(-1).expand(-1, -1, self.n_channels)
        forecast = Trajectories(
            times_b,
            self.values.gather(1, src3),
            self.mask.gather(1, src3) & keep.unsqueeze(-1),
            n_after,
            **self._descr(),
        )
        return observe, forecast

    def _descr(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "units": self.units,
            "time_units": self.time_units,
            "metadata": self.metadata,
            "attrs": self.attrs,
            "ids": self.ids,
            "inputs": self.inputs,
        }

    def select_channels(self, channels: Sequence[str]) -> Trajectories:
        """Keep only the named channels, in the given order."""
        if isinstance(channels, str):
            raise TypeError(
                f"channels must be a list of channel names, got the string {channels!r}; write [{channels!r}]."
            )
        channels = list(channels)
        if not channels:
            raise ValueError(f"select at least one channel; available: {self.channels}.")
        if len(set(channels)) != len(channels):
            raise ValueError(f"channels must be distinct, got {channels}.")
        missing = [c for c in channels if c not in self.channels]
        if missing:
            raise ValueError(f"unknown channel(s) {missing}; available: {self.channels}.")
        j = torch.tensor([self.channels.index(c) for c in channels], device=self.device)
        d = self._descr()
        d["channels"] = list(channels)
        d["units"] = [self.units[self.channels.index(c)] for c in channels]
        return Trajectories(self.times, self.values[..., j], self.mask[..., j], self.lengths, **d)

    # ------------------------------------------------------------------ metadata helpers
    def metadata_tensor(self, key: str, dtype: torch.dtype = torch.float64) -> Tensor:
        """Stack the per-trajectory metadata entry ``key`` (numbers or equal-length lists) into ``(N, ...)``,
        e.g. ``traj.metadata_tensor("initial_state")`` for the ``y0`` of a solve."""
        missing = [i for i, m in enumerate(self.metadata) if key not in m]
        if missing:
            raise KeyError(f"metadata key {key!r} is missing for trajectories {missing[:5]}.")
        try:
            return torch.tensor([m[key] for m in self.metadata], dtype=dtype, device=self.device)
        except (TypeError, ValueError) as err:
            raise ValueError(f"metadata entries {key!r} cannot be stacked into a tensor: {err}") from None

    # ------------------------------------------------------------------ comparison and hashing
    def identical(self, other: Trajectories) -> bool:
        """True when every tensor is bitwise equal (same dtype) and every name, unit and metadata entry equal."""
        if not isinstance(other, Trajectories):
            return False
        same_tensors = all(
            a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.cpu(), b.cpu())
            for a, b in (
                (self.times, other.times),
                (self.values, other.values),
                (self.mask, other.mask),
                (self.lengths, other.lengths),
            )
        )
        d, e = self._descr(), other._descr()
        a, b = d.pop("inputs"), e.pop("inputs")
        same_inputs = (a is None and b is None) or (a is not None and a.same(b))
        return same_tensors and same_inputs and d == e

    def digest(self) -> str:
        """SHA-256 of a canonical serialisation of the data (not of a file's bytes).

        The hash covers a JSON header (sorted keys: channels, units, time units, ids, metadata, attributes,
        dtypes and shape) followed by the little-endian bytes of ``times``, ``values``, ``mask`` (as uint8) and
        ``lengths`` (int64) in C order. HDF5 files carry creation times and allocation details that vary between
        writes, so data files are compared through this digest rather than through their bytes.
        """
        header = dict(self._descr())
        inputs = header.pop("inputs")
        header.update(
            shape=list(self.values.shape),
            times_dtype=str(self.times.dtype),
            values_dtype=str(self.values.dtype),
        )
        h = hashlib.sha256()
        h.update(json.dumps(header, sort_keys=True, allow_nan=True).encode())
        tensors = [self.times, self.values, self.mask.to(torch.uint8), self.lengths.to(torch.int64)]
        if inputs is not None:  # only then: the digests of data without inputs are unchanged
            h.update(json.dumps([inputs.names, inputs.kinds, inputs.units]).encode())
            tensors += [inputs.times, inputs.values]
            if inputs.boluses is not None:
                tensors += [inputs.boluses.times, inputs.boluses.amounts, inputs.boluses.index]
        for x in tensors:
            arr = x.detach().cpu().contiguous().numpy()
            h.update(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ I/O (see physnode.data.io)
    def to_xarray(self) -> Any:
        """The CF trajectory (incomplete multidimensional) :class:`xarray.Dataset`; see :mod:`physnode.data.io`."""
        from .io import to_xarray

        return to_xarray(self)

    @classmethod
    def from_xarray(cls, ds: Any) -> Trajectories:
        """Build from a dataset in the layout written by :meth:`to_xarray` (validated)."""
        from .io import from_xarray

        return from_xarray(ds)

    def save(self, path: str | Path) -> None:
        """Write atomically to ``path``: ``.nc`` (netCDF4 via h5netcdf) or ``.h5`` / ``.hdf5`` (h5py)."""
        from .io import save

        save(self, path)

    @classmethod
    def load(cls, path: str | Path, *, max_bytes: int | None = None, max_elements: int | None = None) -> Trajectories:
        """Read and validate a file written by :meth:`save`.

        ``max_bytes`` / ``max_elements`` bound the declared sizes read (default
        :data:`physnode.data.io.MAX_BYTES` / :data:`~physnode.data.io.MAX_ELEMENTS`); see
        :func:`physnode.data.io.load`.
        """
        from . import io

        return io.load(
            path,
            max_bytes=io.MAX_BYTES if max_bytes is None else max_bytes,
            max_elements=io.MAX_ELEMENTS if max_elements is None else max_elements,
        )
