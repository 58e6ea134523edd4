"""Figures of a fit: observed vs predicted trajectories, orbits, loss curve and parameter traces.

Every function builds a :class:`matplotlib.figure.Figure` on the non-interactive Agg canvas (no window is ever
opened, ``pyplot`` is not used, so nothing accumulates in a global figure list), returns it, and saves it when
``path`` is given. Files are written atomically (a temporary file in the same folder, then :func:`os.replace`), so
a reader never sees half a PNG. The format follows the suffix: ``.png``, ``.pdf`` or ``.svg``.

* :func:`plot_time_series` — one panel per channel: observations as dots, predictions as lines (one colour per
  trajectory when several are drawn), optional residual panels, the forecast window shaded.
* :func:`plot_orbits` — bodies' paths in one or several planar projections or in 3-D, fit and forecast windows
  drawn differently.
* :func:`plot_loss` — training loss against epoch (log scale).
* :func:`plot_parameters` — parameter values against epoch from the initial guess, with error bars at the end and
  the true values as dashed lines when known.
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
from matplotlib.ticker import MaxNLocator

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


def _indices(traj: Trajectories, trajectory: int, trajectories: Sequence[int] | None) -> list[int]:
    """The trajectories to draw: ``trajectories`` when given (checked, duplicates refused), else ``[trajectory]``."""
    if trajectories is None:
        return [_check_index(traj, trajectory)]
    if isinstance(trajectories, (str, bytes)) or not isinstance(trajectories, Sequence) or not trajectories:
        raise ValueError(f"trajectories must be a non-empty list of indices, got {trajectories!r}.")
    idx = [_check_index(traj, int(k)) if not isinstance(k, bool) else _check_index(traj, k) for k in trajectories]
    if len(set(idx)) != len(idx):
        raise ValueError(f"trajectories lists a trajectory twice: {list(trajectories)}.")
    return idx


def _same_batch(observed: Trajectories, other: Trajectories | None, what: str) -> None:
    if other is not None and other.n_trajectories != observed.n_trajectories:
        raise ValueError(
            f"{what} has {other.n_trajectories} trajectories but observed has {observed.n_trajectories}; "
            "predict every observed trajectory."
        )


def _legend(fig: Figure, axes: Sequence[Any], extra: Sequence[tuple[Any, str]] = ()) -> None:
    """One figure legend below the panels, each label once (the first handle of each label), then ``extra``
    ``(handle, label)`` pairs."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if not label.startswith("_") and label not in seen:
                seen[label] = handle
    for handle, label in extra:
        seen.setdefault(label, handle)
    if seen:
        entry = 0.6 + 0.07 * max(len(label) for label in seen)  # inches of one entry in the small font
        ncols = max(1, min(len(seen), int(fig.get_figwidth() // entry)))
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=ncols, fontsize="small")


def plot_time_series(
    observed: Trajectories,
    predicted: Trajectories | None = None,
    *,
    trajectory: int = 0,
    trajectories: Sequence[int] | None = None,
    channels: Sequence[str] | None = None,
    t_split: float | None = None,
    residuals: Trajectories | None = None,
    bands: Any = None,
    ncols: int = 3,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """One panel per channel: observations as dots, predictions as lines, the forecast window shaded; optionally
    a residual panel (observed − predicted) under each channel and uncertainty bands around the predictions.

    Parameters
    ----------
    observed
        Observed data; masked-out entries are not drawn.
    predicted
        Model predictions with (at least) the plotted channels, drawn as lines through their valid times: best a
        dense solve (many times per trajectory, e.g. :func:`physnode.commands._results.predict_dense`), so the
        curve is smooth between observations.
    trajectory
        Index of the trajectory to draw (when ``trajectories`` is not given).
    trajectories
        Several trajectories to overlay, one colour each (e.g. ``[0, 3, 7]``).
    channels
        Channel names to draw (default: all channels of ``observed``).
    t_split
        End of the observation window (time units of the data): ``t > t_split`` is shaded as the forecast
        window. Default: ``observed.attrs["t_split"]`` if present, else no shading.
    residuals
        Predictions at the observation times (same trajectories and times as ``observed``): adds a residual
        panel ``observed − predicted`` under each channel (same units as the channel).
    bands
        A :class:`physnode.predictive.Forecast` (``physnode.forecast(result, ..., uncertainty=...)``) with the
        trajectories of ``predicted``: its band of each drawn channel it has (by name) is shaded in the trajectory's
        colour.
    ncols
        Number of panel columns.
    title
        Figure title.
    path
        Save the figure here as well (``.png`` / ``.pdf`` / ``.svg``).

    Returns
    -------
    Figure
        Its visible axes are the channel panels, row by row; with ``residuals`` each row of channel panels is
        followed by the row of their residual panels.
    """
    observed = _check_traj(observed, "observed")
    if predicted is not None:
        predicted = _check_traj(predicted, "predicted")
    if residuals is not None:
        residuals = _check_traj(residuals, "residuals")
        if residuals.n_times != observed.n_times:
            raise ValueError(
                f"residuals must be predictions at the observed times ({observed.n_times} per trajectory), got "
                f"{residuals.n_times}; pass the predictions at the data's times, not a dense solve."
            )
    idx = _indices(observed, trajectory, trajectories)
    _same_batch(observed, predicted, "predicted")
    _same_batch(observed, residuals, "residuals")
    if bands is not None and not (hasattr(bands, "band") and hasattr(bands, "channels")):
        raise TypeError(f"bands must be a physnode.predictive.Forecast, got {type(bands).__name__}.")
    if bands is not None and bands.mean.n_trajectories != observed.n_trajectories:
        raise ValueError(
            f"bands have {bands.mean.n_trajectories} trajectories but observed has {observed.n_trajectories}."
        )
    chans = _channels(observed, predicted, channels)
    if residuals is not None:
        _channels(observed, residuals, chans)
    if t_split is None and isinstance(observed.attrs.get("t_split"), (int, float)):
        t_split = float(observed.attrs["t_split"])
    if not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}.")
    ncols = min(ncols, len(chans))
    nrows = math.ceil(len(chans) / ncols)
    sub = 2 if residuals is not None else 1
    fig = _figure((3.4 * ncols, (2.2 + 0.9 * (sub - 1)) * nrows + 0.8))
    ratios = [3, 1] * nrows if sub == 2 else [1] * nrows
    grid = fig.subplots(nrows * sub, ncols, squeeze=False, sharex=True, gridspec_kw={"height_ratios": ratios})
    spans = [_time_span(observed, i) for i in idx]
    if predicted is not None:
        spans += [_time_span(predicted, i) for i in idx]
    t_lo, t_hi = min(a for a, _ in spans), max(b for _, b in spans)
    unit = observed.time_units
    several = len(idx) > 1
    for k in range(nrows * ncols):
        r, col = divmod(k, ncols)
        ax = grid[r * sub, col]
        rax = grid[r * sub + 1, col] if sub == 2 else None
        if k >= len(chans):
            ax.set_visible(False)
            if rax is not None:
                rax.set_visible(False)
            continue
        c = chans[k]
        for a in (ax, rax):
            if a is not None and t_split is not None and t_split < t_hi:
                a.axvspan(t_split, t_hi, color=_FORECAST_COLOR, zorder=0, label="forecast window")
        for n, i in enumerate(idx):
            # One trajectory: "observed" / "predicted" in two colours. Several: one colour per trajectory, named
            # once in the legend (the line styles are explained by the proxy entries added below).
            obs_color, line_color = (f"C{n % 10}", f"C{n % 10}") if several else ("C0", "C3")
            obs_label = f"_observed {i}" if several else "observed"
            line_label = f"trajectory {i}" if several else "predicted"
            t, v = _series(observed, i, c)
            ax.plot(t, v, ".", ms=3, color=obs_color, label=obs_label if predicted is not None else line_label)
            if predicted is not None:
                tp, vp = _series(predicted, i, c)
                ax.plot(tp, vp, "-", lw=1.2, color=line_color, label=line_label)
            if bands is not None and c in bands.channels:
                b = bands.band(c, i)
                what = f"{100 * bands.level:g} % {bands.kind(c)} band ({bands.method})"
                ax.fill_between(
                    b.t.to(torch.float64).numpy(),
                    b.lower.to(torch.float64).numpy(),
                    b.upper.to(torch.float64).numpy(),
                    color=line_color,
                    alpha=0.25,
                    lw=0,
                    label=what,
                )
            if rax is not None and residuals is not None:
                tr, e = _residual(observed, residuals, i, c)
                rax.plot(tr, e, ".", ms=2.5, color=obs_color, label="_residual")
        u = observed.units[observed.channels.index(c)]
        ax.set_ylabel(c if u == "1" else f"{c} ({u})")
        ax.set_xlim(t_lo, t_hi)
        if rax is not None:
            rax.axhline(0.0, color="0.3", lw=0.8)
            rax.set_ylabel("resid.", fontsize="small")
            rax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
            rax.tick_params(labelsize="x-small")
        bottom = rax if rax is not None else ax
        if k >= len(chans) - ncols:
            bottom.set_xlabel("t" if unit == "1" else f"t ({unit})")
    extra = []
    if several:
        from matplotlib.lines import Line2D

        extra = [(Line2D([], [], ls="", marker=".", color="0.3"), "observed")]
        if predicted is not None:
            extra.append((Line2D([], [], color="0.3", lw=1.2), "model"))
    _legend(fig, [a for a in grid.flat if a.get_visible()], extra)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def _residual(observed: Trajectories, predicted: Trajectories, i: int, channel: str) -> tuple[Any, Any]:
    """``(times, observed − predicted)`` of ``channel`` in trajectory ``i`` where it is observed, numpy."""
    j = observed.channels.index(channel)
    jp = predicted.channels.index(channel)
    n = int(observed.lengths[i])
    keep = observed.mask[i, :n, j].cpu()
    t = observed.times[i, :n].detach().cpu().to(torch.float64)[keep]
    e = observed.values[i, :n, j].detach().cpu().to(torch.float64) - predicted.values[i, :n, jp].detach().cpu().to(
        torch.float64
    )
    return t.numpy(), e[keep].numpy()


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


def _window_points(traj: Trajectories, i: int, coords: Sequence[str], t_split: float | None) -> tuple[Any, Any]:
    """Points of trajectory ``i`` in the fit window (``t <= t_split``) and in the forecast window (from the last fit
    point on, so the two lines join); all points and ``None`` without ``t_split``."""
    j = [traj.channels.index(c) for c in coords]
    n = int(traj.lengths[i])
    keep = traj.mask[i, :n][:, j].all(-1).cpu()
    t = traj.times[i, :n].detach().cpu().to(torch.float64)[keep]
    v = traj.values[i, :n][:, j].detach().cpu().to(torch.float64)[keep]
    if t_split is None or not bool((t > t_split).any()):
        return v, None
    inside = t <= t_split
    first = max(int(inside.sum()) - 1, 0)
    return v[inside], v[first:]


def plot_orbits(
    observed: Trajectories,
    predicted: Trajectories | None = None,
    *,
    trajectory: int = 0,
    bodies: Sequence[Sequence[str]] | None = None,
    dims: int = 2,
    projections: str | Sequence[tuple[int, int]] | None = None,
    t_split: float | None = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Paths of bodies in the plane (``dims=2``), in several planar projections, or in space (``dims=3``).

    Observations are dots; the prediction is a solid line in the fit window (``t <= t_split``) and a dashed
    line in the forecast window; a cross marks each body's position at ``t_split``. One colour per body, and
    one legend for the figure.

    Parameters
    ----------
    observed, predicted
        Observed data and (optionally) predictions containing the coordinate channels (best a dense solve, so
        the paths are smooth).
    trajectory
        Index of the trajectory to draw.
    bodies
        Coordinate channel names per body, e.g. ``[("x1", "y1", "z1"), ("x2", "y2", "z2")]``. Default: inferred
        from names of the form ``x1, y1, z1`` or ``r0_x, r0_y, r0_z``.
    dims
        2 for planar projections, 3 for a 3-D plot (every body then needs three coordinates).
    projections
        With ``dims=2``: pairs of coordinate positions to plot side by side, e.g. ``[(0, 1), (0, 2), (1, 2)]``
        for x–y, x–z and y–z, or ``"all"`` for every pair the bodies have. Default ``[(0, 1)]``.
    t_split
        End of the fit window (time units); default ``observed.attrs["t_split"]`` if present, else none.
    title, path
        Figure title; save the figure here as well.

    Returns
    -------
    Figure
    """
    from matplotlib.lines import Line2D

    observed = _check_traj(observed, "observed")
    if predicted is not None:
        predicted = _check_traj(predicted, "predicted")
    i = _check_index(observed, trajectory)
    _same_batch(observed, predicted, "predicted")
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
    width = min(len(b) for b in bodies)
    if dims == 3:
        views: list[tuple[int, ...]] = [(0, 1, 2)]
    elif projections is None:
        views = [(0, 1)]
    elif projections == "all":
        views = [(a, b) for a in range(width) for b in range(a + 1, width)]
    else:
        views = [tuple(v) for v in projections]  # type: ignore[union-attr]
        bad = [v for v in views if len(v) != 2 or not all(isinstance(a, int) and 0 <= a < width for a in v)]
        if bad or not views:
            raise ValueError(
                f"projections must be pairs of coordinate positions in [0, {width}) such as [(0, 1), (0, 2)], or "
                f"'all'; got {projections!r}."
            )
    if t_split is None and isinstance(observed.attrs.get("t_split"), (int, float)):
        t_split = float(observed.attrs["t_split"])
    axis_names = ["x", "y", "z"] + [f"r{k}" for k in range(3, width)]
    fig = _figure((5.2 * len(views), 5.0) if dims == 2 else (6.0, 5.5))
    for view in views:
        ax = fig.add_subplot(1, len(views), len(fig.axes) + 1, projection="3d" if dims == 3 else None)
        for k, b in enumerate(bodies):
            color = f"C{k % 10}"
            coords = [b[a] for a in view]
            ax.plot(*_points(observed, i, coords), ".", ms=2.5, color=color, alpha=0.6)
            if predicted is not None:
                fit_part, forecast_part = _window_points(predicted, i, coords, t_split)
                ax.plot(*[fit_part[:, a].numpy() for a in range(len(view))], "-", lw=1.1, color=color)
                if forecast_part is not None:
                    ax.plot(*[forecast_part[:, a].numpy() for a in range(len(view))], "--", lw=1.1, color=color)
                    end = fit_part[-1]
                    ax.plot(*[[float(end[a])] for a in range(len(view))], "x", ms=7, mew=1.5, color="k")
        ax.set_xlabel(axis_names[view[0]])
        ax.set_ylabel(axis_names[view[1]])
        if dims == 3:
            ax.set_zlabel("z")  # type: ignore[attr-defined]
        else:
            ax.set_aspect("equal", adjustable="datalim")
            ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=f"C{k % 10}", lw=2.5) for k in range(len(bodies))]
    labels = [f"body {k + 1} ({', '.join(b[:width])})" for k, b in enumerate(bodies)]
    handles.append(Line2D([], [], ls="", marker=".", color="0.3"))
    labels.append("observed")
    if predicted is not None:
        handles.append(Line2D([], [], color="0.3", lw=1.1))
        labels.append("model, fit window" if t_split is not None else "model")
        if t_split is not None:
            handles += [Line2D([], [], color="0.3", lw=1.1, ls="--"), Line2D([], [], ls="", marker="x", color="k")]
            labels += [f"model, forecast (t > {t_split:g})", f"position at t = {t_split:g}"]
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize="small")
    if title:
        fig.suptitle(title)
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
    initial: Mapping[str, Any] | None = None,
    errors: Mapping[str, Any] | None = None,
    errors_label: str = "±1 std. error",
    relative_error: bool = False,
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
        Parameters to draw (default: every name in ``history[0]["params"]``); a fit's learnable ones, e.g.
        ``[q.name for q in ...]``, leave out the constants, whose traces are flat.
    initial
        Initial guesses ``{name: number or list}``: drawn as hollow circles at epoch 0, where the traces start.
    errors
        Standard errors ``{name: number or list}`` (``result.uncertainty``): error bars (±1 s.e.) at the last
        epoch, and the fitted value ± error in the legend.
    errors_label
        Legend entry of the error bars (e.g. to say that they are not meaningful for noise-free data).
    relative_error
        Under each parameter with a known truth, a panel of ``|value − truth| / |truth|`` per epoch (log scale),
        where convergence far below the panel's resolution shows.
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
    extras = {"truth": dict(truth or {}), "initial": dict(initial or {}), "errors": dict(errors or {})}
    for what, table in extras.items():
        unknown = sorted(set(table) - set(names))
        if unknown:
            raise ValueError(f"{what} has parameter(s) {unknown} that are not plotted; plotted: {names}.")
    epochs = _epochs(history)
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / 3)
    sub = 2 if relative_error and extras["truth"] else 1
    fig = _figure((max(5.0 * cols, 6.0), (3.6 + 1.8 * (sub - 1)) * rows + 0.6))
    grid = fig.subplots(
        rows * sub, cols, squeeze=False, gridspec_kw={"height_ratios": [2, 1] * rows if sub == 2 else None}
    )
    for k in range(rows * cols):
        r, col = divmod(k, cols)
        ax = grid[r * sub, col]
        eax = grid[r * sub + 1, col] if sub == 2 else None
        if k >= len(names) or (eax is not None and names[k] not in extras["truth"]):
            if eax is not None:
                eax.set_visible(False)
            if k >= len(names):
                ax.set_visible(False)
                continue
            eax = None
        n = names[k]
        traces = [_flat(h["params"][n]) for h in history]
        width = len(traces[0])
        if any(len(tr) != width for tr in traces):
            raise ValueError(f"parameter {n!r} changes size across epochs; expected {width} values every epoch.")
        given = {what: _flat(table[n]) for what, table in extras.items() if n in table}
        for what, vals in given.items():
            if len(vals) != width:
                raise ValueError(f"{what}[{n!r}] has {len(vals)} values but the parameter has {width}.")
        for c in range(width):
            color = f"C{c % 10}"
            final = traces[-1][c]
            value = f" = {final:.7g}" + (f" ± {given['errors'][c]:.2g}" if "errors" in given else "")
            label = f"{n}[{c}]{value}" if width > 1 else "_trace"  # a scalar's value goes into the panel title
            if width == 1:
                ax.set_title(f"{n}{value}", fontsize="medium")
            x = list(epochs)
            y = [tr[c] for tr in traces]
            if "initial" in given:
                x, y = [0.0, *x], [given["initial"][c], *y]
            ax.plot(x, y, "-", lw=1.4, color=color, label=label)
        if "truth" in given:
            for c, v in enumerate(given["truth"]):
                ax.axhline(v, ls="--", lw=1.0, color=f"C{c % 10}", label="truth" if c == 0 else None)
        if "initial" in given:
            ax.plot(
                [0.0] * width, given["initial"], "o", mfc="none", color="0.3", ms=6, label="initial guess", zorder=3
            )
        if "errors" in given:
            ax.errorbar(
                [epochs[-1]] * width,
                traces[-1],
                yerr=given["errors"],
                fmt="none",
                ecolor="k",
                elinewidth=1.5,
                capsize=4,
                label=errors_label,
                zorder=4,
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(n)
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if eax is not None:
            ax.set_xlabel("")
            true = given["truth"]
            for c in range(width):
                x = ([0.0] if "initial" in given else []) + list(epochs)
                y = ([given["initial"][c]] if "initial" in given else []) + [tr[c] for tr in traces]
                rel = [abs(v - true[c]) / abs(true[c]) if true[c] != 0 else abs(v) for v in y]
                floor = min([e for e in rel if e > 0], default=1.0) / 10  # an exact value shows at the bottom
                eax.semilogy(x, [max(e, floor) for e in rel], "-o", ms=2.5, lw=1.2, color=f"C{c % 10}")
            eax.set_xlabel("epoch")
            eax.set_ylabel("rel. error" if width == 1 else f"rel. error of {n}", fontsize="small")
            eax.grid(True, which="major", alpha=0.3)
            eax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(fig, [a for a in fig.axes if a.get_visible()])
    if title:
        fig.suptitle(title)
    return _finish(fig, path)
