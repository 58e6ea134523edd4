"""Build physics models from plain dicts (as read from TOML / JSON), parsing expressions safely."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import PhysicsModel
from .hamiltonian import Hamiltonian
from .lagrangian import Lagrangian
from .nbody import NBodyGravity
from .params import Param
from .symbolic import SymbolicODE

__all__ = ["from_config"]

_KEYS = {
    "ode": ({"kind", "state", "rhs"}, {"params", "time"}),
    "hamiltonian": ({"kind", "coords", "momenta", "H"}, {"params", "time"}),
    "lagrangian": ({"kind", "coords", "L"}, {"params", "time", "velocities"}),
    "nbody": ({"kind", "n_bodies"}, {"params", "dim", "softening"}),
}
_NBODY_PARAMS = {"G", "masses", "k_r", "k_v"}
_ALIASES = {"symbolic": "ode", "symbolic_ode": "ode"}
_PARAM_KEYS = {"value", "learnable", "positive", "bounds", "units"}


def _param_from_config(name: str, spec: Any) -> Param | float:
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return float(spec)
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"params.{name} must be a number (a known constant) or a table such as "
            f"{{value = 1.0, learnable = true, positive = true}}, got {type(spec).__name__} {spec!r}."
        )
    unknown = set(spec) - _PARAM_KEYS
    if unknown:
        raise ValueError(f"params.{name} has unknown keys {sorted(unknown)}; allowed: {sorted(_PARAM_KEYS)}.")
    if "value" not in spec:
        raise ValueError(f"params.{name} needs a 'value'.")
    bounds = spec.get("bounds")
    try:
        return Param(
            spec["value"],
            learnable=spec.get("learnable", True),
            positive=spec.get("positive", False),
            bounds=tuple(bounds) if isinstance(bounds, list) else bounds,
            units=spec.get("units"),
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"params.{name}: {e}") from None


def _names(cfg: Mapping[str, Any], key: str) -> list[str]:
    v = cfg[key]
    if isinstance(v, str) or not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v):
        raise ValueError(f"config key {key!r} must be a list of names, e.g. ['q1', 'q2'], got {v!r}.")
    return list(v)


def _text(cfg: Mapping[str, Any], key: str) -> str:
    v = cfg[key]
    if not isinstance(v, str):
        raise ValueError(f"config key {key!r} must be an expression string, got {type(v).__name__}.")
    return v


def from_config(config: Mapping[str, Any]) -> PhysicsModel:
    """Build a :class:`SymbolicODE`, :class:`Hamiltonian`, :class:`Lagrangian` or :class:`NBodyGravity` from a
    plain dict (every model's :meth:`~physnode.physics.PhysicsModel.to_config` gives one back).

    Expressions are parsed with :func:`~physnode.physics.parse_expression` (an ``ast`` whitelist; nothing is
    evaluated), so configs from untrusted sources are safe to load.

    Parameters
    ----------
    config
        A mapping with ``kind`` and the model's fields:

        * ``{"kind": "ode", "state": ["x", "y"], "rhs": ["a*x - b*x*y", ...] or {"x": "...", ...}}``
        * ``{"kind": "hamiltonian", "coords": ["q"], "momenta": ["p"], "H": "p**2/(2*m) + k*q**2/2"}``
        * ``{"kind": "lagrangian", "coords": ["theta"], "L": "...", "velocities": ["theta_dot"]}``
          (velocities optional, default ``<q>_dot``)
        * ``{"kind": "nbody", "n_bodies": 3, "dim": 3, "softening": 0.0, "params": {"masses": {...}, "G": 1.0}}``
          (parameters ``G``, ``masses``, ``k_r``, ``k_v``; defaults as in :class:`NBodyGravity`)

        plus optional ``"params"``: ``{name: number | {"value": ..., "learnable": ..., "positive": ...,
        "bounds": [lo, hi], "units": "..."}}`` (a bare number is a known constant; a table is learnable unless
        ``learnable = false``) and ``"time"`` (name of the time variable, default ``"t"``).

    Returns
    -------
    PhysicsModel

    Examples
    --------
    >>> model = from_config({"kind": "hamiltonian", "coords": ["q"], "momenta": ["p"], "H": "p**2/2 + k*q**2/2",
    ...                      "params": {"k": {"value": 1.0, "positive": True, "units": "N/m"}}})
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict (e.g. from tomllib.load), got {type(config).__name__}.")
    kind = config.get("kind")
    if not isinstance(kind, str):
        raise ValueError(f"config needs 'kind' = one of {sorted(_KEYS)}, got {kind!r}.")
    kind = _ALIASES.get(kind.lower(), kind.lower())
    if kind not in _KEYS:
        raise ValueError(f"unknown config kind {config['kind']!r}; choose one of {sorted(_KEYS)}.")
    required, optional = _KEYS[kind]
    missing = required - set(config)
    unknown = set(config) - required - optional
    if missing:
        raise ValueError(f"{kind} config is missing {sorted(missing)}.")
    if unknown:
        raise ValueError(f"{kind} config has unknown keys {sorted(unknown)}; allowed: {sorted(required | optional)}.")
    raw_params = config.get("params", {})
    if not isinstance(raw_params, Mapping):
        raise ValueError(f"config 'params' must be a table of named parameters, got {type(raw_params).__name__}.")
    params = {str(k): _param_from_config(str(k), v) for k, v in raw_params.items()}
    time = config.get("time", "t")
    if not isinstance(time, str):
        raise ValueError(f"config 'time' must be a name, got {time!r}.")
    if kind == "ode":
        rhs = config["rhs"]
        if isinstance(rhs, Mapping):
            if not all(isinstance(v, str) for v in rhs.values()):
                raise ValueError("config 'rhs' values must be expression strings.")
        elif not (isinstance(rhs, (list, tuple)) and all(isinstance(v, str) for v in rhs)):
            raise ValueError("config 'rhs' must be a list of expression strings or a table state -> expression.")
        return SymbolicODE(rhs, _names(config, "state"), params, time=time)
    if kind == "hamiltonian":
        return Hamiltonian(_text(config, "H"), _names(config, "coords"), _names(config, "momenta"), params, time=time)
    if kind == "nbody":
        return _nbody(config, params)
    velocities = _names(config, "velocities") if "velocities" in config else None
    return Lagrangian(_text(config, "L"), _names(config, "coords"), params, velocities=velocities, time=time)


def _nbody(config: Mapping[str, Any], params: dict[str, Param | float]) -> NBodyGravity:
    """The :class:`NBodyGravity` of an ``nbody`` config (its parameters already read)."""
    unknown = set(params) - _NBODY_PARAMS
    if unknown:
        raise ValueError(f"nbody config has unknown params {sorted(unknown)}; allowed: {sorted(_NBODY_PARAMS)}.")
    masses = params.get("masses")
    if isinstance(masses, float):
        raise ValueError(
            "nbody params.masses must be a table with a list value, e.g. {value = [1.0, 1.0], learnable = false}."
        )
    try:
        return NBodyGravity(
            config["n_bodies"],
            config.get("dim", 3),
            G=params.get("G", 1.0),
            masses=masses,
            softening=config.get("softening", 0.0),
            k_r=params.get("k_r", 1.0),
            k_v=params.get("k_v", 1.0),
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"nbody config: {e}") from None
