"""The ``physnode`` dispatcher: every sub-command is registered and has --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from physnode.cli import main


def test_top_level_help_lists_sub_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("demo", "bench", "data", "fit", "forecast"):
        assert name in out


@pytest.mark.parametrize("command", ["demo", "data", "fit", "forecast"])
def test_sub_command_help(capsys, command):
    assert main([command, "--help"]) == 0
    assert f"physnode {command}" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "fit" in capsys.readouterr().out


def test_error_is_one_line_on_stderr_in_a_real_process(tmp_path):
    """Through the console entry point: exit code 1, one line on stderr, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "physnode.cli", "fit", str(tmp_path / "absent.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "absent.toml does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "structured", "--quick", "--dims", "0"], "--dims and --batch must be positive, got [0]"),
        (["bench", "gpu", "--quick", "--batch", "0"], "--batch must be >= 1"),
        (["bench", "causal", "--quick", "--seeds", "a"], "--seeds: expected comma-separated integers"),
    ],
)
def test_a_commands_own_exit_message_is_printed(capsys, argv, message):
    """A sub-command that stops with SystemExit("why") exits 1 and says why on stderr (it used to exit silently)."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"physnode bench: {message}" in err, err
