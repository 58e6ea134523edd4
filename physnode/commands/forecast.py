"""``physnode forecast``: predictions of a fitted model, written to a ``.nc`` (or ``.h5``) trajectory file.

The model is loaded from a results folder of ``physnode fit`` (its ``result.pt``; folders without one are rebuilt
from ``summary.json`` and, for a CONFIG.toml fit, its copy ``config.toml``), or built from ``three-body`` / a
CONFIG.toml plus ``--params`` (a results folder or a JSON file with ``"params"``). Each trajectory starts from the
initial state in the data's metadata and is solved at the data's times (keeping each trajectory's length, mask
and channel units), or on ``--n-times`` uniform times from its own initial time up to ``--t-end``. The file's
attributes record the fitted parameters, the fit's solver and gradient method, the forecast's solver, the
physnode version and the command. ``--uncertainty linear`` or ``laplace`` adds bands from the fit's covariance
(:func:`physnode.forecast`), written as CF ancillary variables ``x_lower``, ``x_upper``, ``x_std`` next to each
channel ``x`` (``--out`` must then be ``.nc``); ``--plot FILE.png`` draws the forecast with the data and shades the
bands.

Examples::

    physnode fit three-body --out results/three-body
    physnode forecast results/three-body --t-end 3 --out results/three-body/forecast.nc
    physnode forecast model.toml --params results/model --data other.nc --out other_pred.nc
    physnode forecast results/three-body --t-end 3 --uncertainty linear --noise residual --out bands.nc --plot bands.png
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..data.trajectories import Trajectories
from ._cli import ArgumentParser, check_writable_file
from ._model import (
    THREE_BODY,
    load_config,
    load_params,
    model_from_config,
    read_json,
    set_params,
    three_body_model,
)

if TYPE_CHECKING:
    from ..options import SolveOptions

__all__ = ["MAX_TIMES", "main"]

#: Largest ``--n-times``.
MAX_TIMES = 10**6


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="physnode forecast", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("model", help="a results folder of physnode fit, 'three-body', or a CONFIG.toml")
    p.add_argument("--out", type=Path, required=True, help="predictions file to write (.nc or .h5)")
    p.add_argument("--params", type=Path, default=None, help="results folder or JSON with the fitted 'params'")
    p.add_argument("--data", type=Path, default=None, help="trajectory file with the initial states and times")
    p.add_argument("--t-end", type=float, default=None, help="predict on uniform times up to this end time")
    p.add_argument("--n-times", type=int, default=200, help="number of times with --t-end (default 200)")
    p.add_argument("--method", default=None, help="ODE solver (default: the fit's)")
    p.add_argument("--rtol", type=float, default=None, help="relative tolerance (default: the fit's)")
    p.add_argument("--atol", type=float, default=None, help="absolute tolerance (default: the fit's)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument(
        "--uncertainty",
        choices=("linear", "laplace"),
        default=None,
        help="also write bands from the fit's covariance (needs result.pt; --out .nc): linear propagation or Laplace "
        "sampling",
    )
    p.add_argument("--level", type=float, default=0.95, help="probability content of the bands (default 0.95)")
    p.add_argument(
        "--noise",
        default=None,
        help="observation noise added to the bands (predictive bands): a standard deviation, or 'residual' for the "
        "fit's residual standard deviation (default: the fit's fitted noise if any, else none: confidence bands)",
    )
    p.add_argument("--n-samples", type=int, default=200, help="Laplace draws (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Laplace draws (default 0)")
    p.add_argument(
        "--plot", type=Path, default=None, help="also draw the forecast (and its bands) to this .png/.pdf/.svg"
    )
    return p


def inside(folder: Path, name: Any, what: str) -> Path:
    """The file ``name`` of a results folder, refused unless it lies inside ``folder``.

    ``name`` comes from the folder's own ``summary.json``, which may have been edited: absolute paths, ``..``
    components and symbolic links that lead out of the folder are refused.

    Raises
    ------
    ValueError
        ``name`` is not a relative file name inside ``folder``.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"{folder}/summary.json: {what} must be a file name inside the results folder, got {name!r}.")
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(
            f"{folder}/summary.json: {what} {name!r} points outside the results folder; only files inside "
            f"{folder} are read (e.g. 'config.toml')."
        )
    base = folder.resolve()
    path = (folder / rel).resolve()
    if not path.is_relative_to(base):
        raise ValueError(
            f"{folder}: {what} {name!r} is a symbolic link to {path}, outside the results folder; only files inside "
            f"{folder} are read."
        )
    return folder / rel


def _summary(folder: Path) -> dict[str, Any]:
    path = inside(folder, "summary.json", "summary.json")
    if not path.is_file():
        raise OSError(f"{folder} is not a results folder of physnode fit: it has no summary.json.")
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise ValueError(f"{path} must hold a JSON object.")
    return doc


def _loaded_result(folder: Path, args: argparse.Namespace) -> Any:
    """The :class:`~physnode.FitResult` of a results folder's ``result.pt`` (``None`` without one, or with
    ``--params``)."""
    from ..fit.saving import RESULT_FILE, load_result

    if args.params is not None or not folder.is_dir() or not (folder / RESULT_FILE).is_file():
        return None
    return load_result(inside(folder, RESULT_FILE, "result file"))


def _noise(args: argparse.Namespace, result: Any) -> float | None:
    """The ``noise=`` of the bands from ``--noise``."""
    if args.noise is None:
        return None
    if args.noise == "residual":
        if result.residual_std is None:
            raise ValueError("--noise residual: this fit has no residual standard deviation (not an 'mse' fit).")
        return float(result.residual_std)
    try:
        value = float(args.noise)
    except ValueError:
        raise ValueError(
            f"--noise must be a standard deviation (a number >= 0) or 'residual', got {args.noise!r}."
        ) from None
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"--noise must be a finite standard deviation >= 0, got {args.noise!r}.")
    return value


def _check_band_args(args: argparse.Namespace) -> None:
    """The band and plot flags, checked before anything is computed."""
    if args.uncertainty is not None and args.out.suffix.lower() != ".nc":
        raise ValueError(
            f"--uncertainty writes the bands as netCDF variables: --out must end in .nc, got {args.out.name!r}."
        )
    if not 0.0 < args.level < 1.0:
        raise ValueError(f"--level must be a probability in (0, 1), e.g. 0.95, got {args.level}.")
    if args.n_samples < 2:
        raise ValueError(f"--n-samples must be at least 2, got {args.n_samples}.")
    if args.plot is not None:
        if args.plot.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise ValueError(f"--plot must end in .png, .pdf or .svg, got {args.plot.name!r}.")
        check_writable_file(args.plot)


def _plot(args: argparse.Namespace, data: Trajectories, pred: Trajectories, bands: Any) -> None:
    """``--plot``: the data's channels the forecast has, three trajectories at most, bands shaded."""
    from .. import plot

    channels = [c for c in data.channels if c in pred.channels]
    if not channels:
        raise ValueError(
            f"--plot: the forecast's channels {pred.channels} include none of the data's {data.channels}; nothing "
            "to compare."
        )
    shown = list(range(min(3, data.n_trajectories)))
    method = {"linear": "linear propagation", "laplace": "Laplace sampling"}
    what = "" if bands is None else f" with {100 * bands.level:g} % bands by {method.get(bands.method, bands.method)}"
    plot.plot_time_series(
        data,
        pred,
        trajectories=shown,
        channels=channels,
        bands=bands,
        title=f"forecast (lines{what}), data (dots)",
        path=args.plot,
    )


def _resolve(args: argparse.Namespace) -> tuple[torch.nn.Module, dict[str, Any], Path | None, dict[str, Any]]:
    """The model (parameters not yet set), the parameters, the default data file and the fit's summary."""
    target = Path(args.model)
    if args.model == THREE_BODY:
        if args.params is None:
            raise ValueError("forecast three-body needs --params RESULTS_DIR (or a JSON file with 'params').")
        folder = args.params if args.params.is_dir() else None
        summary = _summary(folder) if folder is not None else {}
        return three_body_model(), load_params(args.params), (folder / "data.nc" if folder else None), summary
    if target.is_dir():
        summary = _summary(target)
        params = load_params(args.params if args.params is not None else target)
        data_file = inside(target, "data.nc", "data file")
        if summary.get("model") == THREE_BODY:
            return three_body_model(), params, data_file, summary
        config = inside(target, summary.get("config", "config.toml"), "'config'")
        cfg = load_config(config)
        return model_from_config(cfg, str(config)), params, data_file, summary
    if target.suffix.lower() == ".toml" or target.is_file():
        cfg = load_config(target)
        if args.params is None:
            raise ValueError(f"forecast {target} needs --params RESULTS_DIR (or a JSON file with 'params').")
        data_file = Path(cfg["data"]["file"]).expanduser()
        if not data_file.is_absolute():
            data_file = target.parent / data_file
        summary = {"solver": dict(cfg.get("solver", {}))}
        return model_from_config(cfg, str(target)), load_params(args.params), data_file, summary
    raise OSError(f"{target} is neither a results folder of physnode fit, 'three-body', nor a CONFIG.toml file.")


def _solve_options(summary: dict[str, Any], args: argparse.Namespace) -> SolveOptions:
    """The fit's solve options (the summary's ``"solver"``, checked: a tampered summary gives a clear error), with
    ``--method`` / ``--rtol`` / ``--atol`` applied; a new ``--method`` drops the fit's ``step_size`` and options."""
    from ..options import SolveOptions

    solver = summary.get("solver")
    table: dict[str, Any] = solver if isinstance(solver, dict) else {}
    try:
        opts = SolveOptions.from_dict(table).without_gradient()
        changes: dict[str, Any] = {}
        if args.method is not None:
            changes.update(method=args.method, step_size=None, options={})
        if args.rtol is not None:
            changes["rtol"] = args.rtol
        if args.atol is not None:
            changes["atol"] = args.atol
        return opts.replace(**changes) if changes else opts
    except (TypeError, ValueError) as err:
        where = "--method/--rtol/--atol" if args.method or args.rtol is not None or args.atol is not None else ""
        raise ValueError(f"summary.json solver{' with ' + where if where else ''}: {err}") from None


def _times(args: argparse.Namespace, data: Trajectories) -> tuple[torch.Tensor, bool]:
    """The forecast times ``(N, T)`` and whether they are the data's own (padded) times.

    With ``--t-end``: ``--n-times`` uniform times from each trajectory's own initial time (metadata
    ``initial_time``, else its first time) to ``--t-end``.
    """
    if args.t_end is None:
        return data.times, True
    from ..fit.initial import initial_times

    t0 = initial_times(data).to(torch.float64).cpu()
    late = [i for i in range(len(t0)) if not args.t_end > float(t0[i])]
    if late:
        i = late[0]
        raise ValueError(
            f"--t-end {args.t_end} must lie after the first time of the data, {float(t0.min())}: trajectory {i} "
            f"starts at {float(t0[i])} ({len(late)} of {len(t0)} trajectories start at or after --t-end); choose a "
            f"later --t-end."
        )
    s = torch.linspace(0.0, 1.0, args.n_times, dtype=torch.float64)
    grid = t0.unsqueeze(1) + (args.t_end - t0).unsqueeze(1) * s
    grid[:, -1] = args.t_end  # exactly the requested end
    return grid.to(data.times.dtype), False


def _fitted_values(model: torch.nn.Module) -> dict[str, Any]:
    """The model's named physical quantities as numbers or lists."""
    quantities = getattr(model, "physical_parameters", None)
    if not callable(quantities):
        return {}
    return {k: v.detach().cpu().to(torch.float64).tolist() for k, v in quantities().items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``physnode forecast``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.out.suffix.lower() not in (".nc", ".h5", ".hdf5"):
        raise ValueError(f"--out must end in .nc, .h5 or .hdf5, got {args.out.name!r}.")
    if args.out.exists() and not args.force:
        raise OSError(f"{args.out} exists; pass --force to overwrite it.")
    if not 2 <= args.n_times <= MAX_TIMES:
        raise ValueError(f"--n-times must be between 2 and {MAX_TIMES:,}, got {args.n_times}.")
    if args.t_end is not None and not math.isfinite(args.t_end):
        raise ValueError(f"--t-end must be a finite time, got {args.t_end}.")
    check_writable_file(args.out)
    _check_band_args(args)
    model, params, data_file, summary = _resolve(args)
    opts = _solve_options(summary, args)
    result = _loaded_result(Path(args.model), args)
    if result is not None:
        model = result.model  # the fitted model itself, its tensors exactly as fitted
    else:
        if args.uncertainty is not None:
            raise ValueError(
                "--uncertainty needs the fit's covariance, saved in a results folder's result.pt (physnode fit writes "
                "it): give the results folder, without --params."
            )
        set_params(model, params, source=str(args.params or args.model))
    data_file = args.data or data_file
    if data_file is None:
        raise ValueError(
            f"{args.model} names no data file with the initial states of the forecast; pass --data FILE (.nc or .h5)."
        )
    if not Path(data_file).is_file():
        raise OSError(
            f"no data file with the initial states: {data_file} does not exist; pass --data FILE (.nc or .h5)."
        )
    data = Trajectories.load(data_file)
    t, at_data = _times(args, data)
    from ..forecast import channel_units, forecast
    from ._results import prediction_attrs
    from .fit import convergence_note

    y0 = None
    if summary.get("initial_states") is not None and args.data is None:
        y0 = torch.tensor(summary["initial_states"], dtype=data.values.dtype)  # learned by the fit
    bands = None
    if args.uncertainty is not None:
        bands = forecast(
            result,
            data,
            t,
            y0=y0,
            options=opts,
            uncertainty=args.uncertainty,
            level=args.level,
            noise=_noise(args, result),
            n_samples=args.n_samples,
            seed=args.seed,
        )
        pred = bands.mean
    else:
        with torch.no_grad():
            pred = forecast(model, data, t, y0=y0, options=opts)
    fit_solver: dict[str, Any] = summary["solver"] if isinstance(summary.get("solver"), dict) else {}
    fit_facts = {
        "results": str(args.params or args.model),
        "solver": fit_solver,
        "grad": summary.get("grad", fit_solver.get("grad")),
        "requested_grad": summary.get("requested_grad"),
    }
    solver = {k: v for k, v in opts.to_dict().items() if k != "grad"}  # a forecast differentiates nothing
    attrs = prediction_attrs(
        model,
        _fitted_values(model),
        solver,
        command=shlex.join(["physnode", "forecast", *argv]),
        fit={k: v for k, v in fit_facts.items() if v is not None},
        data=data,
    )
    attrs["title"] = f"Forecast of the {type(model).__name__} model fitted in {fit_facts['results']}"
    meta: list[dict[str, Any]] = [{k: m[k] for k in ("initial_state", "initial_time") if k in m} for m in data.metadata]
    if y0 is not None:
        meta = [{**m, "initial_state": y0[i].tolist()} for i, m in enumerate(meta)]
    pred = Trajectories(
        pred.times,
        pred.values,
        data.time_mask.unsqueeze(-1).expand(-1, -1, pred.n_channels) if at_data else None,
        data.lengths if at_data else None,
        channels=pred.channels,
        units=channel_units(data, list(pred.channels)),
        time_units=data.time_units,
        metadata=meta,
        attrs=attrs,
        ids=data.ids,
    )
    if bands is not None:
        bands = dataclasses.replace(bands, mean=pred)
        bands.to_netcdf(args.out)
    else:
        pred.save(args.out)
    print(f"wrote {args.out}: {pred!r}" + ("" if bands is None else f" with {bands!r}"))
    if bands is not None and getattr(result, "uncertainty_warning", None):
        print(f"note: these bands propagate the fit's standard errors, which are flagged: {result.uncertainty_warning}")
    if bands is not None and (note := convergence_note(result)) is not None:
        print(f"note: these bands propagate the fit's standard errors; {note}")
    if args.plot is not None:
        _plot(args, data, pred, bands)
        print(f"wrote {args.plot}")
    return 0
