"""Dormand–Prince 8th-order method of DOP853 (Hairer, Nørsett & Wanner, *Solving ODEs I*, 2nd ed.).

The 12-stage eighth-order formula of DOP853. Its error estimate here is the linear fifth-order embedded
estimate of DOP853 (DOP853 itself blends it nonlinearly with a third-order one); the step-size controller
therefore uses exponents 1/6, which is conservative: steps are smaller and solutions more accurate than
the tolerance asks. Coefficients are the published values to double precision.

Dense output (two continuous extensions, chosen by ``interpolant=``):

- ``"dop853"`` (default): DOP853's own seventh-order continuous extension (Hairer, Nørsett & Wanner, *Solving
  ODEs I*, II.6, "Dense output for DOP853", and the published ``dop853.f``). It needs four more evaluations of
  ``f`` in every step whose extension is used: ``f(t + h, y_(n+1))`` (DOP853 reuses it as the next step's first
  stage; here the tableau is not FSAL, so it is one extra) and the three stages at ``c = 0.1, 0.2, 7/9``. Hairer
  writes it in the nested form ``y_n + θ(r_2 + θ'(r_3 + θ(r_4 + θ'(r_5 + θ(r_6 + θ'(r_7 + θ r_8))))))``,
  ``θ' = 1 - θ``, with ``r_2 = y_(n+1) - y_n``, ``r_3 = h k_1 - r_2``, ``r_4 = r_2 - h k_13 - r_3`` and
  ``r_(5..8) = h Σ_i d_(4..7),i k_i``; :func:`dop853_dense` expands it into the monomial weights
  ``b_i(θ)`` of :attr:`~physnode.solvers.tableau.Tableau.dense` (degree 7, 16 stages). The extra stages'
  coefficients and ``d_4 .. d_7`` are the published values (checked against the table in SciPy's
  ``dop853_coefficients.py``).
- ``"free5"``: the free fifth-order continuous extension of the twelve stages (no extra evaluation): the
  minimum-norm weights that satisfy the order conditions of a continuous extension up to order 5, solved by
  :func:`~physnode.solvers.tableau.dense_from_order_conditions`. Its error is ``O(h^6)`` per step against the
  method's ``O(h^9)``.

The default was chosen from a measurement of interpolation error against evaluations
(docs/concepts/dense-output.md)."""

import dataclasses

import numpy as np

from .rk import ExplicitRK
from .tableau import Tableau, dense_from_order_conditions

_C = (
    0.0,
    0.05260015195876773,
    0.0789002279381516,
    0.1183503419072274,
    0.2816496580927726,
    0.3333333333333333,
    0.25,
    0.3076923076923077,
    0.6512820512820513,
    0.6,
    0.8571428571428571,
    1.0,
)
_A = (
    (),
    (0.05260015195876773,),
    (0.0197250569845379, 0.0591751709536137),
    (0.02958758547680685, 0.0, 0.08876275643042054),
    (0.2413651341592667, 0.0, -0.8845494793282861, 0.924834003261792),
    (0.037037037037037035, 0.0, 0.0, 0.17082860872947386, 0.12546768756682242),
    (0.037109375, 0.0, 0.0, 0.17025221101954405, 0.06021653898045596, -0.017578125),
    (
        0.03709200011850479,
        0.0,
        0.0,
        0.17038392571223998,
        0.10726203044637328,
        -0.015319437748624402,
        0.008273789163814023,
    ),
    (
        0.6241109587160757,
        0.0,
        0.0,
        -3.3608926294469414,
        -0.868219346841726,
        27.59209969944671,
        20.154067550477894,
        -43.48988418106996,
    ),
    (
        0.47766253643826434,
        0.0,
        0.0,
        -2.4881146199716677,
        -0.590290826836843,
        21.230051448181193,
        15.279233632882423,
        -33.28821096898486,
        -0.020331201708508627,
    ),
    (
        -0.9371424300859873,
        0.0,
        0.0,
        5.186372428844064,
        1.0914373489967295,
        -8.149787010746927,
        -18.52006565999696,
        22.739487099350505,
        2.4936055526796523,
        -3.0467644718982196,
    ),
    (
        2.273310147516538,
        0.0,
        0.0,
        -10.53449546673725,
        -2.0008720582248625,
        -17.9589318631188,
        27.94888452941996,
        -2.8589982771350235,
        -8.87285693353063,
        12.360567175794303,
        0.6433927460157636,
    ),
)
_B = (
    0.054293734116568765,
    0.0,
    0.0,
    0.0,
    0.0,
    4.450312892752409,
    1.8915178993145003,
    -5.801203960010585,
    0.3111643669578199,
    -0.1521609496625161,
    0.20136540080403034,
    0.04471061572777259,
)

_B_ERR = (
    0.01312004499419488,
    0.0,
    0.0,
    0.0,
    0.0,
    -1.2251564463762044,
    -0.4957589496572502,
    1.6643771824549864,
    -0.35032884874997366,
    0.3341791187130175,
    0.08192320648511571,
    -0.022355307863886294,
)

# DOP853's extra stages of the dense output: f(t + h, y_(n+1)) (a row equal to b), then c = 0.1, 0.2, 7/9.
# Rows over stages 0 .. s + m - 1 (zeros written out; the table's published values to double precision).
_DENSE_C = (1.0, 0.1, 0.2, 0.7777777777777778)
_DENSE_A = (
    _B,
    (
        0.05616750228304795,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
        0.2535002102166248,
        -0.2462390374708025,
        -0.12419142326381637,
        0.1532917982787657,
        0.00820105229563469,
        0.0075678976605457,
        -0.008298,
    ),
    (
        0.03183464816350214,
        0.0,
        0.0,
        0.0,
        0.0,
        0.028300909672366776,
        0.053541988307438566,
        -0.05492374857139099,
        0.0,
        0.0,
        -0.00010834732869724932,
        0.0003825710908356584,
        -0.00034046500868740456,
        0.1413124436746325,
    ),
    (
        -0.42889630158379194,
        0.0,
        0.0,
        0.0,
        0.0,
        -4.697621415361164,
        7.683421196062599,
        4.06898981839711,
        0.3567271874552811,
        0.0,
        0.0,
        0.0,
        -0.0013990241651590145,
        2.9475147891527724,
        -9.15095847217987,
    ),
)
# d_4 .. d_7 of DOP853 (one row per power of the nested form, one entry per stage 0 .. 15).
_D = (
    (
        -8.428938276109013,
        0.0,
        0.0,
        0.0,
        0.0,
        0.5667149535193777,
        -3.0689499459498917,
        2.38466765651207,
        2.117034582445028,
        -0.871391583777973,
        2.2404374302607883,
        0.6315787787694688,
        -0.08899033645133331,
        18.148505520854727,
        -9.194632392478356,
        -4.436036387594894,
    ),
    (
        10.427508642579134,
        0.0,
        0.0,
        0.0,
        0.0,
        242.28349177525817,
        165.20045171727028,
        -374.5467547226902,
        -22.113666853125302,
        7.733432668472264,
        -30.674084731089398,
        -9.332130526430229,
        15.697238121770845,
        -31.139403219565178,
        -9.35292435884448,
        35.81684148639408,
    ),
    (
        19.985053242002433,
        0.0,
        0.0,
        0.0,
        0.0,
        -387.0373087493518,
        -189.17813819516758,
        527.8081592054236,
        -11.57390253995963,
        6.8812326946963,
        -1.000605096691084,
        0.7777137798053443,
        -2.778205752353508,
        -60.19669523126412,
        84.32040550667716,
        11.99229113618279,
    ),
    (
        -25.69393346270375,
        0.0,
        0.0,
        0.0,
        0.0,
        -154.18974869023643,
        -231.5293791760455,
        357.6391179106141,
        93.4053241836243,
        -37.45832313645163,
        104.0996495089623,
        29.840293426660503,
        -43.53345659001114,
        96.32455395918828,
        -39.17726167561544,
        -149.72683625798564,
    ),
)


def dop853_dense(b: tuple[float, ...], d: tuple[tuple[float, ...], ...], extra: int) -> tuple[tuple[float, ...], ...]:
    """Monomial weights ``b_i(theta) = sum_k P[i][k] theta^(k+1)`` of DOP853's nested dense output.

    Parameters
    ----------
    b
        Weights of the step (``s`` entries).
    d
        ``d_4 .. d_7``: four rows over the ``s + extra`` stages.
    extra
        Number of extra stages; the first is ``f(t + h, y_(n+1))``.

    Returns
    -------
    tuple of tuple of float
        ``s + extra`` rows of 7 coefficients (``theta^1 .. theta^7``): the expansion of
        ``theta(r_2 + theta'(r_3 + theta(r_4 + theta'(r_5 + theta(r_6 + theta'(r_7 + theta r_8))))))`` with
        ``theta' = 1 - theta`` and ``r_m`` written as weights of ``h k_i`` (module docstring).
    """
    n = len(b) + extra
    bb = np.zeros(n)
    bb[: len(b)] = b
    first, last = np.eye(n)[0], np.eye(n)[len(b)]  # k_1 and f(t + h, y_(n+1))
    r2 = bb
    r3 = first - r2
    r4 = r2 - last - r3
    terms = [r2, r3, r4, *(np.asarray(row, dtype=np.float64) for row in d)]
    P = np.zeros((n, 8))  # coefficients of theta^0 .. theta^7
    theta, one_minus = np.polynomial.Polynomial([0.0, 1.0]), np.polynomial.Polynomial([1.0, -1.0])
    basis = np.polynomial.Polynomial([1.0])
    for m, r in enumerate(terms):  # basis of r_(m+2): theta^ceil((m+1)/2 + ...) alternating factors
        basis = basis * (theta if m % 2 == 0 else one_minus) if m else theta
        coef = np.zeros(8)
        coef[: len(basis.coef)] = basis.coef
        P += np.outer(r, coef)
    return tuple(tuple(float(x) for x in row[1:]) for row in P)


#: DOP853's formula with its seventh-order continuous extension (four extra stages).
TABLEAU = Tableau(
    name="dopri8",
    c=_C,
    a=_A,
    b=_B,
    order=8,
    b_err=_B_ERR,
    embedded_order=5,
    dense=dop853_dense(_B, _D, len(_DENSE_C)),
    dense_order=7,
    dense_c=_DENSE_C,
    dense_a=_DENSE_A,
)

#: The same formula with the free fifth-order continuous extension of its twelve stages.
TABLEAU_FREE5 = dataclasses.replace(
    TABLEAU, dense=dense_from_order_conditions(_C, _A, _B, 5), dense_order=5, dense_c=(), dense_a=()
)

INTERPOLANTS = {"dop853": TABLEAU, "free5": TABLEAU_FREE5}


class Dopri8(ExplicitRK):
    """Adaptive eighth-order Dormand–Prince (DOP853 formula, linear 5th-order error estimate).

    Parameters
    ----------
    adaptive
        As for :class:`~physnode.solvers.rk.ExplicitRK`.
    interpolant
        Continuous extension for dense output, ``outputs="interpolate"`` and events: ``"dop853"`` (default,
        seventh order, four extra evaluations of ``f`` per step that uses it) or ``"free5"`` (fifth order, no
        extra evaluation).
    """

    tableau = TABLEAU

    def __init__(self, adaptive: bool | None = None, interpolant: str = "dop853") -> None:
        if interpolant not in INTERPOLANTS:
            raise ValueError(
                f"interpolant must be one of {', '.join(map(repr, INTERPOLANTS))} for method 'dopri8', got "
                f"{interpolant!r}: 'dop853' is DOP853's seventh-order dense output, 'free5' a fifth-order one "
                "without extra evaluations."
            )
        self.tableau = INTERPOLANTS[interpolant]  # type: ignore[misc]  # the instance's choice of extension
        self.interpolant = interpolant
        super().__init__(adaptive)
