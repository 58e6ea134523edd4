"""Standard errors against scipy.optimize.curve_fit; multiple shooting; forecast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fit_systems import Decay, decay_data
from scipy.optimize import curve_fit

import physnode
from physnode.data import Trajectories
from physnode.fit import MultipleShooting, fit
from physnode.forecast import forecast
from physnode.physics import Param, SymbolicODE


def _curve_fit_reference(data: Trajectories) -> tuple[float, float]:
    a = data.metadata_tensor("initial_state")[:, 0].numpy()
    t = data.times[0].numpy()
    y = data.values[..., 0].numpy()

    def f(_x: np.ndarray, k: float) -> np.ndarray:
        return (a[:, None] * np.exp(-k * t[None, :])).ravel()

    popt, pcov = curve_fit(f, np.zeros(y.size), y.ravel(), p0=[1.0])
    return float(popt[0]), float(np.sqrt(pcov[0, 0]))


def test_standard_error_matches_curve_fit() -> None:
    data = decay_data(n=3, T=25, noise=0.02, seed=3)
    k_ref, se_ref = _curve_fit_reference(data)
    res = fit(Decay(), data, optimizer="gauss-newton", epochs=20, progress=False, rtol=1e-10, atol=1e-12)
    assert res.params["k"] == pytest.approx(k_ref, rel=1e-7)
    assert res.uncertainty["k"] == pytest.approx(se_ref, rel=1e-5)


def test_delta_method_for_a_constrained_parameter() -> None:
    # k = softplus(raw): the standard error of k must not depend on the parametrisation.
    data = decay_data(n=3, T=25, noise=0.02, seed=3)
    _, se_ref = _curve_fit_reference(data)
    model = SymbolicODE(["-k*y"], ["y"], {"k": Param(0.5, positive=True)})
    res = fit(model, data, optimizer="gauss-newton", epochs=30, progress=False, rtol=1e-10, atol=1e-12)
    assert res.uncertainty["k"] == pytest.approx(se_ref, rel=1e-5)


def test_single_segment_is_single_shooting() -> None:
    data = decay_data(noise=0.02)
    a = fit(Decay(), data, optimizer="gauss-newton", epochs=10, progress=False)
    b = fit(Decay(), data, optimizer="gauss-newton", epochs=10, progress=False, multiple_shooting=1)
    c = fit(
        Decay(),
        data,
        optimizer="gauss-newton",
        epochs=10,
        progress=False,
        multiple_shooting=MultipleShooting(segments=1, penalty=3.0),
    )
    assert a.params["k"] == b.params["k"] == c.params["k"]
    assert a.loss == b.loss


def test_multiple_shooting_fits_and_closes_gaps() -> None:
    data = decay_data(n=2, T=31, noise=0.0)
    res = fit(
        Decay(0.3),
        data,
        optimizer="gauss-newton",
        epochs=30,
        progress=False,
        multiple_shooting={"segments": 3, "penalty": 10.0},
    )
    assert res.params["k"] == pytest.approx(1.3, rel=1e-4)
    assert res.loss < 1e-10


def test_forecast_from_metadata_and_from_y0() -> None:
    data = decay_data(n=2, T=11)
    model = Decay(1.3)
    t = torch.linspace(0.5, 3.0, 7, dtype=torch.float64)
    fc = forecast(model, data, t)
    a = data.metadata_tensor("initial_state")[:, 0]
    exact = a[:, None] * torch.exp(-1.3 * t)[None]
    assert fc.values.shape == (2, 7, 1)
    assert torch.allclose(fc.values[..., 0], exact, rtol=1e-6)
    assert fc.metadata == data.metadata and fc.ids == data.ids
    fc2 = forecast(model, a[:, None], t)
    assert torch.allclose(fc2.values[..., 0], a[:, None] * torch.exp(-1.3 * (t - 0.5))[None], rtol=1e-6)
    with pytest.raises(ValueError, match="initial"):
        forecast(model, Trajectories(data.times, data.values), t)


def test_forecast_channel_names_from_model() -> None:
    model = SymbolicODE(["-k*y"], ["y"], {"k": 1.0})
    out = forecast(model, torch.ones(1), torch.linspace(0, 1, 3, dtype=torch.float64))
    assert out.channels == ["y"]
    assert isinstance(out, physnode.data.Trajectories)
