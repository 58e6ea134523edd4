"""Reading the torch archives physnode writes (results, checkpoints, saved models) without ever unpickling.

Every reader goes through :func:`load_weights_only`: a file that is not a zip archive is refused before torch sees
it, and ``torch.load`` always runs with ``weights_only=True`` (tensors and plain containers only); whatever torch
raises for a damaged archive or a pickled object becomes the caller's own error, never torch's advice to retry with
``weights_only=False``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["load_weights_only"]


def load_weights_only(
    path: str | os.PathLike[Any],
    map_location: torch.device | str | None,
    *,
    error: type[Exception],
    not_archive: str,
    unreadable: Callable[[Exception], str],
) -> Any:
    """The object stored in the torch archive ``path``, loaded with ``weights_only=True``.

    Parameters
    ----------
    path
        The file.
    map_location
        Device of the loaded tensors (as for ``torch.load``).
    error
        Exception class raised for a file that cannot be read.
    not_archive
        Message when ``path`` is not a zip archive (another kind of file, or truncated).
    unreadable
        Message for the exception ``torch.load`` raised (corrupt archive, pickled objects).

    Raises
    ------
    error
        With ``not_archive`` or ``unreadable(err)`` as its message (the torch exception is not chained).
    """
    if not zipfile.is_zipfile(path):
        raise error(not_archive)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types; its advice (weights_only=False) would be unsafe
        raise error(unreadable(err)) from None
