"""What every sub-command of the ``physnode`` command line shares: the argument parser and its usage error.

Convention (implemented once, in :func:`physnode.cli.main`): every error is one line on stderr,
``physnode COMMAND: error: MESSAGE``, with exit code 2 for a usage error (bad or missing arguments, raised as
:class:`UsageError` by :class:`ArgumentParser`) and 1 when the command could not run (bad input file or config,
failed solve, unwritable output). ``--traceback`` anywhere on the command line shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import NoReturn

__all__ = [
    "ArgumentParser",
    "UsageError",
    "check_device",
    "check_writable_file",
    "check_writable_folder",
    "plain_text",
]

# :role:`target`, :role:`~a.b.Name` and :role:`text <target>` (Sphinx cross-references).
_ROLE = re.compile(r":(?:py:)?[a-z]+:`(?P<tilde>~?)(?P<target>[^`<]+?)(?:\s*<(?P<ref>[^`>]+)>)?`")
_LITERAL = re.compile(r"``(?P<text>[^`]+)``")
_LITERAL_BLOCK = re.compile(r"(?<=\S)::$", re.MULTILINE)  # "Examples::" introduces a literal block


def _role(match: re.Match[str]) -> str:
    target = match.group("target").strip()
    if match.group("tilde"):
        target = target.rsplit(".", 1)[-1]
    return target.lstrip(".")


def plain_text(text: str) -> str:
    """``text`` with its reStructuredText markup removed, as a terminal should show it.

    The sub-commands' descriptions are their module docstrings, written for the API reference: ````x```` becomes
    ``x`` and a cross-reference such as ``:class:`~physnode.data.Trajectories``` its displayed name
    (``Trajectories``; the full target without ``~``), as Sphinx would show them; ``Examples::`` ends in one
    colon.
    """
    text = _LITERAL.sub(lambda m: m.group("text"), _ROLE.sub(_role, text))
    return _LITERAL_BLOCK.sub(":", text)


class UsageError(ValueError):
    """Bad or missing command-line arguments (exit code 2)."""


class ArgumentParser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` that raises :class:`UsageError` instead of printing usage and exiting.

    Its help is plain text: the reStructuredText markup of the descriptions (module docstrings) is removed.
    """

    def format_help(self) -> str:
        return plain_text(super().format_help())

    def format_usage(self) -> str:
        return plain_text(super().format_usage())

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def check_device(device: str | None, option: str = "--device") -> None:
    """Refuse a device that this machine does not have, before any work is done.

    Raises
    ------
    ValueError
        Not a torch device string, or a CUDA / MPS device that is not available.
    """
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{option} {device!r} is not a torch device; use e.g. cpu, cuda or cuda:1.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"CUDA is not available on this machine; use {option} cpu.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"{option} {device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})."
            )
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"MPS is not available on this machine; use {option} cpu.")
    elif dev.type != "cpu":
        raise ValueError(f"{option} {device!r}: physnode runs on cpu, cuda or mps devices.")


def check_writable_folder(folder: Path, option: str = "--out") -> Path:
    """Check, before any long computation, that ``folder`` can be created and written to.

    Missing folders are created to test this and removed again (the command creates them when it writes), so a
    command that fails later leaves nothing behind.

    Raises
    ------
    OSError
        ``folder`` is a file, cannot be created, or is not writable (the message names it).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OSError(f"{option} {folder} exists and is not a folder; choose another results folder.")
    created = []
    parent = folder
    while not parent.exists() and parent != parent.parent:
        created.append(parent)
        parent = parent.parent
    probe = folder / f".physnode-write-test.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OSError(
            f"{option} {folder} is not writable ({err.strerror or type(err).__name__}); choose a folder you can "
            "write to."
        ) from None
    finally:
        for d in created:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break
    return folder


def check_writable_file(path: Path, option: str = "--out") -> Path:
    """Check that ``path`` can be written (its folder exists and is writable) before any long computation.

    Raises
    ------
    OSError
        The folder is missing or not writable, or ``path`` is a folder.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OSError(f"{option} {path} is a folder; give a file name (.nc or .h5).")
    if not folder.is_dir():
        raise OSError(f"{option} {path}: the folder {folder} does not exist; create it first.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OSError(f"{option} {path}: the folder {folder} is not writable.")
    return path
