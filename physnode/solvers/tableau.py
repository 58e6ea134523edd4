"""Butcher tableaux held as data that check themselves."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

__all__ = ["Tableau", "dense_from_order_conditions", "hermite_dense", "quadratic_dense"]

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
    dense
        Continuous extension (dense output) of the step, or ``None``: ``dense[i][k]`` is the coefficient of
        ``theta**(k + 1)`` in the weight ``b_i(theta)`` of stage ``i``, so that
        ``y(t + theta h) = y + h sum_i b_i(theta) k_i`` for ``0 <= theta <= 1``. The weights must sum to
        ``theta`` (consistency) and equal ``b`` at ``theta = 1`` (the interpolant ends on the step's solution).
    dense_order
        Order of the continuous extension (its local error is ``O(h**(dense_order + 1))``); required with
        ``dense``.
    dense_c, dense_a
        Extra stages of the continuous extension only (e.g. the three of DOP853 and the derivative at the end
        of the step; Hairer, Nørsett & Wanner, *Solving ODEs I*, II.6): times ``c_(s+m)`` and coefficient rows
        ``a_(s+m)`` over every earlier stage (row ``m`` holds ``s + m`` entries, the step's stages then the
        earlier extra ones). They are evaluated only when the extension is (:meth:`ExplicitRK.dense_terms
        <physnode.solvers.rk.ExplicitRK.dense_terms>`), and ``dense`` then has ``s + len(dense_c)`` rows, the
        extra stages' weights vanishing at ``theta = 1``. Empty (default): the extension uses the step's stages.

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
    dense: tuple[tuple[float, ...], ...] | None = None
    dense_order: int | None = None
    dense_c: tuple[float, ...] = ()
    dense_a: tuple[tuple[float, ...], ...] = ()
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
        self._check_dense()
        # First-same-as-last: the last stage is evaluated at the propagated solution.
        fsal = s > 1 and self.c[-1] == 1.0 and tuple(self.a[-1]) == tuple(self.b[:-1]) and self.b[-1] == 0.0
        object.__setattr__(self, "fsal", fsal)

    def _check_dense(self) -> None:
        if (self.dense is None) != (self.dense_order is None):
            raise ValueError(f"tableau {self.name!r}: dense and dense_order must be given together.")
        if self.dense is None:
            if self.dense_c or self.dense_a:
                raise ValueError(f"tableau {self.name!r}: dense_c and dense_a need a continuous extension (dense).")
            return
        s = len(self.c) + len(self.dense_c)
        if len(self.dense_a) != len(self.dense_c):
            raise ValueError(
                f"tableau {self.name!r}: dense_c and dense_a must have one entry per extra stage; got "
                f"{len(self.dense_c)} times and {len(self.dense_a)} rows."
            )
        for m, (cm, row) in enumerate(zip(self.dense_c, self.dense_a, strict=True)):
            i = len(self.c) + m
            if len(row) != i:
                raise ValueError(
                    f"tableau {self.name!r}: row {m} of dense_a (stage {i}) must hold {i} coefficients, got {len(row)}."
                )
            if abs(math.fsum(row) - cm) > _TOL * max(1.0, max(abs(x) for x in row)):
                raise ValueError(
                    f"tableau {self.name!r}: row {m} of dense_a sums to {math.fsum(row)!r}, expected "
                    f"dense_c[{m}]={cm!r}."
                )
        degree = len(self.dense[0]) if self.dense else 0
        if len(self.dense) != s or any(len(row) != degree for row in self.dense) or degree == 0:
            raise ValueError(
                f"tableau {self.name!r}: dense must hold one row of polynomial coefficients (theta^1, theta^2, ...) "
                f"per stage (extra stages included), all of the same length; got {len(self.dense)} rows for {s} "
                "stages."
            )
        for k in range(degree):
            total = math.fsum(row[k] for row in self.dense)
            scale = max(1.0, max(abs(row[k]) for row in self.dense))
            if abs(total - (1.0 if k == 0 else 0.0)) > 1e-10 * scale:
                raise ValueError(
                    f"tableau {self.name!r}: the dense-output weights must sum to theta; the theta^{k + 1} "
                    f"coefficients sum to {total!r}."
                )
        b = (*self.b, *(0.0 for _ in self.dense_c))
        for i, row in enumerate(self.dense):
            if abs(math.fsum(row) - b[i]) > 1e-10 * max(1.0, max(abs(x) for x in row)):
                expected = f"b[{i}] = {b[i]!r}" if i < len(self.b) else "0 (an extra stage of the extension)"
                raise ValueError(
                    f"tableau {self.name!r}: the dense-output weight of stage {i} is {math.fsum(row)!r} at theta = 1, "
                    f"expected {expected} (the interpolant must end on the step's solution)."
                )

    @property
    def stages(self) -> int:
        """Number of stages ``s``."""
        return len(self.c)

    @property
    def dense_stages(self) -> int:
        """Stages of the continuous extension: ``s`` plus its extra stages (``len(dense_c)``)."""
        return len(self.c) + len(self.dense_c)

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


def hermite_dense(b: tuple[float, ...]) -> tuple[tuple[float, ...], ...]:
    """Cubic Hermite continuous extension of an FSAL tableau with weights ``b`` (order 3).

    The cubic through ``y_n``, ``f(t_n, y_n) = k_1``, ``y_(n+1)`` and ``f(t_(n+1), y_(n+1)) = k_s`` (the last stage
    of an FSAL method), written as stage weights: with the Hermite basis ``h10 = theta - 2 theta^2 + theta^3``,
    ``h01 = 3 theta^2 - 2 theta^3`` and ``h11 = theta^3 - theta^2`` and ``y_(n+1) = y_n + h sum_i b_i k_i``,
    ``b_i(theta) = h01(theta) b_i + h10(theta) [i = 1] + h11(theta) [i = s]`` (Hairer, Nørsett & Wanner,
    *Solving ODEs I*, II.6).
    """
    s = len(b)
    rows = []
    for i, bi in enumerate(b):
        row = [0.0, 3.0 * bi, -2.0 * bi]
        if i == 0:
            row = [row[0] + 1.0, row[1] - 2.0, row[2] + 1.0]
        if i == s - 1:
            row = [row[0], row[1] - 1.0, row[2] + 1.0]
        rows.append(tuple(row))
    return tuple(rows)


def quadratic_dense(b: tuple[float, ...]) -> tuple[tuple[float, ...], ...]:
    """Quadratic continuous extension through ``y_n``, ``f(t_n, y_n) = k_1`` and ``y_(n+1)`` (order 2, no extra
    evaluation): ``y(theta) = y_n + h [theta k_1 + theta^2 (sum_i b_i k_i - k_1)]``."""
    return tuple((1.0, bi - 1.0) if i == 0 else (0.0, bi) for i, bi in enumerate(b))


def _elementary_weights(c: np.ndarray, A: np.ndarray, order: int) -> list[tuple[np.ndarray, int, float]]:
    """``(Phi, rho, gamma)`` of every rooted tree up to ``order`` (at most 5): the stage vector ``Phi`` with
    ``sum_i b_i Phi_i = 1 / gamma`` the order condition of the tree, and its order ``rho`` (Butcher's trees,
    Hairer, Nørsett & Wanner, *Solving ODEs I*, II.2, Table 2.2)."""
    one = np.ones_like(c)
    Ac = A @ c
    trees = [
        (one, 1, 1.0),
        (c, 2, 2.0),
        (c**2, 3, 3.0),
        (Ac, 3, 6.0),
        (c**3, 4, 4.0),
        (c * Ac, 4, 8.0),
        (A @ c**2, 4, 12.0),
        (A @ Ac, 4, 24.0),
        (c**4, 5, 5.0),
        (c**2 * Ac, 5, 10.0),
        (c * (A @ c**2), 5, 15.0),
        (c * (A @ Ac), 5, 30.0),
        (Ac**2, 5, 20.0),
        (A @ c**3, 5, 20.0),
        (A @ (c * Ac), 5, 40.0),
        (A @ (A @ c**2), 5, 60.0),
        (A @ (A @ Ac), 5, 120.0),
    ]
    if order > 5:
        raise ValueError(f"order conditions are tabulated up to order 5, got {order}.")
    return [t for t in trees if t[1] <= order]


def dense_from_order_conditions(
    c: tuple[float, ...], a: tuple[tuple[float, ...], ...], b: tuple[float, ...], order: int
) -> tuple[tuple[float, ...], ...]:
    """A continuous extension of order ``order`` from the existing stages, by solving its order conditions.

    The weights ``b_i(theta) = sum_(k=1..order) P_ik theta^k`` must satisfy
    ``sum_i b_i(theta) Phi_i(tau) = theta^rho(tau) / gamma(tau)`` for every tree ``tau`` with ``rho(tau) <= order``
    (Hairer, Nørsett & Wanner, *Solving ODEs I*, II.6, Theorem 6.1), i.e. one linear system per power of
    ``theta``, plus ``b_i(1) = b_i``; the minimum-norm solution is returned.

    Raises
    ------
    ValueError
        When the stages cannot carry an extension of that order (the residual of the conditions is not at
        round-off level).
    """
    s = len(c)
    A = np.zeros((s, s))
    for i, row in enumerate(a):
        A[i, :i] = row
    trees = _elementary_weights(np.asarray(c, dtype=np.float64), A, order)
    rows, rhs = [], []
    for k in range(1, order + 1):  # unknowns P[:, k - 1] occupy columns (k - 1) * s .. k * s
        for phi, rho, gamma in trees:
            r = np.zeros(order * s)
            r[(k - 1) * s : k * s] = phi
            rows.append(r)
            rhs.append(1.0 / gamma if rho == k else 0.0)
    for i in range(s):
        r = np.zeros(order * s)
        r[i::s] = 1.0
        rows.append(r)
        rhs.append(b[i])
    M, v = np.asarray(rows), np.asarray(rhs)
    x = np.linalg.lstsq(M, v, rcond=None)[0]
    residual = float(np.abs(M @ x - v).max())
    if residual > 1e-10:
        raise ValueError(
            f"the {s} stages admit no continuous extension of order {order} (order-condition residual "
            f"{residual:.1e}); ask for a lower order."
        )
    P = x.reshape(order, s).T
    return tuple(tuple(float(v) for v in row) for row in P)
