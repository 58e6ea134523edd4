"""dopri5's ``error_estimate`` option: the embedded solution of Dormand & Prince (default) or torchdiffeq's."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from systems import ThreeBody, three_body_y0

import physnode
from physnode.solvers.dopri5 import TABLEAU, TABLEAU_TORCHDIFFEQ


def test_torchdiffeq_error_weights_are_two_thirds_of_dormand_prince():
    # Exact rational identity of the published coefficients (checked in fractions, not floats): b - b_hat of
    # torchdiffeq's embedded solution is 2/3 of Dormand & Prince's.
    b = (Fraction(35, 384), 0, Fraction(500, 1113), Fraction(125, 192), Fraction(-2187, 6784), Fraction(11, 84), 0)
    dp = (Fraction(5179, 57600), 0, Fraction(7571, 16695), Fraction(393, 640), Fraction(-92097, 339200))
    dp += (Fraction(187, 2100), Fraction(1, 40))
    td = (Fraction(1951, 21600), 0, Fraction(22642, 50085), Fraction(451, 720), Fraction(-12231, 42400))
    td += (Fraction(649, 6300), Fraction(1, 60))
    assert all(bi - ti == Fraction(2, 3) * (bi - di) for bi, di, ti in zip(b, dp, td, strict=True))
    # The tableaux hold those weights (floats of the fractions: 1e-15 absolute).
    assert TABLEAU.b_err is not None and TABLEAU_TORCHDIFFEQ.b_err is not None
    for e_dp, e_td in zip(TABLEAU.b_err, TABLEAU_TORCHDIFFEQ.b_err, strict=True):
        assert abs(e_td - 2 / 3 * e_dp) <= 1e-15
    assert TABLEAU_TORCHDIFFEQ.b == TABLEAU.b and TABLEAU_TORCHDIFFEQ.dense == TABLEAU.dense


def test_torchdiffeq_estimate_takes_the_default_steps_at_one_and_a_half_times_the_tolerance():
    # err / (atol + rtol |y|) with 2/3 of the error equals the default's norm at 1.5 rtol, 1.5 atol: the same
    # accept/reject decisions and steps, so the same solution up to round-off in the norm (1e-12 relative).
    y0 = three_body_y0(torch.float64)
    t = torch.linspace(0.0, 0.5, 6, dtype=torch.float64)
    with torch.no_grad():
        td = physnode.solve(ThreeBody(), y0, t, rtol=1e-6, atol=1e-6, options={"error_estimate": "torchdiffeq"})
        dp = physnode.solve(ThreeBody(), y0, t, rtol=1.5e-6, atol=1.5e-6)
        dp_same_tol = physnode.solve(ThreeBody(), y0, t, rtol=1e-6, atol=1e-6)
    assert int(td.stats.n_accepted) == int(dp.stats.n_accepted)
    assert int(td.stats.n_rejected) == int(dp.stats.n_rejected)
    torch.testing.assert_close(td.ys, dp.ys, rtol=1e-12, atol=1e-12)
    # ... and not the default's steps at the same tolerance (the option reaches the solver).
    assert int(dp_same_tol.stats.nfe) > int(td.stats.nfe)


def test_unknown_error_estimate_is_refused():
    with pytest.raises(ValueError, match=r"error_estimate must be one of .*'dormand_prince'.*got 'hairer'"):
        physnode.solve(
            ThreeBody(),
            three_body_y0(torch.float64),
            torch.linspace(0.0, 0.1, 3, dtype=torch.float64),
            options={"error_estimate": "hairer"},
        )
