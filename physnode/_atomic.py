"""Atomic file writes: a temporary file in the destination folder, then :func:`os.replace`.

A reader never sees a half-written file and an interrupted write leaves the old file (or none) behind.

The temporary file of a target ``NAME`` is ``.NAME.<pid>.<random>.tmp`` in the same folder. A process killed
during a write (``kill -9``, power loss) cannot remove it, so each write first removes the stale temporaries of
its own target: those whose writing process no longer runs, and those older than :data:`STALE_SECONDS` (a
process id may have been reused). Only names of exactly this pattern, for this target, are ever removed.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["STALE_SECONDS", "atomic_write", "atomic_write_text", "remove_stale_temporaries"]

#: A temporary file of a target older than this (seconds) is stale even if its process id is in use.
STALE_SECONDS = 3600.0

#: Temporaries whose process id cannot be checked (older naming without one) are stale after this (seconds).
_STALE_NO_PID_SECONDS = 60.0


def _chmod_default(path: str) -> None:
    """Give a ``mkstemp`` file (mode 0600) the permissions of a normally created file (0666 minus umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _pid_running(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (a process of another user counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike, *, now: float | None = None) -> list[Path]:
    """Remove the temporary files that interrupted :func:`atomic_write` calls left for the target ``path``.

    A file ``.NAME.<pid>.<random>.tmp`` is removed when process ``pid`` no longer runs or the file is older than
    :data:`STALE_SECONDS`; a file ``.NAME.<random>.tmp`` (no process id) when it is older than a minute. Other
    files are never touched, and errors (a file removed concurrently, no permission) are ignored.

    Parameters
    ----------
    path
        The target whose temporaries are cleaned (not the temporaries themselves).
    now
        Current time (seconds since the epoch) for the age test; default :func:`time.time`.

    Returns
    -------
    list of Path
        The removed files.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(r"^\." + re.escape(path.name) + r"\.(?:(\d{1,10})\.)?([A-Za-z0-9_]{8})\.tmp$")
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        candidates = list(folder.glob(f".{_glob_escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    for cand in candidates:
        m = pattern.match(cand.name)
        if m is None:
            continue
        try:
            st = cand.lstat()
        except OSError:
            continue
        if not os.path.isfile(cand) or os.path.islink(cand):
            continue
        age = now - st.st_mtime
        pid = m.group(1)
        if pid is None:
            stale = age > _STALE_NO_PID_SECONDS
        else:
            stale = int(pid) != os.getpid() and (not _pid_running(int(pid)) or age > STALE_SECONDS)
        if stale:
            try:
                cand.unlink()
                removed.append(cand)
            except OSError:
                pass
    return removed


def _glob_escape(name: str) -> str:
    """``name`` with the glob special characters ``*?[`` escaped (for :meth:`pathlib.Path.glob`)."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], *, fsync: bool = False) -> Path:
    """Create ``path`` atomically: ``write(tmp)`` writes the content to a temporary file name in the same folder,
    which then replaces ``path``. On any error the temporary file is removed and the error propagates.

    Stale temporaries of the same target left by killed writers are removed first
    (see :func:`remove_stale_temporaries`).

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
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
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
