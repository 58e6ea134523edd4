"""Atomic file writes: a temporary file in the destination folder, then :func:`os.replace`.

A reader never sees a half-written file and an interrupted write leaves the old file (or none) behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text"]


def _chmod_default(path: str) -> None:
    """Give a ``mkstemp`` file (mode 0600) the permissions of a normally created file (0666 minus umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, fsync: bool = False) -> Path:
    """Create ``path`` atomically: ``write(tmp)`` writes the content to a temporary file name in the same folder,
    which then replaces ``path``. On any error the temporary file is removed and the error propagates.

    Parameters
    ----------
    path
        Destination; its folder must exist.
    write
        Writes the whole file given its (temporary) name.
    fsync
        Flush the file to disk before the rename (checkpoints that must survive a crash of the machine).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        _chmod_default(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
