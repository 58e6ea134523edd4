"""Command-line robustness: one error convention, checks before long work, safe results folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from physnode.cli import main
from physnode.data import Trajectories

pytest.importorskip("physnode.fit.api")

CONFIG = """
[model]
kind = "ode"
state = ["x"]
rhs = {{ x = "-k*x" }}

[model.params]
k = {{ value = 0.5, positive = true }}

[data]
file = "d.nc"

[solver]
{solver}

[fit]
epochs = 1
optimizer = "adam"
"""


def _data(folder: Path) -> None:
    t = torch.linspace(0.0, 1.0, 6, dtype=torch.float64)
    a = torch.tensor([1.0, 2.0], dtype=torch.float64)
    y = (a[:, None] * torch.exp(-1.3 * t))[..., None]
    meta = [{"initial_state": [float(ai)]} for ai in a]
    Trajectories(t, y, channels=["x"], metadata=meta).save(folder / "d.nc")


def _config(folder: Path, solver: str = 'method = "dopri5"') -> Path:
    _data(folder)
    path = folder / "c.toml"
    path.write_text(CONFIG.format(solver=solver))
    return path


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_fixed_step_method_from_a_config(tmp_path, capsys):
    """[solver] accepts step_size for a fixed-step method; the fit and the forecast use it."""
    cfg = _config(tmp_path, 'method = "rk4"\nstep_size = 0.05')
    code, _, err = _run(["fit", str(cfg), "--out", str(tmp_path / "r"), "--quiet", "--no-plots"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["solver"]["method"] == "rk4" and summary["solver"]["step_size"] == 0.05
    code, _, err = _run(["forecast", str(tmp_path / "r"), "--out", str(tmp_path / "p.nc")], capsys)
    assert code == 0, err
    assert Trajectories.load(tmp_path / "p.nc").n_trajectories == 2


@pytest.mark.parametrize(
    ("solver", "message"),
    [
        ('method = "dopri5"\nstep_size = 0.1', "step_size applies to fixed-step methods"),
        ('method = "rk4"', "takes fixed steps and needs step_size"),
        ('method = "rk4"\nstep_size = 0.0', "positive finite"),
    ],
    ids=["adaptive-with-step", "fixed-without-step", "zero-step"],
)
def test_solver_step_size_errors(tmp_path, capsys, solver, message):
    code, _, err = _run(["fit", str(_config(tmp_path, solver)), "--quiet"], capsys)
    assert code == 1 and err.count("\n") == 1 and message in err, err


def test_reused_results_folder_drops_the_previous_outputs(tmp_path, capsys):
    """A second run without plots removes the first run's PNGs; files physnode did not write stay."""
    cfg = _config(tmp_path)
    out = tmp_path / "r"
    assert _run(["fit", str(cfg), "--out", str(out), "--quiet"], capsys)[0] == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs  # the first run plotted
    (out / "notes.txt").write_text("mine")
    (out / "extra.png").write_text("mine too")
    assert _run(["fit", str(cfg), "--out", str(out), "--quiet", "--no-plots"], capsys)[0] == 0
    summary = json.loads((out / "summary.json").read_text())
    left = sorted(p.name for p in out.iterdir())
    assert not set(pngs) & set(left)
    assert "notes.txt" in left and "extra.png" in left
    assert set(summary["files"]) <= set(left)


def test_unwritable_output_fails_before_the_fit(tmp_path, capsys, monkeypatch):
    """The results folder is checked before fitting: the fit never starts."""
    from physnode.commands import fit as fit_command

    def boom(*args, **kwargs):
        raise AssertionError("the fit ran although the output folder is not writable")

    monkeypatch.setattr(fit_command, "_fit_api", lambda: boom)
    (tmp_path / "file").write_text("")
    cfg = _config(tmp_path)
    code, _, err = _run(["fit", str(cfg), "--out", str(tmp_path / "file" / "r"), "--quiet"], capsys)
    assert code == 1 and "not writable" in err and err.count("\n") == 1, err


def test_forecast_refuses_a_config_outside_the_results_folder(tmp_path, capsys):
    """summary.json's "config" cannot make physnode read a file outside the results folder."""
    cfg = _config(tmp_path)
    out = tmp_path / "r"
    assert _run(["fit", str(cfg), "--out", str(out), "--quiet", "--no-plots"], capsys)[0] == 0
    summary = json.loads((out / "summary.json").read_text())
    for evil in ("/etc/passwd", "../c.toml", "sub/../../c.toml"):
        (out / "summary.json").write_text(json.dumps({**summary, "config": evil}))
        code, _, err = _run(["forecast", str(out), "--out", str(tmp_path / "p.nc")], capsys)
        assert code == 1 and "outside the results folder" in err and err.count("\n") == 1, err
    (out / "link.toml").symlink_to(tmp_path / "c.toml")
    (out / "summary.json").write_text(json.dumps({**summary, "config": "link.toml"}))
    code, _, err = _run(["forecast", str(out), "--out", str(tmp_path / "p.nc")], capsys)
    assert code == 1 and "symbolic link" in err, err
    assert not (tmp_path / "p.nc").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line(capsys):
    code, _, err = _run(["fit", "three-body", "--device", "cuda", "--quiet"], capsys)
    assert code == 1
    assert err == "physnode fit: error: CUDA is not available on this machine; use --device cpu.\n"


def test_impossible_sizes_are_refused_up_front(capsys):
    code, _, err = _run(["fit", "three-body", "--n-obs", "100000000"], capsys)
    assert code == 1 and "more than the limit" in err and err.count("\n") == 1, err


def test_traceback_option_reaches_every_position(tmp_path):
    with pytest.raises(ValueError, match="more than the limit"):
        main(["fit", "three-body", "--n-obs", "100000000", "--traceback"])
    with pytest.raises(ValueError, match="more than the limit"):
        main(["--traceback", "fit", "three-body", "--n-obs", "100000000"])
