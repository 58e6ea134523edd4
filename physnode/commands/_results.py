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
from torch import nn

from .._atomic import atomic_write_text
from ..data.trajectories import Trajectories

if TYPE_CHECKING:
    from ..options import SolveOptions

__all__ = ["OUTPUT_NAMES", "forecast_error", "format_table", "predict", "prepare_results", "write_json", "write_plots"]

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


def predict(
    model: nn.Module,
    data: Trajectories,
    observe: Sequence[int] | None,
    *,
    options: SolveOptions,
    y0: torch.Tensor | None = None,
) -> Trajectories:
    """Predictions of ``model`` at the valid times of ``data``, as the data's channels.

    Solves from each trajectory's initial state (``y0 (N, S)``, else metadata ``initial_state`` /
    ``initial_time``) with :func:`physnode.forecast.forecast` and the fit's ``options``
    (:class:`~physnode.SolveOptions`), and maps the state onto the channels with ``observe`` (state indices per
    channel; ``None`` when the state components are named like the channels or equal them).
    """
    from ..forecast import forecast

    with torch.no_grad():
        pred = forecast(model, data, data.times, y0=y0, options=options)
    if list(pred.channels) == list(data.channels):
        out_values = pred.values
    elif all(c in pred.channels for c in data.channels):
        out_values = pred.select_channels(data.channels).values
    else:
        idx = list(range(data.n_channels)) if observe is None else list(observe)
        out_values = pred.values[..., idx]
    n = data.n_times
    mask = data.time_mask.unsqueeze(-1).expand(-1, -1, data.n_channels)
    return Trajectories(
        data.times,
        out_values[:, :n].to(data.values.dtype).to(data.device),
        mask,
        data.lengths,
        channels=data.channels,
        units=data.units,
        time_units=data.time_units,
        metadata=data.metadata,
        attrs={**data.attrs, "predicted_by": type(model).__name__},
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
) -> list[Path]:
    """Write ``time_series.png``, ``loss.png``, ``parameters.png`` (and ``orbits.png``) into ``out``."""
    from .. import plot

    written = []
    fig = plot.plot_time_series(data, pred, t_split=t_split, path=out / "time_series.png")
    written.append(out / "time_series.png")
    del fig
    if orbits:
        plot.plot_orbits(data, pred, path=out / "orbits.png")
        written.append(out / "orbits.png")
    if history:
        if all("loss" in h for h in history):
            plot.plot_loss(history, path=out / "loss.png")
            written.append(out / "loss.png")
        if all(isinstance(h.get("params"), Mapping) and h["params"] for h in history):
            names = list(history[0]["params"])
            tr = {k: v for k, v in (truth or {}).items() if k in names}
            plot.plot_parameters(history, truth=tr, path=out / "parameters.png")
            written.append(out / "parameters.png")
    return written
