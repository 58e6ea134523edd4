"""Calibration of forecast bands on the ACA three-body problem with 1 % observation noise (slow).

For each noise seed the masses are fitted on ``[0, 0.5]`` and the positions forecast on ``(0.5, 1]``. The 95 %
confidence bands (parameter uncertainty only) must contain the noise-free truth, and the 95 % predictive bands
(with the fit's noise estimate ``residual_std``) the held-out noisy observations, at 90–99 % of the held-out
entries pooled over the seeds. Coverage within one seed is strongly correlated (the error of three masses drives
every entry), hence several seeds. Measured (5 seeds): see the report printed with ``pytest -s``.
"""

from __future__ import annotations

import pytest
import torch

from physnode.datasets import three_body
from physnode.datasets.generators import K1, K2
from physnode.fit import fit
from physnode.forecast import forecast
from physnode.physics import NBodyGravity, Param

SEEDS = (0, 1, 2, 3, 4)
T_FIT, T_END, N_TIMES = 0.5, 1.0, 101


def _coverage(truth: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> float:
    return float(((truth >= lower) & (truth <= upper)).double().mean())


@pytest.mark.slow
def test_three_body_bands_cover_held_out_truth() -> None:
    clean = three_body(n_times=N_TIMES, t_span=(0.0, T_END))
    # "1 % noise": one hundredth of the RMS of the noise-free positions.
    sigma = 0.01 * float(clean.values.square().mean().sqrt())
    _, truth = clean.split_by_time(T_FIT)
    t = truth.times[0]
    cover: dict[str, list[float]] = {"linear": [], "laplace": [], "linear predictive": [], "laplace predictive": []}
    for seed in SEEDS:
        obs, held = three_body(n_times=N_TIMES, t_span=(0.0, T_END), noise=sigma, seed=seed).split_by_time(T_FIT)
        model = NBodyGravity(3, dim=3, G=1.0, k_r=K2, k_v=K1, masses=Param([1.05, 1.15, 0.85], positive=True))
        res = fit(model, obs, optimizer="gauss-newton", epochs=5, rtol=1e-6, atol=1e-9, progress=False)
        assert res.uncertainty_warning is None
        noise = {c: res.residual_std for c in held.channels}  # the 9 observed positions
        bands = {}
        for method in ("linear", "laplace"):
            bands[method] = forecast(res, truth, t, uncertainty=method, n_samples=200, seed=seed)
            cover[method].append(_coverage(truth.values, bands[method].lower[..., :9], bands[method].upper[..., :9]))
        pred = forecast(res, truth, t, uncertainty="laplace", noise=noise, n_samples=200, seed=seed)
        cover["laplace predictive"].append(_coverage(held.values, pred.lower[..., :9], pred.upper[..., :9]))
        # The linear predictive band from the confidence band's sd and the noise estimate (what forecast(...,
        # noise=...) computes, unit-tested in test_forecast_uncertainty.py), sparing a second Jacobian.
        lin = bands["linear"]
        half = 1.959963984540054 * (lin.std[..., :9].square() + res.residual_std**2).sqrt()
        mean = lin.mean.values[..., :9]
        cover["linear predictive"].append(_coverage(held.values, mean - half, mean + half))
    pooled = {k: sum(v) / len(v) for k, v in cover.items()}
    print("\ncoverage of the 95 % bands per seed:", {k: [round(x, 3) for x in v] for k, v in cover.items()})
    print("pooled:", {k: round(v, 3) for k, v in pooled.items()})
    for k, v in pooled.items():
        assert 0.90 <= v <= 0.99, (k, v, cover[k])
