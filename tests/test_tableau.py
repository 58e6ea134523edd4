"""Tableaux check themselves; every registered RK tableau satisfies its order conditions up to order 3."""

from __future__ import annotations

import math

import pytest
from registries import RK

from physnode.solvers import SOLVERS, Tableau


@pytest.mark.parametrize("name", RK, ids=RK)
def test_order_conditions(name: str) -> None:
    tab = SOLVERS.cls(name).tableau
    b, c, a = tab.b, tab.c, tab.a
    assert math.isclose(math.fsum(b), 1.0, abs_tol=1e-13)
    if tab.order >= 2:
        assert math.isclose(math.fsum(bi * ci for bi, ci in zip(b, c, strict=True)), 0.5, abs_tol=1e-13)
    if tab.order >= 3:
        assert math.isclose(math.fsum(bi * ci**2 for bi, ci in zip(b, c, strict=True)), 1 / 3, abs_tol=1e-13)
        bac = math.fsum(b[i] * a[i][j] * c[j] for i in range(len(b)) for j in range(i))
        assert math.isclose(bac, 1 / 6, abs_tol=1e-13)
    if tab.b_err is not None:
        b_hat = [bi - ei for bi, ei in zip(b, tab.b_err, strict=True)]
        assert math.isclose(math.fsum(b_hat), 1.0, abs_tol=1e-13)


def test_bad_row_sum_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"row 1 of a sums to 0.4, expected c\[1\]=0.5"):
        Tableau(name="bad", c=(0.0, 0.5), a=((), (0.4,)), b=(0.0, 1.0), order=2)


def test_bad_weights_are_rejected() -> None:
    with pytest.raises(ValueError, match="b sums to"):
        Tableau(name="bad", c=(0.0, 0.5), a=((), (0.5,)), b=(0.1, 1.0), order=2)
    with pytest.raises(ValueError, match="error weights sum to"):
        Tableau(name="bad", c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5), order=2, b_err=(0.1, 0.1), embedded_order=1)
    with pytest.raises(ValueError, match="must hold 1 coefficients"):
        Tableau(name="bad", c=(0.0, 1.0), a=((), (0.5, 0.5)), b=(0.5, 0.5), order=2)
    with pytest.raises(ValueError, match="given together"):
        Tableau(name="bad", c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5), order=2, b_err=(-0.5, 0.5))


def test_fsal_detection() -> None:
    assert SOLVERS.cls("dopri5").tableau.fsal
    assert SOLVERS.cls("bosh3").tableau.fsal
    assert SOLVERS.cls("tsit5").tableau.fsal
    assert not SOLVERS.cls("rk4").tableau.fsal
