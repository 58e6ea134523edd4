"""Butcher tableaux held as data that check themselves."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

__all__ = ["Tableau"]

_TOL = 1e-12


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge–Kutta method as a Butcher tableau.

    Parameters
    ----------
    name
        Registry name of the method, e.g. ``"dopri5"``.
    c
        Stage times ``c_i`` (fractions of the step), length ``s``.
    a
        Strictly lower-triangular stage coefficients: ``a[i]`` holds ``a_i0 .. a_i(i-1)`` (row ``i`` has ``i``
        entries; row 0 is empty).
    b
        Weights of the propagated solution, length ``s``, summing to 1.
    order
        Classical order of the propagated solution.
    b_err
        Error weights ``b - b_hat`` of the embedded method (sum to 0), or ``None`` for a fixed-step method.
    embedded_order
        Order of the embedded solution ``b_hat``; required with ``b_err``.

    Raises
    ------
    ValueError
        When the coefficients are inconsistent (row sums of ``a`` differ from ``c``, ``b`` does not sum to
        one, error weights do not sum to zero, or lengths disagree).
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    b_err: tuple[float, ...] | None = None
    embedded_order: int | None = None
    fsal: bool = field(init=False)

    def __post_init__(self) -> None:
        s = len(self.c)
        if len(self.a) != s or len(self.b) != s:
            raise ValueError(
                f"tableau {self.name!r}: c, a and b must all have one entry per stage; got len(c)={s}, "
                f"len(a)={len(self.a)}, len(b)={len(self.b)}."
            )
        for i, row in enumerate(self.a):
            if len(row) != i:
                raise ValueError(
                    f"tableau {self.name!r}: row {i} of a must hold {i} coefficients (explicit method), got {len(row)}."
                )
            if abs(math.fsum(row) - self.c[i]) > _TOL * max(1.0, max((abs(x) for x in row), default=0)):
                raise ValueError(
                    f"tableau {self.name!r}: row {i} of a sums to {math.fsum(row)!r}, expected c[{i}]={self.c[i]!r}."
                )
        if abs(math.fsum(self.b) - 1.0) > _TOL * 10:
            raise ValueError(f"tableau {self.name!r}: b sums to {math.fsum(self.b)!r}, expected 1.")
        if (self.b_err is None) != (self.embedded_order is None):
            raise ValueError(f"tableau {self.name!r}: b_err and embedded_order must be given together.")
        if self.b_err is not None:
            if len(self.b_err) != s:
                raise ValueError(f"tableau {self.name!r}: b_err must have {s} entries, got {len(self.b_err)}.")
            scale = max(abs(x) for x in self.b_err)
            if abs(math.fsum(self.b_err)) > _TOL * 10 * max(1.0, scale):
                raise ValueError(f"tableau {self.name!r}: error weights sum to {math.fsum(self.b_err)!r}, expected 0.")
        # First-same-as-last: the last stage is evaluated at the propagated solution.
        fsal = s > 1 and self.c[-1] == 1.0 and tuple(self.a[-1]) == tuple(self.b[:-1]) and self.b[-1] == 0.0
        object.__setattr__(self, "fsal", fsal)

    @property
    def stages(self) -> int:
        """Number of stages ``s``."""
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        """Whether the tableau carries an embedded error estimate."""
        return self.b_err is not None

    @cached_property
    def real_stability_boundary(self) -> float:
        """Length of the stability interval of the propagated solution on the negative real axis.

        The largest ``x`` with ``|R(-s)| <= 1`` for every ``0 <= s <= x``, where
        ``R(z) = 1 + sum_k z^k b^T A^(k-1) 1`` is the stability polynomial (about 3.31 for dopri5, 2.51 for
        bosh3, 2 for Heun, 2.79 for rk4). A step with ``h |lambda|`` beyond it is unstable on ``y' = lambda y``.
        Computed on a grid of spacing 1e-3 up to 20.
        """
        s = self.stages
        A = np.zeros((s, s))
        for i, row in enumerate(self.a):
            A[i, :i] = row
        b = np.asarray(self.b)
        coeffs, v = [1.0], np.ones(s)
        for _ in range(s):
            coeffs.append(float(b @ v))
            v = A @ v
        x = np.linspace(0.0, 20.0, 20001)
        outside = np.abs(np.polynomial.polynomial.polyval(-x, coeffs)) > 1.0 + 1e-9
        outside[0] = False
        return float(x[int(np.argmax(outside)) - 1]) if outside.any() else 20.0

    @cached_property
    def stiffness_pair(self) -> tuple[int, int, tuple[float, ...]] | None:
        """Two stages ``(i, j)`` whose derivatives estimate the dominant eigenvalue of the Jacobian, and the
        coefficients ``d`` with ``Y_j - Y_i = h sum_k d_k k_k`` (``Y`` the stage inputs).

        ``h rho = ||k_j - k_i|| / ||sum_k d_k k_k||`` then estimates ``h |lambda|`` (Hairer & Wanner, *Solving
        ODEs II*, IV.2, the stiffness test of DOPRI5: two stages at the same time, ``c_i = c_j``). When no two
        stages share a time, the last two stages are used (their time difference adds a small ``df/dt`` term).
        ``None`` for a one-stage method.
        """
        s = self.stages
        if s < 2:
            return None
        same = [(i, j) for j in range(s) for i in range(j) if self.c[i] == self.c[j]]
        i, j = same[-1] if same else (s - 2, s - 1)
        ai = tuple(self.a[i]) + (0.0,) * (j - i)
        d = tuple(x - y for x, y in zip(self.a[j], ai, strict=True))
        return i, j, d
