"""Checkpoints of a fit: tensors and plain containers only, written atomically, read with ``weights_only=True``.

A checkpoint records what it belongs to (:func:`run_identity`: optimiser, a digest of the data, the names and
shapes of the fitted tensors, the total number of epochs, solver and gradient method) and
:func:`check_resume` refuses to resume a run that differs, or a checkpoint whose content is inconsistent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._archive import load_weights_only
from .._atomic import atomic_write

__all__ = [
    "FORMAT",
    "Checkpoint",
    "CheckpointError",
    "check_resume",
    "load_checkpoint",
    "resolve_checkpoint",
    "run_identity",
    "save_checkpoint",
]

#: Format tag stored in every checkpoint.
FORMAT = "physnode.fit/2"

#: Entries of a checkpoint and their types.
_KEYS: dict[str, type | tuple[type, ...]] = {
    "epoch": int,
    "model": Mapping,
    "learnables": Mapping,
    "optimizer": Mapping,
    "rng": Mapping,
    "history": list,
    "run": Mapping,
}


class CheckpointError(ValueError):
    """A checkpoint cannot be read, is not a physnode fit checkpoint, or belongs to another run."""


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
        if not isinstance(self.path, (str, os.PathLike)):
            raise TypeError(f"checkpoint path must be a str or Path, got {type(self.path).__name__}.")
        object.__setattr__(self, "path", Path(self.path))
        if self.path.is_dir():
            raise ValueError(
                f"checkpoint path {str(self.path)!r} is a folder; give the path of a file in it, e.g. "
                f"{str(self.path / 'checkpoint.pt')!r}."
            )
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


def run_identity(
    *,
    optimizer: str,
    data_digest: str,
    tensors: Mapping[str, torch.Tensor],
    epochs: int,
    method: str,
    grad: str,
) -> dict[str, Any]:
    """What a checkpoint belongs to: compared by :func:`check_resume` before a fit resumes.

    Parameters
    ----------
    optimizer
        Name of the optimiser (``"adam"``, ``"lbfgs"``, ``"gauss-newton"``, ``"callable"``).
    data_digest
        :meth:`physnode.data.Trajectories.digest` of the fitted data.
    tensors
        ``{name: tensor}`` of the model's state and the fit's own learnable tensors (names and shapes are kept).
    epochs
        Total number of epochs of the run.
    method, grad
        Names of the solver and gradient method.
    """
    return {
        "optimizer": optimizer,
        "data_digest": data_digest,
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        "epochs": int(epochs),
        "method": method,
        "grad": grad,
    }


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp), fsync=True)


def load_checkpoint(path: Path, map_location: torch.device | str | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``torch.load(weights_only=True)``: no arbitrary objects).

    Raises
    ------
    CheckpointError
        The file is truncated, corrupt, not a torch file, holds objects other than tensors and plain containers,
        is not a physnode fit checkpoint, was written by another version, or lacks entries.
    """
    where = f"fit checkpoint {str(path)!r}"
    state = load_weights_only(
        path,
        map_location,
        error=CheckpointError,
        not_archive=(
            f"{where} is not a checkpoint written by physnode.fit (not a torch zip archive: truncated, corrupt or "
            "another kind of file); delete it or pass another checkpoint path."
        ),
        unreadable=lambda err: (
            f"{where} cannot be read ({type(err).__name__}: corrupt, or it holds objects other than tensors and "
            "plain containers, which are never unpickled); delete it or pass another checkpoint path."
        ),
    )
    if not isinstance(state, dict) or not isinstance(state.get("format"), str):
        raise CheckpointError(f"{where} is not a physnode fit checkpoint (format {FORMAT!r}).")
    if state["format"] != FORMAT:
        raise CheckpointError(
            f"{where} has format {state['format']!r}, this physnode reads {FORMAT!r}; start the fit without "
            "resume=True (or delete the file)."
        )
    for key, kind in _KEYS.items():
        if key not in state:
            raise CheckpointError(f"{where} lacks the entry {key!r}; it was not written by physnode.fit.")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise CheckpointError(f"{where}: entry {key!r} has type {type(state[key]).__name__}; the file is damaged.")
    for key in ("generator", "torch"):
        rng = state["rng"].get(key)
        if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8:
            raise CheckpointError(f"{where}: the random state {key!r} is missing or damaged.")
    return state


def check_resume(state: Mapping[str, Any], run: Mapping[str, Any], path: Path) -> int:
    """Refuse to resume from a checkpoint of another run; returns the number of epochs it has done.

    Raises
    ------
    CheckpointError
        Other optimiser, data, fitted tensors (names or shapes), total epochs, solver or gradient method; or an
        epoch count that does not match its history.
    """
    where = f"fit checkpoint {str(path)!r}"
    saved = state["run"]
    fix = "pass the same arguments as the run that wrote it, or another checkpoint path to start afresh."
    if saved.get("optimizer") != run["optimizer"]:
        raise CheckpointError(
            f"{where} belongs to a fit with optimizer {saved.get('optimizer')!r}, not {run['optimizer']!r}; {fix}"
        )
    if saved.get("data_digest") != run["data_digest"]:
        raise CheckpointError(f"{where} belongs to a fit of other data (the data digest differs); {fix}")
    if saved.get("tensors") != run["tensors"]:
        theirs, ours = saved.get("tensors") or {}, run["tensors"]
        if not isinstance(theirs, Mapping):
            theirs = {}
        diff = sorted(set(theirs) ^ set(ours)) or sorted(k for k in ours if theirs.get(k) != ours[k])
        raise CheckpointError(
            f"{where} belongs to another model: its fitted tensors differ in {diff[:5]} (names or shapes); {fix}"
        )
    for key in ("method", "grad"):
        if saved.get(key) != run[key]:
            raise CheckpointError(f"{where} belongs to a fit with {key} {saved.get(key)!r}, not {run[key]!r}; {fix}")
    epoch = state["epoch"]
    history = state["history"]
    ok_history = all(isinstance(h, Mapping) for h in history) and [h.get("epoch") for h in history] == list(
        range(1, len(history) + 1)
    )
    if epoch < 0 or epoch != len(history) or not ok_history:
        raise CheckpointError(
            f"{where} says {epoch} epochs are done but its history records {len(history)}; the file was edited or "
            "damaged. Delete it to start afresh."
        )
    total = saved.get("epochs")
    if epoch > run["epochs"]:
        raise CheckpointError(
            f"{where} has already done {epoch} epochs, more than epochs={run['epochs']}; pass epochs={total} (its "
            "run's total) or another checkpoint path."
        )
    if total != run["epochs"]:
        raise CheckpointError(
            f"{where} belongs to a run of epochs={total}, not {run['epochs']}; pass epochs={total} to finish that run "
            "(the result then equals an uninterrupted one), or another checkpoint path to start afresh."
        )
    return epoch
