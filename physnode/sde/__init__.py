"""Stochastic dynamics through torchsde: :func:`sdeint`, diffusion terms, :func:`fit_sde`, and neural SDEs trained
as SDE-GANs (:func:`fit_sde_gan`) or latent SDEs (:func:`fit_latent_sde`), with distribution metrics."""

from __future__ import annotations

from .diffusion import DiagonalDiffusion, LogPositive, NeuralDiffusion, ScalarDiffusion
from .fit import LOSSES, SDEFitResult, fit_sde, moment_loss
from .gan import (
    LIPSCHITZ,
    CDEDiscriminator,
    LipSwish,
    SDEGANResult,
    SDEGenerator,
    clip_lipschitz_,
    fit_sde_gan,
    gradient_penalty,
)
from .latent import LatentSDE, LatentSDEResult, fit_latent_sde
from .metrics import marginal_w1, mmd, quantile_coverage
from .saving import load_model, sample_trajectories, save_model
from .sdeint import GRADS, METHODS, NOISES, sdeint

__all__ = [
    "GRADS",
    "LIPSCHITZ",
    "LOSSES",
    "METHODS",
    "NOISES",
    "CDEDiscriminator",
    "DiagonalDiffusion",
    "LatentSDE",
    "LatentSDEResult",
    "LipSwish",
    "LogPositive",
    "NeuralDiffusion",
    "SDEFitResult",
    "SDEGANResult",
    "SDEGenerator",
    "ScalarDiffusion",
    "clip_lipschitz_",
    "fit_latent_sde",
    "fit_sde",
    "fit_sde_gan",
    "gradient_penalty",
    "load_model",
    "marginal_w1",
    "mmd",
    "moment_loss",
    "quantile_coverage",
    "sample_trajectories",
    "save_model",
    "sdeint",
]
