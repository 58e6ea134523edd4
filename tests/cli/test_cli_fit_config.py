"""``physnode fit CONFIG.toml`` end to end on a tiny damped-oscillator file, and its error paths."""

from __future__ import annotations

import json
import re

import pytest
import torch

import physnode
from physnode import forecast, load_result
from physnode.cli import main
from physnode.commands.fit import CONFIG_EXAMPLE
from physnode.data import Trajectories
from physnode.datasets import damped_oscillator

pytest.importorskip("physnode.fit.api")

TRUE = {"omega0": 1.0, "zeta": 0.1}  # the generator's defaults


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """The documented example config fitted to a generated file (noise-free, 1 trajectory, 30 times)."""
    folder = tmp_path_factory.mktemp("oscillator")
    damped_oscillator(n_trajectories=1, n_times=30, t_span=(0.0, 20.0), **TRUE).save(folder / "oscillator.nc")
    (folder / "oscillator.toml").write_text(CONFIG_EXAMPLE)
    return folder


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_example_config_recovers_parameters(fitted, capsys):
    code, out, err = _run(["fit", str(fitted / "oscillator.toml"), "--quiet"], capsys)
    assert code == 0, err
    res = fitted / "results" / "oscillator"  # [output] dir, relative to the config file
    summary = json.loads((res / "summary.json").read_text())
    for name, true in TRUE.items():
        assert summary["params"][name] == pytest.approx(true, rel=1e-4)
        assert summary["true"][name] == true  # read back from the data's metadata
        assert name in out
    assert summary["initial"] == {"omega0": pytest.approx(0.8), "zeta": pytest.approx(0.3)}
    assert summary["forecast"]["relative_rmse"] < 1e-3
    for f in summary["files"]:
        assert (res / f).stat().st_size > 0
    data = Trajectories.load(res / "data.nc")
    pred = Trajectories.load(res / "predictions.nc")
    assert pred.channels == data.channels == ["x", "v"]
    assert float((pred.values - data.values).abs().max()) < 1e-3
    record = json.loads((res / "fit.json").read_text())  # the fit record parses
    # One source for the solve options: Gauss–Newton differentiates with "direct" although [solver] asks for "aca";
    # summary.json and fit.json both say so, and both record the request.
    assert summary["solver"] == record["solver"]
    assert summary["solver"] == {
        "method": "dopri5",
        "grad": "direct",
        "rtol": 1e-7,
        "atol": 1e-9,
        "max_steps": 100_000,
    }
    assert record["grad"] == "direct" and summary["requested_grad"] == record["requested_grad"] == "aca"
    assert "direct (requested aca)" in out
    assert summary["grad"] == record["grad"] == "direct" and summary["method"] == record["method"]
    assert not [p for p in res.iterdir() if p.name.startswith(".")]  # no temporary files left
    # The folder loads back as a FitResult whose model predicts what predictions.nc holds.
    result = load_result(res)
    assert result.params == pytest.approx(summary["all_params"], rel=1e-15)
    assert result.grad == "direct" and result.requested_grad == "aca"
    assert result.provenance["command"] == summary["command"] and summary["command"].startswith("physnode fit ")
    assert result.provenance["data_file"] == summary["data_file"]
    assert result.provenance["data"]["digest"] == data.split_by_time(15.0)[0].digest()  # the fitted window
    again = forecast(result.model, data, data.times, options=result.solve_options)
    torch.testing.assert_close(again.values, pred.values, rtol=1e-12, atol=1e-14)  # same model, same solve
    # predictions.nc says what produced it: the fitted values and the fit's own solver and gradient method.
    assert pred.attrs["fitted_parameters"] == pytest.approx(summary["all_params"], rel=1e-15)
    assert pred.attrs["solver"] == summary["solver"] and pred.attrs["fit"]["requested_grad"] == "aca"
    assert pred.attrs["physnode_version"] == physnode.__version__ and pred.attrs["t_split"] == 15.0
    assert "parameters" not in pred.attrs  # not the generator's true values
    assert {"time_series.png", "parameters.png", "loss.png", "result.pt"} <= set(summary["files"])


def test_cli_overrides_and_out(fitted, tmp_path, capsys):
    code, _out, err = _run(
        [
            "fit",
            str(fitted / "oscillator.toml"),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "r"),
            "--quiet",
            "--no-plots",
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["epochs_run"] == 1 and summary["options"]["epochs"] == 1
    # One Gauss-Newton epoch is not a converged fit: the summary and the console say so.
    assert summary["converged"] is False and "(not converged)" in _out and "Raise --epochs" in _out
    assert not list((tmp_path / "r").glob("*.png"))


def _config(tmp_path, text: str, data: bool = True):
    if data:
        damped_oscillator(n_trajectories=1, n_times=10).save(tmp_path / "oscillator.nc")
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("[solver]", "[solvr]"), r"unknown table\(s\) \['solvr'\]"),
        (("epochs = 20", "epochs = 20\nlearning_rate = 3"), r"unknown key\(s\) \['learning_rate'\] in \[fit\]"),
        (("epochs = 20", 'epochs = "many"'), r"\[fit\] epochs must be an integer"),
        (('file = "oscillator.nc"', 'file = "absent.nc"'), "absent.nc does not exist"),
        (('"-omega0**2*x', '"-omega1**2*x'), "undeclared name 'omega1'"),
        (("zeta = { value = 0.3", "zeta = { value = 0.3, prior = 2"), "unknown keys"),
        (('observe = ["x", "v"]', 'observe = ["x", "speed"]'), "not all state components"),
        (('method = "dopri5"', 'method = "dopri9"'), "dopri9"),
    ],
    ids=["table", "fit-key", "fit-type", "data-file", "unknown-parameter", "param-key", "observe", "solver"],
)
def test_config_errors_are_one_line(tmp_path, capsys, edit, message):
    old, new = edit
    assert old in CONFIG_EXAMPLE
    path = _config(tmp_path, CONFIG_EXAMPLE.replace(old, new, 1))
    code, _out, err = _run(["fit", str(path), "--quiet", "--epochs", "1"], capsys)
    assert code == 1
    assert err.startswith("physnode fit: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert re.search(message, err), err


def test_missing_and_bad_toml(tmp_path, capsys):
    code, _, err = _run(["fit", str(tmp_path / "nope.toml")], capsys)
    assert code == 1 and "nope.toml does not exist" in err
    path = _config(tmp_path, "[model\nkind = 'ode'", data=False)
    code, _, err = _run(["fit", str(path)], capsys)
    assert code == 1 and "is not valid TOML" in err and err.count("\n") == 1
    path = _config(tmp_path, "[data]\nfile = 'x.nc'\n", data=False)
    code, _, err = _run(["fit", str(path)], capsys)
    assert code == 1 and "missing the [model] table" in err


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('touch PWNED')",
        "().__class__.__bases__[0].__subclasses__()",
        "open('PWNED', 'w')",
        "omega0.__class__",
        "lambda: 1",
    ],
    ids=["import", "dunder", "open", "attribute", "lambda"],
)
def test_malicious_expression_is_rejected_not_run(tmp_path, capsys, monkeypatch, expression):
    monkeypatch.chdir(tmp_path)
    text = CONFIG_EXAMPLE.replace('v = "-omega0**2*x - 2*zeta*omega0*v"', f'v = "{expression}"')
    path = _config(tmp_path, text)
    code, _, err = _run(["fit", str(path), "--quiet"], capsys)
    assert code == 1 and err.startswith("physnode fit: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "results").exists()


def test_help_shows_the_example(capsys):
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    assert "three-body" in out and 'rhs = { x = "v"' in out
    assert main(["fit", "c.toml", "--epochs", "zero"]) == 2
    err = capsys.readouterr().err
    assert "--epochs: expected a positive integer" in err and err.count("\n") == 1
