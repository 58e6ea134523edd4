"""The results folder of a fit: predictions (netCDF), JSON summary, plots; and the printed table.

A results folder may be reused: before a run writes, :func:`prepare_results` removes the outputs of the previous
run in it (the files its ``summary.json`` lists, among the names in :data:`OUTPUT_NAMES`), so a new summary never
sits next to an old run's plots. Files physnode did not write (other names, or without a previous summary that
lists them) are never removed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .._atomic import atomic_write_text
from ..data.trajectories import Trajectories

if TYPE_CHECKING:
    from ..options import SolveOptions

__all__ = [
    "OUTPUT_NAMES",
    "SHOWN_TRAJECTORIES",
    "dense_grid",
    "forecast_error",
    "format_table",
    "predict",
    "predict_dense",
    "prediction_attrs",
    "prepare_results",
    "write_json",
    "write_plots",
]

#: The figures of a results folder draw the first this many trajectories.
SHOWN_TRAJECTORIES = 3

#: Every file a fit may write into its results folder.
OUTPUT_NAMES = frozenset(
    {
        "config.toml",
        "data.nc",
        "predictions.nc",
        "summary.json",
        "fit.json",
        "time_series.png",
        "orbits.png",
        "loss.png",
        "parameters.png",
        "result.pt",
    }
)


def prepare_results(out: Path) -> Path:
    """Create the results folder ``out`` and remove the outputs of a previous run in it.

    Only files listed in the previous ``summary.json`` under ``"files"`` *and* named in :data:`OUTPUT_NAMES`
    are removed (plain files directly in ``out``; never links' targets, folders or other files).

    Raises
    ------
    OSError
        ``out`` is a file or cannot be created.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OSError(f"--out {out} exists and is not a folder; choose another results folder.")
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.json"
    if not summary.is_file() or summary.is_symlink():
        return out
    from ._model import read_json

    try:
        previous = read_json(summary)
    except (OSError, ValueError):
        return out
    files = previous.get("files") if isinstance(previous, dict) else None
    if not isinstance(files, list):
        return out
    for name in [f for f in files if isinstance(f, str) and f in OUTPUT_NAMES and f != "summary.json"]:
        path = out / name
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
    summary.unlink(missing_ok=True)  # last: until then it still describes what is left
    return out


def _jsonable(x: Any) -> Any:
    """Tensors to lists, non-finite floats to ``None`` (JSON has no NaN), recursively."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().tolist()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def write_json(path: Path, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` as indented JSON atomically (temporary file in the same folder, then ``os.replace``)."""
    text = json.dumps(_jsonable(doc), indent=2, allow_nan=False) + "\n"
    atomic_write_text(path, text)


def prediction_attrs(
    model: nn.Module,
    params: Mapping[str, Any],
    solver: Mapping[str, Any],
    *,
    command: str,
    fit: Mapping[str, Any] | None = None,
    t_split: float | None = None,
    data: Trajectories | None = None,
) -> dict[str, Any]:
    """The attributes of a predictions file: what produced the numbers in it.

    Parameters
    ----------
    model
        The fitted model.
    params
        Its fitted parameter values (all named quantities).
    solver
        The solve options of the predictions (:meth:`~physnode.SolveOptions.to_dict`); for the predictions of a
        fit its own options, whose ``grad`` is the gradient method the fit differentiated with.
    command
        The command line that wrote the file.
    fit
        Facts of the fit (optimizer, epochs, loss, requested gradient method, ...).
    t_split
        End of the fit window (time units), if any.
    data
        The data the predictions are compared with (its dataset name and digest are recorded).
    """
    from .. import __version__

    attrs: dict[str, Any] = {
        "title": f"Predictions of the fitted {type(model).__name__} model",
        "source": f"physnode {__version__}",
        "physnode_version": __version__,
        "command": command,
        "predicted_by": type(model).__name__,
        "fitted_parameters": dict(params),
        "solver": dict(solver),
    }
    if fit:
        attrs["fit"] = dict(fit)
    if t_split is not None:
        attrs["t_split"] = float(t_split)
    if data is not None:
        attrs["data"] = {"digest": data.digest(), **{k: data.attrs[k] for k in ("dataset", "title") if k in data.attrs}}
    state_names = getattr(model, "state_names", None)
    if state_names is not None:
        attrs["state_names"] = list(state_names)
    return attrs


def _as_channels(pred: Trajectories, data: Trajectories, observe: Sequence[int] | None) -> Tensor:
    """``(N, T, C)`` values of ``pred`` (model states) as the data's channels (by name, else by ``observe``)."""
    if list(pred.channels) == list(data.channels):
        return pred.values
    if all(c in pred.channels for c in data.channels):
        return pred.select_channels(data.channels).values
    idx = list(range(data.n_channels)) if observe is None else list(observe)
    return pred.values[..., idx]


def _metadata(data: Trajectories, y0: Tensor | None) -> list[dict[str, Any]]:
    """Each trajectory's initial state and time as predicted from (not the data's other metadata, e.g. the true
    parameters of generated data)."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(data.metadata):
        entry: dict[str, Any] = {k: m[k] for k in ("initial_state", "initial_time") if k in m}
        if y0 is not None:
            entry["initial_state"] = y0[i].detach().cpu().tolist()
        out.append(entry)
    return out


def predict(
    model: nn.Module,
    data: Trajectories,
    observe: Sequence[int] | None,
    *,
    options: SolveOptions,
    y0: torch.Tensor | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Trajectories:
    """Predictions of ``model`` at the valid times of ``data``, as the data's channels (same lengths, units, ids).

    Solves from each trajectory's initial state (``y0 (N, S)``, else metadata ``initial_state`` /
    ``initial_time``) with :func:`physnode.forecast.forecast` and the fit's ``options``
    (:class:`~physnode.SolveOptions`), and maps the state onto the channels with ``observe`` (state indices per
    channel; ``None`` when the state components are named like the channels or equal them). ``attrs`` (see
    :func:`prediction_attrs`) describe what produced them; the data's own attributes are not copied (they
    describe how the data were made, e.g. a generator's true parameters and solver).
    """
    from ..forecast import forecast

    with torch.no_grad():
        pred = forecast(model, data, data.times, y0=y0, options=options)
    n = data.n_times
    mask = data.time_mask.unsqueeze(-1).expand(-1, -1, data.n_channels)
    return Trajectories(
        data.times,
        _as_channels(pred, data, observe)[:, :n].to(data.values.dtype).to(data.device),
        mask,
        data.lengths,
        channels=data.channels,
        units=data.units,
        time_units=data.time_units,
        metadata=_metadata(data, y0),
        attrs=dict(attrs) if attrs is not None else {"predicted_by": type(model).__name__},
        ids=data.ids,
    )


def dense_grid(data: Trajectories, n_points: int) -> Tensor:
    """``(N, n_points)`` uniform times from each trajectory's initial time to its last valid time."""
    from ..fit.initial import initial_times

    t0 = initial_times(data).to(torch.float64).cpu()
    last = data.times.detach().to(torch.float64).cpu().gather(1, (data.lengths.cpu() - 1).unsqueeze(1)).squeeze(1)
    s = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64)
    return (t0.unsqueeze(1) + (last - t0).unsqueeze(1) * s).to(data.times.dtype)


def predict_dense(
    model: nn.Module,
    data: Trajectories,
    observe: Sequence[int] | None,
    *,
    options: SolveOptions,
    y0: torch.Tensor | None = None,
    n_points: int = 400,
) -> Trajectories:
    """Predictions on ``n_points`` uniform times per trajectory over its own time span (for smooth curves in
    figures), as the data's channels; see :func:`predict`."""
    from ..forecast import forecast

    grid = dense_grid(data, n_points).to(data.device)
    with torch.no_grad():
        pred = forecast(model, data, grid, y0=y0, options=options)
    return Trajectories(
        grid,
        _as_channels(pred, data, observe).to(data.values.dtype),
        channels=data.channels,
        units=data.units,
        time_units=data.time_units,
        ids=data.ids,
    )


def forecast_error(pred: Trajectories, truth: Trajectories, t_split: float) -> dict[str, float]:
    """RMSE and relative RMSE (RMSE / RMS of the truth) of ``pred`` vs ``truth`` at observed times ``> t_split``."""
    sel = truth.mask & (truth.times > t_split).unsqueeze(-1)
    if not bool(sel.any()):
        raise ValueError(f"no observation after t_split = {t_split}; cannot measure the forecast error.")
    err = (pred.values - truth.values)[sel]
    rmse = float(err.square().mean().sqrt())
    scale = float(truth.values[sel].square().mean().sqrt())
    return {"rmse": rmse, "relative_rmse": rmse / scale if scale > 0 else math.nan, "n": int(sel.sum())}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else f"{v:.7g}"
    return str(v)


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain-text table with right-aligned numeric columns."""
    cells = [[str(h) for h in header]] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(r[j]) for r in cells) for j in range(len(header))]
    lines = []
    for k, r in enumerate(cells):
        lines.append(
            "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True)))
        )
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_plots(
    out: Path,
    data: Trajectories,
    pred: Trajectories,
    history: Sequence[Mapping[str, Any]],
    *,
    truth: Mapping[str, Any] | None,
    t_split: float | None,
    orbits: bool,
    dense: Trajectories | None = None,
    names: Sequence[str] | None = None,
    initial: Mapping[str, Any] | None = None,
    errors: Mapping[str, Any] | None = None,
    errors_note: str | None = None,
    bands: Any = None,
    max_trajectories: int = SHOWN_TRAJECTORIES,
) -> list[Path]:
    """Write ``time_series.png``, ``loss.png``, ``parameters.png`` (and ``orbits.png``) into ``out``.

    Parameters
    ----------
    data, pred
        The data and the predictions at its times (for the residual panels).
    dense
        Predictions on a fine grid (:func:`predict_dense`), drawn as the model's curves; default ``pred``. It (and
        ``bands``) may hold only the first trajectories (at least those drawn): ``data`` and ``pred`` are then cut
        to the same ones.
    names, initial, errors, truth
        The learnable parameters to trace, their initial guesses, standard errors and true values.
    bands
        Uncertainty bands of the dense predictions (a :class:`physnode.predictive.Forecast`), shaded in the time
        series.
    errors_note
        Why the standard errors are not meaningful (``FitResult.uncertainty_warning``), if they are not: the error
        bars' legend entry says so.
    max_trajectories
        The time series overlay the first ``max_trajectories`` trajectories.
    """
    from .. import plot

    curves = dense if dense is not None else pred
    written = []
    n_all = data.n_trajectories
    if curves.n_trajectories < n_all:  # a dense solve of the drawn trajectories only
        data, pred = data[: curves.n_trajectories], pred[: curves.n_trajectories]
    shown = list(range(min(data.n_trajectories, max_trajectories)))
    band = "" if bands is None else f" with {100 * bands.level:g} % {bands.kind(bands.channels[0])} bands"
    title = f"observed (dots), fitted model (lines{band}), residuals below" + (
        f"; first {len(shown)} of {n_all} trajectories" if n_all > len(shown) else ""
    )
    plot.plot_time_series(
        data,
        curves,
        trajectories=shown,
        residuals=pred,
        bands=bands,
        t_split=t_split,
        title=title,
        path=out / "time_series.png",
    )
    written.append(out / "time_series.png")
    if orbits:
        plot.plot_orbits(
            data, curves, projections="all", t_split=t_split, title="orbits (trajectory 0)", path=out / "orbits.png"
        )
        written.append(out / "orbits.png")
    if history:
        if all("loss" in h for h in history):
            plot.plot_loss(history, title="training loss per epoch", path=out / "loss.png")
            written.append(out / "loss.png")
        if all(isinstance(h.get("params"), Mapping) and h["params"] for h in history):
            names = list(history[0]["params"]) if names is None else [n for n in names if n in history[0]["params"]]
            if names:

                def only(table: Mapping[str, Any] | None) -> dict[str, Any]:
                    return {k: v for k, v in (table or {}).items() if k in names and v is not None}

                plot.plot_parameters(
                    history,
                    names=names,
                    truth=only(truth),
                    initial=only(initial),
                    errors=only(errors),
                    errors_label="±1 std. error"
                    + (" (not meaningful: fit at solver precision)" if errors_note else ""),
                    relative_error=True,
                    title="learnable parameters per epoch",
                    path=out / "parameters.png",
                )
                written.append(out / "parameters.png")
    return written
