"""The one atomic-write helper behind every file physnode writes."""

from __future__ import annotations

import os
import stat

import pytest

from physnode._atomic import atomic_write, atomic_write_text


def test_replaces_the_file_and_uses_normal_permissions(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")

    def broken(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, broken, fsync=True)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def _stale(folder, name: str, pid: int | None, age: float) -> object:
    """A temporary as an interrupted atomic_write leaves it, ``age`` seconds old."""
    import time

    tag = f"{pid}." if pid is not None else ""
    path = folder / f".{name}.{tag}abcd1234.tmp"
    path.write_bytes(b"x" * 1000)
    t = time.time() - age
    os.utime(path, (t, t))
    return path


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_the_next_write_removes_temporaries_of_killed_writers(tmp_path):
    """A kill -9 during a save leaves ``.NAME.<pid>.<random>.tmp``; the next save of NAME removes it."""
    dead = _stale(tmp_path, "a.nc", _dead_pid(), age=1.0)
    old = _stale(tmp_path, "a.nc", os.getppid(), age=7200.0)  # a running pid, but hours old (pid reused)
    legacy = _stale(tmp_path, "a.nc", None, age=120.0)  # the former naming, without a pid
    atomic_write_text(tmp_path / "a.nc", "new")
    assert not dead.exists() and not old.exists() and not legacy.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nc"]


def test_live_and_foreign_temporaries_are_kept(tmp_path):
    live = _stale(tmp_path, "a.nc", os.getppid(), age=5.0)  # a writer that still runs
    fresh_legacy = _stale(tmp_path, "a.nc", None, age=5.0)  # too young to judge
    other_target = _stale(tmp_path, "b.nc", _dead_pid(), age=7200.0)  # another file's temporary
    user = tmp_path / ".a.nc.notes.tmp"  # not our pattern
    user.write_text("mine")
    atomic_write_text(tmp_path / "a.nc", "new")
    assert live.exists() and fresh_legacy.exists() and other_target.exists() and user.exists()
