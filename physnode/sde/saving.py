"""Saving and loading trained neural-SDE models (state dict + plain config, no pickle) and their samples.

:func:`save_model` writes ``{"class", "config", "state_dict"}`` atomically with :func:`torch.save`;
:func:`load_model` reads it back with ``torch.load(weights_only=True)`` (tensors and plain containers only, never
arbitrary objects) and rebuilds the model from its class name and config. :func:`sample_trajectories` turns
generated paths into :class:`~physnode.data.Trajectories`, which save as CF netCDF (``.nc``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._archive import load_weights_only
from .._atomic import atomic_write
from ..data.trajectories import Trajectories
from .gan import CDEDiscriminator, SDEGenerator
from .latent import LatentSDE

__all__ = ["MODEL_FORMAT", "load_model", "sample_trajectories", "save_model"]

#: Format tag of a saved model.
MODEL_FORMAT = "physnode.sde.model/1"

_CLASSES: dict[str, type[nn.Module]] = {c.__name__: c for c in (SDEGenerator, CDEDiscriminator, LatentSDE)}


def save_model(path: str | os.PathLike, model: SDEGenerator | CDEDiscriminator | LatentSDE) -> None:
    """Write ``model``'s class name, :attr:`config` and state dict to ``path`` (``.pt``), atomically.

    A generator's ``physics`` module is not part of the config; its parameters are in the state dict, so pass an
    equivalent ``physics`` to :func:`load_model`.
    """
    name = type(model).__name__
    if name not in _CLASSES or not isinstance(model, _CLASSES[name]):
        raise TypeError(f"save_model saves {', '.join(_CLASSES)}, got {type(model).__name__}.")
    state = {
        "format": MODEL_FORMAT,
        "class": name,
        "config": model.config,
        "has_physics": bool(getattr(getattr(model, "drift", None), "physics", None) is not None),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(state, tmp), fsync=True)


def load_model(
    path: str | os.PathLike, *, physics: nn.Module | None = None, map_location: torch.device | str | None = None
) -> SDEGenerator | CDEDiscriminator | LatentSDE:
    """Rebuild a model saved by :func:`save_model`.

    Parameters
    ----------
    path
        The file.
    physics
        The known-physics drift of an :class:`SDEGenerator` saved with one (required then, refused otherwise).
    map_location
        Device of the loaded tensors.

    Raises
    ------
    ValueError
        Not a readable model file, unknown class, or ``physics`` missing / unexpected.
    """
    where = f"model file {str(path)!r}"
    state = load_weights_only(
        path,
        map_location,
        error=ValueError,
        not_archive=f"{where} is not a model written by physnode.sde.save_model (not a torch zip archive).",
        unreadable=lambda err: (
            f"{where} cannot be read ({type(err).__name__}); it must hold tensors and plain data only."
        ),
    )
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise ValueError(f"{where} is not a physnode.sde model (format {MODEL_FORMAT!r}).")
    cls = _CLASSES.get(state.get("class"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"{where} holds an unknown class {state.get('class')!r}; known: {', '.join(_CLASSES)}.")
    config: dict[str, Any] = dict(state["config"])
    if state.get("has_physics"):
        if physics is None:
            raise ValueError(f"{where} was saved with a physics drift; pass physics=<the same module> to load it.")
        config["physics"] = physics
    elif physics is not None:
        raise ValueError(f"{where} has no physics drift; do not pass physics=.")
    model = cls(**config)
    model.load_state_dict(state["state_dict"])
    ref = next(iter(state["state_dict"].values()))
    return model.to(ref.device, ref.dtype)


def sample_trajectories(
    model: SDEGenerator | LatentSDE,
    t: Tensor,
    n: int,
    *,
    dt: float,
    seed: int = 0,
    y0: Tensor | None = None,
    channels: Sequence[str] | None = None,
    units: Sequence[str] | None = None,
    time_units: str = "1",
) -> Trajectories:
    """``n`` generated paths at the times ``t`` ``(T,)`` as :class:`~physnode.data.Trajectories`.

    Parameters
    ----------
    model
        A trained :class:`SDEGenerator` (``y0`` ``(n, D)`` with ``initial="data"``) or :class:`LatentSDE` (prior
        samples, without observation noise).
    t
        Sample times ``(T,)``, strictly increasing.
    n
        Number of paths.
    dt, seed
        Step size and seed of the SDE solve.
    channels, units, time_units
        Names and units stored in the file (as in :class:`~physnode.data.Trajectories`).

    Returns
    -------
    Trajectories
        ``(n, T, D)``, fully observed; ``attrs`` record the model class, config, ``dt`` and ``seed``. Save with
        ``.save("samples.nc")``.
    """
    with torch.no_grad():
        if isinstance(model, SDEGenerator):
            ys = model.sample(t, n, dt=dt, seed=seed, y0=y0)
        elif isinstance(model, LatentSDE):
            ys = model.sample(t, n, dt=dt, seed=seed)
        else:
            raise TypeError(f"sample_trajectories samples an SDEGenerator or a LatentSDE, got {type(model).__name__}.")
    attrs = {"generated_by": type(model).__name__, "config": model.config, "dt": dt, "seed": seed}
    times = t.detach().to(ys).expand(ys.shape[0], -1)
    return Trajectories(times, ys.detach(), channels=channels, units=units, time_units=time_units, attrs=attrs)
