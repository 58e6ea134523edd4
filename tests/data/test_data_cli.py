"""``physnode data`` command line: list, make, show and one-line errors with exit code 2."""

from __future__ import annotations

import pytest

from physnode.data import Trajectories
from physnode.data.cli import main
from physnode.datasets import DATASETS, make


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
    assert tr.identical(ref)
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "pendulum" in shown and "theta" in shown and "rad" in shown
    assert main(argv) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["make", "nope", "x.nc"], "unknown dataset 'nope'"),
        (["show", "missing.nc"], "no trajectory file"),
        (["frobnicate"], "invalid choice"),
        (["make", "pendulum", "x.txt", "--n-times", "5"], "unsupported file extension"),
        (["make", "pendulum", "x.nc", "--missing", "2"], "missing must be a rate"),
        (["make", "pendulum"], "required"),
    ],
    ids=["unknown-dataset", "missing-file", "bad-command", "bad-suffix", "bad-rate", "no-out"],
)
def test_errors_are_one_line_exit_2(tmp_path, monkeypatch, capsys, argv, match):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith("error:")
    assert match in err


def test_show_corrupt_file(tmp_path, capsys):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not a netcdf file" * 10)
    assert main(["show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "truncated, corrupt" in err and err.count("\n") == 1
