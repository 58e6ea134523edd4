"""Step-control options torchdiffeq users reach for: ``max_step``, ``min_step``, a custom error ``norm``, the first
step (``step_size`` of adaptive methods, torchdiffeq's ``first_step``), and the Jacobian / LU counts of the implicit
solvers in ``Solution.stats``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import physnode
from physnode import SolveOptions
from physnode.errors import StepSizeUnderflowError
from physnode.solution import Status

F64 = torch.float64


def decay(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -y


def oscillator(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.stack([y[..., 1], -y[..., 0]], dim=-1)


Y0 = torch.tensor([[1.0, 0.0], [0.5, -1.0]], dtype=F64)
T = torch.tensor([0.0, 5.0], dtype=F64)


def step_sizes(**kw) -> list[float]:
    """The accepted step sizes of trajectory 0 (from the ACA records, which keep every iteration)."""
    from physnode.integrate import integrate
    from physnode.odeint import _build_problem

    opts = SolveOptions(**kw)
    problem, _, _ = _build_problem(oscillator, Y0, T, opts, None, True)
    trace = integrate(problem, record="steps").records
    return [float(r.h[0]) for r in trace if bool(r.accept[0])]


def test_max_step_bounds_every_step() -> None:
    free = step_sizes()
    bounded = step_sizes(max_step=0.05)
    assert max(free) > 0.1  # the bound is active
    assert max(abs(h) for h in bounded) <= 0.05 * (1 + 1e-12)  # 1e-12: the host's float64 step arithmetic
    assert len(bounded) >= 100  # 5 time units in steps of at most 0.05
    sol = physnode.solve(oscillator, Y0, T, max_step=0.05)
    want = torch.stack([Y0[:, 0] * math.cos(5) + Y0[:, 1] * math.sin(5)], -1)
    torch.testing.assert_close(sol.ys[:, -1, :1], want, rtol=1e-6, atol=1e-7)  # still meets the tolerance


def test_min_step_failure_is_a_clear_status() -> None:
    with pytest.raises(StepSizeUnderflowError, match=r"min_step = 0\.5 was rejected.*lower min_step"):
        physnode.solve(oscillator, Y0, T, min_step=0.5)
    sol = physnode.solve(oscillator, Y0, T, min_step=0.5, raise_on_failure=False)
    assert (sol.stats.status == Status.STEP_UNDERFLOW).all()
    assert torch.isnan(sol.ys[:, -1]).all()


def test_min_step_that_is_never_needed_changes_nothing() -> None:
    free = step_sizes()
    floor = step_sizes(min_step=1e-3)
    assert min(abs(h) for h in free) > 1e-3  # the bound is inactive here
    np.testing.assert_allclose(floor, free, rtol=1e-15)  # the same steps: the bound never clips


def test_custom_norm_max_vs_rms() -> None:
    """The max norm is never smaller than the RMS norm, so it accepts fewer large steps."""
    calls = []

    def max_norm(e: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(e.shape))
        return e.abs().amax(-1)

    rms = physnode.solve(oscillator, Y0, T, rtol=1e-6, atol=1e-8)
    mx = physnode.solve(oscillator, Y0, T, rtol=1e-6, atol=1e-8, norm=max_norm)
    assert calls and calls[0] == (2, 2)
    assert (mx.stats.n_accepted >= rms.stats.n_accepted).all()
    assert (mx.stats.n_accepted > rms.stats.n_accepted).any()
    torch.testing.assert_close(mx.ys, rms.ys, rtol=1e-4, atol=1e-5)  # both within ~10 rtol of the exact flow


def test_custom_norm_of_the_wrong_shape_raises() -> None:
    with pytest.raises(ValueError, match=r"norm must map the scaled error of shape \(2, 2\).*shape \(2,\)"):
        physnode.solve(oscillator, Y0, T, norm=lambda e: e.abs().sum())


def test_first_step_is_step_size_of_adaptive_methods() -> None:
    """torchdiffeq's ``first_step`` is ``step_size`` for an adaptive method: the first step tried."""
    from physnode.integrate import integrate
    from physnode.odeint import _build_problem

    problem, _, _ = _build_problem(oscillator, Y0, T, SolveOptions(step_size=1e-3), None, True)
    first = integrate(problem, record="steps").records[0]
    # The loop spreads [0, 5] evenly over ceil(5 / h) - 1 steps when that stretches h by at most 1.5x: 1e-3 becomes
    # 5 / 4999, within 1 / 4999 of the given step (an automatic first step would differ by orders of magnitude).
    torch.testing.assert_close(first.h, torch.full((2,), 1e-3, dtype=F64), rtol=1 / 4999 + 1e-12, atol=0)


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        (dict(min_step=-1.0), ValueError, r"min_step must be a non-negative finite number"),
        (dict(max_step=0.0), ValueError, r"max_step must be positive"),
        (dict(min_step=1.0, max_step=0.5), ValueError, r"min_step = 1\.0 exceeds max_step = 0\.5"),
        (dict(max_step="big"), TypeError, r"max_step must be a positive float or inf"),
        (dict(norm="max"), TypeError, r"norm must be a function of the scaled error"),
        (dict(method="rk4", step_size=0.1, max_step=1.0), ValueError, r"control adaptive steps; method='rk4'"),
        (dict(step_size=1.0, max_step=0.5), ValueError, r"step_size = 1\.0 lies outside \[min_step, max_step\]"),
    ],
    ids=["min-negative", "max-zero", "min-above-max", "max-str", "norm-str", "fixed-step", "first-out-of-bounds"],
)
def test_options_are_validated(kw: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        SolveOptions(**kw)


def test_options_round_trip() -> None:
    opts = SolveOptions(min_step=1e-6, max_step=0.25)
    table = json.loads(json.dumps(opts.to_dict()))
    assert table["min_step"] == 1e-6 and table["max_step"] == 0.25
    assert SolveOptions.from_dict(table) == opts
    assert "min_step" not in SolveOptions().to_dict()  # defaults are left out
    with pytest.raises(TypeError, match=r"norm = .* cannot be written"):
        SolveOptions(norm=lambda e: e.abs().amax(-1)).to_dict()
    with pytest.raises(ValueError, match=r"max_step given both as keyword"):
        physnode.solve(decay, Y0, T, options=opts, max_step=1.0)


def test_implicit_solver_counts_in_stats() -> None:
    """``stats.njev`` / ``stats.nlu`` are the implicit solver's own counters for this solve; 0 for explicit ones."""
    solver = physnode.solvers.SOLVERS.build("kvaerno5")
    t = torch.tensor([0.0, 1.0], dtype=F64)
    first = physnode.solve(oscillator, Y0, t, method=solver, rtol=1e-5, atol=1e-7)
    assert first.stats.njev == solver.counters["jacobians"] >= 1
    # At most one per step (an unchanged hγ, e.g. equal steps to an observation, reuses the factorisation).
    assert (
        int((first.stats.n_accepted + first.stats.n_rejected).max())
        >= first.stats.nlu
        == solver.counters["factorizations"]
        >= 1
    )
    second = physnode.solve(oscillator, Y0, t, method=solver, rtol=1e-5, atol=1e-7)
    assert second.stats.njev == solver.counters["jacobians"] - first.stats.njev  # per solve, not cumulative
    explicit = physnode.solve(oscillator, Y0, T)
    assert explicit.stats.njev == explicit.stats.nlu == 0
