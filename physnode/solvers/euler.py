"""Forward Euler, order 1, fixed step; its dense output is the straight line through the step (order 1)."""

from .rk import ExplicitRK
from .tableau import Tableau

TABLEAU = Tableau(name="euler", c=(0.0,), a=((),), b=(1.0,), order=1, dense=((1.0,),), dense_order=1)


class Euler(ExplicitRK):
    """Forward Euler method (fixed step)."""

    tableau = TABLEAU
