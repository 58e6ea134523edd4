"""Fitting drift and diffusion parameters of an SDE to an ensemble of noisy trajectories: :func:`fit_sde`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import NonFiniteError
from .sdeint import sdeint

__all__ = ["LOSSES", "SDEFitResult", "fit_sde", "moment_loss"]

#: Supported ``loss=`` names of :func:`fit_sde`.
LOSSES: tuple[str, ...] = ("moments",)


@dataclass
class SDEFitResult:
    """Outcome of :func:`fit_sde`.

    Attributes
    ----------
    losses
        Loss at the parameters before each optimiser step (``losses[i]`` at iteration ``i``), floats.
    final_loss
        Loss of the fitted parameters, evaluated once more after the last step.
    """

    losses: list[float] = field(default_factory=list)
    final_loss: float = math.nan


def moment_loss(simulated: Tensor, observed: Tensor, scale: Tensor) -> Tensor:
    """Squared mismatch of the per-time mean and standard deviation of two ensembles.

    Parameters
    ----------
    simulated
        Simulated paths ``(M, T, D)``, ``M >= 2``.
    observed
        Observed paths ``(N, T, D)``, ``N >= 2``, at the same times.
    scale
        Per-channel scale ``(D,)`` in units of ``y`` that makes the channels commensurate (e.g. the standard
        deviation of the data).

    Returns
    -------
    Tensor
        0-d: ``mean over t, d of ((m_sim - m_obs)² + (s_sim - s_obs)²) / scale_d²`` with ``m`` the sample mean
        and ``s`` the (unbiased) sample standard deviation across the ensemble at each time.
    """
    m_sim, m_obs = simulated.mean(0), observed.mean(0)
    s_sim, s_obs = simulated.std(0), observed.std(0)
    return (((m_sim - m_obs) / scale).square() + ((s_sim - s_obs) / scale).square()).mean()


def _check_data(data_times: object, data_values: object) -> tuple[Tensor, Tensor]:
    if not isinstance(data_values, Tensor) or not isinstance(data_times, Tensor):
        raise TypeError(
            f"data_times and data_values must be tensors, got {type(data_times).__name__} and "
            f"{type(data_values).__name__}."
        )
    if data_values.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"data_values must be float32 or float64, got {data_values.dtype}.")
    if data_values.ndim != 3 or data_values.shape[0] < 2 or data_values.shape[-1] < 1:
        raise ValueError(
            f"data_values must have shape (N, T, D) with N >= 2 observed trajectories (the loss compares "
            f"variances across them), got {tuple(data_values.shape)}."
        )
    if data_times.ndim != 1:
        raise ValueError(
            f"data_times must have shape (T,): the moment loss compares the ensembles time by time, so every "
            f"trajectory must be observed at the same times; got shape {tuple(data_times.shape)}. Interpolate or "
            "bin the observations onto common times."
        )
    if data_times.shape[0] != data_values.shape[1] or data_times.shape[0] < 2:
        raise ValueError(
            f"data_times has {data_times.shape[0]} times but data_values has T = {data_values.shape[1]}; they "
            "must agree, with T >= 2 (the initial time and at least one observation)."
        )
    if not bool(torch.isfinite(data_values).all()):
        idx = tuple(torch.nonzero(~torch.isfinite(data_values))[0].tolist())
        raise ValueError(f"data_values contains NaN or Inf (first at index {idx}); drop or impute those values.")
    return data_times.detach(), data_values.detach()


def _check_params(params: object) -> tuple[Tensor, ...] | None:
    """``params`` as a tuple of leaf floating-point tensors that require grad (``None`` stays ``None``)."""
    if params is None:
        return None
    if isinstance(params, Tensor):
        params = (params,)
    if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
        raise TypeError(f"params must be a sequence of tensors (or one tensor), got {type(params).__name__}.")
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"params[{i}] must be a tensor, got {type(p).__name__}.")
        if not p.is_floating_point() or not p.requires_grad or not p.is_leaf:
            raise ValueError(
                f"params[{i}] (shape {tuple(p.shape)}, {p.dtype}) cannot be fitted: an optimiser updates "
                "floating-point leaf tensors that require grad. Create it with requires_grad=True (or as an "
                "nn.Parameter) and pass the leaf itself, not a tensor computed from it."
            )
    return tuple(params)


def _diverged(iteration: int, what: str) -> FloatingPointError:
    return FloatingPointError(
        f"fit_sde diverged at iteration {iteration} (after {iteration} optimiser steps): {what} Lower lr (or the "
        "optimizer's learning rate), reduce dt, or bound the parameters (e.g. LogPositive for scales)."
    )


def fit_sde(
    drift: Callable[[Tensor, Tensor], Tensor],
    diffusion: Callable[[Tensor, Tensor], Tensor],
    data_times: Tensor,
    data_values: Tensor,
    *,
    dt: float,
    loss: str = "moments",
    n_samples: int | None = None,
    iterations: int = 200,
    lr: float = 0.05,
    optimizer: torch.optim.Optimizer | None = None,
    method: str = "reversible_heun",
    grad: str = "direct",
    noise: str = "diagonal",
    seed: int = 0,
    resample: bool = False,
    params: Sequence[Tensor] | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> SDEFitResult:
    """Fit the parameters of ``drift`` and ``diffusion`` to an ensemble of noisy trajectories (in place).

    The loss is **moment matching** (``loss="moments"``): an ensemble of ``n_samples`` sample paths is
    simulated with :func:`~physnode.sde.sdeint` from the observed initial states, and at every observation
    time the mean and standard deviation of each channel across the simulated ensemble are matched to those
    across the observed trajectories (:func:`moment_loss`, channels scaled by the data's standard deviation).

    Why moments rather than a latent-SDE ELBO (Li et al. 2020): the target here is a few physical parameters
    (a damping, a stiffness, a noise amplitude) of a given model, observed through many independent
    realisations at common times. The first two moments identify the drift (through the mean) and the
    diffusion scale (through the growth and saturation of the variance) directly, need no posterior SDE or
    encoder network, and are cheap. An ELBO is the better choice for a single long trajectory, for
    observation noise or for latent states, none of which this function models: measurement noise in
    ``data_values`` is read as process noise and inflates the fitted diffusion. Higher moments and
    cross-channel correlations are not matched.

    Determinism: by default the simulated ensemble uses the same Brownian sample (``seed``) at every
    iteration (common random numbers), which makes the loss a smooth deterministic function of the
    parameters (a sample-average approximation; its bias shrinks as ``1/sqrt(n_samples)``). With
    ``resample=True`` iteration ``i`` uses seed ``seed + i``. Either way the fit is reproducible given
    ``seed``.

    Parameters
    ----------
    drift, diffusion
        Drift and diffusion as for :func:`~physnode.sde.sdeint`; their ``nn.Module`` parameters (and
        ``params``) are optimised in place.
    data_times
        Common observation times ``(T,)``, strictly increasing; ``data_times[0]`` is the time of the
        initial states.
    data_values
        Observed trajectories ``(N, T, D)``, ``N >= 2``; ``data_values[:, 0]`` are the initial states.
    dt
        Step size of the simulation (time units).
    loss
        ``"moments"`` (see above); :data:`LOSSES`.
    n_samples
        Simulated paths per iteration (default ``N``); path ``j`` starts from ``data_values[j % N, 0]``.
    iterations
        Optimiser steps.
    lr
        Learning rate of the default Adam optimiser.
    optimizer
        A ready optimiser over the parameters instead of Adam (``lr`` is then ignored); its ``step`` is
        called without a closure.
    method, grad, noise
        Passed to :func:`~physnode.sde.sdeint`. ``grad="direct"`` (default) is the fastest for the small
        ensembles of a moment fit; ``"adjoint_reversible_heun"`` keeps memory constant in the number of steps
        (observation times must then lie on the ``dt`` lattice).
    seed
        Seed of the Brownian samples.
    resample
        Draw a new Brownian sample at every iteration.
    params
        Extra tensors to optimise that ``drift`` or ``diffusion`` close over.
    callback
        Called as ``callback(iteration, loss)`` after each step.

    Returns
    -------
    SDEFitResult
        Loss history and final loss; the parameters are updated in place.

    Raises
    ------
    TypeError, ValueError
        Bad data, options, ``params`` (each a floating-point leaf tensor that requires grad), ``optimizer``
        or ``callback``.
    FloatingPointError
        The loss or the simulated paths became NaN or Inf (the message names the iteration).
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss={loss!r}; choose one of {', '.join(map(repr, LOSSES))}.")
    times, values = _check_data(data_times, data_values)
    N, _, D = values.shape
    if n_samples is None:
        n_samples = N
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an int >= 2 (the loss needs sample variances), got {n_samples!r}.")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")

    if not isinstance(resample, bool):
        raise TypeError(f"resample must be True or False, got {resample!r}.")
    if callback is not None and not callable(callback):
        raise TypeError(
            f"callback must be callable as callback(iteration, loss) or None, got {type(callback).__name__}."
        )
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer over the parameters to fit (or None for Adam with lr), got "
            f"{type(optimizer).__name__}."
        )
    params = _check_params(params)
    found: list[Tensor] = []
    for fn in (drift, diffusion):
        if isinstance(fn, nn.Module):
            found.extend(p for p in fn.parameters() if p.requires_grad and not any(p is q for q in found))
    for p in params or ():
        if not any(p is q for q in found):
            found.append(p)
    if optimizer is None:
        if not found:
            raise ValueError(
                "nothing to fit: drift and diffusion have no trainable parameters and params is empty. Use "
                "nn.Modules with nn.Parameters (e.g. ScalarDiffusion(0.1)) or pass params=[...]."
            )
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {lr!r}.")
        optimizer = torch.optim.Adam(found, lr=lr)

    y0 = values[torch.arange(n_samples, device=values.device) % N, 0]
    scale = values.reshape(-1, D).std(0).clamp_min(torch.finfo(values.dtype).eps)
    observed = values[:, 1:]

    def evaluate(i: int) -> Tensor:
        ys = sdeint(
            drift,
            diffusion,
            y0,
            times,
            dt=dt,
            method=method,
            grad=grad,
            noise=noise,
            seed=seed + i if resample else seed,
            params=params,
        )
        return moment_loss(ys[:, 1:], observed, scale)

    result = SDEFitResult()
    for i in range(iterations):
        optimizer.zero_grad()
        try:
            value = evaluate(i)
        except NonFiniteError as err:
            raise _diverged(i, str(err)) from err
        result.losses.append(float(value.detach()))
        if not math.isfinite(result.losses[-1]):
            raise _diverged(i, f"the loss is {result.losses[-1]}.")
        value.backward()
        optimizer.step()
        if callback is not None:
            callback(i, result.losses[-1])
    with torch.no_grad():
        result.final_loss = float(evaluate(iterations))
    return result
