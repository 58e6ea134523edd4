"""Parameter covariance of a fit and forecast bands (linear propagation, Laplace sampling), their files and errors."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
from fit_systems import Decay, decay_data
from scipy.optimize import curve_fit

import physnode
from physnode.data import Trajectories, load
from physnode.fit import fit
from physnode.fit.uncertainty import UncertaintyWarning, precision_warning
from physnode.forecast import Forecast, forecast
from physnode.physics import Param, SymbolicODE
from physnode.predictive import quantiles

F64 = torch.float64
T_FC = torch.linspace(0.0, 3.0, 13, dtype=F64)


def _relax_data(seed: int = 4) -> Trajectories:
    """``y' = c - k y``: ``y = c/k + (a - c/k) e^{-k t}`` with ``k = 1.3``, ``c = 0.8``, noise 0.02."""
    g = torch.Generator().manual_seed(seed)
    a = torch.tensor([1.0, 2.0, 0.2], dtype=F64)
    t = torch.linspace(0.0, 3.0, 31, dtype=F64)
    k, c = 1.3, 0.8
    y = (c / k + (a[:, None] - c / k) * torch.exp(-k * t))[..., None]
    y = y + 0.02 * torch.randn(y.shape, generator=g, dtype=F64)
    return Trajectories(t, y, channels=["y"], metadata=[{"initial_state": [float(v)]} for v in a])


def _relax_model() -> SymbolicODE:
    return SymbolicODE(["c - k*y"], ["y"], {"k": Param(1.2, positive=True), "c": Param(0.7)})


@pytest.fixture(scope="module")
def relax():
    data = _relax_data()
    res = fit(_relax_model(), data, optimizer="gauss-newton", epochs=30, progress=False, rtol=1e-8, atol=1e-10)
    return data, res


@pytest.fixture(scope="module")
def decay():
    data = decay_data(n=3, T=25, noise=0.02, seed=3)
    res = fit(Decay(), data, optimizer="gauss-newton", epochs=20, progress=False, rtol=1e-8, atol=1e-10)
    return data, res


def test_covariance_and_correlation_match_curve_fit(relax) -> None:
    data, res = relax
    a = data.metadata_tensor("initial_state")[:, 0].numpy()
    t = data.times[0].numpy()

    def f(_x: np.ndarray, k: float, c: float) -> np.ndarray:
        return (c / k + (a[:, None] - c / k) * np.exp(-k * t[None, :])).ravel()

    _, pcov = curve_fit(f, np.zeros(a.size * t.size), data.values[..., 0].numpy().ravel(), p0=[1.0, 0.5])
    assert res.covariance_names == ["c", "k"] or res.covariance_names == ["k", "c"]
    order = [["k", "c"].index(n) for n in res.covariance_names]
    ref = torch.tensor(pcov, dtype=F64)[order][:, order]
    # Both are sigma^2 (J^T J)^-1 at the same optimum; the fit's J and optimum carry the solve's error (rtol 1e-8,
    # about 1e-7 relative) and curve_fit's its own convergence tolerance (1.5e-8): 1e-5 relative leaves room.
    assert torch.allclose(res.covariance, ref, rtol=1e-5, atol=0.0)
    corr_ref = ref / torch.sqrt(torch.diagonal(ref)[:, None] * torch.diagonal(ref)[None, :])
    assert torch.allclose(res.correlation, corr_ref, rtol=1e-5, atol=1e-8)
    assert abs(float(res.correlation[0, 1])) > 0.3  # a real off-diagonal term is being checked
    se = torch.tensor([res.uncertainty[n] for n in res.covariance_names], dtype=F64)
    assert torch.allclose(torch.diagonal(res.covariance).sqrt(), se, rtol=1e-10)
    # k = softplus(raw): the raw covariance differs from the physical one by the delta method's factor.
    assert res.raw_covariance.shape == (2, 2)
    doc = res.to_json()
    assert doc["covariance_names"] == res.covariance_names and len(doc["correlation"]) == 2


def test_linear_band_matches_the_analytic_delta_method(decay) -> None:
    data, res = decay
    fc = forecast(res, data, T_FC, uncertainty="linear")
    a = data.metadata_tensor("initial_state")[:, 0]
    k, se = res.params["k"], res.uncertainty["k"]
    # y = a exp(-k t): dy/dk = -t y, so sd(y) = t a exp(-k t) se(k). The Jacobian is that of the discrete solve at
    # rtol 1e-8, so it agrees with the analytic derivative to about 1e-7 relative; 1e-5 leaves room.
    sd = T_FC * a[:, None] * torch.exp(-k * T_FC) * se
    assert isinstance(fc, Forecast) and fc.method == "linear" and fc.kind("y0") == "confidence"
    assert torch.allclose(fc.std[..., 0], sd, rtol=1e-5, atol=1e-12)
    z = 1.959963984540054  # Phi^-1(0.975)
    assert torch.allclose(fc.upper - fc.mean.values, z * fc.std, rtol=1e-12)
    assert torch.allclose(fc.mean.values[..., 0], a[:, None] * torch.exp(-k * T_FC), rtol=1e-6)


def test_laplace_agrees_with_linear_on_a_nearly_linear_problem(decay) -> None:
    data, res = decay
    lin = forecast(res, data, T_FC, uncertainty="linear")
    lap = forecast(res, data, T_FC, uncertainty="laplace", n_samples=2000, seed=1)
    assert lap.samples is not None and lap.samples.shape == (2000, 3, 13, 1)
    inner = slice(1, None)  # t = 0 has zero spread (known initial state)
    # Monte Carlo: the relative error of a standard deviation from n draws is about 1/sqrt(2n) = 1.6 %; 8 % is
    # 5 of those, and the problem's non-linearity at the scale of se(k) (3e-3 relative) is far smaller.
    ratio = lap.std[:, inner] / lin.std[:, inner]
    assert float((ratio - 1).abs().max()) < 0.08
    width = (lap.upper - lap.lower)[:, inner] / (lin.upper - lin.lower)[:, inner]
    assert float((width - 1).abs().max()) < 0.1
    again = forecast(res, data, T_FC, uncertainty="laplace", n_samples=2000, seed=1)
    assert torch.allclose(again.lower, lap.lower, rtol=1e-12)  # same seed, same draws


def test_batched_laplace_solve_equals_one_solve_per_draw(decay, monkeypatch) -> None:
    data, res = decay
    batched = forecast(res, data, T_FC, uncertainty="laplace", n_samples=20, seed=2)

    def fail(*args, **kwargs):
        raise RuntimeError("no vmap")

    monkeypatch.setattr(physnode.predictive.PerSampleModel, "forward", fail)
    looped = forecast(res, data, T_FC, uncertainty="laplace", n_samples=20, seed=2)
    # The same draws solved as one batch (vmap over parameter sets) or one by one: every row takes its own steps
    # either way, so they agree to round-off of the vectorised arithmetic (1e-10 relative is generous).
    assert torch.allclose(batched.samples, looped.samples, rtol=1e-10, atol=1e-14)
    assert res.params["k"] == pytest.approx(
        float(res.model.k.detach()), rel=0, abs=0
    )  # the loop restored the parameter


def test_noise_makes_predictive_bands(decay) -> None:
    data, res = decay
    conf = forecast(res, data, T_FC, uncertainty="linear")
    sigma = res.residual_std
    assert sigma == pytest.approx(0.02, rel=0.25)  # the data's noise level, estimated from 75 residuals
    pred = forecast(res, data, T_FC, uncertainty="linear", noise=sigma)
    assert pred.kind("y0") == "predictive"
    assert torch.allclose(pred.std.square(), conf.std.square() + sigma**2, rtol=1e-12)
    by_name = forecast(res, data, T_FC, uncertainty="linear", noise={"y0": sigma})
    assert torch.allclose(by_name.std, pred.std, rtol=1e-12)
    lap = forecast(res, data, T_FC, uncertainty="laplace", noise=sigma, n_samples=2000)
    # Predictive spread is dominated by the noise: Monte Carlo error of a std from 2000 draws is ~1.6 %.
    assert float((lap.std / pred.std - 1).abs().max()) < 0.08
    with pytest.raises(ValueError, match="unknown channels"):
        forecast(res, data, T_FC, uncertainty="linear", noise={"z": 0.1})
    with pytest.raises(ValueError, match=">= 0"):
        forecast(res, data, T_FC, uncertainty="linear", noise=-1.0)


def test_fitted_noise_is_added_by_default(decay) -> None:
    data, res = decay
    res = dataclasses.replace(res, noise={"y0": 0.05})  # as a loss="gaussian_nll" fit reports its noise
    fc = forecast(res, data, T_FC, uncertainty="linear")
    sigma = 0.05
    assert fc.kind("y0") == "predictive" and float(fc.noise[0]) == pytest.approx(sigma)
    assert float(fc.std[0, 0, 0]) == pytest.approx(sigma, rel=1e-12)  # t = 0: noise only


def test_learned_initial_states_are_propagated() -> None:
    data = decay_data(n=2, T=21, noise=0.02, seed=6)
    res = fit(Decay(), data, learn_initial_state=True, optimizer="gauss-newton", epochs=20, progress=False, rtol=1e-8)
    assert res.raw_covariance.shape == (3, 3)  # k, then the 2 x 1 initial states
    fc = forecast(res, data, T_FC, y0=res.initial_states, uncertainty="linear")
    sd0 = torch.diagonal(res.raw_covariance)[1:].sqrt()
    # At t = 0 the prediction is the initial state itself: its sd is the initial state's standard error.
    assert torch.allclose(fc.std[:, 0, 0], sd0, rtol=1e-10)
    known = forecast(res, data, T_FC, uncertainty="linear")  # from the metadata states: parameters only
    assert float(known.std[:, 0].abs().max()) == 0.0


def test_without_uncertainty_forecast_is_unchanged(decay) -> None:
    data, res = decay
    plain = forecast(res.model, data, T_FC, options=res.solve_options)
    from_result = forecast(res, data, T_FC)
    assert isinstance(from_result, Trajectories) and not isinstance(from_result, Forecast)
    assert torch.allclose(from_result.values, plain.values, rtol=1e-14)


def test_band_and_netcdf_round_trip(decay, tmp_path) -> None:
    import xarray as xr

    data, res = decay
    fc = forecast(res, data, T_FC, uncertainty="linear", noise=0.02, level=0.9)
    b = fc.band("y0", trajectory=1)
    assert b.t.shape == b.mean.shape == b.lower.shape == b.upper.shape == (13,)
    assert bool((b.lower <= b.mean).all() and (b.mean <= b.upper).all())
    path = tmp_path / "bands.nc"
    fc.to_netcdf(path, standard_names={"y0": "mass_concentration_of_tracer"})
    back = load(path)
    assert back.channels == ["y0", "y0_lower", "y0_upper", "y0_std"]
    # Stored float64 values read back: no arithmetic in between, so they are identical.
    assert torch.equal(back.values[..., 1], fc.lower[..., 0])
    assert back.attrs["forecast_uncertainty"]["level"] == 0.9
    ds = xr.open_dataset(path, engine="h5netcdf")
    assert ds["y0"].attrs["ancillary_variables"] == "y0_lower y0_upper y0_std"
    assert ds["y0_std"].attrs["standard_name"] == "mass_concentration_of_tracer standard_error"
    assert ds["y0_upper"].attrs["physnode_band"] == "predictive"
    ds.close()
    with pytest.raises(ValueError, match=r"\.nc"):
        fc.to_netcdf(tmp_path / "bands.h5")
    with pytest.raises(KeyError, match="channels"):
        fc.band("nope")


def test_forecast_uncertainty_errors(decay) -> None:
    data, res = decay
    with pytest.raises(TypeError, match="FitResult"):
        forecast(res.model, data, T_FC, uncertainty="linear")
    with pytest.raises(ValueError, match="one of"):
        forecast(res, data, T_FC, uncertainty="bootstrap")
    with pytest.raises(ValueError, match="level"):
        forecast(res, data, T_FC, uncertainty="linear", level=95)
    with pytest.raises(ValueError, match="n_samples"):
        forecast(res, data, T_FC, uncertainty="laplace", n_samples=1)
    bare = fit(Decay(), data, optimizer="gauss-newton", epochs=2, progress=False, uncertainty=False)
    with pytest.raises(ValueError, match="uncertainty=True"):
        forecast(bare, data, T_FC, uncertainty="linear")


def test_standard_errors_at_solver_precision_are_flagged() -> None:
    clean = decay_data(n=3, T=25, noise=0.0)
    with pytest.warns(UncertaintyWarning, match="not meaningful"):
        res = fit(Decay(), clean, optimizer="gauss-newton", epochs=20, progress=False, rtol=1e-6, atol=1e-8)
    assert res.uncertainty_warning is not None and "solver's precision" in res.uncertainty_warning
    noisy = decay_data(n=3, T=25, noise=1e-3, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncertaintyWarning)
        ok = fit(Decay(), noisy, optimizer="gauss-newton", epochs=20, progress=False, rtol=1e-6, atol=1e-8)
    assert ok.uncertainty_warning is None


def test_precision_rule() -> None:
    # error_rms <= 100 (rtol data_rms + atol): flagged at and below the bound, not above it.
    bound = 100 * (1e-6 * 2.0 + 1e-9)
    assert precision_warning(0.5 * bound, 2.0, 1e-6, 1e-9) is not None
    assert precision_warning(2.0 * bound, 2.0, 1e-6, 1e-9) is None
    assert precision_warning(math.nan, 2.0, 1e-6, 1e-9) is None


def test_quantiles_match_numpy() -> None:
    x = torch.randn(101, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    lo, hi = quantiles(x, [0.025, 0.975])
    ref = np.quantile(x.numpy(), [0.025, 0.975], axis=0)
    assert np.allclose(lo.numpy(), ref[0], rtol=1e-12) and np.allclose(hi.numpy(), ref[1], rtol=1e-12)


def test_bands_under_a_treatment_plan() -> None:
    from physnode.data import Inputs

    class PK(torch.nn.Module):  # dc/dt = -k c + u, u an infusion rate
        def __init__(self) -> None:
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor(0.5, dtype=F64))

        def forward(self, t, y, u):
            return -self.k * y + u

    plan = Inputs(torch.tensor([0.0, 1.0, 3.0], dtype=F64), torch.tensor([[0.0], [2.0], [0.0]], dtype=F64))
    t = torch.linspace(0.0, 6.0, 25, dtype=F64)
    with torch.no_grad():
        clean = physnode.odeint(PK(), torch.zeros(2, 1, dtype=F64), t, inputs=plan, rtol=1e-9, atol=1e-11)
    y = clean + 0.02 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    meta = [{"initial_state": [0.0]}] * 2
    data = Trajectories(t, y, channels=["c"], metadata=meta, inputs=plan)
    res = fit(PK(), data, optimizer="gauss-newton", epochs=3, progress=False, rtol=1e-8, atol=1e-10)
    lin = forecast(res, data, t, uncertainty="linear")
    lap = forecast(res, data, t, uncertainty="laplace", n_samples=400)
    # Before the infusion (t < 1) the state is exactly 0 whatever k: no spread; afterwards the two methods agree
    # (Monte Carlo error of a sd from 400 draws: about 3.5 %).
    assert float(lin.std[:, t < 1].max()) == 0.0 and float(lap.std[:, t < 1].max()) == 0.0
    late = t > 2
    assert float((lap.std[:, late] / lin.std[:, late] - 1).abs().max()) < 0.15
    none = Inputs(torch.tensor([0.0], dtype=F64), torch.zeros(1, 1, dtype=F64))
    assert float(forecast(res, data, t, uncertainty="linear", inputs=none).upper.abs().max()) == 0.0


def test_bands_on_every_device(decay, device) -> None:
    import copy

    data, res = decay
    res_d = dataclasses.replace(res, model=copy.deepcopy(res.model).to(device))
    data_d = data.to(device)
    for method in ("linear", "laplace"):
        ref = forecast(res, data, T_FC, uncertainty=method, n_samples=50, noise=0.01)
        fc = forecast(res_d, data_d, T_FC.to(device), uncertainty=method, n_samples=50, noise=0.01)
        assert fc.lower.device.type == device.type and fc.mean.values.device.type == device.type
        # The same draws (CPU generator) and the same solve on another device: equal to round-off (float64).
        torch.testing.assert_close(fc.std.cpu(), ref.std, rtol=1e-7, atol=1e-12)
        torch.testing.assert_close(fc.upper.cpu(), ref.upper, rtol=1e-7, atol=1e-12)


def test_forecast_records_what_produced_it_and_keeps_units(relax, tmp_path) -> None:
    """A forecast's attrs describe the forecast (fitted values, its solver), not the data's generator; the data's
    channel units reach the forecast and its netCDF bands."""
    import json

    import xarray as xr

    data, res = relax
    made = {"parameters": {"k": 1.3, "c": 0.8}, "solver": {"method": "dopri8", "rtol": 1e-10}, "title": "relax"}
    data = Trajectories(
        data.times, data.values, channels=["y"], units=["mg L-1"], metadata=data.metadata, attrs=made, time_units="h"
    )
    plain = forecast(res, data, T_FC)
    assert plain.units == ["mg L-1"] and plain.time_units == "h"
    assert "parameters" not in plain.attrs  # not the generator's true values
    assert plain.attrs["fitted_parameters"]["k"] == res.params["k"]
    assert plain.attrs["solver"]["method"] == res.solve_options.method_name
    assert plain.attrs["solver"]["rtol"] == 1e-8 and plain.attrs["data"]["digest"] == data.digest()
    assert plain.attrs["physnode_version"] == physnode.__version__
    fc = forecast(res, data, T_FC, uncertainty="linear")
    path = tmp_path / "bands.nc"
    fc.to_netcdf(path)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert [ds[v].attrs["units"] for v in ("y", "y_lower", "y_upper", "y_std")] == ["mg L-1"] * 4
        assert ds["time"].attrs["units"] == "h"
        stored = json.loads(ds.attrs["physnode_attrs"])
    assert "dopri8" not in json.dumps(stored) and stored["fitted_parameters"]["c"] == res.params["c"]
