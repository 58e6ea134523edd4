"""Each trajectory has its own times, steps, accept/reject decisions and error norm."""

from __future__ import annotations

import math

import pytest
import torch
from registries import ADAPTIVE

import physnode


def _oscillators(omega: torch.Tensor):
    def f(t, y):
        return torch.stack([y[..., 1], -(omega**2) * y[..., 0]], -1)

    return f


@pytest.mark.parametrize("method", ADAPTIVE, ids=ADAPTIVE)
def test_batch_with_own_times_equals_individual_solves(method: str, device: torch.device) -> None:
    """Every adaptive solver: a trajectory's steps and accept/reject decisions do not depend on its batch."""
    B, T = 4, 6
    # Explicit methods of order >= 4 at a tight tolerance; the others looser to keep the step count (and the
    # Newton iterations) small: the batch independence checked here does not depend on the tolerance.
    solver = physnode.SOLVERS.build(method)
    tight = solver.order >= 4 and not solver.implicit
    rtol, atol, exact_atol = (1e-9, 1e-11, 1e-6) if tight else (1e-5, 1e-7, 1e-2)
    omega = torch.tensor([1.0, 3.0, 0.5, 7.0], dtype=torch.float64, device=device)
    # Own start times and strictly increasing own grids (gaps >= 0.1), drawn on the CPU so every device gets the
    # same problem.
    gen = torch.Generator().manual_seed(0)
    y0 = torch.randn(B, 2, generator=gen, dtype=torch.float64).to(device)
    starts = torch.tensor([[0.0], [0.3], [-1.0], [2.0]], dtype=torch.float64)
    gaps = 0.1 + 0.9 * torch.rand(B, T - 1, generator=gen, dtype=torch.float64)
    t = torch.cat([starts, starts + gaps.cumsum(dim=1)], dim=1).to(device)
    batched = physnode.solve(_oscillators(omega), y0, t, method=method, rtol=rtol, atol=atol)
    for b in range(B):
        alone = physnode.solve(_oscillators(omega[b]), y0[b], t[b], method=method, rtol=rtol, atol=atol)
        torch.testing.assert_close(batched.ys[b], alone.ys, rtol=1e-13, atol=1e-13)
        assert int(batched.stats.n_accepted[b]) == int(alone.stats.n_accepted[0])
        assert int(batched.stats.n_rejected[b]) == int(alone.stats.n_rejected[0])
    # Exact solution check for good measure.
    dt = t - t[:, :1]
    x = y0[:, :1] * torch.cos(omega[:, None] * dt) + y0[:, 1:] / omega[:, None] * torch.sin(omega[:, None] * dt)
    torch.testing.assert_close(batched.ys[..., 0], x, rtol=0, atol=exact_atol)


def test_fast_trajectory_does_not_shrink_steps_of_others() -> None:
    omega = torch.tensor([1.0, 200.0], dtype=torch.float64)
    y0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    t = torch.linspace(0, 3, 4, dtype=torch.float64)
    both = physnode.solve(_oscillators(omega), y0, t)
    slow = physnode.solve(_oscillators(omega[:1]), y0[:1], t)
    assert int(both.stats.n_accepted[0]) == int(slow.stats.n_accepted[0])
    assert int(both.stats.n_accepted[1]) > 10 * int(both.stats.n_accepted[0])


def test_shared_times_and_backward_integration() -> None:
    f = _oscillators(torch.tensor(2.0, dtype=torch.float64))
    y0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    t_fwd = torch.linspace(0, 2, 5, dtype=torch.float64)
    y_fwd = physnode.odeint(f, y0, t_fwd, rtol=1e-10, atol=1e-12)
    assert y_fwd.shape == (2, 5, 2)
    # Integrate back from the end state to t = 0.
    y_back = physnode.odeint(f, y_fwd[:, -1], t_fwd.flip(0), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y_back[:, -1], y0, rtol=0, atol=1e-8)
    torch.testing.assert_close(y_back.flip(1), y_fwd, rtol=0, atol=1e-8)


def test_mixed_directions_in_one_batch() -> None:
    f = _oscillators(torch.tensor(1.0, dtype=torch.float64))
    y0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 1.0, 2.0], [0.0, -1.0, -2.0]], dtype=torch.float64)
    ys = physnode.odeint(f, y0, t, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ys[:, :, 0], torch.cos(t), rtol=0, atol=1e-8)


def test_func_receives_per_trajectory_times() -> None:
    seen = []

    def f(t, y):
        seen.append(t.shape)
        return torch.stack([torch.cos(t), torch.zeros_like(t)], -1)  # x(t) = sin(t) + x0

    y0 = torch.zeros(3, 2, dtype=torch.float64)
    t = torch.tensor([[0.0, 1.0], [0.5, 2.0], [1.0, 4.0]], dtype=torch.float64)
    ys = physnode.odeint(f, y0, t, rtol=1e-10, atol=1e-12)
    assert all(s == (3,) for s in seen)
    torch.testing.assert_close(ys[:, 1, 0], torch.sin(t[:, 1]) - torch.sin(t[:, 0]), rtol=0, atol=1e-8)


def test_unbatched_function_gets_scalar_time() -> None:
    shapes = []

    def f(t, y):
        shapes.append((t.shape, y.shape))
        return -y

    ys = physnode.odeint(f, torch.ones(3, dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert ys.shape == (2, 3)
    assert all(s == (torch.Size([]), torch.Size([3])) for s in shapes)
    torch.testing.assert_close(ys[-1], torch.full((3,), torch.e**-1, dtype=torch.float64), rtol=1e-7, atol=0)


def test_steps_land_exactly_on_observation_times() -> None:
    times = []

    def f(t, y):
        times.append(t.clone())
        return torch.ones_like(y)

    t = torch.tensor([0.0, 0.1, 0.35, 1.0], dtype=torch.float64)
    ys = physnode.odeint(f, torch.zeros(1, dtype=torch.float64), t, method="rk4", step_size=0.3)
    torch.testing.assert_close(ys[:, 0], t, rtol=0, atol=1e-15)
    stage_times = torch.stack(times).flatten()
    for ti in t[1:]:
        assert bool((stage_times == ti).any()), f"no stage evaluated exactly at t = {float(ti)}"


def test_stats_count_evaluations() -> None:
    f = _oscillators(torch.tensor(1.0, dtype=torch.float64))
    sol = physnode.solve(
        f,
        torch.tensor([1.0, 0.0], dtype=torch.float64),
        torch.tensor([0.0, 1.0], dtype=torch.float64),
        method="rk4",
        step_size=0.1,
    )
    assert int(sol.stats.n_accepted[0]) == 10
    assert sol.stats.nfe == 41  # 10 steps of 4 stages plus the evaluation that checks func's output
    assert sol.stats.success


def _fast_oscillator(omega: float):
    def f(t, y):
        return torch.stack([omega * y[..., 1], -omega * y[..., 0]], -1)

    return f


def test_float32_keeps_a_float64_clock() -> None:
    # Late start (t0 = 1000, float32 spacing 6e-5) with steps ~1e-3: a float32 time variable loses up to 5 % of
    # every step and ended at the wrong phase (x = -0.75 instead of -0.02). With the clock in float64 the float32
    # solve agrees with the exact solution to the accuracy float32 allows over ~1000 steps (rtol 1e-5 per step).
    omega = 300.0
    y0 = torch.tensor([1.0, 0.0])
    t = torch.tensor([1000.0, 1001.0])
    ys = physnode.odeint(_fast_oscillator(omega), y0, t, rtol=1e-5, atol=1e-6)
    exact = torch.tensor([math.cos(omega), -math.sin(omega)])
    torch.testing.assert_close(ys[-1], exact, rtol=0, atol=1e-3)


def test_float32_steps_below_float32_time_resolution_do_not_underflow() -> None:
    # At t ~ 1000 the float32 spacing is 6e-5 and the old underflow limit 4 eps32 |t| = 4.8e-4; this oscillator
    # needs steps of ~3e-4. The limit now follows the float64 clock, so the solve finishes.
    omega = 2000.0
    t = torch.tensor([1000.0, 1000.1])
    sol = physnode.solve(_fast_oscillator(omega), torch.tensor([1.0, 0.0]), t, rtol=1e-5, atol=1e-6)
    assert sol.stats.success
    span = float(t[1]) - float(t[0])  # 0.09997...: the float32 times are what is integrated
    exact = torch.tensor([math.cos(span * omega), -math.sin(span * omega)])
    torch.testing.assert_close(sol.ys[-1], exact, rtol=0, atol=1e-3)


def test_float32_fixed_steps_see_exact_times() -> None:
    # 7000 Euler steps of 1e-3 in float32: the times func receives are float32 roundings of k * 1e-3, not a float32
    # running sum (which drifted by ~1e-4 over 26,000 steps). One float32 ulp at 7 is 4.8e-7.
    seen = []

    def f(t, y):
        seen.append(t)
        return torch.zeros_like(y)

    physnode.odeint(f, torch.zeros(1), torch.tensor([0.0, 7.0]), method="euler", step_size=1e-3)
    times = torch.stack(seen[1:]).double()  # seen[0] is the input check's call at t0
    k = torch.arange(len(times), dtype=torch.float64)
    assert len(times) == 7000
    torch.testing.assert_close(times, k * 1e-3, rtol=0, atol=5e-7)
