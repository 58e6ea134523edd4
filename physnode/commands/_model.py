"""Models of the commands: the three-body model of the ACA paper, and models described by a CONFIG.toml file."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from ..options import SolveOptions

__all__ = [
    "FIT_KEYS",
    "THREE_BODY",
    "load_config",
    "load_params",
    "model_from_config",
    "read_json",
    "set_params",
    "solve_options_from_table",
    "three_body_model",
]

#: Name of the built-in three-body job (``physnode fit three-body``).
THREE_BODY = "three-body"

#: Keys of a config's ``[fit]`` table, passed to :func:`physnode.fit.fit`.
FIT_KEYS = {
    "epochs": int,
    "lr": float,
    "optimizer": str,
    "loss": str,
    "batch_size": int,
    "learn_initial_state": bool,
    "time_weight": (str, float, int),
    "steer": float,
    "multiple_shooting": (int, dict),
    "seed": int,
    "device": str,
}
_TOML_TYPES = {str: "a string", float: "a number", int: "an integer", bool: "true or false", dict: "a table"}
_TOP_KEYS = {"model", "data", "solver", "fit", "output"}
_DATA_KEYS = {"file", "observe", "t_split"}
_OUTPUT_KEYS = {"dir"}


def three_body_model(masses: Sequence[float] = (1.0, 1.2, 0.8), *, learnable: bool = True) -> nn.Module:
    """The ACA paper's three-body model: ``NBodyGravity(3, G=1, k_r=K2, k_v=K1)`` with positive learnable masses.

    Parameters
    ----------
    masses
        Initial (or known) masses ``(3,)`` in units of the solar mass.
    learnable
        Whether the masses are fitted.
    """
    from ..datasets.generators import K1, K2
    from ..physics import NBodyGravity, Param

    return NBodyGravity(
        3, dim=3, G=1.0, k_r=K2, k_v=K1, masses=Param([float(m) for m in masses], learnable=learnable, positive=True)
    )


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check the tables of a CONFIG.toml file (see ``physnode fit --help`` for the format).

    Raises
    ------
    OSError
        The file is missing or unreadable.
    ValueError
        Not valid TOML, or unknown / missing tables and keys (the message names them).
    """
    path = Path(path)
    if not path.is_file():
        raise OSError(f"config file {path} does not exist; give the path of a CONFIG.toml (see physnode fit --help).")
    try:
        with path.open("rb") as fh:
            cfg = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}.") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a UTF-8 text file; a CONFIG.toml is expected.") from None
    unknown = sorted(set(cfg) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {unknown}; allowed: {sorted(_TOP_KEYS)}.")
    for table in ("model", "data"):
        if not isinstance(cfg.get(table), Mapping):
            raise ValueError(f"{path}: missing the [{table}] table (see physnode fit --help for an example).")
    for table, allowed in (("data", _DATA_KEYS), ("fit", FIT_KEYS), ("output", _OUTPUT_KEYS)):
        section = cfg.get(table, {})
        if not isinstance(section, Mapping):
            raise ValueError(f"{path}: [{table}] must be a table, got {type(section).__name__}.")
        bad = sorted(set(section) - set(allowed))
        if bad:
            raise ValueError(f"{path}: unknown key(s) {bad} in [{table}]; allowed: {sorted(allowed)}.")
    for key, value in cfg.get("fit", {}).items():
        types = FIT_KEYS[key]
        ok = isinstance(value, types) and not (isinstance(value, bool) and types is not bool)
        if types is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            want = " or ".join(_TOML_TYPES[t] for t in (types if isinstance(types, tuple) else (types,)))
            raise ValueError(f"{path}: [fit] {key} must be {want}, got {type(value).__name__} {value!r}.")
    if "file" not in cfg["data"] or not isinstance(cfg["data"]["file"], str):
        raise ValueError(f"{path}: [data] needs file = 'PATH.nc' (or .h5), relative to the config file.")
    out_dir = cfg.get("output", {}).get("dir")
    if out_dir is not None and (not isinstance(out_dir, str) or not out_dir.strip()):
        raise ValueError(
            f"{path}: [output] dir must be the path of the results folder as a string, e.g. dir = 'results/run1'; "
            f"got {out_dir!r}."
        )
    solve_options_from_table(cfg.get("solver", {}), str(path))
    return cfg


def solve_options_from_table(
    table: Mapping[str, Any],
    source: str = "config",
    *,
    where: str = "[solver] ",
    step_name: str = "step_size",
) -> SolveOptions:
    """The :class:`~physnode.SolveOptions` of a ``[solver]`` table (or of the three-body job's flags).

    The keys are :meth:`SolveOptions.from_dict`'s; a missing ``grad`` is the fit's default
    (:data:`~physnode.options.FIT_GRAD`). On top of the library's checks the command line asks for ``step_size``
    exactly when the method takes fixed steps (an adaptive method chooses its own steps from ``rtol`` and ``atol``).

    Parameters
    ----------
    table
        The table (``method``, ``grad``, ``rtol``, ``atol``, ``step_size``, ``max_steps``, ``options``).
    source, where, step_name
        How the messages name the file, the table and the step-size key (``--step-size`` for a flag).

    Raises
    ------
    ValueError
        Any option the library refuses (the message is prefixed with ``source`` and ``where``), ``step_size``
        missing for a fixed-step method or given for an adaptive one.
    """
    from ..options import FIT_GRAD, MissingStepSizeError, SolveOptions
    from ..solvers import SOLVERS

    if not isinstance(table, Mapping):
        raise ValueError(f"{source}: {where.strip() or 'solver'} must be a table, got {type(table).__name__}.")
    try:
        opts = SolveOptions.from_dict({"grad": FIT_GRAD, **table})
    except MissingStepSizeError:
        raise ValueError(
            f"{source}: {where}method {table.get('method')!r} takes fixed steps and needs {step_name} (time units of "
            f"the data), e.g. {step_name} 0.01; or choose an adaptive method such as 'dopri5'."
        ) from None
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {where}{err}") from None
    if opts.step_size is not None and opts.adaptive:
        fixed = [n for n in SOLVERS.names() if not SOLVERS.build(n, {}).adaptive]
        raise ValueError(
            f"{source}: {where}{step_name} applies to fixed-step methods ({', '.join(fixed)}), not to the adaptive "
            f"{opts.method_name!r}, which chooses its steps from rtol and atol; remove {step_name}."
        )
    return opts


def model_from_config(cfg: Mapping[str, Any], source: str = "config") -> nn.Module:
    """Build the ``[model]`` table with :func:`physnode.physics.from_config` (expressions are parsed, never run)."""
    from ..physics import from_config

    try:
        return from_config(cfg["model"])
    except (ValueError, TypeError) as err:
        raise ValueError(f"{source}: [model]: {err}") from None


def load_params(path: str | Path) -> dict[str, Any]:
    """Fitted parameters from a results folder (its ``summary.json``) or a JSON file with ``"params"``."""
    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
    if not path.is_file():
        raise OSError(f"parameters file {path} does not exist; give a results folder of physnode fit or its JSON.")
    doc = read_json(path)
    params = doc.get("params") if isinstance(doc, Mapping) else None
    if not isinstance(params, Mapping):
        raise ValueError(f"{path} has no 'params' table of fitted values (name -> number or list).")
    return dict(params)


def read_json(path: Path) -> Any:
    """Parse a JSON file of a results folder with bounded size and nesting (see :func:`physnode.data.io.parse_json`).

    Raises
    ------
    ValueError
        Larger than :data:`~physnode.data.io.MAX_JSON_CHARS` characters, nested too deep, not UTF-8 or not JSON.
    """
    from ..data.io import MAX_JSON_CHARS, parse_json

    size = path.stat().st_size
    if size > 4 * MAX_JSON_CHARS:
        raise ValueError(f"{path} is {size:,} bytes, too large for a JSON file of physnode fit.")
    return parse_json(path.read_bytes(), str(path))


def set_params(model: nn.Module, params: Mapping[str, Any], source: str = "parameters") -> list[str]:
    """Set the model's named quantities to ``params`` (constants must match); returns the names set.

    Raises
    ------
    ValueError
        A name the model does not have, or a value of the wrong shape or outside its domain.
    """
    named = dict(getattr(model, "params", {}).items()) if hasattr(model, "params") else {}
    unknown = sorted(set(params) - set(named))
    if unknown:
        raise ValueError(f"{source}: unknown parameter(s) {unknown}; the model has {sorted(named)}.")
    done = []
    for name, value in params.items():
        p = named[name]
        try:
            v = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(
                f"{source}: parameter {name!r} must be a number or a list of numbers, got {value!r}."
            ) from None
        if v.shape != p.shape:
            raise ValueError(f"{source}: parameter {name!r} has shape {tuple(v.shape)}, the model's {tuple(p.shape)}.")
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"{source}: parameter {name!r} = {value} is not finite.")
        if not p.learnable:
            if not torch.allclose(v.to(p.raw), p(), rtol=1e-12, atol=0.0):
                raise ValueError(f"{source}: {name!r} is a known constant {p().tolist()} but the file has {value}.")
            continue
        if p.positive and not bool((v > 0).all()):
            raise ValueError(f"{source}: parameter {name!r} must be positive, got {value}.")
        if p.bounds is not None and not bool(((v >= p.bounds[0]) & (v <= p.bounds[1])).all()):
            raise ValueError(f"{source}: parameter {name!r} = {value} lies outside its bounds {p.bounds}.")
        # A value on a bound (a saturated fit) maps to an infinite raw value; nudge it inside.
        if p.bounds is not None:
            lo, hi = p.bounds
            eps = 1e-12 * max(1.0, abs(lo), abs(hi))
            v = v.clamp(lo + eps, hi - eps)
        p.set_(v)
        done.append(name)
    return done
