"""Saving and loading trained latent hybrid models: a ``weights_only`` state dict plus a JSON config, atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .._archive import load_weights_only
from .._atomic import atomic_write
from .decoder import Decoder, DecoderSpec
from .expert import Expert
from .model import LatentHybrid

__all__ = ["MODEL_FORMAT", "load_latent_hybrid", "save_latent_hybrid"]

#: Format tag of a saved latent hybrid model.
MODEL_FORMAT = "physnode.latent.model/1"


def _expert_description(expert: Expert | None) -> dict | None:
    if expert is None:
        return None
    return {
        "physics": type(expert.physics).__name__,
        "state_names": list(expert.physics.state_names),
        "inputs": list(expert.input_names),
        "per_trajectory": list(expert.theta_names),
    }


def _decoder_description(config: dict) -> dict:
    """A decoder config without its parameters' values (those are in the state dict)."""
    params = {
        n: sorted(k for k in spec if k != "value") if isinstance(spec, dict) else "constant"
        for n, spec in config.get("params", {}).items()
    }
    return {**{k: v for k, v in config.items() if k != "params"}, "params": params}


def save_latent_hybrid(path: str | os.PathLike, model: LatentHybrid) -> None:
    """Write ``model`` to ``path`` (``.pt``): ``{"format", "config" (JSON text), "expert" (JSON text), "state_dict"}``.

    The expert's equations are code, not data: its parameters (population values included) are in the state dict,
    and :func:`load_latent_hybrid` takes an equivalent :class:`Expert` (same physics, inputs and per-trajectory
    parameters), checked against the description stored here. A :class:`~physnode.latent.Decoder` is part of the
    config (channels, known maps as text, residuals, likelihoods) and rebuilt from it; known maps given as Python
    callables are stored by name only and must be passed again (``decoder=``).
    """
    if not isinstance(model, LatentHybrid):
        raise TypeError(f"save_latent_hybrid saves a physnode.latent.LatentHybrid, got {type(model).__name__}.")
    config = dict(model.config)
    if isinstance(model.decoder, Decoder):  # the known maps' parameters at their current (fitted) values
        config["decoder"] = model.decoder.to_config()
    state = {
        "format": MODEL_FORMAT,
        "config": json.dumps(config, sort_keys=True),
        "expert": json.dumps(_expert_description(model.expert), sort_keys=True),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(state, tmp), fsync=True)


def load_latent_hybrid(
    path: str | os.PathLike,
    *,
    expert: Expert | None = None,
    decoder: DecoderSpec | Decoder | None = None,
    map_location: torch.device | str | None = None,
) -> LatentHybrid:
    """Rebuild a model saved by :func:`save_latent_hybrid` (``torch.load(weights_only=True)``: no pickle).

    Parameters
    ----------
    path
        The file.
    expert
        An :class:`Expert` equivalent to the saved one (required when the model had one, refused otherwise).
    decoder
        The model's :class:`~physnode.latent.DecoderSpec` again: needed only when its known maps are Python
        callables (the symbolic ones are rebuilt from the file); checked against the saved description.
    map_location
        Device of the loaded tensors.

    Raises
    ------
    ValueError
        Not a readable model file, or ``expert`` missing, unexpected or different from the saved description.
    """
    where = f"model file {str(path)!r}"
    state = load_weights_only(
        path,
        map_location,
        error=ValueError,
        not_archive=f"{where} is not a model written by save_latent_hybrid (not a torch zip archive).",
        unreadable=lambda err: f"{where} cannot be read ({type(err).__name__}); it must hold tensors and plain data.",
    )
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise ValueError(f"{where} is not a physnode latent hybrid model (format {MODEL_FORMAT!r}).")
    config = json.loads(state["config"])
    saved = json.loads(state["expert"])
    if saved is None and expert is not None:
        raise ValueError(f"{where} has no expert part; do not pass expert=.")
    if saved is not None:
        if expert is None:
            raise ValueError(
                f"{where} was saved with an expert ({saved['physics']} with state {saved['state_names']}); pass an "
                "equivalent expert=Expert(...) to load it."
            )
        ours = _expert_description(expert)
        if ours != saved:
            raise ValueError(f"{where}: the expert passed ({ours}) differs from the saved one ({saved}).")
    if decoder is not None:
        saved_decoder = config.get("decoder")
        if saved_decoder is None:
            raise ValueError(f"{where} has the default Gaussian decoder; do not pass decoder=.")
        config["decoder"] = decoder
    model = LatentHybrid(expert=expert, **config)
    if decoder is not None:
        ours, theirs = (_decoder_description(d) for d in (model.config["decoder"], saved_decoder))
        if ours != theirs:
            raise ValueError(f"{where}: the decoder passed ({ours}) differs from the saved one ({theirs}).")
    ref = next(v for v in state["state_dict"].values() if v.is_floating_point())
    model = model.to(ref.device, ref.dtype)  # before loading, so the weights keep their precision
    model.load_state_dict(state["state_dict"])
    return model
