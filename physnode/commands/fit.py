"""``physnode fit``: fit the unknown parameters of a physical model to trajectory data.

``physnode fit three-body`` runs the ACA paper's experiment (Zhuang et al. 2020) on data generated on the fly:
three bodies under Newtonian gravity, positions observed on ``[0, 1]``, the three masses fitted from the
perturbed guess ``(1.0, 1.2, 0.8)`` (truth ``(1.1, 1.1, 0.9)``), the orbit forecast on ``(1, 2]``.

``physnode fit CONFIG.toml`` fits a model of your own, described in a TOML file, to a ``.nc`` / ``.h5`` file of
:class:`physnode.data.Trajectories`. Both write a results folder: ``summary.json`` (fitted values, standard errors,
truth when known, forecast error, the solve options used, and the gradient method requested when the fit used
another), ``fit.json`` (the full fit record with its per-epoch history), ``result.pt`` (the whole fit without
pickle: ``physnode.load_result(folder)`` returns it as a FitResult), ``data.nc`` and ``predictions.nc`` (observed
and predicted channels; the predictions record the fitted parameters, solver, gradient method, physnode version and
command), and PNG plots (dense-solve curves with 95 % predictive bands and residuals, orbits, loss, parameters). A
results folder may be reused: the files a previous run wrote there (those its ``summary.json`` lists) are removed
first, other files are kept. Sizes, the device and the writability of the folder are checked before the fit starts.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from .._atomic import atomic_write
from ..data.trajectories import Trajectories
from ..options import DEFAULT_ATOL, DEFAULT_METHOD, DEFAULT_RTOL, FIT_GRAD, SolveOptions
from ._cli import ArgumentParser, check_device, check_writable_folder
from ._model import THREE_BODY, load_config, model_from_config, solve_options_from_table, three_body_model
from ._results import (
    SHOWN_TRAJECTORIES,
    forecast_error,
    format_table,
    predict,
    predict_dense,
    prediction_attrs,
    prepare_results,
    write_json,
    write_plots,
)

__all__ = ["CONFIG_EXAMPLE", "MAX_OBSERVATION_TIMES", "main"]

#: Largest ``--n-obs x --n-trajectories`` of ``physnode fit three-body``.
MAX_OBSERVATION_TIMES = 10**6

#: An example CONFIG.toml (shown by ``physnode fit --help``; tested end to end).
CONFIG_EXAMPLE = """\
# physnode fit oscillator.toml  (paths are relative to this file)
[model]                                  # physics as text, parsed safely (never evaluated)
kind = "ode"                             # "ode", "hamiltonian" or "lagrangian"
state = ["x", "v"]
rhs = { x = "v", v = "-omega0**2*x - 2*zeta*omega0*v" }

[model.params]                           # a number is a known constant; a table is fitted
omega0 = { value = 0.8, positive = true, units = "rad s-1" }
zeta = { value = 0.3, bounds = [0.0, 1.0] }

[data]
file = "oscillator.nc"                   # physnode data make damped_oscillator oscillator.nc
observe = ["x", "v"]                     # state component of each data channel (default: by name)
t_split = 15.0                           # fit t <= t_split, forecast the rest (optional)

[solver]                                 # physnode.SolveOptions; also max_steps, options = { ... }
method = "dopri5"                        # a fixed-step method (rk4, ...) needs step_size = ... instead
grad = "aca"                             # gauss-newton differentiates with "direct" (summary.json says so)
rtol = 1e-7
atol = 1e-9

[fit]                                    # any option of physnode.fit.fit
optimizer = "gauss-newton"
epochs = 20

[output]
dir = "results/oscillator"
"""

_THREE_BODY_GUESS = (1.0, 1.2, 0.8)
_T_SPLIT = 1.0


def _top_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="physnode fit",
        description=__doc__,
        epilog="Usage:\n  physnode fit three-body [options]   (physnode fit three-body --help)\n"
        "  physnode fit CONFIG.toml [options]  (physnode fit CONFIG.toml --help)\n\nExample CONFIG.toml:\n\n"
        + CONFIG_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", help="'three-body' or the path of a CONFIG.toml file")
    return p


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _fraction(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {s!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {v}")
    return v


def _non_negative(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {s!r}") from None
    if not v >= 0.0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {v}")
    return v


def _three_body_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="physnode fit three-body",
        description="The ACA paper's three-body experiment: fit the three masses from the positions observed on "
        "[0, 1] (initial guess 1.0, 1.2, 0.8; truth 1.1, 1.1, 0.9), forecast (1, 2], write a results folder.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("results/three-body"),
        help="results folder (created; the outputs of a previous run in it are replaced)",
    )
    p.add_argument("--n-obs", type=_positive_int, default=100, help="observation times on [0, 1] (default 100)")
    p.add_argument(
        "--noise",
        type=_non_negative,
        default=0.0,
        help="standard deviation of Gaussian noise on the positions (default 0: noise-free)",
    )
    p.add_argument("--irregular", action="store_true", help="random observation times instead of a uniform grid")
    p.add_argument(
        "--missing", type=_fraction, default=0.0, help="probability that an observation is dropped (default 0)"
    )
    p.add_argument(
        "--n-trajectories", type=_positive_int, default=1, help="trajectories (default 1; extra ones start nearby)"
    )
    p.add_argument("--method", default=DEFAULT_METHOD, help=f"ODE solver (default {DEFAULT_METHOD})")
    p.add_argument(
        "--grad",
        default=None,
        help=f"gradient method of --optimizer adam/lbfgs (default {FIT_GRAD}); gauss-newton always differentiates with "
        "direct (its exact residual Jacobian needs double backward)",
    )
    p.add_argument(
        "--rtol",
        type=float,
        default=None,
        help=f"relative tolerance of the solver (default {DEFAULT_RTOL:g}, the library's)",
    )
    p.add_argument(
        "--atol",
        type=float,
        default=None,
        help=f"absolute tolerance of the solver (default {DEFAULT_ATOL:g}, the library's)",
    )
    p.add_argument("--step-size", type=float, default=None, help="step of a fixed-step --method (e.g. rk4)")
    p.add_argument("--optimizer", default="gauss-newton", help="gauss-newton (default), lbfgs or adam")
    p.add_argument("--epochs", type=_positive_int, default=None, help="epochs (default 8 gauss-newton, 300 else)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (adam, lbfgs)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: the data's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data (noise, times, missing) and the fit")
    p.add_argument("--nproc", type=_positive_int, default=1, help="data-parallel processes via torchrun")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _config_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="physnode fit CONFIG.toml",
        description="Fit the model of a CONFIG.toml to its data file and write a results folder.",
        epilog="Example CONFIG.toml:\n\n" + CONFIG_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", type=Path, help="the CONFIG.toml file")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default [output] dir or results/NAME; the outputs of a previous run in it are replaced)",
    )
    p.add_argument("--epochs", type=_positive_int, default=None, help="override [fit] epochs")
    p.add_argument("--device", default=None, help="override [fit] device")
    p.add_argument("--seed", type=int, default=None, help="override [fit] seed")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``physnode fit three-body [options]`` or ``physnode fit CONFIG.toml [options]``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        _top_parser().parse_args(argv)  # prints help (exit 0) or the usage error (exit 2)
        return 2  # pragma: no cover - parse_args exits
    if argv[0] == THREE_BODY:
        return three_body(argv[1:])
    return fit_config(argv)


# ------------------------------------------------------------------------------------------------ helpers
def _fit_api():
    """:func:`physnode.fit` without its :class:`~physnode.fit.uncertainty.UncertaintyWarning`: the command prints
    the same sentence as a ``note:`` under its parameter table, once."""
    try:
        from ..fit import fit
        from ..fit.uncertainty import UncertaintyWarning
    except ImportError as err:
        raise ImportError(f"physnode.fit is not available ({err}); it is needed to fit.") from None

    def fit_quietly(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UncertaintyWarning)
            return fit(*args, **kwargs)

    return fit_quietly


def _fit_record(result: Any) -> Mapping[str, Any]:
    """``result.to_json()`` as a dict (it may be given as JSON text)."""
    doc = result.to_json()
    if isinstance(doc, str):
        doc = json.loads(doc)
    return doc if isinstance(doc, Mapping) else {"fit": doc}


def _pairs(params: Mapping[str, Any], uncertainty: Mapping[str, Any], truth: Mapping[str, Any], start: Mapping):
    """Rows ``(name, true, initial, fitted, std.error, rel.error)``, one per component of each fitted quantity."""
    rows = []
    for name, value in params.items():
        fitted = torch.as_tensor(value, dtype=torch.float64).reshape(-1).tolist()
        se = uncertainty.get(name)
        se = [None] * len(fitted) if se is None else torch.as_tensor(se, dtype=torch.float64).reshape(-1).tolist()
        true = truth.get(name)
        true = [None] * len(fitted) if true is None else torch.as_tensor(true, dtype=torch.float64).reshape(-1).tolist()
        init = start.get(name)
        init = [None] * len(fitted) if init is None else torch.as_tensor(init, dtype=torch.float64).reshape(-1).tolist()
        for k, f in enumerate(fitted):
            label = name if len(fitted) == 1 else f"{name}[{k}]"
            t = true[k] if k < len(true) else None
            rel = abs(f - t) / abs(t) if t not in (None, 0) else None
            rows.append((label, t, init[k] if k < len(init) else None, f, se[k] if k < len(se) else None, rel))
    return rows


def _learnable_values(model) -> dict[str, Any]:
    out = {}
    for name, p in getattr(model, "params", {}).items():
        if getattr(p, "learnable", False):
            out[name] = p().detach().cpu().to(torch.float64).tolist()
    return out


def _optimizers() -> tuple[str, ...]:
    from ..fit import OPTIMIZERS

    return OPTIMIZERS


def _without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (torchrun's own parser would take ``--nproc`` as ambiguous)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _distributed(args_nproc: int, argv: Sequence[str], n_trajectories: int) -> tuple[bool, int]:
    """Launch ``argv`` under torchrun when ``--nproc > 1`` (returns ``(launched, rc)``); join the group in a child."""
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:  # a torchrun worker: join the group
        from ..fit import distributed

        distributed.init_from_env()
        return False, 0
    if args_nproc <= 1:
        return False, 0
    if args_nproc > n_trajectories:
        raise ValueError(
            f"--nproc {args_nproc} splits the trajectories over processes but there are only {n_trajectories}; "
            f"pass --n-trajectories {args_nproc} (or more) or a smaller --nproc."
        )
    try:
        from ..fit import distributed
    except ImportError as err:
        raise ImportError(f"--nproc needs physnode.fit.distributed, which is not available ({err}).") from None
    return True, distributed.launch(args_nproc, ["-m", "physnode.cli", "fit", *_without_nproc(argv)], check=False)


def _is_main_rank() -> bool:
    try:
        from ..fit.distributed import world
    except ImportError:
        return True
    return world()[0] == 0


# ------------------------------------------------------------------------------------------------ the pipeline
@dataclass
class _Outcome:
    """What the pipeline computed, handed to the job's ``report``."""

    result: Any
    pred: Trajectories
    params: dict[str, Any]
    rows: list[tuple]
    forecast: dict[str, float] | None
    y0: torch.Tensor | None
    wall: float
    dense: Trajectories | None = None  # predictions on a fine grid, for the figures
    bands: Any = None  # their predictive bands (a physnode.predictive.Forecast), when the fit has a covariance


@dataclass
class _Job:
    """What a fit command fits and how it reports it; :func:`_run_job` is the pipeline both commands share."""

    model: Any
    data: Trajectories  # saved as data.nc and plotted
    train: Trajectories  # the part that is fitted
    reference: Trajectories  # predicted at its times; the forecast error is measured against it
    observe: list[int] | None
    solve: SolveOptions  # as requested (the result's solve_options say what was used)
    fit_options: dict[str, Any]  # the other keywords of physnode.fit
    out_dir: Path
    t_split: float | None
    start_values: dict[str, Any]  # the fitted parameters' initial values (the parameters reported)
    truth: Callable[[dict[str, Any]], dict[str, Any]]  # fitted params -> true values where known
    quiet: bool
    plots: bool
    orbits: bool
    row_label: str
    files: list[str]  # besides data.nc, predictions.nc, summary.json, fit.json
    before_save: Callable[[Path], None]  # writes the job's own files (config.toml)
    report: Callable[[_Job, _Outcome], tuple[dict[str, Any], list[str], list[str]]]  # summary entries, head, tail
    command: str = "physnode fit"  # the command line, recorded in the results
    data_file: str | None = None  # the data file fitted, recorded in the result's provenance


def _run_job(job: _Job, start: float) -> int:
    """Fit, predict, measure, write the results folder and print the table: the pipeline of both fit commands."""
    result = _fit(job)
    if not _is_main_rank():
        return 0
    outcome = _predict_and_measure(job, result, start)
    entries, head, tail = job.report(job, outcome)
    out = _write_results(job, outcome, entries)
    print("\n".join(head))
    print()
    print(format_table(outcome.rows, [job.row_label, "true", "initial", "fitted", "std.error", "rel.error"]))
    if result.uncertainty_warning is not None:
        print(f"note: {result.uncertainty_warning}")
    if (note := convergence_note(result)) is not None:
        print(f"note: {note}")
    for line in tail:
        print(line)
    print(f"wall time {outcome.wall:.1f} s; results in {out}/")
    return 0


def convergence_note(result: Any) -> str | None:
    """Why the standard errors may be too small: a Gauss–Newton fit that ran out of epochs while its loss was still
    falling (``result.converged`` false) is not at the optimum the standard errors assume. ``None`` otherwise (other
    optimisers do not report convergence)."""
    if result.optimizer != "gauss-newton" or result.converged:
        return None
    return (
        f"Gauss-Newton stopped after {result.epochs} epoch{'' if result.epochs == 1 else 's'} with the loss still "
        "falling (not converged): the "
        "estimates are not yet at the optimum, and the standard errors (computed as if they were) do not measure "
        "how far off they are. Raise --epochs."
    )


def _fit(job: _Job) -> Any:
    """Run :func:`physnode.fit.fit` on the job's training data with its solve options."""
    return _fit_api()(
        job.model, job.train, options=job.solve, observe=job.observe, progress=not job.quiet, **job.fit_options
    )


def _predict_and_measure(job: _Job, result: Any, start: float) -> _Outcome:
    """Predictions of the fitted model with the options the fit used, the parameter table and the forecast error."""
    fitted_model = result.model.to("cpu")
    y0 = result.initial_states.detach().cpu() if job.fit_options.get("learn_initial_state") else None
    fit_facts = {
        "optimizer": result.optimizer,
        "epochs": result.epochs,
        "loss": result.loss,
        "grad": result.grad,
        "method": result.method,
        "requested_grad": result.requested_grad,
        "learnable": list(job.start_values),
    }
    attrs = prediction_attrs(
        fitted_model,
        result.params,
        result.solve_options.to_dict(),
        command=job.command,
        fit={k: v for k, v in fit_facts.items() if v is not None},
        t_split=job.t_split,
        data=job.data,
    )
    pred = predict(fitted_model, job.reference, job.observe, options=result.solve_options, y0=y0, attrs=attrs)
    dense = bands = None
    if job.plots:
        # The figures draw the first SHOWN_TRAJECTORIES trajectories: the dense solve and the bands (a Jacobian
        # solve, the dearest part of the results) are computed for those only. Fitted initial states are part of
        # the propagated covariance, so with them every trajectory is kept (the bands need all of them).
        shown = job.reference if y0 is not None else job.reference[:SHOWN_TRAJECTORIES]
        dense = predict_dense(fitted_model, shown, job.observe, options=result.solve_options, y0=y0)
        bands = _dense_bands(result, shown, y0)
    params = {k: v for k, v in result.params.items() if k in job.start_values}
    rows = _pairs(params, result.uncertainty, job.truth(params), job.start_values)
    fc = forecast_error(pred, job.reference, job.t_split) if job.t_split is not None else None
    return _Outcome(result, pred, params, rows, fc, y0, time.perf_counter() - start, dense, bands)


def _dense_bands(result: Any, reference: Trajectories, y0: torch.Tensor | None) -> Any:
    """95 % predictive bands (linear propagation of the fit's covariance, plus the residual standard deviation) on
    the figures' dense grid; ``None`` when the fit has no usable covariance (none, not finite, or flagged as not
    meaningful by ``uncertainty_warning``) or the bands cannot be computed (the figures are then drawn without
    them, and a line says why)."""
    from ..errors import SolverError
    from ..forecast import forecast
    from ._results import dense_grid

    cov = getattr(result, "raw_covariance", None)
    if cov is None or not bool(torch.isfinite(cov).all()) or result.uncertainty_warning is not None:
        return None  # no covariance, or one that is not meaningful (residuals at the solver's precision)
    grid = dense_grid(reference, 400).to(reference.device)
    try:
        return forecast(
            result, reference, grid, y0=y0, uncertainty="linear", noise=result.residual_std or None, level=0.95
        )
    except (SolverError, ValueError, RuntimeError) as err:
        print(f"note: the figures have no uncertainty bands ({' '.join(str(err).split())[:200]})")
        return None


def _write_results(job: _Job, outcome: _Outcome, entries: dict[str, Any]) -> Path:
    """The results folder: the job's files, data.nc, predictions.nc, result.pt, fit.json, plots, summary.json
    (last). The solver and gradient method are the fit's own (``result.solve_options``) everywhere."""
    result = outcome.result
    out = prepare_results(job.out_dir)
    job.before_save(out)
    job.data.save(out / "data.nc")
    outcome.pred.save(out / "predictions.nc")
    result.provenance = {**(result.provenance or {}), "command": job.command}
    if job.data_file is not None:
        result.provenance["data_file"] = job.data_file
    result.save(out / "result.pt")
    summary: dict[str, Any] = {
        **entries,
        "grad": result.grad,
        "method": result.method,
        "solver": result.solve_options.to_dict(),
        "epochs_run": len(result.history),
        "converged": bool(result.converged),
        "wall_seconds": outcome.wall,
        "command": job.command,
        "files": [*job.files, "data.nc", "predictions.nc", "result.pt", "summary.json", "fit.json"],
    }
    if result.requested_grad is not None:
        summary["requested_grad"] = result.requested_grad
    write_json(out / "fit.json", _fit_record(result))
    if job.plots:
        truth = job.truth(outcome.params)
        pngs = write_plots(
            out,
            job.data,
            outcome.pred,
            result.history,
            truth=truth,
            t_split=job.t_split,
            orbits=job.orbits,
            dense=outcome.dense,
            bands=outcome.bands,
            names=list(job.start_values),
            initial=job.start_values,
            errors=result.uncertainty,
            errors_note=getattr(result, "uncertainty_warning", None),
        )
        summary["files"] += [p.name for p in pngs]
    write_json(out / "summary.json", summary)
    return out


def _command_line(argv: Sequence[str]) -> str:
    """``physnode fit ARGS`` as one shell-quoted line (recorded in the results)."""
    return shlex.join(["physnode", "fit", *argv])


def _gradient_text(result: Any) -> str:
    """``aca`` or, when the fit used another method than asked for, ``direct (requested aca)``."""
    if result.requested_grad is None:
        return result.grad
    return f"{result.grad} (requested {result.requested_grad})"


# ------------------------------------------------------------------------------------------------ three-body
def _three_body_options(args: argparse.Namespace) -> SolveOptions:
    """The three-body job's solve options from its flags (the library's defaults for what is not given)."""
    grad = args.grad
    if grad is None:
        grad = "direct" if args.optimizer == "gauss-newton" else FIT_GRAD
    elif args.optimizer == "gauss-newton" and grad != "direct":
        raise ValueError(
            f"--grad {grad} does not apply to --optimizer gauss-newton, which builds the exact residual Jacobian "
            "by double backward through grad=direct; use --optimizer adam or lbfgs to train with another gradient "
            "method."
        )
    table: dict[str, Any] = {"method": args.method, "grad": grad}
    for key in ("rtol", "atol", "step_size"):
        if getattr(args, key) is not None:
            table[key] = getattr(args, key)
    return solve_options_from_table(table, "three-body", where="", step_name="--step-size")


def three_body(argv: Sequence[str]) -> int:
    """``physnode fit three-body``: the ACA paper's experiment; see the module docstring."""
    args = _three_body_parser().parse_args(argv)
    if args.n_obs < 3:
        raise ValueError(f"--n-obs must be at least 3 to fit three masses, got {args.n_obs}.")
    if args.n_obs * args.n_trajectories > MAX_OBSERVATION_TIMES:
        raise ValueError(
            f"--n-obs {args.n_obs} x --n-trajectories {args.n_trajectories} = {args.n_obs * args.n_trajectories:,} "
            f"observation times, more than the limit of {MAX_OBSERVATION_TIMES:,}; use fewer."
        )
    if args.optimizer not in _optimizers():
        raise ValueError(f"unknown --optimizer {args.optimizer!r}; choose one of {', '.join(_optimizers())}.")
    solve = _three_body_options(args)  # fail before generating data
    check_device(args.device)
    launched, rc = _distributed(args.nproc, [THREE_BODY, *argv], args.n_trajectories)
    if launched:
        return rc
    if _is_main_rank():
        check_writable_folder(args.out)
    start = time.perf_counter()
    return _run_job(_three_body_job(args, solve, argv), start)


def _three_body_job(args: argparse.Namespace, solve: SolveOptions, argv: Sequence[str]) -> _Job:
    """Generate the data (and its noise-free twin) and describe the three-body job."""
    from ..datasets import three_body as make_three_body

    n_times = 2 * args.n_obs - 1  # n_obs points on [0, 1] and as many (minus one) on (1, 2]
    common = dict(
        n_trajectories=args.n_trajectories,
        n_times=n_times,
        t_span=(0.0, 2.0),
        irregular=args.irregular,
        seed=args.seed,
        random_initial=args.n_trajectories > 1,
    )
    data = make_three_body(**common, noise=args.noise, missing=args.missing)
    truth = make_three_body(**common)  # same seed: same initial states and times, no noise, nothing missing
    if not torch.equal(data.times, truth.times):  # pragma: no cover - the generator draws times before the noise
        raise RuntimeError("internal error: the noise-free reference has other times than the data.")
    true_params = {"masses": list(data.metadata[0]["parameters"]["masses"])}
    epochs = args.epochs if args.epochs is not None else (8 if args.optimizer == "gauss-newton" else 300)
    options: dict[str, Any] = {"epochs": epochs, "optimizer": args.optimizer, "seed": args.seed}
    if args.lr is not None:
        options["lr"] = args.lr
    if args.device is not None:
        options["device"] = args.device
    observe = list(range(9))  # the nine position components of the 18-dimensional state
    guess = {"masses": list(_THREE_BODY_GUESS)}

    return _Job(
        model=three_body_model(_THREE_BODY_GUESS),
        data=data,
        train=data.split_by_time(_T_SPLIT)[0],
        reference=truth,
        observe=observe,
        solve=solve,
        fit_options=options,
        out_dir=args.out,
        t_split=_T_SPLIT,
        start_values=guess,
        truth=lambda params: true_params,
        quiet=args.quiet,
        plots=not args.no_plots,
        orbits=True,
        row_label="mass",
        files=[],
        before_save=lambda out: None,
        report=functools.partial(_three_body_report, args),
        command=_command_line([THREE_BODY, *argv]),
    )


def _three_body_report(args: argparse.Namespace, job: _Job, o: _Outcome) -> tuple[dict[str, Any], list[str], list[str]]:
    """summary.json entries and the printed lines of the three-body job."""
    fit_err = forecast_error(o.pred, job.reference, -float("inf"))  # whole window, for reference
    entries = {
        "job": THREE_BODY,
        "model": THREE_BODY,
        "params": o.params,
        "uncertainty": {"masses": o.result.uncertainty.get("masses")},
        "true": job.truth(o.params),
        "initial": job.start_values,
        "relative_error": {"masses": [r[5] for r in o.rows]},
        "max_relative_error": max(r[5] for r in o.rows),
        "forecast": {"window": [_T_SPLIT, 2.0], **(o.forecast or {})},
        "all_times": fit_err,
        "observe": job.observe,
        "options": {
            **job.fit_options,
            "n_obs": args.n_obs,
            "noise": args.noise,
            "irregular": args.irregular,
            "missing": args.missing,
            "n_trajectories": args.n_trajectories,
            "nproc": args.nproc,
        },
    }
    head = [
        f"three-body (ACA paper): masses fitted from positions on [0, 1], {args.n_obs} observation times, "
        f"noise {args.noise:g}, missing {args.missing:g}{', irregular' if args.irregular else ''}",
        f"solver {o.result.method}, gradient {_gradient_text(o.result)}, optimizer {args.optimizer}, "
        f"{len(o.result.history)} epochs",
    ]
    fc = cast(dict[str, float], o.forecast)  # the three-body job always forecasts (1, 2]
    tail = [
        "",
        f"forecast on ({_T_SPLIT:g}, 2]: RMSE {fc['rmse']:.3g} (relative {fc['relative_rmse']:.3g}) "
        f"against the noise-free orbit, {fc['n']} values",
    ]
    return entries, head, tail


# ------------------------------------------------------------------------------------------------ CONFIG.toml
def _observe_index(observe: Any, model, channels: Sequence[str]) -> list[int] | None:
    if observe is None:
        return None
    names = getattr(model, "state_names", None)
    if not isinstance(observe, list) or not observe:
        raise ValueError(f"[data] observe must be a list of state names or indices, got {observe!r}.")
    if all(isinstance(o, str) for o in observe):
        if names is None or any(o not in names for o in observe):
            raise ValueError(f"[data] observe names {observe} are not all state components of the model {names}.")
        return [list(names).index(o) for o in observe]
    if all(isinstance(o, int) and not isinstance(o, bool) for o in observe):
        return list(observe)
    raise ValueError(f"[data] observe must be all names or all indices, got {observe!r}.")


def _truth_from_metadata(data: Trajectories, names: Sequence[str]) -> dict[str, Any]:
    """True parameter values shared by every trajectory's metadata ``parameters`` (generated data)."""
    metas = [m["parameters"] for m in data.metadata if isinstance(m.get("parameters"), Mapping)]
    if not metas or len(metas) != len(data.metadata):
        return {}
    return {n: metas[0][n] for n in names if n in metas[0] and all(m.get(n) == metas[0][n] for m in metas)}


def fit_config(argv: Sequence[str]) -> int:
    """``physnode fit CONFIG.toml``: fit a user's model to a data file; see :data:`CONFIG_EXAMPLE`."""
    args = _config_parser().parse_args(argv)
    start = time.perf_counter()
    return _run_job(_config_job(args, argv), start)


def _load_config_data(args: argparse.Namespace, cfg: Mapping[str, Any]) -> tuple[Path, Trajectories, float | None]:
    """The ``[data]`` file (relative to the config), its trajectories and ``t_split``."""
    source = str(args.config)
    data_path = Path(cfg["data"]["file"]).expanduser()
    if not data_path.is_absolute():
        data_path = args.config.parent / data_path
    if data_path.is_dir():
        raise OSError(f"{source}: [data] file {data_path} is a folder; give the path of a .nc or .h5 file in it.")
    if not data_path.is_file():
        raise OSError(f"{source}: [data] file {data_path} does not exist.")
    data = Trajectories.load(data_path)
    t_split = cfg["data"].get("t_split")
    if t_split is not None and (isinstance(t_split, bool) or not isinstance(t_split, (int, float))):
        raise ValueError(f"{source}: [data] t_split must be a number (time units of the data), got {t_split!r}.")
    return data_path, data, None if t_split is None else float(t_split)


def _config_job(args: argparse.Namespace, argv: Sequence[str]) -> _Job:
    """Read the config and its data, check the options and the results folder, and describe the job."""
    cfg = load_config(args.config)
    source = str(args.config)
    model = model_from_config(cfg, source)
    data_path, data, t_split = _load_config_data(args, cfg)
    train = data.split_by_time(t_split)[0] if t_split is not None else data
    observe = cfg["data"].get("observe")
    obs_idx = _observe_index(observe, model, data.channels)
    solve = solve_options_from_table(cfg.get("solver", {}), source)
    options = dict(cfg.get("fit", {}))
    for key in ("epochs", "device", "seed"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    check_device(options.get("device"), "[fit] device" if args.device is None else "--device")
    start_values = _learnable_values(model)
    if not start_values:
        raise ValueError(
            f"{source}: the model has no learnable parameter; mark one as a table, e.g. "
            "k = { value = 1.0, positive = true }."
        )
    name = args.config.stem
    out_dir = args.out or Path(cfg.get("output", {}).get("dir", f"results/{name}"))
    if not out_dir.is_absolute() and args.out is None and "dir" in cfg.get("output", {}):
        out_dir = args.config.parent / out_dir
    check_writable_folder(out_dir, "--out" if args.out is not None else "[output] dir")

    return _Job(
        model=model,
        data=data,
        train=train,
        reference=data,
        observe=obs_idx,
        solve=solve,
        fit_options=options,
        out_dir=out_dir,
        t_split=t_split,
        start_values=start_values,
        truth=lambda params: _truth_from_metadata(data, list(params)),
        quiet=args.quiet,
        plots=not args.no_plots,
        orbits=False,
        row_label="parameter",
        files=["config.toml"],
        before_save=functools.partial(_save_config, args.config),
        report=functools.partial(_config_report, args, data_path, observe),
        command=_command_line(argv),
        data_file=str(data_path.resolve()),
    )


def _save_config(config: Path, out: Path) -> None:
    """Copy the CONFIG.toml into the results folder as ``config.toml`` (atomically)."""

    def copy(tmp: str) -> None:
        shutil.copyfile(config, tmp)

    atomic_write(out / "config.toml", copy)


def _config_report(
    args: argparse.Namespace, data_path: Path, observe: Any, job: _Job, o: _Outcome
) -> tuple[dict[str, Any], list[str], list[str]]:
    """summary.json entries and the printed lines of a CONFIG.toml job."""
    entries = {
        "job": "config",
        "model": "config",
        "config": "config.toml",
        "source_config": str(args.config.resolve()),
        "data_file": str(data_path.resolve()),
        "params": o.params,
        "all_params": o.result.params,
        "uncertainty": {k: o.result.uncertainty.get(k) for k in o.params},
        "true": job.truth(o.params),
        "initial": job.start_values,
        "relative_error": {r[0]: r[5] for r in o.rows if r[5] is not None},
        "forecast": None if o.forecast is None else {"t_split": job.t_split, **o.forecast},
        "observe": observe,
        "initial_states": None if o.y0 is None else o.y0.tolist(),
        "options": job.fit_options,
    }
    head = [
        f"{args.config.stem}: {len(o.params)} parameter(s) fitted to {data_path.name} ({job.data.n_trajectories} "
        f"trajectories), {o.result.method}/{_gradient_text(o.result)}, {len(o.result.history)} epochs"
    ]
    fc = o.forecast
    tail = (
        []
        if fc is None
        else [f"\nforecast after t = {job.t_split:g}: RMSE {fc['rmse']:.3g} (relative {fc['relative_rmse']:.3g})"]
    )
    return entries, head, tail
