"""External inputs, breakpoints and boluses: interpolation against SciPy, exact integration of piecewise-constant
inputs by every solver, sides at breakpoints, the ``breakpoints=`` (``jump_t``) option, and boluses."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch
from registries import ALL_SOLVERS

import physnode
from physnode.data import Boluses, Inputs
from physnode.solvers import SOLVERS

NAN = float("nan")

#: Two trajectories with their own knots (row 0 padded with NaN) and values.
KNOTS = [[0.0, 0.3, 0.7, 1.3, NAN], [0.1, 0.25, 0.5, 0.9, 1.7]]
VALUES = [[1.0, -2.0, 3.0, 0.5, NAN], [2.0, 0.0, -1.0, 4.0, 1.0]]


def _inputs(kind: str = "constant") -> Inputs:
    times = torch.tensor(KNOTS, dtype=torch.float64)
    values = torch.tensor(VALUES, dtype=torch.float64).unsqueeze(-1)
    return Inputs(times, values, kind, names=["rate"], units=["mg/h"])


def _integral_of_constant(b: int, t_end: float) -> float:
    """``∫_0^t_end u_b(s) ds`` of the right-continuous piecewise-constant input of row ``b``, held at its end values."""
    tk = [x for x in KNOTS[b] if x == x]
    vk = VALUES[b][: len(tk)]
    grid = sorted({0.0, t_end, *(x for x in tk if 0.0 < x < t_end)})
    total = 0.0
    for a, c in itertools.pairwise(grid):
        mid = 0.5 * (a + c)
        k = max(sum(1 for x in tk if x <= mid) - 1, 0)
        total += vk[k] * (c - a)
    return total


def _solve_kwargs(method: str) -> dict:
    return {} if SOLVERS.build(method).adaptive else {"step_size": 0.17}


@pytest.mark.parametrize("method", ALL_SOLVERS, ids=ALL_SOLVERS)
def test_piecewise_constant_input_is_integrated_exactly(method: str) -> None:
    u = _inputs()
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    if method in ("leapfrog", "yoshida4"):  # separable [q, p] state: both halves integrate u
        y0 = torch.zeros(2, 2, dtype=torch.float64)

        def f(t, y, u):
            return u.expand(-1, 2)
    else:
        y0 = torch.zeros(2, 1, dtype=torch.float64)

        def f(t, y, u):
            return u

    sol = physnode.solve(f, y0, t, method=method, inputs=u, **_solve_kwargs(method))
    ref = torch.tensor([[_integral_of_constant(b, float(x)) for x in t] for b in range(2)], dtype=torch.float64)
    # Every step lies inside one constant piece, where every consistent method integrates a constant exactly: the
    # only error left is round-off of a few dozen additions (1e-13 absolute on values of order 1).
    torch.testing.assert_close(sol.ys[..., 0], ref, rtol=0, atol=1e-13)


def test_fixed_step_without_inputs_is_not_exact() -> None:
    """The exactness above comes from landing on the breakpoints: the same steps ignoring them are off."""
    u = _inputs()
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    y0 = torch.zeros(2, 1, dtype=torch.float64)
    vals = u.values

    def plain(t, y):  # the same input, evaluated by the user, no breakpoints declared
        return Inputs(u.times, vals)(t)

    sol = physnode.solve(plain, y0, t, method="rk4", step_size=0.17)
    ref = torch.tensor([[_integral_of_constant(b, float(x)) for x in t] for b in range(2)], dtype=torch.float64)
    assert float((sol.ys[..., 0] - ref).abs().max()) > 1e-3


@pytest.mark.parametrize("kind", ["linear", "cubic"])
def test_interpolation_matches_scipy(kind: str) -> None:
    interpolate = pytest.importorskip("scipy.interpolate")
    u = _inputs(kind)
    for b in range(2):
        tk = np.array([x for x in KNOTS[b] if x == x])
        vk = np.array(VALUES[b][: len(tk)])
        tq = np.linspace(tk[0], tk[-1], 41)
        got = torch.stack([u(torch.full((2,), x, dtype=torch.float64))[b, 0] for x in tq]).numpy()
        ref = np.interp(tq, tk, vk) if kind == "linear" else interpolate.PchipInterpolator(tk, vk)(tq)
        # Same formulas evaluated in a different order: round-off only.
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_constant_is_right_continuous_and_held_outside() -> None:
    u = _inputs()
    at = torch.tensor([0.3, 0.5], dtype=torch.float64)  # row 0 on its knot 0.3, row 1 on its knot 0.5
    assert u(at)[:, 0].tolist() == [-2.0, -1.0]
    before = torch.tensor([-1.0, -1.0], dtype=torch.float64)
    after = torch.tensor([9.0, 9.0], dtype=torch.float64)
    assert u(before)[:, 0].tolist() == [1.0, 2.0]
    assert u(after)[:, 0].tolist() == [0.5, 1.0]


def test_cubic_is_monotone_on_monotone_data() -> None:
    times = torch.tensor([0.0, 1.0, 1.5, 4.0], dtype=torch.float64)
    values = torch.tensor([[0.0], [0.0], [5.0], [5.2]], dtype=torch.float64)
    u = Inputs(times, values, "cubic")
    tq = torch.linspace(0.0, 4.0, 401, dtype=torch.float64)
    vals = torch.stack([u(x) for x in tq])[:, 0]
    assert bool((vals.diff() >= -1e-14).all())  # never decreases (round-off aside)
    assert float(vals.min()) >= -1e-14 and float(vals.max()) <= 5.2 + 1e-14


def test_plain_breakpoints_see_the_correct_side() -> None:
    """torchdiffeq's jump_t: a plain func with a step at t = b is integrated exactly when b is declared."""
    b = 0.7

    def f(t, y):
        return torch.where(t >= b, 3.0, 1.0).unsqueeze(-1).to(y.dtype)

    y0 = torch.zeros(1, dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    exact = b + 3.0 * (2.0 - b)
    for method in ("dopri5", "rk4", "bosh3"):
        kw = {"step_size": 0.3} if method == "rk4" else {}
        sol = physnode.solve(f, y0, t, method=method, breakpoints=[b], **kw)
        # Exact up to the one-ulp nudge of t (1e-16) and round-off of a few additions.
        assert abs(float(sol.ys[-1, 0]) - exact) < 1e-13, method
    # Without the breakpoint a fixed step straddles the jump and is off by a fraction of a step times the jump.
    loose = physnode.solve(f, y0, t, method="rk4", step_size=0.3)
    assert abs(float(loose.ys[-1, 0]) - exact) > 1e-3


def test_breakpoints_cost_no_output_and_fsal_reevaluates() -> None:
    u = _inputs()
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    y0 = torch.zeros(2, 1, dtype=torch.float64)
    sol = physnode.solve(lambda t, y, u: u, y0, t, method="dopri5", inputs=u)
    assert sol.ys.shape == (2, 2, 1)
    # Row 0 has 3 breakpoints inside (0, 2) after t0 = 0 (0 itself is one too), row 1 has 5: at least one step per
    # piece.
    assert sol.stats.n_accepted.tolist()[0] >= 4 and sol.stats.n_accepted.tolist()[1] >= 6


def test_nonlinear_input_response_matches_scipy_on_segments() -> None:
    integrate = pytest.importorskip("scipy.integrate")
    times = torch.tensor([0.0, 0.4, 1.1, 1.6], dtype=torch.float64)
    values = torch.tensor([[0.0], [2.5], [0.3], [1.0]], dtype=torch.float64)
    u = Inputs(times, values, "constant")

    def f(t, y, u):  # logistic growth driven by the input
        return 1.3 * y * (1.0 - y) + u * torch.sin(3.0 * t).unsqueeze(-1) ** 2

    t = torch.linspace(0.0, 2.0, 9, dtype=torch.float64)
    y0 = torch.tensor([0.1], dtype=torch.float64)
    got = physnode.odeint(f, y0, t, inputs=u, rtol=1e-10, atol=1e-12)
    # Reference: scipy on each constant piece separately (restarted at every knot).
    knots = [0.0, 0.4, 1.1, 1.6, 2.0]
    vals = [0.0, 2.5, 0.3, 1.0]
    y = [0.1]
    ref = {0.0: 0.1}
    for a, c, v in zip(knots[:-1], knots[1:], vals, strict=True):
        ts = [float(x) for x in t if a < float(x) <= c]
        sol = integrate.solve_ivp(
            lambda s, z, v=v: 1.3 * z * (1 - z) + v * np.sin(3.0 * s) ** 2,
            (a, c),
            y,
            t_eval=sorted({*ts, c}),
            rtol=1e-12,
            atol=1e-14,
            method="DOP853",
        )
        for x, z in zip(ts, sol.y[0], strict=False):
            ref[x] = float(z)
        y = [float(sol.y[0, -1])]
    expected = torch.tensor([[ref[float(x)]] for x in t], dtype=torch.float64)
    # Both solvers at tight tolerances: agreement to ~1e-9.
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-8)


def test_boluses_jump_the_state_exactly() -> None:
    bol = Boluses(torch.tensor([[0.5, 1.5], [1.0, NAN]], dtype=torch.float64), torch.tensor([[2.0, 1.0], [3.0, NAN]]))
    y0 = torch.ones(2, 1, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    k = 0.7
    ys = physnode.odeint(lambda t, y: -k * y, y0, t, boluses=bol.to(dtype=torch.float64), rtol=1e-11, atol=1e-13)

    def exact(b: int, x: float) -> float:
        y, s = 1.0, 0.0
        for tb, a in ((0.5, 2.0), (1.5, 1.0)) if b == 0 else ((1.0, 3.0),):
            if tb <= x:
                y = y * np.exp(-k * (tb - s)) + a
                s = tb
        return y * np.exp(-k * (x - s))

    ref = torch.tensor([[[exact(b, float(x))] for x in t] for b in range(2)], dtype=torch.float64)
    # Tight tolerances: 1e-9 leaves the global error of the adaptive solve.
    torch.testing.assert_close(ys, ref, rtol=0, atol=1e-9)


def test_input_errors_say_what_to_change() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Inputs(torch.tensor([0.0, 1.0, 1.0]), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="NaN may only pad the end"):
        Inputs(torch.tensor([[0.0, NAN, 1.0]]), torch.zeros(1, 3, 1))
    with pytest.raises(ValueError, match="unknown interpolation kind"):
        Inputs(torch.tensor([0.0, 1.0]), torch.zeros(2, 1), "spline")
    with pytest.raises(ValueError, match=r"values must have shape \(K, C\)"):
        Inputs(torch.tensor([0.0, 1.0]), torch.zeros(2))
    u = _inputs()
    with pytest.raises(ValueError, match="inputs hold 2 trajectories but the solve has 3"):
        physnode.odeint(lambda t, y, u: u, torch.zeros(3, 1, dtype=torch.float64), torch.tensor([0.0, 1.0]), inputs=u)
    with pytest.raises(ValueError, match="breakpoints must have shape"):
        physnode.odeint(lambda t, y: y, torch.zeros(2, 1), torch.tensor([0.0, 1.0]), breakpoints=torch.zeros(3, 2))


class _PK(torch.nn.Module):
    """One compartment with a learnable elimination rate, driven by an infusion rate ``u``."""

    def __init__(self) -> None:
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))

    def forward(self, t, y, u):
        return -self.k * y + u


def _pk_data(k: float = 0.5):
    from physnode.data import Trajectories

    times = torch.tensor([[0.0, 1.0, 3.0, NAN], [0.0, 0.5, 2.0, 4.0]], dtype=torch.float64)
    rates = torch.tensor([[0.0, 2.0, 0.0, NAN], [1.0, 0.0, 3.0, 0.0]], dtype=torch.float64).unsqueeze(-1)
    u = Inputs(times, rates, "constant", names=["rate"], units=["mg/h"])
    t = torch.linspace(0.0, 6.0, 13, dtype=torch.float64)
    truth = _PK()
    with torch.no_grad():
        truth.k.fill_(k)
        ys = physnode.odeint(truth, torch.zeros(2, 1, dtype=torch.float64), t, inputs=u, rtol=1e-10, atol=1e-12)
    meta = [{"initial_state": [0.0]}, {"initial_state": [0.0]}]
    return Trajectories(t, ys, channels=["c"], metadata=meta, inputs=u), u, t


def test_forecast_uses_the_data_inputs_and_a_counterfactual_plan() -> None:
    data, _, t = _pk_data()
    model = _PK()
    with torch.no_grad():
        model.k.fill_(0.5)
    given = physnode.forecast(model, data, t, rtol=1e-10, atol=1e-12)
    # The data's own plan: the forecast reproduces the data (same model, same inputs, same tolerance).
    torch.testing.assert_close(given.values, data.values, rtol=0, atol=1e-9)
    assert given.inputs is not None and given.inputs.same(data.inputs)
    # A counterfactual plan for the same patients: no infusion at all leaves the state at zero.
    none = Inputs(torch.tensor([0.0], dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))
    counterfactual = physnode.forecast(model, data, t, inputs=none)
    assert float(counterfactual.values.abs().max()) == 0.0
    assert float(given.values.abs().max()) > 0.5
    # A model without inputs (func(t, y)) forecasts the same data, its inputs unused.
    plain = physnode.forecast(lambda t, y: -0.5 * y, data, t)
    assert plain.inputs is None and float(plain.values.abs().max()) == 0.0


@pytest.mark.slow  # a short Gauss-Newton fit (about 3 s on one core)
def test_fit_passes_the_data_inputs_to_the_model() -> None:
    data, _, _ = _pk_data(k=0.5)
    model = _PK()
    physnode.fit(
        model, data, epochs=6, optimizer="gauss-newton", progress=False, rtol=1e-9, atol=1e-11, uncertainty=False
    )
    # Noise-free data from k = 0.5: Gauss-Newton converges in a few iterations (to the solver tolerance); a model
    # that did not receive the infusion would see a zero state and no signal at all.
    k = float(model.k.detach())
    assert abs(k - 0.5) < 1e-5, k


def test_from_infusions_sums_running_rates() -> None:
    u = Inputs.from_infusions(
        [[(1.0, 3.0, 2.0), (2.0, 4.0, 0.5), (0.5, 1.5, 7.0, 1)], []],
        names=["drug", "fluid"],
        units=["mg/h", "ml/h"],
    )
    assert u.batch == 2 and u.channels == 2
    at = torch.tensor([[0.2, 1.2, 2.5, 3.5, 5.0], [0.2, 1.2, 2.5, 3.5, 5.0]], dtype=torch.float64)
    got = torch.stack([u(at[:, k]) for k in range(at.shape[1])], dim=1)
    # Row 0: before 0.5 nothing; 1.2: drug 2 + fluid 7; 2.5: 2 + 0.5; 3.5: 0.5; 5: nothing. Row 1: no infusion.
    assert got[0, :, 0].tolist() == [0.0, 2.0, 2.5, 0.5, 0.0]
    assert got[0, :, 1].tolist() == [0.0, 7.0, 0.0, 0.0, 0.0]
    assert float(got[1].abs().max()) == 0.0
    with pytest.raises(ValueError, match="needs t0 = 0.0 <= start < end"):
        Inputs.from_infusions([[(2.0, 1.0, 1.0)]])


@pytest.mark.parametrize("method", ["dopri5", "rk4", "alf", "reversible_heun", "kvaerno3"])
def test_sides_backward_in_time_and_in_float32(method: str) -> None:
    """Integrating backwards the steps approach each knot from the right (left limits at a step's start); in
    float32 the sides come from the step, not from the rounded stage times."""
    u = Inputs(torch.tensor([0.0, 0.3, 0.7, 1.3], dtype=torch.float64), torch.tensor([[1.0], [-2.0], [3.0], [0.5]]))
    integral = 1.0 * 0.3 - 2.0 * 0.4 + 3.0 * 0.6 + 0.5 * 0.7  # ∫_0^2 u
    kw = {} if SOLVERS.build(method).adaptive else {"step_size": 0.17}
    back = physnode.odeint(
        lambda t, y, u: u,
        torch.zeros(1, dtype=torch.float64),
        torch.tensor([2.0, 0.0], dtype=torch.float64),
        inputs=u,
        **kw,
    )
    # Exact up to round-off of a few additions.
    assert abs(float(back[-1, 0]) + integral) < 1e-13
    f32 = physnode.odeint(
        lambda t, y, u: u, torch.zeros(1), torch.tensor([0.0, 2.0]), inputs=u.to(dtype=torch.float32), **kw
    )
    # float32 round-off of a few dozen additions of O(1) terms (eps = 1.2e-7).
    assert abs(float(f32[-1, 0]) - integral) < 2e-6


def test_boluses_refuse_dense_output() -> None:
    bol = Boluses(torch.tensor([0.5]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="dense=True is not supported with boluses"):
        physnode.solve(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]), boluses=bol, dense=True)


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ((1.0, 2.0), r"must be \(start, end, rate\[, channel\]\)"),
        ((2.0, 1.0, 5.0), "start"),
        ((1.0, 2.0, float("nan")), "non-finite"),
        ((1.0, float("inf"), 5.0), "non-finite"),
        ((1.0, 2.0, 5.0, 3), r"channel 3 not in \[0, 1\)"),
    ],
)
def test_both_infusion_readers_share_one_parser(item: tuple, match: str) -> None:
    """Inputs.from_infusions and TreatmentSchedule.from_infusions reject the same bad rows with the same causes."""
    from physnode.latent import TreatmentSchedule

    with pytest.raises(ValueError, match="trajectory 0") as info:
        Inputs.from_infusions([[item]], names=["u"])
    assert re.search(match, str(info.value)), info.value
    with pytest.raises(ValueError, match="patient 0") as info:
        TreatmentSchedule.from_infusions([[item]])
    assert re.search(match, str(info.value)), info.value


def test_both_infusion_readers_give_the_same_series() -> None:
    from physnode.latent import TreatmentSchedule

    rows = [[(0.5, 2.0, 3.0), (1.0, 1.5, 2.0)], []]
    a = Inputs.from_infusions(rows)
    b = TreatmentSchedule.from_infusions(rows).to_inputs(0.0)
    t = torch.tensor([0.0, 0.7, 1.2, 1.7, 2.5], dtype=torch.float64)
    for traj in range(2):
        # piecewise constant levels copied from the same rows: exact sums of the given rates
        ua = torch.stack([a.values[traj, int((a.times[traj] <= x).nonzero().max())] for x in t])
        ub = torch.stack([b.values[traj, int((b.times[traj] <= x).nonzero().max())] for x in t])
        assert torch.equal(ua, ub), (traj, ua, ub)
