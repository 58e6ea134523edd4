"""Dormand–Prince 8th-order method of DOP853 (Hairer, Nørsett & Wanner, *Solving ODEs I*, 2nd ed.).

The 12-stage eighth-order formula of DOP853. Its error estimate here is the linear fifth-order embedded
estimate of DOP853 (DOP853 itself blends it nonlinearly with a third-order one); the step-size controller
therefore uses exponents 1/6, which is conservative: steps are smaller and solutions more accurate than
the tolerance asks. Coefficients are the published values to double precision.

Dense output: DOP853's own seventh-order interpolant needs three extra stages (three more evaluations of ``f``
in every step that serves an observation). Instead this tableau carries the free fifth-order continuous
extension of its twelve stages: the minimum-norm weights ``b_i(theta)`` (polynomials of degree 5) that satisfy
the order conditions of a continuous extension up to order 5, solved from the coefficients below by
:func:`~physnode.solvers.tableau.dense_from_order_conditions` (Hairer, Nørsett & Wanner, *Solving ODEs I*,
II.6). Its error is ``O(h^6)`` per step against the method's ``O(h^9)``, so landing a step on each observation
(``outputs="land"``) stays the more accurate choice for this method."""

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

TABLEAU = Tableau(
    name="dopri8",
    c=_C,
    a=_A,
    b=_B,
    order=8,
    b_err=(
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
    ),
    embedded_order=5,
    dense=dense_from_order_conditions(_C, _A, _B, 5),
    dense_order=5,
)


class Dopri8(ExplicitRK):
    """Adaptive eighth-order Dormand–Prince (DOP853 formula, linear 5th-order error estimate)."""

    tableau = TABLEAU
