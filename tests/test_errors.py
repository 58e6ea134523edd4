"""Every bad input and every failure during a solve raises a clear exception; nothing hangs."""

from __future__ import annotations

import pytest
import torch

import physnode
from physnode import MaxStepsError, NonFiniteError, Status, StepSizeUnderflowError, StiffnessError

F64 = torch.float64


def decay(t, y):
    return -y


def y0_t():
    return torch.ones(2, 3, dtype=F64), torch.linspace(0, 1, 5, dtype=F64)


def test_bad_y0() -> None:
    t = torch.linspace(0, 1, 3, dtype=F64)
    with pytest.raises(TypeError, match="y0 must be a torch.Tensor"):
        physnode.odeint(decay, [1.0, 2.0], t)
    with pytest.raises(TypeError, match="y0 must be float32 or float64, got torch.int64"):
        physnode.odeint(decay, torch.ones(3, dtype=torch.long), t)
    with pytest.raises(ValueError, match=r"y0 must have shape \(D,\) or \(B, D\)"):
        physnode.odeint(decay, torch.ones(2, 3, 4, dtype=F64), t)
    with pytest.raises(ValueError, match=r"y0 contains NaN or Inf \(first at index \(1,\)\)"):
        physnode.odeint(decay, torch.tensor([1.0, float("nan")], dtype=F64), t)


def test_bad_times() -> None:
    y0, _ = y0_t()
    with pytest.raises(TypeError, match="t must have a floating-point dtype"):
        physnode.odeint(decay, y0, torch.arange(3))
    with pytest.raises(ValueError, match=r"t must have shape \(T,\) or \(B, T\)"):
        physnode.odeint(decay, y0, torch.zeros(2, 2, 2, dtype=F64))
    with pytest.raises(ValueError, match=r"need y0 of shape \(B, D\) with B = 3"):
        physnode.odeint(decay, y0, torch.rand(3, 4, dtype=F64).sort(-1).values)
    with pytest.raises(ValueError, match="t contains NaN or Inf"):
        physnode.odeint(decay, y0, torch.tensor([0.0, float("nan"), 1.0], dtype=F64))
    with pytest.raises(ValueError, match=r"strictly monotonic.*t\[2\] = 0.3.*after t\[1\] = 0.4.*Sort"):
        physnode.odeint(decay, y0, torch.tensor([0.0, 0.4, 0.3, 1.0], dtype=F64))
    with pytest.raises(ValueError, match=r"strictly monotonic.*t\[1, 2\]"):
        physnode.odeint(decay, y0, torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.5, 0.5]], dtype=F64))
    with pytest.raises(ValueError, match="is on meta but y0 is on cpu"):
        physnode.odeint(decay, y0, torch.zeros(3, device="meta"))


def test_bad_func() -> None:
    y0, t = y0_t()
    with pytest.raises(TypeError, match="func must be callable"):
        physnode.odeint(3, y0, t)
    with pytest.raises(ValueError, match=r"must return dy/dt with the shape of y, \(2, 3\); got \(2, 2\)"):
        physnode.odeint(lambda t, y: y[:, :2], y0, t)
    with pytest.raises(TypeError, match="func returned torch.float32"):
        physnode.odeint(lambda t, y: y.float(), y0, t)


def test_bad_options() -> None:
    y0, t = y0_t()
    with pytest.raises(ValueError, match="unknown method='dopri6'; choose one of .*Did you mean 'dopri[58]'"):
        physnode.odeint(decay, y0, t, method="dopri6")
    with pytest.raises(ValueError, match="unknown grad='adjiont'.*Did you mean 'adjoint'|unknown grad='adjiont'"):
        physnode.odeint(decay, y0, t, grad="adjiont")
    with pytest.raises(ValueError, match="takes fixed steps here and needs step_size"):
        physnode.odeint(decay, y0, t, method="rk4")
    with pytest.raises(ValueError, match="step_size must be a positive finite number"):
        physnode.odeint(decay, y0, t, method="rk4", step_size=-0.1)
    with pytest.raises(ValueError, match="rtol must be a non-negative finite number"):
        physnode.odeint(decay, y0, t, rtol=float("nan"))
    with pytest.raises(ValueError, match="rtol and atol cannot both be zero"):
        physnode.odeint(decay, y0, t, rtol=0.0, atol=0.0)
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        physnode.odeint(decay, y0, t, max_steps=0)
    with pytest.raises(ValueError, match="unknown option 'safety_factor'"):
        physnode.odeint(decay, y0, t, options={"safety_factor": 0.5})
    with pytest.raises(ValueError, match="has no embedded error estimate"):
        physnode.odeint(decay, y0, t, method="rk4", options={"adaptive": True})
    with pytest.raises(TypeError, match="must be a name"):
        physnode.odeint(decay, y0, t, method=5)


def test_non_finite_state_names_time_and_trajectory() -> None:
    def f(t, y):
        # Trajectory 1 divides by zero once t passes 0.5.
        bad = (t > 0.5) & (torch.arange(len(t)) == 1)
        return torch.where(bad.unsqueeze(-1), torch.full_like(y, float("nan")), -y)

    y0, t = y0_t()
    with pytest.raises(NonFiniteError, match=r"trajectory 1 at t = 0\.5.*NaN or Inf") as info:
        physnode.odeint(f, y0, t)
    assert info.value.trajectory == 1
    assert 0.5 <= info.value.time < 0.51


def test_non_finite_in_fixed_step_solve() -> None:
    y0, t = y0_t()
    with pytest.raises(NonFiniteError, match="trajectory 0 at t = 0"):
        physnode.odeint(lambda t, y: y / torch.zeros_like(y) * 0, y0, t, method="euler", step_size=0.1)


def test_step_size_underflow_on_finite_time_blow_up() -> None:
    # dy/dt = y^2, y(0) = 1 blows up at t = 1.
    with pytest.raises((StepSizeUnderflowError, NonFiniteError), match=r"trajectory 0 at t = (0\.99|1\.00)"):
        physnode.odeint(lambda t, y: y**2, torch.ones(1, dtype=F64), torch.tensor([0.0, 2.0], dtype=F64))


def test_max_steps() -> None:
    with pytest.raises(MaxStepsError, match=r"trajectory 0 at t = .*exceeded max_steps; raise max_steps"):
        physnode.odeint(decay, torch.ones(2, dtype=F64), torch.tensor([0.0, 100.0], dtype=F64), max_steps=5)
    with pytest.raises(MaxStepsError):
        physnode.odeint(
            decay,
            torch.ones(2, dtype=F64),
            torch.tensor([0.0, 1.0], dtype=F64),
            method="euler",
            step_size=1e-3,
            max_steps=100,
        )


def test_status_instead_of_raising() -> None:
    def f(t, y):
        return torch.stack([y[:, 0] ** 2, -y[:, 1]], -1)

    y0 = torch.tensor([[1.0, 1.0], [-1.0, 1.0]], dtype=F64)  # row 0 blows up at t = 1, row 1 decays
    t = torch.tensor([0.0, 0.5, 2.0], dtype=F64)
    sol = physnode.solve(f, y0, t, raise_on_failure=False)
    assert int(sol.status[0]) in (Status.STEP_UNDERFLOW, Status.NON_FINITE)
    assert int(sol.status[1]) == Status.SUCCESS
    assert not sol.stats.success
    assert sol.failed().tolist() == [0]
    assert torch.isnan(sol.ys[0, 2]).all()
    torch.testing.assert_close(sol.ys[0, 1, 0], torch.tensor(2.0, dtype=F64), rtol=1e-6, atol=0)
    torch.testing.assert_close(sol.ys[1, :, 1], torch.exp(-t), rtol=1e-6, atol=0)


def test_single_time_returns_initial_state() -> None:
    y0, _ = y0_t()
    ys = physnode.odeint(decay, y0, torch.zeros(1, dtype=F64))
    assert ys.shape == (2, 1, 3)
    torch.testing.assert_close(ys[:, 0], y0)


def _fast_relaxation(t, y):
    return -1e6 * (y - torch.cos(t))


def test_stiffness_fails_fast_with_the_estimate() -> None:
    # dy/dt = -1e6 (y - cos t) on [0, 10]: dopri5 is held at h|lambda| ~ 3.3, i.e. ~3e6 steps; without the check
    # this ran ~30 s into MaxStepsError. The check stops after a few dozen steps.
    y0, t = torch.zeros(1, dtype=F64), torch.tensor([0.0, 10.0], dtype=F64)
    with pytest.raises(
        StiffnessError, match=r"at t = .*this looks stiff.*implicit.*h·\|λ\| = 3\.\d.*max_steps = 100000"
    ) as info:
        physnode.odeint(_fast_relaxation, y0, t)
    assert info.value.status == Status.STIFF
    assert info.value.time < 1e-3
    sol = physnode.solve(_fast_relaxation, y0, t, raise_on_failure=False)
    assert int(sol.status[0]) == Status.STIFF
    steps = int(sol.stats.n_accepted[0] + sol.stats.n_rejected[0])
    assert steps < 300, f"stiffness detected only after {steps} steps"


@pytest.mark.parametrize("method", ["tsit5", "bosh3", "dopri8"])
def test_stiffness_check_works_for_other_tableaux(method: str) -> None:
    y0, t = torch.zeros(1, dtype=F64), torch.tensor([0.0, 10.0], dtype=F64)
    sol = physnode.solve(_fast_relaxation, y0, t, method=method, raise_on_failure=False)
    assert int(sol.status[0]) == Status.STIFF
    assert int(sol.stats.n_accepted[0] + sol.stats.n_rejected[0]) < 1000


def test_stiffness_check_can_be_turned_off_and_respects_max_steps() -> None:
    y0, t = torch.zeros(1, dtype=F64), torch.tensor([0.0, 10.0], dtype=F64)
    with pytest.raises(MaxStepsError):
        physnode.odeint(_fast_relaxation, y0, t, max_steps=400, options={"stiffness_check": False})
    # A short stiff span that fits in max_steps is solved, not refused: the check only fires when finishing at
    # the stability limit would exceed max_steps.
    short = torch.tensor([0.0, 1e-3], dtype=F64)
    ys = physnode.odeint(_fast_relaxation, y0, short, rtol=1e-6, atol=1e-9)
    assert abs(float(ys[-1, 0]) - 1.0) < 1e-5  # y has relaxed onto cos(t) ~ 1 (within 1e-6 of it)
    with pytest.raises(TypeError, match="option 'stiffness_check' must be True or False, got 'no'"):
        physnode.odeint(_fast_relaxation, y0, short, options={"stiffness_check": "no"})


def test_mildly_stiff_van_der_pol_is_not_flagged() -> None:
    def vdp(t, y):
        return torch.stack([y[..., 1], 10.0 * (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], -1)

    sol = physnode.solve(vdp, torch.tensor([2.0, 0.0], dtype=F64), torch.linspace(0, 30, 4, dtype=F64), rtol=1e-4)
    assert sol.stats.success


def test_rhs_that_changes_its_output_shape_is_caught() -> None:
    calls = [0]

    def f(t, y):
        calls[0] += 1
        return -y if calls[0] < 4 else -y[:, :1]  # broadcastable: would give finite wrong results

    y0, t = y0_t()
    with pytest.raises(ValueError, match=r"shape and dtype of y, \(2, 3\).*evaluation 4 returned \(2, 1\)"):
        physnode.odeint(f, y0, t)


def test_tolerances_are_checked_against_types_and_dtype() -> None:
    y0, t = y0_t()
    with pytest.raises(TypeError, match=r"rtol must be a non-negative float.*got True \(bool\)"):
        physnode.odeint(decay, y0, t, rtol=True)
    with pytest.raises(ValueError, match=r"rtol = 1e-12 is below the resolution of torch.float32.*rtol >= 1.2e-06"):
        physnode.odeint(decay, y0.float(), t.float(), rtol=1e-12)
    with pytest.raises(ValueError, match=r"atol of shape \(2,\) does not fit the state of dimension D = 3"):
        physnode.odeint(decay, y0, t, atol=torch.tensor([1e-9, 1e-9], dtype=F64))
    # Per-component atol of the right length, NumPy and 0-d tensor tolerances are fine.
    physnode.odeint(decay, y0, t, atol=torch.tensor([1e-9, 1e-8, 1e-7], dtype=F64), rtol=torch.tensor(1e-6))


def test_max_steps_below_number_of_intervals_says_how_many() -> None:
    y0 = torch.ones(2, dtype=F64)
    with pytest.raises(ValueError, match=r"max_steps = 5 cannot cover the 9 observation intervals.*at least 9"):
        physnode.odeint(decay, y0, torch.linspace(0, 1, 10, dtype=F64), max_steps=5)


def test_non_finite_failures_name_their_cause() -> None:
    y0, t = torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    k = torch.tensor(-1.0, dtype=F64)
    with pytest.raises(NonFiniteError, match=r"func\(t0, y0\) is already NaN or Inf at the first evaluation"):
        physnode.odeint(lambda t, y: -torch.sqrt(k) * y, y0, t)

    class Decay(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rate = torch.nn.Parameter(torch.tensor([1.0, float("nan")], dtype=F64))

        def forward(self, t, y):
            return -self.rate * y

    with pytest.raises(NonFiniteError, match=r"the parameter 'rate' of func contains NaN or Inf"):
        physnode.odeint(Decay(), y0, t)


def test_pure_relative_tolerance_with_a_zero_component() -> None:
    # atol = 0 and a component that stays exactly 0 used to give a 0/0 error norm (a NonFiniteError).
    ys = physnode.odeint(
        lambda t, y: torch.stack([0 * y[0], -y[1]]), torch.tensor([0.0, 1.0], dtype=F64), y0_t()[1], atol=0.0
    )
    torch.testing.assert_close(ys[-1], torch.tensor([0.0, torch.e**-1], dtype=F64), rtol=1e-6, atol=0)
