"""Checkpoints of a fit: tensors and plain containers only, written atomically, read with ``weights_only=True``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_write

__all__ = ["FORMAT", "Checkpoint", "load_checkpoint", "resolve_checkpoint", "save_checkpoint"]

#: Format tag stored in every checkpoint.
FORMAT = "physnode.fit/1"


@dataclass(frozen=True)
class Checkpoint:
    """Where and how often a fit writes its checkpoint.

    Parameters
    ----------
    path
        File to write (``.pt``); replaced atomically each time.
    every
        Write after every ``every`` completed epochs (and always after the last one).
    """

    path: Path
    every: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if not isinstance(self.every, int) or isinstance(self.every, bool) or self.every < 1:
            raise ValueError(f"checkpoint every must be a positive integer (epochs), got {self.every!r}.")


def resolve_checkpoint(spec: str | os.PathLike | Mapping | Checkpoint | None) -> Checkpoint | None:
    """``None``; a path; a dict ``{"path": ..., "every": n}``; or a :class:`Checkpoint`."""
    if spec is None or isinstance(spec, Checkpoint):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        return Checkpoint(Path(spec))
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"path", "every"}
        if unknown or "path" not in spec:
            raise ValueError(f"checkpoint dict needs 'path' and optionally 'every'; got keys {sorted(spec)}.")
        return Checkpoint(**spec)
    raise TypeError(
        "checkpoint must be None, a path, a dict {'path': ..., 'every': n} or a Checkpoint, got "
        f"{type(spec).__name__}."
    )


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp), fsync=True)


def load_checkpoint(path: Path, map_location: torch.device | str | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``torch.load(weights_only=True)``: no arbitrary objects).

    Raises
    ------
    ValueError
        The file is not a physnode fit checkpoint.
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read fit checkpoint {str(path)!r}: {err}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a physnode fit checkpoint (format {FORMAT!r}).")
    return state
