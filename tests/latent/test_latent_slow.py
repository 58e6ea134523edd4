"""Slow science checks: on held-out patients the LHM forecasts better than the expert model alone, and its inference
(encoder plus semi-amortised refinement) reads each patient's own history."""

from __future__ import annotations

import pytest
import torch

from physnode.bench.lhm import UNTIL, build_model, forecast_rmse
from physnode.datasets import make
from physnode.latent import SolveSettings, TreatmentSchedule, fit_latent_hybrid
from physnode.latent.refine import refine

SETTINGS = SolveSettings(method="midpoint", step_size=0.5)


def _fit(kind: str, full, schedule, train_idx):
    model = build_model(kind, hidden=16, seed=0)
    return fit_latent_hybrid(
        model,
        full[train_idx],
        schedule[train_idx],
        until=UNTIL,
        iterations=60,
        batch_size=24,
        seed=0,
        settings=SETTINGS,
    ).model


@pytest.mark.slow
def test_lhm_beats_the_expert_model_and_its_inference_reads_the_history():
    full = make("pkpd", n_trajectories=72, n_times=16, seed=4)
    schedule = TreatmentSchedule.from_metadata(full).to(dtype=torch.float32)
    test_idx, train_idx = list(range(24)), list(range(24, 72))
    test = full[test_idx].to(dtype=torch.float32)
    expert = forecast_rmse(_fit("expert", full, schedule, train_idx), test, schedule[test_idx], SETTINGS)
    lhm = _fit("LHM", full, schedule, train_idx)
    forecast = forecast_rmse(lhm, test, schedule[test_idx], SETTINGS)
    # Measured (seed 0, 60 iterations, 48 training patients): forecast RMSE 0.166 (LHM) vs 0.174 (expert alone), a
    # 4.5 % gap that float32 round-off differences between CPUs do not close.
    assert forecast < expert, (forecast, expert)

    # Each patient's history window reconstructed from its own history, and from the next patient's (its own
    # treatment plan either way): inference that ignored the observations would give the same error.
    swap = [test_idx[(i + 1) % len(test_idx)] for i in range(len(test_idx))]
    history = test.mask & test.time_mask.unsqueeze(-1) & (test.times <= UNTIL).unsqueeze(-1)
    errors = {}
    for name, rows in (("own", test_idx), ("other", swap)):
        data = full[rows].to(dtype=torch.float32)
        post = refine(lhm, data, schedule[rows], until=UNTIL, settings=SETTINGS, steps=20, lr=0.05)
        out = lhm.predict(
            data,
            schedule[rows],
            test.times,
            until=UNTIL,
            plan=schedule[test_idx],
            settings=SETTINGS,
            lengths=test.lengths,
            posterior=post,
        )
        errors[name] = float((out["mean"] - test.values)[history].pow(2).mean().sqrt())
    # Measured: 0.151 (own history) vs 0.168 (the next patient's), a ratio of 0.90; inference that ignored the
    # observations gives a ratio of exactly 1 (the same outputs), and the encoder alone, without refinement, reads
    # little at this budget (0.988, measured: physnode bench lhm reports its collapse). 0.95 leaves room for
    # float32 round-off differences between CPUs.
    assert errors["own"] < 0.95 * errors["other"], errors


@pytest.mark.slow
def test_bench_lhm_quick_prints_the_table_and_the_oracle(capsys):
    from physnode import bench

    assert bench.main(["lhm", "--quick", "--markdown", "--refine", "2"]) == 0
    out = capsys.readouterr().out
    for column in ("expert", "neural ODE", "residual hybrid", "LHM", "LHM corr CL", "LHM corr EC50", "LHM KL θ"):
        assert f"| {column}" in out or f" {column} |" in out, column
    assert bench.main(["lhm", "--quick", "--oracle", "--oracle-iterations", "2"]) == 0
    out = capsys.readouterr().out
    for row in ("truth", "expert/population", "expert/per-patient", "true/population", "true/per-patient"):
        assert row in out, row
    assert "posterior std" in out
