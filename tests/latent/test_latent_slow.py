"""Slow science check: on held-out patients the LHM forecasts better than the expert model alone."""

from __future__ import annotations

import pytest
import torch

from physnode.bench.lhm import UNTIL, build_model, forecast_rmse
from physnode.datasets import make
from physnode.latent import SolveSettings, TreatmentSchedule, fit_latent_hybrid


@pytest.mark.slow
def test_lhm_beats_the_expert_model_on_held_out_forecasts():
    full = make("pkpd", n_trajectories=72, n_times=16, seed=4)
    schedule = TreatmentSchedule.from_metadata(full).to(dtype=torch.float32)
    test_idx, train_idx = list(range(24)), list(range(24, 72))
    settings = SolveSettings(method="midpoint", step_size=0.5)
    rmse = {}
    for kind in ("expert", "LHM"):
        model = build_model(kind, hidden=16, seed=0)
        fit = fit_latent_hybrid(
            model,
            full[train_idx],
            schedule[train_idx],
            until=UNTIL,
            iterations=60,
            batch_size=24,
            seed=0,
            settings=settings,
        )
        rmse[kind] = forecast_rmse(fit.model, full[test_idx], schedule[test_idx], settings)
    # Measured (seed 0, 60 iterations, 48 training patients): forecast RMSE 0.166 (LHM) vs 0.174 (expert alone), a
    # 4.5 % gap that float32 round-off differences between CPUs do not close. A weak check of the paper's claim, at
    # the size a CI budget allows: the benchmark (physnode bench lhm) shows the margin is not robust across training
    # sizes at short training budgets.
    assert rmse["LHM"] < rmse["expert"], rmse


@pytest.mark.slow
def test_bench_lhm_quick_prints_the_table(capsys):
    from physnode import bench

    assert bench.main(["lhm", "--quick", "--markdown"]) == 0
    out = capsys.readouterr().out
    for column in ("expert", "neural ODE", "residual hybrid", "LHM", "LHM corr CL", "LHM corr EC50"):
        assert f"| {column}" in out or f" {column} |" in out, column
