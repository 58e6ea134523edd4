"""Neural-ODE design blocks (Massaroli et al., *Dissecting Neural ODEs*, 2020), usable with every solver and
every gradient method: each block is a vector field ``f(t, y)`` or a map of initial states, and what it adds to
the state is ordinary state.

* augmentation — :class:`ZeroAugment` (ANODE), :class:`InputAugment` (learned lift and projection),
  :class:`SecondOrder` (``q'' = a(t, q, q')``);
* data control — :class:`DataControlled` (``dz/dt = f(t, z, x)``, ``x`` carried per trajectory in the state);
* depth variance — :class:`GalerkinLinear` with weights ``θ(t) = Σ_k α_k φ_k(t)`` on a :class:`Fourier`,
  :class:`Chebyshev` or :class:`PiecewiseConstant` basis, composed with :class:`TimeSequential`;
* integral losses — :class:`IntegralLoss` (``∫ L(t, z) dt`` as extra state) and the regularisers
  :class:`KineticEnergy` and :class:`JacobianFrobenius` (Hutchinson noise fixed per solve).

See the concepts page *Design blocks* for the equations and the limitation each block removes.
"""

from __future__ import annotations

from .augment import InputAugment, SecondOrder, ZeroAugment
from .control import DataControlled
from .galerkin import Basis, Chebyshev, Fourier, GalerkinLinear, PiecewiseConstant, TimeSequential
from .integral import IntegralLoss
from .regularisers import JacobianFrobenius, KineticEnergy, Regulariser

__all__ = [
    "Basis",
    "Chebyshev",
    "DataControlled",
    "Fourier",
    "GalerkinLinear",
    "InputAugment",
    "IntegralLoss",
    "JacobianFrobenius",
    "KineticEnergy",
    "PiecewiseConstant",
    "Regulariser",
    "SecondOrder",
    "TimeSequential",
    "ZeroAugment",
]
