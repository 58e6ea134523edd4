"""Latent hybrid models: expert ODEs (pharmacology, physics) inside latent neural ODEs, with treatments as inputs.

- :class:`Expert`: ``dz_e/dt = f_e(t, z_e, u; θ_e)`` from any physnode physics model, parameters optionally per
  trajectory;
- :class:`LatentHybrid`: ``z = (z_e, z_m)`` with a neural ``f_m``, a Gaussian decoder and a backward-GRU encoder
  (amortised variational inference or point estimates) — the latent hybridisation model of Qian et al. (NeurIPS 2021);
- :class:`DecoderSpec`: a partly known decoder (channels known, known + residual or neural; a :class:`KnownMap` of
  the expert states) with Gaussian, Student-t or log-normal likelihoods per channel;
- :func:`fit_latent_hybrid`: training with seeds, validation-based selection and checkpoints;
- :func:`save_latent_hybrid` / :func:`load_latent_hybrid`; :class:`TreatmentSchedule`: infusions as inputs ``u(t)``.
"""

from __future__ import annotations

from .decoder import Decoder, DecoderSpec, GaussianDecoder, ObservationScales
from .encoder import BackwardGRUEncoder
from .expert import Expert
from .model import INFERENCE, LatentHybrid, Posterior, SolveSettings, as_inputs
from .observation import KnownMap
from .saving import load_latent_hybrid, save_latent_hybrid
from .schedule import TreatmentSchedule
from .train import LatentFit, fit_latent_hybrid

__all__ = [
    "INFERENCE",
    "BackwardGRUEncoder",
    "Decoder",
    "DecoderSpec",
    "Expert",
    "GaussianDecoder",
    "KnownMap",
    "LatentFit",
    "LatentHybrid",
    "ObservationScales",
    "Posterior",
    "SolveSettings",
    "TreatmentSchedule",
    "as_inputs",
    "fit_latent_hybrid",
    "load_latent_hybrid",
    "save_latent_hybrid",
]
