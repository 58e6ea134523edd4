"""Figures of a fit: observed vs predicted trajectories, orbits, loss curve and parameter traces.

Every function builds a :class:`matplotlib.figure.Figure` on the non-interactive Agg canvas (no window is ever
opened, ``pyplot`` is not used, so nothing accumulates in a global figure list), returns it, and saves it when
``path`` is given. Files are written atomically (a temporary file in the same folder, then :func:`os.replace`), so
a reader never sees half a PNG. The format follows the suffix: ``.png``, ``.pdf`` or ``.svg``.

* :func:`plot_time_series` — one panel per channel: observations as dots, predictions as lines, the forecast
  window shaded.
* :func:`plot_orbits` — bodies' paths in the plane (2-D) or in space (3-D).
* :func:`plot_loss` — training loss against epoch (log scale).
* :func:`plot_parameters` — parameter values against epoch, with the true values as dashed lines when known.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._atomic import atomic_write
from .data.trajectories import Trajectories

__all__ = ["plot_loss", "plot_orbits", "plot_parameters", "plot_time_series", "save_figure"]

_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
_FORECAST_COLOR = "0.85"


def _figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` atomically; the format follows the suffix (``.png``, ``.pdf``, ``.svg``).

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ValueError
        Unsupported suffix.
    OSError
        The folder does not exist or is not writable.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot save a figure as {path.name!r}: use a .png, .pdf or .svg file name.")
    if not path.parent.is_dir():
        raise OSError(f"cannot save {path}: the folder {path.parent} does not exist.")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))


def _finish(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def _check_traj(traj: Any, what: str) -> Trajectories:
    if not isinstance(traj, Trajectories):
        raise TypeError(f"{what} must be a physnode.data.Trajectories, got {type(traj).__name__}.")
    return traj


def _check_index(traj: Trajectories, trajectory: int) -> int:
    n = traj.n_trajectories
    if isinstance(trajectory, bool) or not isinstance(trajectory, int) or not -n <= trajectory < n:
        raise ValueError(f"trajectory must be an index in [0, {n}) for {n} trajectories, got {trajectory!r}.")
    return trajectory % n


def _series(traj: Trajectories, i: int, channel: str) -> tuple[Any, Any]:
    """Observed ``(times, values)`` of ``channel`` in trajectory ``i`` (valid, unmasked entries only), numpy."""
    j = traj.channels.index(channel)
    n = int(traj.lengths[i])
    keep = traj.mask[i, :n, j].cpu()
    t = traj.times[i, :n].detach().cpu().to(torch.float64)[keep]
    v = traj.values[i, :n, j].detach().cpu().to(torch.float64)[keep]
    return t.numpy(), v.numpy()


def _points(traj: Trajectories, i: int, coords: Sequence[str]) -> list[Any]:
    """Coordinates ``coords`` of trajectory ``i`` at the times where all of them are observed, numpy."""
    j = [traj.channels.index(c) for c in coords]
    n = int(traj.lengths[i])
    keep = traj.mask[i, :n][:, j].all(-1).cpu()
    v = traj.values[i, :n][:, j].detach().cpu().to(torch.float64)[keep]
    return [v[:, k].numpy() for k in range(len(j))]


def _time_span(traj: Trajectories, i: int) -> tuple[float, float]:
    n = int(traj.lengths[i])
    return float(traj.times[i, 0]), float(traj.times[i, n - 1])


def _channels(observed: Trajectories, predicted: Trajectories | None, channels: Sequence[str] | None) -> list[str]:
    chans = list(observed.channels) if channels is None else [str(c) for c in channels]
    if not chans:
        raise ValueError("channels is empty; give at least one channel name.")
    unknown = [c for c in chans if c not in observed.channels]
    if unknown:
        raise ValueError(f"unknown channel(s) {unknown}; the observed data has {observed.channels}.")
    if predicted is not None:
        absent = [c for c in chans if c not in predicted.channels]
        if absent:
            raise ValueError(
                f"the predicted trajectories lack channel(s) {absent} (they have {predicted.channels}); predict the "
                "observed channels or pass channels= to plot a subset."
            )
    return chans


def plot_time_series(
    observed: Trajectories,
    predicted: Trajectories | None = None,
    *,
    trajectory: int = 0,
    channels: Sequence[str] | None = None,
    t_split: float | None = None,
    ncols: int = 3,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """One panel per channel: observations as dots, predictions as a line, the forecast window shaded.

    Parameters
    ----------
    observed
        Observed data; masked-out entries are not drawn.
    predicted
        Model predictions with (at least) the plotted channels, e.g. from :func:`physnode.forecast.forecast`.
    trajectory
        Index of the trajectory to draw.
    channels
        Channel names to draw (default: all channels of ``observed``).
    t_split
        End of the observation window (time units of the data): ``t > t_split`` is shaded as the forecast
        window. Default: ``observed.attrs["t_split"]`` if present, else no shading.
    ncols
        Number of panel columns.
    title
        Figure title.
    path
        Save the figure here as well (``.png`` / ``.pdf`` / ``.svg``).

    Returns
    -------
    Figure
    """
    observed = _check_traj(observed, "observed")
    if predicted is not None:
        predicted = _check_traj(predicted, "predicted")
    i = _check_index(observed, trajectory)
    if predicted is not None and predicted.n_trajectories != observed.n_trajectories:
        raise ValueError(
            f"predicted has {predicted.n_trajectories} trajectories but observed has {observed.n_trajectories}; "
            "predict every observed trajectory."
        )
    chans = _channels(observed, predicted, channels)
    if t_split is None and isinstance(observed.attrs.get("t_split"), (int, float)):
        t_split = float(observed.attrs["t_split"])
    if not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}.")
    ncols = min(ncols, len(chans))
    nrows = math.ceil(len(chans) / ncols)
    fig = _figure((3.2 * ncols, 2.2 * nrows + 0.4))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    t_lo, t_hi = _time_span(observed, i)
    if predicted is not None:
        p_lo, p_hi = _time_span(predicted, i)
        t_lo, t_hi = min(t_lo, p_lo), max(t_hi, p_hi)
    unit = observed.time_units
    for k, ax in enumerate(axes.flat):
        if k >= len(chans):
            ax.set_visible(False)
            continue
        c = chans[k]
        if t_split is not None and t_split < t_hi:
            ax.axvspan(t_split, t_hi, color=_FORECAST_COLOR, zorder=0, label="forecast window")
        t, v = _series(observed, i, c)
        ax.plot(t, v, ".", ms=3, color="C0", label="observed")
        if predicted is not None:
            tp, vp = _series(predicted, i, c)
            ax.plot(tp, vp, "-", lw=1.2, color="C3", label="predicted")
        u = observed.units[observed.channels.index(c)]
        ax.set_ylabel(c if u == "1" else f"{c} ({u})")
        ax.set_xlim(t_lo, t_hi)
        if k >= len(chans) - ncols:
            ax.set_xlabel("t" if unit == "1" else f"t ({unit})")
    axes.flat[0].legend(fontsize="small", loc="best")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


_AXIS_RE = re.compile(r"^(?:([xyz])_?(\w+)|(\w+?)_([xyz]))$")


def _infer_bodies(channels: Sequence[str]) -> list[tuple[str, ...]]:
    """Group channels such as ``x1, y1, z1`` or ``r0_x, r0_y`` into one coordinate tuple per body."""
    groups: dict[str, dict[str, str]] = {}
    for c in channels:
        m = _AXIS_RE.match(c)
        if m is None:
            continue
        axis, body = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        groups.setdefault(body, {})[axis] = c
    bodies = [tuple(g[a] for a in "xyz" if a in g) for g in groups.values() if "x" in g and "y" in g]
    return bodies


def plot_orbits(
    observed: Trajectories,
    predicted: Trajectories | None = None,
    *,
    trajectory: int = 0,
    bodies: Sequence[Sequence[str]] | None = None,
    dims: int = 2,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Paths of bodies in the plane (``dims=2``, the first two coordinates) or in space (``dims=3``).

    Parameters
    ----------
    observed, predicted
        Observed data and (optionally) predictions containing the coordinate channels.
    trajectory
        Index of the trajectory to draw.
    bodies
        Coordinate channel names per body, e.g. ``[("x1", "y1", "z1"), ("x2", "y2", "z2")]``. Default: inferred
        from names of the form ``x1, y1, z1`` or ``r0_x, r0_y, r0_z``.
    dims
        2 for a planar projection, 3 for a 3-D plot (every body then needs three coordinates).
    title, path
        Figure title; save the figure here as well.

    Returns
    -------
    Figure
    """
    observed = _check_traj(observed, "observed")
    if predicted is not None:
        predicted = _check_traj(predicted, "predicted")
    i = _check_index(observed, trajectory)
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}.")
    if bodies is None:
        bodies = _infer_bodies(observed.channels)
        if not bodies:
            raise ValueError(
                f"cannot tell which channels are coordinates among {observed.channels}; pass bodies=, e.g. "
                "[('x1', 'y1'), ('x2', 'y2')]."
            )
    bodies = [tuple(str(c) for c in b) for b in bodies]
    for b in bodies:
        if len(b) < dims:
            raise ValueError(f"body {b} has {len(b)} coordinate channels; dims={dims} needs {dims}.")
        _channels(observed, predicted, b[:dims])
    fig = _figure((6.0, 5.0))
    ax = fig.add_subplot(projection="3d" if dims == 3 else None)
    for k, b in enumerate(bodies):
        color = f"C{k % 10}"
        pts = _points(observed, i, b[:dims])
        ax.plot(*pts, ".", ms=2.5, color=color, alpha=0.6, label=f"{'/'.join(b[:dims])} observed")
        if predicted is not None:
            ax.plot(*_points(predicted, i, b[:dims]), "-", lw=1.0, color=color, label="predicted")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if dims == 3:
        ax.set_zlabel("z")
    else:
        ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize="x-small", loc="best")
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def _history(history: Any) -> list[Mapping[str, Any]]:
    if isinstance(history, Mapping) or not isinstance(history, Sequence) or isinstance(history, str):
        raise TypeError(f"history must be a list of per-epoch dicts (result.history), got {type(history).__name__}.")
    if not history:
        raise ValueError("history is empty: there is nothing to plot (did the fit run any epoch?).")
    for k, h in enumerate(history):
        if not isinstance(h, Mapping):
            raise TypeError(f"history[{k}] must be a dict of per-epoch values, got {type(h).__name__}.")
    return list(history)


def _epochs(history: Sequence[Mapping[str, Any]]) -> list[float]:
    return [float(h.get("epoch", k)) for k, h in enumerate(history)]


def plot_loss(
    history: Sequence[Mapping[str, Any]],
    *,
    key: str = "loss",
    log: bool = True,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Training loss against epoch.

    Parameters
    ----------
    history
        Per-epoch dicts (``result.history`` of :func:`physnode.fit.fit`), each with ``key`` and optionally ``epoch``.
    key
        Which entry to draw (``"loss"``; any other numeric entry such as ``"nfe"`` works too).
    log
        Logarithmic y axis (used only when every value is positive).
    title, path
        Figure title; save the figure here as well.

    Returns
    -------
    Figure
    """
    history = _history(history)
    missing = [k for k, h in enumerate(history) if key not in h]
    if missing:
        raise ValueError(f"history entries {missing[:5]} have no {key!r}; available keys: {sorted(history[0])}.")
    values = [float(h[key]) for h in history]
    fig = _figure((5.5, 3.8))
    ax = fig.add_subplot()
    ax.plot(_epochs(history), values, "-o", ms=2.5, lw=1.2, color="C0", label=key)
    if log and all(v > 0 for v in values if math.isfinite(v)):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def _flat(value: Any) -> list[float]:
    if isinstance(value, torch.Tensor):
        return [float(x) for x in value.detach().cpu().flatten().tolist()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    if isinstance(value, Sequence) and not isinstance(value, str):
        out: list[float] = []
        for v in value:
            out.extend(_flat(v))
        return out
    raise TypeError(f"parameter values must be numbers, lists of numbers or tensors, got {type(value).__name__}.")


def plot_parameters(
    history: Sequence[Mapping[str, Any]],
    *,
    truth: Mapping[str, Any] | None = None,
    names: Sequence[str] | None = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Parameter values against epoch, one panel per parameter (one line per component of a vector).

    Parameters
    ----------
    history
        Per-epoch dicts with ``"params"``: ``{name: number or list}`` (``result.history`` of a fit).
    truth
        True values ``{name: number or list}`` drawn as dashed horizontal lines in the matching colour.
    names
        Parameters to draw (default: every name in ``history[0]["params"]``).
    title, path
        Figure title; save the figure here as well.

    Returns
    -------
    Figure
    """
    history = _history(history)
    if any("params" not in h or not isinstance(h["params"], Mapping) for h in history):
        raise ValueError("every history entry needs 'params': a dict of parameter name -> value.")
    names = list(history[0]["params"]) if names is None else [str(n) for n in names]
    if not names:
        raise ValueError("the history holds no parameters to plot.")
    for n in names:
        missing = [k for k, h in enumerate(history) if n not in h["params"]]
        if missing:
            raise ValueError(f"parameter {n!r} is missing from history entries {missing[:5]}.")
    truth = {} if truth is None else dict(truth)
    unknown = sorted(set(truth) - set(names))
    if unknown:
        raise ValueError(f"truth has parameter(s) {unknown} that are not plotted; plotted: {names}.")
    epochs = _epochs(history)
    fig = _figure((5.0 * min(len(names), 3), 3.6 * math.ceil(len(names) / 3)))
    axes = fig.subplots(math.ceil(len(names) / 3), min(len(names), 3), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.set_visible(False)
            continue
        n = names[k]
        traces = [_flat(h["params"][n]) for h in history]
        width = len(traces[0])
        if any(len(tr) != width for tr in traces):
            raise ValueError(f"parameter {n!r} changes size across epochs; expected {width} values every epoch.")
        for c in range(width):
            label = n if width == 1 else f"{n}[{c}]"
            ax.plot(epochs, [tr[c] for tr in traces], "-", lw=1.4, color=f"C{c % 10}", label=label)
        if n in truth:
            true = _flat(truth[n])
            if len(true) != width:
                raise ValueError(f"truth[{n!r}] has {len(true)} values but the parameter has {width}.")
            for c, v in enumerate(true):
                ax.axhline(v, ls="--", lw=1.0, color=f"C{c % 10}", label="truth" if c == 0 else None)
        ax.set_xlabel("epoch")
        ax.set_ylabel(n)
        ax.legend(fontsize="x-small", loc="best")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)
