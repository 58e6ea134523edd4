"""``physnode forecast``: predictions of a fitted model from its results folder, a CONFIG.toml or three-body."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import physnode
from physnode.cli import main
from physnode.commands.fit import CONFIG_EXAMPLE
from physnode.data import Trajectories
from physnode.datasets import damped_oscillator
from physnode.datasets.generators import ACA_MASSES, K1, K2
from physnode.odeint import odeint
from physnode.physics import NBodyGravity

pytest.importorskip("physnode.fit.api")


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A quick (one-epoch) fit of the example config; the forecast only needs fitted values, not good ones."""
    folder = tmp_path_factory.mktemp("fc")
    damped_oscillator(n_trajectories=2, n_times=20).save(folder / "oscillator.nc")
    (folder / "oscillator.toml").write_text(CONFIG_EXAMPLE)
    assert main(["fit", str(folder / "oscillator.toml"), "--epochs", "1", "--quiet", "--no-plots"]) == 0
    return folder


def _oscillator(y0, t, omega0, zeta):
    """Hand-written reference: x' = v, v' = -ω² x - 2 ζ ω v, solved tightly."""

    def f(t, y):
        return torch.stack([y[..., 1], -(omega0**2) * y[..., 0] - 2 * zeta * omega0 * y[..., 1]], -1)

    return odeint(f, y0, t, rtol=1e-10, atol=1e-12)


def test_forecast_from_results_folder(results, tmp_path, capsys):
    res = results / "results" / "oscillator"
    code, out, err = _run(["forecast", str(res), "--out", str(tmp_path / "p.nc")], capsys)
    assert code == 0, err
    assert "wrote" in out
    pred = Trajectories.load(tmp_path / "p.nc")
    fitted = Trajectories.load(res / "predictions.nc")
    assert pred.channels == ["x", "v"]
    torch.testing.assert_close(pred.values, fitted.values, rtol=1e-5, atol=1e-6)
    p = json.loads((res / "summary.json").read_text())["params"]
    data = Trajectories.load(res / "data.nc")
    ref = _oscillator(data.metadata_tensor("initial_state"), data.times, p["omega0"], p["zeta"])
    torch.testing.assert_close(pred.values, ref, rtol=1e-4, atol=1e-5)


def test_forecast_config_with_params_and_t_end(results, tmp_path, capsys):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"params": {"omega0": 2.0, "zeta": 0.05}}))
    out_file = tmp_path / "p.h5"
    argv = ["forecast", str(results / "oscillator.toml"), "--params", str(params), "--t-end", "30", "--n-times", "31"]
    code, _, err = _run([*argv, "--out", str(out_file)], capsys)
    assert code == 0, err
    pred = Trajectories.load(out_file)
    t = torch.linspace(0, 30, 31, dtype=torch.float64)
    torch.testing.assert_close(pred.times[0], t)
    y0 = Trajectories.load(results / "oscillator.nc").metadata_tensor("initial_state")
    torch.testing.assert_close(pred.values, _oscillator(y0, t, 2.0, 0.05), rtol=1e-4, atol=1e-5)
    # An existing file is kept unless --force.
    code, _, err = _run([*argv, "--out", str(out_file)], capsys)
    assert code == 1 and "pass --force" in err
    assert _run([*argv, "--out", str(out_file), "--force"], capsys)[0] == 0


def test_forecast_three_body_params(tmp_path, capsys):
    params = tmp_path / "m.json"
    params.write_text(json.dumps({"params": {"masses": list(ACA_MASSES)}}))
    from physnode.datasets import three_body

    data = three_body(n_times=11, t_span=(0.0, 0.5))
    data.save(tmp_path / "d.nc")
    argv = ["forecast", "three-body", "--params", str(params), "--data", str(tmp_path / "d.nc")]
    code, _, err = _run([*argv, "--out", str(tmp_path / "p.nc")], capsys)
    assert code == 0, err
    pred = Trajectories.load(tmp_path / "p.nc")
    model = NBodyGravity(3, 3, G=1.0, masses=list(ACA_MASSES), k_r=K2, k_v=K1)
    ref = odeint(model, data.metadata_tensor("initial_state"), data.times, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(pred.values, ref, rtol=1e-4, atol=1e-6)
    # The observed positions are the first nine state components.
    torch.testing.assert_close(pred.values[..., :9], data.values, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nowhere", "--out", "p.nc"], "neither a results folder"),
        (["three-body", "--out", "p.nc"], "needs --params"),
        (["RES", "--out", "p.csv"], "--out must end in .nc"),
        (["RES", "--out", "p.nc", "--params", "bad.json"], "unknown parameter(s) ['k']"),
        (["RES", "--out", "p.nc", "--params", "neg.json"], "must be positive"),
        (["RES", "--out", "p.nc", "--t-end", "-1"], "must lie after the first time"),
        (["RES", "--out", "p.nc", "--data", "missing.nc"], "missing.nc does not exist"),
    ],
    ids=["no-model", "no-params", "suffix", "unknown-param", "domain", "t-end", "data"],
)
def test_forecast_errors(results, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"params": {"k": 1.0}}))
    (tmp_path / "neg.json").write_text(json.dumps({"params": {"omega0": -1.0, "zeta": 0.1}}))
    argv = [str(results / "results" / "oscillator") if a == "RES" else a for a in argv]
    code, _, err = _run(["forecast", *argv], capsys)
    assert code == 1
    assert err.startswith("physnode forecast: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "p.nc").exists()


def test_forecast_usage(capsys):
    assert main(["forecast", "--help"]) == 0
    assert "--t-end" in capsys.readouterr().out
    assert main(["forecast", "somewhere"]) == 2  # --out is required
    err = capsys.readouterr().err
    assert "--out" in err and err.count("\n") == 1


def _staggered(results, tmp_path):
    """The results' data with trajectory 1 starting 3 s later and trajectory 0 cut to 15 times (padding)."""
    data = Trajectories.load(results / "results" / "oscillator" / "data.nc")
    times, values = data.times.clone(), data.values.clone()
    times[0, 15:] = float("nan")
    times[1] = times[1] + 3.0
    metadata = [dict(m) for m in data.metadata]
    metadata[1]["initial_time"] = 3.0
    staggered = Trajectories(
        times, values, lengths=[15, 20], channels=data.channels, units=data.units, metadata=metadata
    )
    staggered.save(tmp_path / "staggered.nc")
    return staggered, json.loads((results / "results" / "oscillator" / "summary.json").read_text())["params"]


def test_forecast_t_end_from_each_trajectory_start(results, tmp_path, capsys):
    """--t-end: each trajectory's grid starts at its own initial time (here 0 and 3) and ends at --t-end."""
    data, p = _staggered(results, tmp_path)
    res = results / "results" / "oscillator"
    argv = ["forecast", str(res), "--data", str(tmp_path / "staggered.nc"), "--t-end", "40", "--n-times", "41"]
    code, _, err = _run([*argv, "--out", str(tmp_path / "p.nc")], capsys)
    assert code == 0, err
    pred = Trajectories.load(tmp_path / "p.nc")
    torch.testing.assert_close(pred.times[:, 0], torch.tensor([0.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(pred.times[:, -1], torch.tensor([40.0, 40.0], dtype=torch.float64))
    assert pred.lengths.tolist() == [41, 41] and bool(pred.mask.all())
    y0 = data.metadata_tensor("initial_state")
    for i in range(2):  # the oscillator is autonomous: solve each trajectory from its own start
        ref = _oscillator(y0[i : i + 1], pred.times[i] - pred.times[i, 0], p["omega0"], p["zeta"])
        torch.testing.assert_close(pred.values[i : i + 1], ref, rtol=1e-4, atol=1e-5)
    # A --t-end before a trajectory's start names it.
    code, _, err = _run([*argv[:-4], "--t-end", "2", "--out", str(tmp_path / "q.nc")], capsys)
    assert code == 1 and "trajectory 1 starts at 3.0" in err


def test_forecast_at_data_times_keeps_lengths_mask_units_and_says_what_made_it(results, tmp_path, capsys):
    _staggered(results, tmp_path)
    res = results / "results" / "oscillator"
    argv = ["forecast", str(res), "--data", str(tmp_path / "staggered.nc"), "--out", str(tmp_path / "p.nc")]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    pred = Trajectories.load(tmp_path / "p.nc")
    assert pred.lengths.tolist() == [15, 20]  # padding stays padding, not predictions at invented times
    assert not bool(pred.mask[0, 15:].any()) and bool(pred.mask[0, :15].all())
    assert pred.channels == ["x", "v"] and pred.units == ["m", "m s-1"]
    summary = json.loads((res / "summary.json").read_text())
    attrs = pred.attrs
    assert attrs["fitted_parameters"]["omega0"] == summary["params"]["omega0"]
    assert attrs["fit"]["grad"] == summary["grad"] == "direct" and attrs["fit"]["requested_grad"] == "aca"
    assert attrs["fit"]["solver"] == summary["solver"]
    assert attrs["solver"]["method"] == summary["solver"]["method"] and "grad" not in attrs["solver"]
    assert attrs["physnode_version"] == physnode.__version__
    assert attrs["command"].startswith("physnode forecast ") and "staggered.nc" in attrs["command"]
    assert "parameters" not in attrs and all("parameters" not in m for m in pred.metadata)


def test_forecast_bands_to_netcdf_and_plot(results, tmp_path, capsys):
    """--uncertainty writes CF band variables next to each channel; --plot shades them."""
    xr = pytest.importorskip("xarray")
    res = results / "results" / "oscillator"
    plain, banded, png = tmp_path / "plain.nc", tmp_path / "bands.nc", tmp_path / "bands.png"
    assert _run(["forecast", str(res), "--out", str(plain)], capsys)[0] == 0
    argv = ["forecast", str(res), "--uncertainty", "linear", "--level", "0.9", "--noise", "0.05"]
    code, out, err = _run([*argv, "--out", str(banded), "--plot", str(png)], capsys)
    assert code == 0, err
    assert "Forecast(linear, level=0.9" in out and png.stat().st_size > 1000
    with xr.open_dataset(banded, engine="h5netcdf") as ds:
        assert ds["x"].attrs["ancillary_variables"] == "x_lower x_upper x_std"
        assert ds["x_lower"].attrs["physnode_band"] == "predictive" and ds.attrs["physnode_band_method"] == "linear"
        std, lower, upper, mean = (ds[v].values for v in ("x_std", "x_lower", "x_upper", "x"))
    # The 0.05 observation noise is part of every predictive standard deviation; the band is mean ± z·std with
    # z = Φ⁻¹(0.95) (float64 arithmetic of the same numbers: 1e-9 relative).
    finite = np.isfinite(std)
    assert (std[finite] >= 0.05 * (1 - 1e-12)).all()
    np.testing.assert_allclose(upper[finite] - lower[finite], 2 * 1.6448536269514722 * std[finite], rtol=1e-9)
    # The band's centre is the plain forecast.
    np.testing.assert_allclose(mean[finite], Trajectories.load(plain).values[..., 0].numpy()[finite], rtol=1e-10)
    # Bands need the saved covariance and a netCDF file.
    code, _, err = _run([*argv, "--out", str(tmp_path / "b.h5")], capsys)
    assert code == 1 and "--out must end in .nc" in err
    toml = str(results / "oscillator.toml")
    again = ["forecast", toml, "--params", str(res), "--uncertainty", "linear", "--out", str(tmp_path / "c.nc")]
    code, _, err = _run(again, capsys)
    assert code == 1 and "needs the fit's covariance" in err


def test_forecast_bands_from_flagged_standard_errors_say_so(results, tmp_path, capsys):
    """Bands propagated from standard errors the fit flagged (residuals at the solver's precision) come with the
    fit's note, as the fit's own output does; unflagged fits print none."""
    import shutil

    res = tmp_path / "flagged"
    shutil.copytree(results / "results" / "oscillator", res)
    argv = ["forecast", str(res), "--uncertainty", "linear", "--t-end", "3", "--n-times", "5", "--force"]
    code, out, err = _run([*argv, "--out", str(tmp_path / "a.nc")], capsys)
    assert code == 0, err
    assert "flagged" not in out
    # The fixture's one-epoch Gauss-Newton fit has not converged: the bands say so.
    assert "note: these bands propagate the fit's standard errors; Gauss-Newton stopped after 1 epoch with" in out
    result = physnode.load_result(res)
    result.uncertainty_warning = "standard errors not meaningful: test"
    result.save(res / "result.pt")
    code, out, err = _run([*argv, "--out", str(tmp_path / "b.nc")], capsys)
    assert code == 0, err
    assert "note: these bands propagate the fit's standard errors, which are flagged: standard errors not" in out
