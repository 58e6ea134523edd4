"""Empirical convergence order of every solver (fixed steps) against a matrix exponential, and the order of
every adaptive solver's local error estimate.

The solvers come from ``registries.ALL_SOLVERS``, so a new tableau (of any order) gets both tests; the step
sizes are chosen from the observed errors, not from a table keyed by order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from registries import ADAPTIVE, ALL_SOLVERS

import physnode
from physnode.solvers import SOLVERS

# A damped, coupled linear oscillator y = [q, p] that is separable (dq/dt depends on p only, dp/dt on q only),
# so the symplectic splitting methods take it too; its exact flow is the matrix exponential.
A = torch.tensor(
    [
        [0.0, 0.0, 1.0, 0.2],
        [0.0, 0.0, 0.2, 1.5],
        [-1.0, -0.3, 0.0, 0.0],
        [-0.3, -2.0, 0.0, 0.0],
    ],
    dtype=torch.float64,
)
Y0 = torch.tensor([1.0, 0.5, -0.2, 0.3], dtype=torch.float64)

#: Errors below this are too close to float64 round-off (about 1e-14 after up to 2^10 steps) to fit a slope.
ROUND_OFF_FLOOR = 1e-12
#: Largest number of halvings of the unit step tried (2^8 steps at most).
MAX_HALVINGS = 8


def _rhs(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return y @ A.T


def _fixed_step_options(name: str) -> dict | None:
    return {"adaptive": False} if "adaptive" in SOLVERS.accepted_options(name) else None


def _error(name: str, h: float) -> float:
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ys = physnode.odeint(_rhs, Y0, t, method=name, step_size=h, options=_fixed_step_options(name))
    return float((ys[-1] - torch.linalg.matrix_exp(A) @ Y0).abs().max())


def _asymptotic_errors(name: str) -> tuple[list[float], list[float]]:
    """The three smallest steps ``h = 2^-k`` (``k <= MAX_HALVINGS``) whose errors stay above
    :data:`ROUND_OFF_FLOOR`, and their errors.

    The smallest steps that round-off does not yet disturb are the deepest into the asymptotic regime
    ``err ~ C h^p`` whatever the order ``p`` and the error constant ``C`` (Tsitouras' pair, for one, has a tiny
    leading constant and reaches its asymptotic regime only at small ``h``), so a method of any order needs no
    hand-picked step sizes. Halving stops at the first error below the floor, so high orders stay cheap.
    """
    hs: list[float] = []
    errs: list[float] = []
    for k in range(MAX_HALVINGS + 1):
        h = 2.0**-k
        err = _error(name, h)
        if not math.isfinite(err):
            continue  # unstable at this step size: not yet in the asymptotic regime
        if err <= ROUND_OFF_FLOOR:
            break
        hs.append(h)
        errs.append(err)
    assert len(hs) >= 3, f"{name}: fewer than three step sizes 2^-k give errors above {ROUND_OFF_FLOOR:g}: {errs}"
    return hs[-3:], errs[-3:]


def _skip_if_incompatible(name: str) -> None:
    try:
        SOLVERS.build(name).check_compatible(_rhs)
    except ValueError as exc:
        pytest.skip(f"{name} does not take the test system: {exc}")


@pytest.mark.parametrize("name", ALL_SOLVERS, ids=ALL_SOLVERS)
def test_convergence_order(name: str) -> None:
    _skip_if_incompatible(name)
    order = SOLVERS.build(name, _fixed_step_options(name)).order
    hs, errs = _asymptotic_errors(name)
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - order) <= 0.3, f"{name}: observed order {slope:.2f}, expected {order} (h {hs}, errors {errs})"


@pytest.mark.parametrize("name", ADAPTIVE, ids=ADAPTIVE)
def test_embedded_error_estimate_order(name: str) -> None:
    """The error estimate is the local error of the lower-order solution: O(h^error_order)."""
    _skip_if_incompatible(name)
    solver = SOLVERS.build(name)
    y0 = Y0[None]
    hs = [0.2, 0.1, 0.05]
    norms = []
    for h in hs:
        t0, hh = torch.zeros(1, dtype=torch.float64), torch.tensor([h], dtype=torch.float64)
        state = solver.init(_rhs, t0, y0, hh)
        _, err = solver.step(_rhs, t0, hh, state)
        assert err is not None, f"{name} is adaptive but returned no error estimate"
        norms.append(float(err.abs().max()))
    slope = np.polyfit(np.log(hs), np.log(norms), 1)[0]
    expected = solver.error_order
    assert abs(slope - expected) <= 0.3, f"{name}: error-estimate order {slope:.2f}, expected {expected}"
