"""``physnode data`` command line: list, make, show; errors are one line (exit 2 for usage, 1 otherwise)."""

from __future__ import annotations

import pytest

from physnode.cli import main as physnode_main
from physnode.data import Trajectories
from physnode.datasets import DATASETS, make
from physnode.datasets.regenerate import differences


def main(argv: list[str]) -> int:
    """``physnode data ARGV`` in-process (errors are reported by :func:`physnode.cli.main`)."""
    return physnode_main(["data", *argv])


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(DATASETS)


@pytest.mark.parametrize("suffix", [".nc", ".h5"])
def test_make_and_show(tmp_path, capsys, suffix):
    out = tmp_path / f"p{suffix}"
    argv = [
        "make",
        "pendulum",
        str(out),
        "--n-trajectories",
        "3",
        "--n-times",
        "20",
        "--irregular",
        "--noise",
        "0.01",
        "--missing",
        "0.3",
        "--seed",
        "4",
    ]
    assert main(argv) == 0
    tr = Trajectories.load(out)
    ref = make("pendulum", n_trajectories=3, n_times=20, irregular=True, noise=0.01, missing=0.3, seed=4)
    # The command and the library run the same generation: equal up to round-off (see FRESH_RTOL)
    assert differences(tr, ref) == []
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "pendulum" in shown and "theta" in shown and "rad" in shown
    assert main(argv) == 1  # exists, no --force
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code", "match"),
    [
        (["make", "nope", "x.nc"], 1, "unknown dataset 'nope'"),
        (["show", "missing.nc"], 1, "no trajectory file"),
        (["frobnicate"], 2, "invalid choice"),
        (["make", "pendulum", "x.txt", "--n-times", "5"], 1, "unsupported file extension"),
        (["make", "pendulum", "x.nc", "--missing", "2"], 1, "missing must be a rate"),
        (["make", "pendulum"], 2, "required"),
        (["make", "pendulum", "x.nc", "--n-times", "0"], 2, "expected a positive integer"),
        (["make", "pendulum", "x.nc", "--n-trajectories", "100000", "--n-times", "100000"], 1, "more than the limit"),
        (["make", "pendulum", "no/such/folder/x.nc"], 1, "does not exist"),
    ],
    ids=[
        "unknown-dataset",
        "missing-file",
        "bad-command",
        "bad-suffix",
        "bad-rate",
        "no-out",
        "zero-times",
        "too-large",
        "no-folder",
    ],
)
def test_errors_are_one_line(tmp_path, monkeypatch, capsys, argv, code, match):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith("physnode data: error:")
    assert match in err
    assert not (tmp_path / "x.nc").exists()


def test_show_corrupt_file(tmp_path, capsys):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not a netcdf file" * 10)
    assert main(["show", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "truncated, corrupt" in err and err.count("\n") == 1


def test_traceback_reaches_the_sub_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trajectory file"):
        main(["show", str(tmp_path / "missing.nc"), "--traceback"])
