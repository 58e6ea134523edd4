"""Stochastic dynamics through torchsde: :func:`sdeint`, diffusion terms and :func:`fit_sde`."""

from __future__ import annotations

from .diffusion import DiagonalDiffusion, LogPositive, NeuralDiffusion, ScalarDiffusion
from .fit import LOSSES, SDEFitResult, fit_sde, moment_loss
from .sdeint import GRADS, METHODS, NOISES, sdeint

__all__ = [
    "GRADS",
    "LOSSES",
    "METHODS",
    "NOISES",
    "DiagonalDiffusion",
    "LogPositive",
    "NeuralDiffusion",
    "SDEFitResult",
    "ScalarDiffusion",
    "fit_sde",
    "moment_loss",
    "sdeint",
]
