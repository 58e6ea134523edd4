"""Shared helpers of the fuzz catalogues: a wall-clock limit so a hang fails the case instead of blocking the run."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``TimeoutError`` in the block when it runs longer than ``seconds`` (wall clock).

    Uses ``SIGALRM`` / ``setitimer``, so it works on the main thread of a POSIX process only; elsewhere it
    runs the block without a limit. Pure-C loops that never return to the interpreter are interrupted at their
    next bytecode.
    """
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"the case took longer than its time limit of {seconds} s (a hang or runaway work).")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def limit() -> Callable[[float], AbstractContextManager[None]]:
    """The :func:`time_limit` context manager as a fixture: ``with limit(10): ...``."""
    return time_limit
