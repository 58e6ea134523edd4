"""Agreement with scipy's DOP853 at rtol 1e-12 on classic problems, for every adaptive method."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import physnode
from physnode.solvers import SOLVERS, ExplicitRK

ADAPTIVE = [n for n in SOLVERS.names() if issubclass(SOLVERS.cls(n), ExplicitRK) and SOLVERS.cls(n).tableau.adaptive]
# Requested tolerance per method: low-order pairs need ~rtol^(-1/p) steps, so they are checked looser.
RTOL = {"heun_euler": 1e-5, "bosh3": 1e-6}
# The global error accumulates local errors controlled to rtol over the whole orbit; measured worst cases
# (Kepler, two periods, e = 0.5) are ~25x rtol * max|y| for the 5th/8th-order pairs and ~67x for heun_euler, so
# 100x leaves a margin without hiding a wrong solver (a wrong coefficient gives errors of order h^p, many
# orders of magnitude larger).
MULTIPLE = 100.0


def _linear(t, y):
    A = np.array([[-0.5, 2.0], [-2.0, -0.5]])
    return A @ y


def _oscillator(t, y):
    return np.array([y[1], -4.0 * y[0]])


def _kepler(t, y):
    r3 = (y[0] ** 2 + y[1] ** 2) ** 1.5
    return np.array([y[2], y[3], -y[0] / r3, -y[1] / r3])


def _lotka(t, y):
    return np.array([1.5 * y[0] - y[0] * y[1], -3.0 * y[1] + y[0] * y[1]])


def _torch_rhs(name):
    if name == "linear":
        A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64)
        return lambda t, y: y @ A.T
    if name == "oscillator":
        return lambda t, y: torch.stack([y[..., 1], -4.0 * y[..., 0]], -1)
    if name == "kepler":

        def kep(t, y):
            r3 = (y[..., 0] ** 2 + y[..., 1] ** 2) ** 1.5
            return torch.stack([y[..., 2], y[..., 3], -y[..., 0] / r3, -y[..., 1] / r3], -1)

        return kep
    return lambda t, y: torch.stack(
        [1.5 * y[..., 0] - y[..., 0] * y[..., 1], -3.0 * y[..., 1] + y[..., 0] * y[..., 1]], -1
    )


e = 0.5
PROBLEMS = {
    "linear": (_linear, [1.0, 0.0], 5.0),
    "oscillator": (_oscillator, [1.0, 0.0], 10.0),
    # Kepler orbit of eccentricity 0.5 started at pericentre; period 2*pi (semi-major axis 1, GM = 1).
    "kepler": (_kepler, [1 - e, 0.0, 0.0, np.sqrt((1 + e) / (1 - e))], 2 * np.pi * 2),
    "lotka_volterra": (_lotka, [1.0, 1.0], 10.0),
}


@pytest.mark.parametrize("method", ADAPTIVE, ids=ADAPTIVE)
@pytest.mark.parametrize("problem", list(PROBLEMS), ids=list(PROBLEMS))
def test_matches_scipy_dop853(method: str, problem: str) -> None:
    f_np, y0, t_end = PROBLEMS[problem]
    t_eval = np.linspace(0.0, t_end, 21)
    ref = solve_ivp(f_np, (0.0, t_end), y0, method="DOP853", rtol=1e-12, atol=1e-14, t_eval=t_eval).y.T
    rtol = RTOL.get(method, 1e-8)
    ys = physnode.odeint(
        _torch_rhs(problem),
        torch.tensor(y0, dtype=torch.float64),
        torch.as_tensor(t_eval),
        method=method,
        rtol=rtol,
        atol=rtol * 1e-2,
    ).numpy()
    ratio = np.max(np.abs(ys - ref)) / (rtol * np.max(np.abs(ref)))
    assert ratio < MULTIPLE, f"error is {ratio:.1f} x rtol * max|y|"


def test_float32_solve_close_to_float64() -> None:
    f = _torch_rhs("kepler")
    y0 = torch.tensor(PROBLEMS["kepler"][1], dtype=torch.float64)
    t = torch.linspace(0, 6.0, 7, dtype=torch.float64)
    y64 = physnode.odeint(f, y0, t, rtol=1e-6, atol=1e-8)
    y32 = physnode.odeint(f, y0.float(), t.float(), rtol=1e-6, atol=1e-8)
    assert y32.dtype == torch.float32
    assert torch.allclose(y32.double(), y64, atol=1e-4)
