"""Semi-amortised inference: a few gradient steps on each trajectory's encoding, started at the encoder's output.

The encoder of a :class:`~physnode.latent.LatentHybrid` gives each patient's initial state and parameter offsets
``w`` in one pass (amortised inference); with few training patients its output is a rough guess, the *amortisation
gap* (Cremer, Li and Duvenaud, "Inference Suboptimality in Variational Autoencoders", ICML 2018). Semi-amortised
inference (Kim, Wiseman, Miller, Sontag and Rush, "Semi-Amortized Variational Autoencoders", ICML 2018) closes part
of it by refining ``w`` with gradient steps on the trajectory's own objective, started at the encoder's mean. Here the
objective is the negative log posterior of the observed history (masked likelihood of the observations up to
``until`` plus the model's prior on ``w``): a maximum a posteriori estimate per patient, one batched solve per step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..data.trajectories import Trajectories
from .model import InputSeries, LatentHybrid, Posterior, SolveSettings

__all__ = ["history_objective", "refine"]


def history_objective(
    model: LatentHybrid,
    w: Tensor,
    history: Trajectories,
    inputs: InputSeries | None,
    *,
    until: float | None = None,
    t0: float = 0.0,
    settings: SolveSettings | None = None,
) -> Tensor:
    """``(B,)`` negative log posterior of each trajectory's history: masked NLL of the observations at times
    ``<= until`` (all when ``None``) given ``w``, plus ``½ ‖(w − μ_p)/σ_p‖²`` (the model's prior on ``w``).

    Parameters
    ----------
    model
        A model with its data scales set.
    w
        ``(B, n_init + P)`` scaled free initial states and parameter offsets (as the encoder's mean).
    history, inputs
        The trajectories and their inputs.
    until, t0, settings
        Conditioning window end, initial time and solve settings (as in :meth:`LatentHybrid.loss`).
    """
    dtype = model.obs_loc.dtype
    data = history.to(dtype=dtype)
    z0 = model.initial_state(w[:, : model.n_init])
    theta = model.theta_raw(w[:, model.n_init :])
    mask = data.mask & data.time_mask.unsqueeze(-1)
    lengths = data.lengths
    if until is not None:
        inside = data.time_mask & (data.times <= until)
        mask = mask & inside.unsqueeze(-1)
        # Only the history is needed: solve up to each trajectory's last time in the window.
        lengths = inside.sum(1).clamp(min=1)
    zs = model.solve(z0, data.times, lengths, inputs, theta, t0=t0, settings=settings)
    nll = model.decoder.neg_log_likelihood(
        zs, data.values, mask, model.observation_scales(), model.expert_parameters(theta, zs)
    )
    loc, logstd = model._prior()
    prior = 0.5 * ((w - loc) * torch.exp(-logstd)).pow(2).sum(-1)
    return nll + prior


def refine(
    model: LatentHybrid,
    history: Trajectories,
    inputs: InputSeries | None,
    *,
    until: float | None = None,
    t0: float = 0.0,
    settings: SolveSettings | None = None,
    steps: int = 20,
    lr: float = 0.05,
    posterior: Posterior | None = None,
) -> Posterior:
    """The encoder's posterior with its mean refined by ``steps`` Adam steps on :func:`history_objective`.

    Each trajectory's objective depends on its own ``w`` only and Adam scales each coordinate separately, so the batch
    is refined as ``B`` independent problems in one solve per step. The model's weights are not changed.

    Parameters
    ----------
    model, history, inputs, until, t0, settings
        As in :meth:`LatentHybrid.predict`.
    steps
        Gradient steps (``0``: the encoder's output unchanged).
    lr
        Adam's step size, in the units of ``w`` (scaled initial states, unconstrained parameter offsets).
    posterior
        Start here instead of encoding ``history``.

    Returns
    -------
    Posterior
        ``mean`` refined ``(B, n_init + P)``; ``logvar`` the encoder's.

    Raises
    ------
    ValueError
        ``steps`` not a non-negative integer or ``lr`` not positive.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}.")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}.")
    if posterior is None:
        with torch.no_grad():
            posterior = model.encode(history, inputs, until=until, t0=t0)
    if steps == 0:
        return posterior
    w = posterior.mean.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            for _ in range(steps):
                loss = history_objective(model, w, history, inputs, until=until, t0=t0, settings=settings).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return Posterior(w.detach(), posterior.logvar.detach())
