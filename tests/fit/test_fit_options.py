"""fit() and FitResult carry one SolveOptions: what was used (and requested), fixed-step solves, forecasts."""

from __future__ import annotations

import json

import pytest
import torch
from fit_systems import Decay, decay_data

from physnode import SolveOptions, forecast
from physnode.fit import FitResult, fit


def test_result_carries_the_options_used() -> None:
    res = fit(Decay(), decay_data(), optimizer="adam", epochs=2, rtol=1e-6, atol=1e-8, progress=False)
    assert res.solve_options == SolveOptions(grad="aca", rtol=1e-6, atol=1e-8)
    assert (res.method, res.grad, res.requested_grad) == ("dopri5", "aca", None)
    doc = res.to_json()
    assert doc["solver"] == res.solve_options.to_dict() and "requested_grad" not in doc
    assert SolveOptions.from_dict(json.loads(json.dumps(doc["solver"]))) == res.solve_options
    assert not hasattr(res, "extra")  # the never-filled field is gone


def test_gauss_newton_records_used_and_requested_gradient() -> None:
    """Gauss–Newton differentiates with "direct": the result says so and keeps the request."""
    res = fit(Decay(), decay_data(), optimizer="gauss-newton", epochs=2, grad="aca", progress=False, uncertainty=False)
    assert res.grad == "direct" and res.solve_options.grad == "direct"
    assert res.requested_grad == "aca"
    doc = res.to_json()
    assert doc["grad"] == doc["solver"]["grad"] == "direct" and doc["requested_grad"] == "aca"


def test_fixed_step_fit_from_options_object() -> None:
    """A fixed-step method works from a SolveOptions (as from a config's [solver] table)."""
    opts = SolveOptions.from_dict({"method": "rk4", "grad": "aca", "step_size": 0.02})
    res = fit(Decay(), decay_data(), optimizer="gauss-newton", epochs=10, options=opts, progress=False)
    assert res.method == "rk4" and res.solve_options.step_size == 0.02
    assert res.params["k"] == pytest.approx(1.3, rel=1e-5)  # rk4 at h = 0.02: error ~1e-9 on exp(-1.3 t)
    assert all(h["nfe"] > 0 for h in res.history)


def test_fit_refuses_keywords_and_options_object_together() -> None:
    with pytest.raises(ValueError, match=r"method given both as keyword\(s\) and in options=SolveOptions"):
        fit(Decay(), decay_data(), method="tsit5", options=SolveOptions(), epochs=1, progress=False)


def test_forecast_with_the_fit_options_matches_keywords() -> None:
    data = decay_data()
    res = fit(Decay(), data, optimizer="adam", epochs=1, grad="aca", rtol=1e-8, atol=1e-10, progress=False)
    t = torch.linspace(0.0, 3.0, 7, dtype=torch.float64)
    a = forecast(res.model, data, t, options=res.solve_options)
    b = forecast(res.model, data, t, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(a.values, b.values, rtol=1e-12, atol=0)  # the same solve; round-off only


def test_fit_result_method_and_grad_are_read_only_views() -> None:
    assert isinstance(FitResult.method, property) and isinstance(FitResult.grad, property)
