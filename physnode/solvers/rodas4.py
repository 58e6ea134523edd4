"""Hairer & Wanner's RODAS: a Rosenbrock method of order 4 with an embedded order-3 solution, six stages,
stiffly accurate, L-stable, with a continuous extension of order 3.

Coefficients: E. Hairer and G. Wanner, *Solving Ordinary Differential Equations II* (2nd ed., Springer 1996),
section IV.7 and their code RODAS (its default coefficient set, ``METH = 1``), in the transformed form
``a_ij``, ``c_ij``, ``α_i``, ``γ_i``. The last two stages are evaluated at ``t + h``: the embedded solution is
the argument of stage 6 and the solution adds ``U_6`` to it, so the error estimate is ``U_6``.
``tests/test_solvers_rosenbrock.py`` checks the order conditions (Hairer & Wanner IV.7) on these values.
"""

from .rosenbrock import Rosenbrock, RosenbrockTableau

_A5 = (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895)

TABLEAU = RosenbrockTableau(
    name="rodas4",
    gamma=0.25,
    alpha=(0.0, 0.386, 0.21, 0.63, 1.0, 1.0),
    a=(
        (),
        (1.544,),
        (0.9466785280815826, 0.2557011698983284),
        (3.314825187068521, 2.896124015972201, 0.9986419139977817),
        _A5,
        (*_A5, 1.0),
    ),
    c=(
        (),
        (-5.6688,),
        (-2.430093356833875, -0.2063599157091915),
        (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
        (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.7089089320616),
        (8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136, -6.058818238834054),
    ),
    d=(0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0),
    m=(*_A5, 1.0, 1.0),
    m_hat=(*_A5, 1.0, 0.0),
    order=4,
    embedded_order=3,
    dense=(
        (10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823, 1.025137723295662, 0.0),
        (-0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386, -6.594389125716872, 0.0),
    ),
    dense_order=3,
    source="Hairer & Wanner, Solving ODEs II (1996), IV.7: RODAS, coefficient set METH = 1",
)


class Rodas4(Rosenbrock):
    """Adaptive L-stable Rosenbrock 4(3) method RODAS of Hairer & Wanner (6 stages, one Jacobian and one
    factorisation per step, dense output of order 3)."""

    tableau = TABLEAU
