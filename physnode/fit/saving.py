"""Fitted results saved and loaded without pickle: :meth:`FitResult.save` and :func:`load_result`.

A result file is one :func:`torch.save` archive of plain data and tensors only, read back with
``torch.load(weights_only=True)`` (which refuses anything else, so loading a file never runs code):

========================  ============================================================================
key                       holds
========================  ============================================================================
``format``                :data:`FORMAT` (what kind of file this is)
``format_version``        :data:`FORMAT_VERSION` of the writer (a newer file is refused with a clear error)
``physnode_version``      version of the physnode that wrote it; ``torch_version``, ``created`` (UTC)
``model``                 ``{"class", "module", "config", "why_not", "dtype"}``: ``config`` is the model's
                          :meth:`~physnode.physics.PhysicsModel.to_config` (equations as text, parameters with
                          their constraints and units), from which :func:`~physnode.physics.from_config`
                          rebuilds it; ``None`` for a model physnode cannot describe (``why_not`` says why)
``state_dict``            the model's tensors (``model.state_dict()``, on the CPU)
``solve_options``         :meth:`~physnode.SolveOptions.to_dict` of the options the fit solved with
``fields``                every other field of :class:`~physnode.FitResult` (parameters, standard errors,
                          covariance, history, initial states, data provenance, ...) as plain data and tensors
========================  ============================================================================

A model that physnode cannot describe (any ``nn.Module`` of your own, a :class:`~physnode.physics.Hybrid`) is
saved as its state dict; loading it needs ``model=`` (a module built the same way), and says so. Files are
written atomically (a temporary file, flushed, then renamed), so an interrupted save leaves no half file.

``physnode fit ... --out DIR`` writes ``DIR/result.pt``; :func:`load_result` accepts the folder too.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .._archive import load_weights_only
from .._atomic import atomic_write

if TYPE_CHECKING:
    from ..data.trajectories import Trajectories
    from .api import FitResult

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "RESULT_FILE",
    "ResultFileError",
    "data_provenance",
    "load_result",
    "save_result",
]

#: The ``format`` entry of every result file.
FORMAT = "physnode.fit_result"
#: Version of the layout written here; files with a larger number are refused (written by a newer physnode).
FORMAT_VERSION = 1
#: Name of the result file in a results folder of ``physnode fit``.
RESULT_FILE = "result.pt"

#: Fields of :class:`~physnode.FitResult` stored outside ``fields``.
_SEPARATE = ("model", "solve_options")
#: Attributes of the data copied into the provenance when they are short text or numbers.
_DATA_ATTRS = ("dataset", "title", "source", "file", "institution", "history")


class ResultFileError(ValueError):
    """A file that is not a readable physnode result: another kind of file, truncated or corrupt, written by a
    newer physnode, or a model that does not match it."""


def _physnode_version() -> str:
    from .. import __version__

    return __version__


def data_provenance(data: Trajectories) -> dict[str, Any]:
    """What a result records about the data it was fitted to (plain data).

    Parameters
    ----------
    data
        The fitted :class:`~physnode.data.Trajectories`.

    Returns
    -------
    dict
        ``digest`` (:meth:`~physnode.data.Trajectories.digest`, SHA-256 of times, values, mask and lengths),
        ``n_trajectories``, ``n_times`` (padded length), ``n_observed`` (unmasked values), ``channels``, ``units``,
        ``time_units``, ``t_range`` ``[first, last]`` valid time, and the data's short descriptive attributes
        (``dataset``, ``title``, ``source``, ... when present).
    """
    lengths = data.lengths.detach().cpu()
    times = data.times.detach().cpu().to(torch.float64)
    last = times.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    out: dict[str, Any] = {
        "digest": data.digest(),
        "n_trajectories": data.n_trajectories,
        "n_times": data.n_times,
        "n_observed": int(data.mask.sum()),
        "channels": list(data.channels),
        "units": list(data.units),
        "time_units": data.time_units,
        "t_range": [float(times[:, 0].min()), float(last.max())],
    }
    for key in _DATA_ATTRS:
        value = data.attrs.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and len(str(value)) <= 500:
            out[key] = value
    return out


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain containers (dict with str keys, list, str, int, float, bool, None) and CPU tensors.

    Raises
    ------
    TypeError
        Anything else (the message names where it was found).
    """
    if value is None or isinstance(value, bool):
        return value
    for kind in (int, float, str):  # exact types: subclasses (torch's version string) would be pickled as classes
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has the key {k!r} of type {type(k).__name__}; only str keys are saved.")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:  # NumPy scalars
        return _plain(value.item(), where)
    raise TypeError(
        f"{where} holds a {type(value).__name__}, which a result file cannot store without pickle; use numbers, "
        "strings, lists, dicts or tensors."
    )


def _model_entry(model: nn.Module) -> dict[str, Any]:
    """The ``model`` entry: class, module, the plain config when physnode can describe the model, dtype."""
    from ..physics.base import PhysicsModel

    config: dict[str, Any] | None = None
    why_not: str | None = None
    if isinstance(model, PhysicsModel):
        try:
            config = model.to_config()
        except (NotImplementedError, ValueError) as err:
            why_not = " ".join(str(err).split())
    else:
        why_not = f"{type(model).__name__} is not a physnode physics model"
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in model.state_dict().values() if v.is_floating_point()})
    return {
        "class": type(model).__name__,
        "module": type(model).__module__,
        "config": config,
        "why_not": why_not,
        "dtype": dtypes[0] if len(dtypes) == 1 else None,
    }


def save_result(result: FitResult, path: str | os.PathLike) -> Path:
    """Write ``result`` to ``path`` (see the module docstring for the layout); returns the path written.

    Parameters
    ----------
    result
        A :class:`~physnode.FitResult`.
    path
        The file (``.pt`` by convention), or an existing folder (then ``folder/result.pt``). Its folder must exist.

    Raises
    ------
    TypeError
        ``result`` is not a FitResult, or one of its fields holds an object that cannot be stored without pickle
        (nothing is written then).
    OSError
        The folder does not exist or is not writable.
    """
    from .api import FitResult

    if not isinstance(result, FitResult):
        raise TypeError(f"save_result saves a physnode.FitResult, got {type(result).__name__}.")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike (a .pt file or a folder), got {type(path).__name__}.")
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    if not path.parent.is_dir():
        raise OSError(f"cannot save the result to {path}: the folder {path.parent} does not exist; create it first.")
    fields = {
        f.name: _plain(getattr(result, f.name), f"FitResult.{f.name}")
        for f in dataclasses.fields(result)
        if f.name not in _SEPARATE
    }
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "physnode_version": _physnode_version(),
        "torch_version": str(torch.__version__),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": _model_entry(result.model),
        "state_dict": _plain(dict(result.model.state_dict()), "the model's state dict"),
        "solve_options": _plain(result.solve_options.to_dict(), "FitResult.solve_options"),
        "fields": fields,
    }
    return atomic_write(path, lambda tmp: torch.save(doc, tmp), fsync=True)


def _read(path: Path, map_location: torch.device | str | None) -> dict[str, Any]:
    """The checked top-level dict of a result file."""
    where = f"result file {str(path)!r}"
    doc = load_weights_only(
        path,
        map_location,
        error=ResultFileError,
        not_archive=(
            f"{where} is not a physnode result (not a torch archive: another kind of file, or truncated). Save "
            "results with FitResult.save(path); physnode fit writes RESULTS/result.pt."
        ),
        unreadable=lambda err: (
            f"{where} cannot be read ({type(err).__name__}: {' '.join(str(err).split())[:200]}); it is corrupt, "
            "truncated, or holds objects other than tensors and plain data. Save the result again."
        ),
    )
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ResultFileError(f"{where} is not a physnode fit result (format {got!r}, expected {FORMAT!r}).")
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ResultFileError(f"{where} has an invalid format_version {version!r}; expected a positive integer.")
    if version > FORMAT_VERSION:
        raise ResultFileError(
            f"{where} was written by a newer physnode ({doc.get('physnode_version')!r}, format version {version}); "
            f"this physnode ({_physnode_version()}) reads format versions up to {FORMAT_VERSION}. Upgrade physnode "
            "to load it."
        )
    for key, kind in (("model", dict), ("state_dict", dict), ("solve_options", dict), ("fields", dict)):
        if not isinstance(doc.get(key), kind):
            raise ResultFileError(f"{where} lacks its {key!r} entry (a {kind.__name__}); it is damaged.")
    return doc


def _rebuild_model(doc: dict[str, Any], model: nn.Module | None, where: str) -> nn.Module:
    """The saved model: ``model`` with the saved state, or the model rebuilt from its config."""
    entry = doc["model"]
    cls_name = entry.get("class")
    if model is None:
        config = entry.get("config")
        if not isinstance(config, dict):
            why = entry.get("why_not") or "it has no plain description"
            raise ResultFileError(
                f"{where} holds the state dict of a {cls_name} ({entry.get('module')}), which physnode cannot "
                f"rebuild by itself ({why}). Build the same model in code and pass it: "
                f"load_result(path, model=MyModel(...))."
            )
        from ..physics import from_config

        try:
            model = from_config(config)
        except (TypeError, ValueError) as err:
            raise ResultFileError(f"{where}: its model description cannot be rebuilt ({err}).") from None
        if type(model).__name__ != cls_name:
            raise ResultFileError(
                f"{where}: its description builds a {type(model).__name__}, not the saved {cls_name}."
            )
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module (built like the saved {cls_name}), got {type(model).__name__}.")
    dtype = entry.get("dtype")
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        model = model.to(getattr(torch, dtype))
    try:
        model.load_state_dict(doc["state_dict"])
    except (RuntimeError, KeyError, ValueError) as err:
        raise ResultFileError(
            f"{where}: the saved state dict does not fit the model {type(model).__name__} "
            f"({' '.join(str(err).split())[:300]}); pass a model built exactly as for the fit."
        ) from None
    return model


def load_result(
    path: str | os.PathLike,
    *,
    model: nn.Module | None = None,
    map_location: torch.device | str | None = "cpu",
) -> FitResult:
    """Read a result written by :meth:`FitResult.save` (or the ``result.pt`` of a results folder of ``physnode fit``).

    Parameters
    ----------
    path
        The file, or a results folder holding ``result.pt``.
    model
        A module built like the fitted one, into which the saved state is loaded. Needed when the file holds a
        model physnode cannot describe (your own ``nn.Module``, a ``Hybrid``); otherwise the model is rebuilt from
        its saved description.
    map_location
        Device of the loaded tensors and model (default the CPU).

    Returns
    -------
    FitResult
        With the fitted model, the solve options, parameters, standard errors (and covariance when saved),
        history, initial states and the data provenance (``result.provenance``).

    Raises
    ------
    OSError
        ``path`` does not exist (or is a folder without ``result.pt``).
    ResultFileError
        Not a physnode result file, truncated or corrupt, written by a newer physnode, a model that needs
        ``model=``, or a ``model`` whose tensors do not match (a subclass of ``ValueError``).
    """
    from ..options import SolveOptions
    from .api import FitResult

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"path must be a str or os.PathLike (a result file or a results folder), got {type(path).__name__}."
        )
    if map_location is not None:
        try:
            map_location = torch.device(map_location)
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(
                f"map_location {map_location!r} is not a torch device; use e.g. 'cpu', 'cuda' or None (the devices "
                "saved in the file)."
            ) from None
        if map_location.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"map_location {str(map_location)!r}: CUDA is not available on this machine; use 'cpu'.")
    path = Path(path)
    if path.is_dir():
        if not (path / RESULT_FILE).is_file():
            raise OSError(
                f"{path} is a folder without {RESULT_FILE}; give a result file or a results folder of physnode fit "
                "(folders written before results could be saved have none: fit again)."
            )
        path = path / RESULT_FILE
    if not path.is_file():
        raise OSError(f"result file {path} does not exist.")
    where = f"result file {str(path)!r}"
    doc = _read(path, map_location)
    fitted = _rebuild_model(doc, model, where)
    if map_location is not None:
        fitted = fitted.to(map_location)
    try:
        options = SolveOptions.from_dict(doc["solve_options"])
    except (TypeError, ValueError) as err:
        raise ResultFileError(f"{where}: its solve options cannot be read ({err}).") from None
    known = {f.name for f in dataclasses.fields(FitResult)} - set(_SEPARATE)
    kwargs = {k: v for k, v in doc["fields"].items() if k in known}
    try:
        return FitResult(model=fitted, solve_options=options, **kwargs)
    except TypeError as err:
        raise ResultFileError(f"{where} lacks fields of a FitResult ({err}).") from None
