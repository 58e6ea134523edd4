"""``physnode fit three-body``: the ACA paper's experiment end to end (the job ``make demo`` runs)."""

from __future__ import annotations

import json

import pytest

from physnode.cli import main
from physnode.data import Trajectories
from physnode.datasets.generators import ACA_MASSES

pytest.importorskip("physnode.fit.api")


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _check_results(out_dir, n_obs):
    summary = json.loads((out_dir / "summary.json").read_text())
    for f in summary["files"]:
        assert (out_dir / f).stat().st_size > 0, f
    data = Trajectories.load(out_dir / "data.nc")
    pred = Trajectories.load(out_dir / "predictions.nc")
    assert pred.channels == data.channels == ["x1", "y1", "z1", "x2", "y2", "z2", "x3", "y3", "z3"]
    assert int((data.times[0] <= 1.0).sum()) == n_obs
    assert json.loads((out_dir / "fit.json").read_text())
    return summary, data, pred


@pytest.mark.slow
def test_three_body_recovers_masses(tmp_path, capsys):
    """Noise-free, the masses are recovered to 1e-3 (relative) and the forecast on (1, 2] follows the orbit."""
    code, out, err = _run(["fit", "three-body", "--out", str(tmp_path), "--n-obs", "30", "--quiet"], capsys)
    assert code == 0, err
    summary, data, pred = _check_results(tmp_path, 30)
    for fitted, true in zip(summary["params"]["masses"], ACA_MASSES, strict=True):
        assert abs(fitted - true) <= 1e-3 * true
    assert summary["true"]["masses"] == list(ACA_MASSES)
    assert max(summary["relative_error"]["masses"]) <= 1e-3
    assert summary["forecast"]["relative_rmse"] < 1e-2
    # The prediction of the noise-free data is close everywhere, the forecast window included.
    assert float((pred.values - data.values).abs().max()) < 1e-2
    assert {"orbits.png", "time_series.png", "loss.png", "parameters.png"} <= set(summary["files"])
    for k in range(3):
        assert f"masses[{k}]" in out
    assert "forecast on (1, 2]" in out


def test_three_body_smoke(tmp_path, capsys):
    """One Gauss-Newton step from the perturbed guess with noise and dropped observations: files and the table."""
    argv = [
        "fit",
        "three-body",
        "--out",
        str(tmp_path),
        "--n-obs",
        "10",
        "--epochs",
        "1",
        "--noise",
        "0.01",
        "--missing",
        "0.2",
        "--irregular",
        "--rtol",
        "1e-4",
        "--atol",
        "1e-6",
        "--quiet",
        "--no-plots",
    ]
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    summary, data, _ = _check_results(tmp_path, int((Trajectories.load(tmp_path / "data.nc").times[0] <= 1).sum()))
    assert summary["epochs_run"] == 1
    assert not data.mask.all()  # some observations were dropped
    assert not list(tmp_path.glob("*.png"))
    # One step moves the masses from the guess (1.0, 1.2, 0.8) towards the truth (1.1, 1.1, 0.9).
    start_err = sum(abs(a - b) for a, b in zip((1.0, 1.2, 0.8), ACA_MASSES, strict=True))
    fit_err = sum(abs(a - b) for a, b in zip(summary["params"]["masses"], ACA_MASSES, strict=True))
    assert fit_err < start_err
    assert "masses[0]" in out and "rel.error" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n-obs", "2"], "--n-obs must be at least 3"),
        (["--nproc", "2"], "--nproc 2 splits the trajectories"),
        (["--method", "rk99", "--epochs", "1", "--n-obs", "5"], "rk99"),
        (["--optimizer", "sgd-ish", "--epochs", "1", "--n-obs", "5"], "sgd-ish"),
        (["--grad", "aca", "--n-obs", "5"], "--grad aca does not apply to --optimizer gauss-newton"),
    ],
    ids=["n-obs", "nproc", "method", "optimizer", "grad-with-gauss-newton"],
)
def test_three_body_errors(tmp_path, capsys, argv, message):
    code, _, err = _run(["fit", "three-body", "--out", str(tmp_path / "r"), "--quiet", *argv], capsys)
    assert code == 1
    assert err.startswith("physnode fit: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv", [["--noise", "-1"], ["--missing", "1.5"], ["--epochs", "0"], ["--bogus"]], ids=str)
def test_three_body_usage_errors_exit_2(capsys, argv):
    assert main(["fit", "three-body", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("physnode fit: error: ") and err.count("\n") == 1, err
    assert "see physnode fit three-body --help" in err


@pytest.mark.slow
def test_three_body_data_parallel_matches_single_process(tmp_path):
    """--nproc 2 (torchrun, gloo) takes the same Gauss-Newton step as one process on the same two trajectories."""
    import subprocess
    import sys

    common = [
        "fit",
        "three-body",
        "--n-trajectories",
        "2",
        "--n-obs",
        "5",
        "--epochs",
        "1",
        "--rtol",
        "1e-5",
        "--atol",
        "1e-7",
        "--quiet",
        "--no-plots",
    ]
    masses = []
    for nproc in (1, 2):
        out = tmp_path / f"np{nproc}"
        cmd = [sys.executable, "-m", "physnode.cli", *common, "--nproc", str(nproc), "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        masses.append(json.loads((out / "summary.json").read_text())["params"]["masses"])
    assert masses[1] == pytest.approx(masses[0], rel=1e-9)
