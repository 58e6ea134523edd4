"""Events: location on the step interpolant, terminal and non-terminal, per trajectory, and event times
differentiated by the implicit-function theorem (checked against closed forms and finite differences)."""

from __future__ import annotations

import math

import pytest
import torch
from registries import ALL_GRADIENTS, solver_for

import physnode
from physnode.events import hermite, illinois, odeint_event, sample_points

F64 = torch.float64
G = 9.81


def ball(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Height and velocity of a ball under gravity (m, m/s)."""
    return torch.stack([y[..., 1], torch.full_like(y[..., 1], -G)], dim=-1)


def height(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return y[..., 0]


def bounce_times(e: torch.Tensor, n: int, h0: float = 1.0, **kw) -> list[torch.Tensor]:
    """The first ``n`` bounce times of a ball dropped from ``h0``, restarted after each bounce with its velocity
    reversed and scaled by the restitution coefficient ``e``."""
    y = torch.tensor([[h0, 0.0]], dtype=F64)
    t = torch.zeros(1, dtype=F64)
    times = []
    for _ in range(n):
        ev = odeint_event(ball, y, t, height, t_end=t.detach() + 10.0, direction=-1, rtol=1e-10, atol=1e-12, **kw)
        times.append(ev.t_events[:, 0])
        t = ev.t_final
        y = ev.y_final * torch.stack([torch.ones_like(e), -e])
    return times


def bounce_times_exact(e: float, n: int, h0: float = 1.0) -> list[float]:
    """``t_1 = sqrt(2 h0 / g)``, then flights of ``2 e^k v_1 / g`` with ``v_1 = g t_1``."""
    t1 = math.sqrt(2 * h0 / G)
    out = [t1]
    for k in range(1, n):
        out.append(out[-1] + 2 * e**k * t1)
    return out


def test_bouncing_ball_times_and_restitution_gradient() -> None:
    e = torch.tensor(0.8, dtype=F64, requires_grad=True)
    times = bounce_times(e, 3)
    exact = bounce_times_exact(0.8, 3)
    for got, want in zip(times, exact, strict=True):
        # Free fall is quadratic in t, so the Hermite interpolant is exact; the solve's error at rtol 1e-10 rules.
        assert abs(float(got.detach()) - want) < 1e-9
    (grad,) = torch.autograd.grad(times[2].sum(), e)
    t1 = exact[0]
    assert abs(float(grad) - (2 * t1 + 4 * 0.8 * t1)) < 1e-8  # d/de of t1 + 2 e t1 + 2 e^2 t1


def test_fit_restitution_from_observed_bounce_times() -> None:
    """Observed bounce times of a ball with e = 0.75; Gauss–Newton from e = 0.5 recovers e."""
    observed = torch.tensor(bounce_times_exact(0.75, 3), dtype=F64)
    e = torch.tensor(0.5, dtype=F64, requires_grad=True)
    for _ in range(4):
        r = torch.cat(bounce_times(e, 3)) - observed
        jac = torch.stack([torch.autograd.grad(ri, e, retain_graph=True)[0] for ri in r])
        with torch.no_grad():
            e -= (jac @ r.detach()) / (jac @ jac)
    assert abs(float(e.detach()) - 0.75) < 1e-7  # Gauss–Newton converges quadratically on this zero-residual problem


def oscillator(omega: torch.Tensor):
    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack([y[..., 1], -(omega**2) * y[..., 0]], dim=-1)

    return f


def test_event_time_gradient_vs_closed_form_and_finite_differences() -> None:
    """y = cos(ω t) reaches c at t* = arccos(c) / ω: dt*/dω, dt*/dc (a parameter of g only) and dt*/dy0."""
    omega = torch.tensor([1.3, 0.7], dtype=F64, requires_grad=True)
    c = torch.tensor(0.3, dtype=F64, requires_grad=True)
    y0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64, requires_grad=True)
    ev = odeint_event(
        oscillator(omega), y0, 0.0, lambda t, y: y[..., 0] - c, t_end=20.0, rtol=1e-10, atol=1e-12, params=[omega]
    )
    want = torch.arccos(c) / omega
    torch.testing.assert_close(ev.t_events[:, 0], want.detach(), rtol=1e-9, atol=0)  # solve tolerance 1e-10
    g_omega, g_c, g_y0 = torch.autograd.grad(ev.t_events[:, 0].sum(), (omega, c, y0))
    torch.testing.assert_close(g_omega, -want.detach() / omega.detach(), rtol=1e-8, atol=0)
    torch.testing.assert_close(g_c, (-1 / (omega * math.sqrt(1 - 0.3**2))).sum().detach(), rtol=1e-8, atol=0)
    # dt*/dy0 by central differences of the located time (a smooth function of y0 away from tangency).
    eps = 1e-6
    for i in range(2):
        dy = torch.zeros(2, 2, dtype=F64)
        dy[:, i] = eps
        with torch.no_grad():
            tp = odeint_event(
                oscillator(omega), y0 + dy, 0.0, lambda t, y: y[..., 0] - c, t_end=20.0, rtol=1e-12, atol=1e-14
            ).t_events[:, 0]
            tm = odeint_event(
                oscillator(omega), y0 - dy, 0.0, lambda t, y: y[..., 0] - c, t_end=20.0, rtol=1e-12, atol=1e-14
            ).t_events[:, 0]
        torch.testing.assert_close(g_y0[:, i], (tp - tm) / (2 * eps), rtol=1e-5, atol=1e-6)  # FD error ~1e-7


def _low_order(grad: str) -> bool:
    return physnode.solvers.SOLVERS.build(solver_for(grad)).order < 4


@pytest.mark.parametrize(
    "grad", [pytest.param(g, marks=pytest.mark.slow) if _low_order(g) else g for g in ALL_GRADIENTS], ids=ALL_GRADIENTS
)
def test_event_gradient_with_every_method(grad: str) -> None:
    """The differentiable solve uses the chosen gradient method; the event time's gradient follows."""
    method = solver_for(grad)
    omega = torch.tensor(1.3, dtype=F64, requires_grad=True)
    order = physnode.solvers.SOLVERS.build(method).order
    tol = dict(rtol=1e-10, atol=1e-12) if order >= 4 else dict(rtol=1e-6, atol=1e-8)
    ev = odeint_event(
        oscillator(omega),
        torch.tensor([1.0, 0.0], dtype=F64),
        0.0,
        lambda t, y: y[0],
        t_end=5.0,
        method=method,
        grad=grad,
        params=[omega],
        **tol,
    )
    (g,) = torch.autograd.grad(ev.t_events[0], omega)
    exact = -math.pi / (2 * 1.3**2)
    assert abs(float(g) - exact) < (1e-7 if order >= 4 else 1e-3)  # low-order solvers at looser tolerances


def test_non_terminal_events_per_trajectory() -> None:
    """Every zero of cos(ω t) on [0, 10], each trajectory its own count; the solve goes on to t_end."""
    omega = torch.tensor([1.0, 2.5], dtype=F64)
    y0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64)
    ev = odeint_event(
        oscillator(omega), y0, 0.0, lambda t, y: y[..., 0], t_end=10.0, terminal=False, rtol=1e-8, atol=1e-10
    )
    for b, w in enumerate([1.0, 2.5]):
        zeros = [(2 * k + 1) * math.pi / (2 * w) for k in range(20) if (2 * k + 1) * math.pi / (2 * w) < 10.0]
        assert int(ev.n_events[b]) == len(zeros)
        torch.testing.assert_close(ev.t_events[b, : len(zeros)], torch.tensor(zeros, dtype=F64), rtol=1e-6, atol=0)
        assert torch.isnan(ev.t_events[b, len(zeros) :]).all()
    want_final = torch.cos(10.0 * omega)
    torch.testing.assert_close(ev.y_final[:, 0], want_final, rtol=1e-5, atol=1e-6)  # went on to t_end
    up = odeint_event(
        oscillator(omega),
        y0,
        0.0,
        lambda t, y: y[..., 0],
        t_end=10.0,
        terminal=False,
        direction=1,
        rtol=1e-8,
        atol=1e-10,
    )
    assert (up.n_events == torch.tensor([1, 4])).all()  # only the upward crossings: 3π/2; 3π/2/2.5 + k 2π/2.5
    torch.testing.assert_close(up.t_events[0, 0], torch.tensor(1.5 * math.pi, dtype=F64), rtol=1e-6, atol=0)


def test_terminal_event_with_and_without_an_event_and_t0_gradient() -> None:
    """One trajectory hits the event, the other does not before t_end; t0 is differentiable."""
    y0 = torch.tensor([[1.0, 0.0], [50.0, 0.0]], dtype=F64)
    t0 = torch.tensor(0.5, dtype=F64, requires_grad=True)
    ev = odeint_event(ball, y0, t0, height, t_end=2.0, rtol=1e-10, atol=1e-12)
    assert ev.n_events.tolist() == [1, 0]
    t_hit = 0.5 + math.sqrt(2 / G)
    assert abs(float(ev.t_final[0].detach()) - t_hit) < 1e-9
    assert math.isnan(float(ev.t_events[1, 0].detach())) and abs(float(ev.t_final[1].detach()) - 2.0) < 1e-15
    torch.testing.assert_close(ev.y_final[1].detach(), torch.tensor([50 - G * 1.5**2 / 2, -G * 1.5], dtype=F64))
    (g,) = torch.autograd.grad(ev.t_events[0, 0], t0)
    assert abs(float(g) - 1.0) < 1e-8  # the fall takes as long whenever it starts


def test_unbatched_and_backwards() -> None:
    """An unbatched (D,) state with 0-d event values, integrating backwards in time."""
    ev = odeint_event(
        ball, torch.tensor([0.0, 0.0], dtype=F64), 0.0, height, t_end=-5.0, rtol=1e-10, atol=1e-12, terminal=True
    )
    assert ev.t_events.shape == (1,) and ev.y_events.shape == (1, 2)
    # Backwards from rest at height 0, y(t) = -G t^2 / 2 < 0 for t != 0: no crossing, no event.
    assert int(ev.n_events) == 0
    up = odeint_event(
        ball,
        torch.tensor([0.0, -5.0], dtype=F64),
        0.0,
        lambda t, y: y[0] - 1.0,
        t_end=-5.0,
        rtol=1e-10,
        atol=1e-12,
        max_step=0.1,  # free fall is solved exactly in huge steps, whose ends may both lie below the event
    )
    t_back = (-5.0 + math.sqrt(25.0 - 2 * G * 1.0)) / G  # y(t) = -5 t - G t^2 / 2 = 1, the root with t < 0
    assert abs(float(up.t_events[0]) - t_back) < 1e-9


def test_root_finder_and_interpolant() -> None:
    """Illinois on cubic and transcendental functions; the Hermite interpolant reproduces cubics."""
    a = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    b = torch.tensor([2.0, 3.0, 2.0], dtype=F64)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[0] ** 3 - 2, torch.cos(x[1]), torch.log(x[2]) - 0.5])

    root = illinois(fn, a, b, fn(a), fn(b), torch.full((3,), 1e-15, dtype=F64), 60)
    want = torch.tensor([2 ** (1 / 3), math.pi / 2, math.exp(0.5)], dtype=F64)
    torch.testing.assert_close(root, want, rtol=1e-13, atol=0)  # converged to a few ulps
    theta = torch.tensor([0.3], dtype=F64)
    h = torch.tensor([2.0], dtype=F64)
    p = lambda t: t**3 - t  # noqa: E731
    dp = lambda t: 3 * t**2 - 1  # noqa: E731
    t0, t1 = torch.tensor([[0.5]], dtype=F64), torch.tensor([[2.5]], dtype=F64)
    y = hermite(theta, h, p(t0), dp(t0), p(t1), dp(t1))
    torch.testing.assert_close(y, p(t0 + 0.3 * 2.0), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        (dict(event_fn=3), TypeError, r"event_fn must be callable"),
        (dict(direction=2), ValueError, r"direction must be -1, 0 or \+1"),
        (dict(t_end=0.0), ValueError, r"t_end must differ from t0"),
        (dict(max_events=0), ValueError, r"max_events and max_iter must be positive"),
        (dict(event_fn=lambda t, y: y), ValueError, r"event_fn\(t, y\) must return one value per trajectory"),
        (dict(samples=-1), ValueError, r"samples must be a non-negative integer .* got -1"),
        (dict(interpolant="cubic"), ValueError, r"interpolant must be 'auto' .* or 'hermite', got 'cubic'"),
    ],
    ids=["not-callable", "direction", "empty-interval", "max-events", "event-shape", "samples", "interpolant"],
)
def test_bad_arguments(kw: dict, error: type, match: str) -> None:
    args = dict(event_fn=height, t_end=1.0)
    args.update(kw)
    event_fn = args.pop("event_fn")
    with pytest.raises(error, match=match):
        odeint_event(ball, torch.tensor([[1.0, 0.0]], dtype=F64), 0.0, event_fn, **args)


# ------------------------------------------------------------------------------ location on the continuous extension
def unit_oscillator(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """y'' = -y: y = cos t from y(0) = 1, y'(0) = 0."""
    return torch.stack([y[..., 1], -y[..., 0]], dim=-1)


LEVEL = 0.999


def near_top(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """cos t - 0.999: a pair of roots 2 acos(0.999) = 0.089 apart around every maximum of cos t."""
    return y[..., 0] - LEVEL


def _pair_events(**kw) -> tuple[int, float]:
    """Events of ``near_top`` on [0, 10] (three: acos(0.999), then 2π ∓ acos(0.999)): count and largest error."""
    y0 = torch.tensor([[1.0, 0.0]], dtype=F64)
    ev = odeint_event(unit_oscillator, y0, 0.0, near_top, t_end=10.0, terminal=False, **kw)
    a = math.acos(LEVEL)
    exact = torch.tensor([a, 2 * math.pi - a, 2 * math.pi + a], dtype=F64)
    n = int(ev.n_events[0])
    err = float((ev.t_events[0, :3].detach() - exact).abs().max()) if n == 3 else math.inf
    return n, err


@pytest.mark.parametrize(("method", "rtol"), [("dopri8", 1e-8), ("dopri5", 1e-4)], ids=["dopri8", "dopri5"])
def test_two_sign_changes_within_one_step_are_both_found(method: str, rtol: float) -> None:
    kw = dict(method=method, rtol=rtol, atol=rtol / 100)
    # The pair around t = 2π falls within one step: comparing the step's ends only (samples=0, as scipy and
    # torchdiffeq do) sees no sign change there and finds the first event only.
    assert _pair_events(samples=0, **kw)[0] == 1
    n, err = _pair_events(**kw)  # default: 4 interior sample points per step on the interpolant
    assert n == 3
    # Event times to the solve's accuracy (measured 2e-11 for dopri8 at rtol 1e-8, 7e-4 for dopri5 at 1e-4).
    assert err < 1e3 * rtol


def test_events_on_the_seventh_order_extension_beat_hermite() -> None:
    """dopri8: located on its seventh-order extension the event times are ~1e4 times closer to the exact ones than
    on the fourth-order Hermite interpolant (measured 2e-11 vs 3e-7 at rtol 1e-8; the final Newton step on the
    solved state removes the interpolant's error only to first order)."""
    kw = dict(method="dopri8", rtol=1e-8, atol=1e-10)
    n_dense, err_dense = _pair_events(**kw)
    n_hermite, err_hermite = _pair_events(interpolant="hermite", **kw)
    assert n_dense == n_hermite == 3
    assert err_dense < 1e-9 and err_dense < err_hermite / 100


def test_sample_points_are_interior_and_increasing() -> None:
    theta = sample_points(4)
    assert theta.shape == (4,) and 0.0 < theta[0] and theta[-1] < 1.0 and (theta[1:] > theta[:-1]).all()
    # Chebyshev points of the second kind: symmetric about the middle of the step.
    assert abs(float(theta[0] + theta[-1]) - 1.0) < 1e-15
    assert sample_points(0).shape == (0,)
