"""``physnode fit``: fit the unknown parameters of a physical model to trajectory data.

``physnode fit three-body`` runs the ACA paper's experiment (Zhuang et al. 2020) on data generated on the fly:
three bodies under Newtonian gravity, positions observed on ``[0, 1]``, the three masses fitted from the
perturbed guess ``(1.0, 1.2, 0.8)`` (truth ``(1.1, 1.1, 0.9)``), the orbit forecast on ``(1, 2]``.

``physnode fit CONFIG.toml`` fits a model of your own, described in a TOML file, to a ``.nc`` / ``.h5`` file of
:class:`physnode.data.Trajectories`. Both write a results folder: ``summary.json`` (fitted values, standard
errors, truth when known, forecast error), ``fit.json`` (the full fit record with its per-epoch history),
``data.nc`` and ``predictions.nc`` (observed and predicted channels), and PNG plots. A results folder may be
reused: the files a previous run wrote there (those its ``summary.json`` lists) are removed first, other files
are kept. Sizes, the device and the writability of the folder are checked before the fit starts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_write
from ..data.trajectories import Trajectories
from ._cli import ArgumentParser, check_device, check_writable_folder
from ._model import THREE_BODY, check_solver_table, load_config, model_from_config, three_body_model
from ._results import forecast_error, format_table, predict, prepare_results, write_json, write_plots

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

[solver]
method = "dopri5"                        # a fixed-step method (rk4, ...) needs step_size = ... instead
grad = "aca"
rtol = 1e-7
atol = 1e-9

[fit]                                    # any option of physnode.fit.fit
optimizer = "gauss-newton"
epochs = 20

[output]
dir = "results/oscillator"
"""

_DEFAULT_SOLVER = {"method": "dopri5", "grad": "aca", "rtol": 1e-7, "atol": 1e-9}
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
    p.add_argument("--noise", type=_non_negative, default=0.0, help="std of Gaussian noise on the positions")
    p.add_argument("--irregular", action="store_true", help="random observation times instead of a uniform grid")
    p.add_argument("--missing", type=_fraction, default=0.0, help="probability that an observation is dropped")
    p.add_argument("--n-trajectories", type=_positive_int, default=1, help="trajectories (extra ones start nearby)")
    p.add_argument("--method", default="dopri5", help="ODE solver (default dopri5)")
    p.add_argument(
        "--grad",
        default=None,
        help="gradient method of --optimizer adam/lbfgs (default aca); gauss-newton always differentiates with "
        "direct (its exact residual Jacobian needs double backward)",
    )
    p.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance of the solver")
    p.add_argument("--atol", type=float, default=1e-8, help="absolute tolerance of the solver")
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
    try:
        from ..fit import fit
    except ImportError as err:
        raise ImportError(f"physnode.fit is not available ({err}); it is needed to fit.") from None
    return fit


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


def _check_names(method: str, grad: str, optimizer: str) -> None:
    from .. import GRADIENTS, SOLVERS
    from ..fit import OPTIMIZERS

    if method not in SOLVERS:
        SOLVERS.cls(method)  # raises the registry's message (the known names)
    if grad not in GRADIENTS:
        GRADIENTS.cls(grad)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown --optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")


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


# ------------------------------------------------------------------------------------------------ three-body
def three_body(argv: Sequence[str]) -> int:
    """``physnode fit three-body``: the ACA paper's experiment; see the module docstring."""
    args = _three_body_parser().parse_args(argv)
    if args.n_obs < 3:
        raise ValueError(f"--n-obs must be at least 3 to fit three masses, got {args.n_obs}.")
    if args.grad is None:
        args.grad = "direct" if args.optimizer == "gauss-newton" else "aca"
    elif args.optimizer == "gauss-newton" and args.grad != "direct":
        raise ValueError(
            f"--grad {args.grad} does not apply to --optimizer gauss-newton, which builds the exact residual Jacobian "
            "by double backward through grad=direct; use --optimizer adam or lbfgs to train with another gradient "
            "method."
        )
    if args.n_obs * args.n_trajectories > MAX_OBSERVATION_TIMES:
        raise ValueError(
            f"--n-obs {args.n_obs} x --n-trajectories {args.n_trajectories} = {args.n_obs * args.n_trajectories:,} "
            f"observation times, more than the limit of {MAX_OBSERVATION_TIMES:,}; use fewer."
        )
    _check_names(args.method, args.grad, args.optimizer)  # fail before generating data
    check_solver_table(
        {"method": args.method, "step_size": args.step_size}, "--method", where="", step_name="--step-size"
    )
    check_device(args.device)
    launched, rc = _distributed(args.nproc, [THREE_BODY, *argv], args.n_trajectories)
    if launched:
        return rc
    if _is_main_rank():
        check_writable_folder(args.out)
    from ..datasets import three_body as make_three_body

    start = time.perf_counter()
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
    train, _ = data.split_by_time(_T_SPLIT)
    model = three_body_model(_THREE_BODY_GUESS)
    true_params = {"masses": list(data.metadata[0]["parameters"]["masses"])}
    epochs = args.epochs if args.epochs is not None else (8 if args.optimizer == "gauss-newton" else 300)
    options: dict[str, Any] = {"epochs": epochs, "optimizer": args.optimizer, "seed": args.seed}
    if args.lr is not None:
        options["lr"] = args.lr
    if args.device is not None:
        options["device"] = args.device
    solver = {"method": args.method, "grad": args.grad, "rtol": args.rtol, "atol": args.atol}
    if args.step_size is not None:
        solver["step_size"] = args.step_size
    observe = list(range(9))  # the nine position components of the 18-dimensional state
    result = _fit_api()(model, train, **solver, observe=observe, progress=not args.quiet, **options)
    if not _is_main_rank():
        return 0
    fitted_model = result.model.to("cpu")
    pred = predict(
        fitted_model,
        truth,
        observe,
        method=args.method,
        rtol=args.rtol,
        atol=args.atol,
        step_size=args.step_size,
    )
    fc = forecast_error(pred, truth, _T_SPLIT)
    fit_err = forecast_error(pred, truth, -float("inf"))  # whole window, for reference
    params = {"masses": result.params["masses"]}
    unc = {"masses": result.uncertainty.get("masses")}
    rows = _pairs(params, unc, true_params, {"masses": list(_THREE_BODY_GUESS)})
    wall = time.perf_counter() - start

    out = prepare_results(args.out)
    data.save(out / "data.nc")
    pred.save(out / "predictions.nc")
    summary = {
        "job": THREE_BODY,
        "model": THREE_BODY,
        "params": params,
        "uncertainty": unc,
        "true": true_params,
        "initial": {"masses": list(_THREE_BODY_GUESS)},
        "relative_error": {"masses": [r[5] for r in rows]},
        "max_relative_error": max(r[5] for r in rows),
        "forecast": {"window": [_T_SPLIT, 2.0], **fc},
        "all_times": fit_err,
        "observe": observe,
        "solver": solver,
        "options": {
            **options,
            "n_obs": args.n_obs,
            "noise": args.noise,
            "irregular": args.irregular,
            "missing": args.missing,
            "n_trajectories": args.n_trajectories,
            "nproc": args.nproc,
        },
        "epochs_run": len(result.history),
        "wall_seconds": wall,
        "files": ["data.nc", "predictions.nc", "summary.json", "fit.json"],
    }
    write_json(out / "fit.json", _fit_record(result))
    if not args.no_plots:
        pngs = write_plots(out, data, pred, result.history, truth=true_params, t_split=_T_SPLIT, orbits=True)
        summary["files"] += [p.name for p in pngs]
    write_json(out / "summary.json", summary)

    print(
        f"three-body (ACA paper): masses fitted from positions on [0, 1], {args.n_obs} observation times, "
        f"noise {args.noise:g}, missing {args.missing:g}{', irregular' if args.irregular else ''}"
    )
    print(f"solver {result.method}, gradient {result.grad}, optimizer {args.optimizer}, {len(result.history)} epochs")
    print()
    print(format_table(rows, ["mass", "true", "initial", "fitted", "std.error", "rel.error"]))
    print()
    print(
        f"forecast on ({_T_SPLIT:g}, 2]: RMSE {fc['rmse']:.3g} (relative {fc['relative_rmse']:.3g}) "
        f"against the noise-free orbit, {fc['n']} values"
    )
    print(f"wall time {wall:.1f} s; results in {out}/")
    return 0


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
    metas = [m.get("parameters") for m in data.metadata]
    if not metas or not all(isinstance(m, Mapping) for m in metas):
        return {}
    return {n: metas[0][n] for n in names if n in metas[0] and all(m.get(n) == metas[0][n] for m in metas)}


def fit_config(argv: Sequence[str]) -> int:
    """``physnode fit CONFIG.toml``: fit a user's model to a data file; see :data:`CONFIG_EXAMPLE`."""
    args = _config_parser().parse_args(argv)
    start = time.perf_counter()
    cfg = load_config(args.config)
    source = str(args.config)
    model = model_from_config(cfg, source)
    data_path = Path(cfg["data"]["file"]).expanduser()
    if not data_path.is_absolute():
        data_path = args.config.parent / data_path
    if not data_path.is_file():
        raise OSError(f"{source}: [data] file {data_path} does not exist.")
    data = Trajectories.load(data_path)
    t_split = cfg["data"].get("t_split")
    if t_split is not None and (isinstance(t_split, bool) or not isinstance(t_split, (int, float))):
        raise ValueError(f"{source}: [data] t_split must be a number (time units of the data), got {t_split!r}.")
    train = data.split_by_time(float(t_split))[0] if t_split is not None else data
    observe = cfg["data"].get("observe")
    obs_idx = _observe_index(observe, model, data.channels)
    solver = {**_DEFAULT_SOLVER, **cfg.get("solver", {})}
    options = dict(cfg.get("fit", {}))
    for key in ("epochs", "device", "seed"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    check_solver_table(solver, source)
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
    result = _fit_api()(model, train, **solver, observe=obs_idx, progress=not args.quiet, **options)
    fitted_model = result.model.to("cpu")
    y0 = result.initial_states.detach().cpu() if options.get("learn_initial_state") else None
    pred = predict(
        fitted_model,
        data,
        obs_idx,
        method=solver["method"],
        rtol=solver["rtol"],
        atol=solver["atol"],
        step_size=solver.get("step_size"),
        y0=y0,
    )
    params = {k: v for k, v in result.params.items() if k in start_values}
    truth = _truth_from_metadata(data, list(params))
    rows = _pairs(params, result.uncertainty, truth, start_values)
    fc = forecast_error(pred, data, float(t_split)) if t_split is not None else None
    wall = time.perf_counter() - start

    out = prepare_results(out_dir)
    atomic_write(out / "config.toml", lambda tmp: shutil.copyfile(args.config, tmp))
    data.save(out / "data.nc")
    pred.save(out / "predictions.nc")
    summary = {
        "job": "config",
        "model": "config",
        "config": "config.toml",
        "source_config": str(args.config.resolve()),
        "data_file": str(data_path.resolve()),
        "params": params,
        "all_params": result.params,
        "uncertainty": {k: result.uncertainty.get(k) for k in params},
        "true": truth,
        "initial": start_values,
        "relative_error": {r[0]: r[5] for r in rows if r[5] is not None},
        "forecast": None if fc is None else {"t_split": float(t_split), **fc},
        "observe": observe,
        "initial_states": None if y0 is None else y0.tolist(),
        "solver": solver,
        "options": options,
        "epochs_run": len(result.history),
        "wall_seconds": wall,
        "files": ["config.toml", "data.nc", "predictions.nc", "summary.json", "fit.json"],
    }
    write_json(out / "fit.json", _fit_record(result))
    if not args.no_plots:
        pngs = write_plots(out, data, pred, result.history, truth=truth, t_split=t_split, orbits=False)
        summary["files"] += [p.name for p in pngs]
    write_json(out / "summary.json", summary)
    print(
        f"{name}: {len(params)} parameter(s) fitted to {data_path.name} ({data.n_trajectories} trajectories), "
        f"{solver['method']}/{solver['grad']}, {len(result.history)} epochs"
    )
    print()
    print(format_table(rows, ["parameter", "true", "initial", "fitted", "std.error", "rel.error"]))
    if fc is not None:
        print(f"\nforecast after t = {t_split:g}: RMSE {fc['rmse']:.3g} (relative {fc['relative_rmse']:.3g})")
    print(f"wall time {wall:.1f} s; results in {out}/")
    return 0
