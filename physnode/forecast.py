"""``physnode.forecast``: run a (fitted) model forward from known initial states and return Trajectories, or with
``uncertainty=`` a :class:`~physnode.predictive.Forecast` with bands (see :mod:`physnode.predictive`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

import torch
from torch import Tensor, nn

from .data.inputs import Inputs
from .data.trajectories import Trajectories
from .fit.initial import initial_times
from .fit.problem import takes_inputs
from .odeint import odeint
from .options import DEFAULT_ATOL, DEFAULT_METHOD, DEFAULT_RTOL, SolveOptions, resolve_options
from .predictive import UNCERTAINTY_METHODS, Forecast, laplace_samples, linear_variance, quantiles, solve_samples

if TYPE_CHECKING:
    from .fit.api import FitResult

__all__ = ["Forecast", "forecast"]

#: Observation noise: one standard deviation for every channel, ``{channel: σ}``, or ``(S,)``.
Noise = float | Mapping[str, float] | Tensor

_KEYWORD_DEFAULTS: dict[str, Any] = {
    "method": DEFAULT_METHOD,
    "rtol": DEFAULT_RTOL,
    "atol": DEFAULT_ATOL,
    "step_size": None,
}


@overload
def forecast(
    model: nn.Module | FitResult,
    data_or_y0: Trajectories | Tensor,
    t: Tensor,
    *,
    y0: Tensor | None = None,
    method: str = DEFAULT_METHOD,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    step_size: float | None = None,
    options: Mapping[str, Any] | SolveOptions | None = None,
    uncertainty: None = None,
    level: float = 0.95,
    noise: Noise | None = None,
    n_samples: int = 200,
    seed: int = 0,
    inputs: Inputs | None = None,
) -> Trajectories: ...


@overload
def forecast(
    model: nn.Module | FitResult,
    data_or_y0: Trajectories | Tensor,
    t: Tensor,
    *,
    y0: Tensor | None = None,
    method: str = DEFAULT_METHOD,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    step_size: float | None = None,
    options: Mapping[str, Any] | SolveOptions | None = None,
    uncertainty: Literal["linear", "laplace"],
    level: float = 0.95,
    noise: Noise | None = None,
    n_samples: int = 200,
    seed: int = 0,
    inputs: Inputs | None = None,
) -> Forecast: ...


def forecast(
    model: nn.Module | FitResult,
    data_or_y0: Trajectories | Tensor,
    t: Tensor,
    *,
    y0: Tensor | None = None,
    method: str = DEFAULT_METHOD,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    step_size: float | None = None,
    options: Mapping[str, Any] | SolveOptions | None = None,
    uncertainty: str | None = None,
    level: float = 0.95,
    noise: Noise | None = None,
    n_samples: int = 200,
    seed: int = 0,
    inputs: Inputs | None = None,
) -> Trajectories | Forecast:
    """The model's state at times ``t`` from each trajectory's initial state; with ``uncertainty=``, with bands.

    Parameters
    ----------
    model
        ODE right-hand side ``model(t, y)``; channel names come from ``model.state_names`` when it has them,
        else ``y0, y1, ...``. Or a :class:`~physnode.fit.FitResult`: its ``model``, and (unless solve keywords
        or ``options`` are given) its ``solve_options``; ``uncertainty=`` needs one (its ``raw_covariance``).
    data_or_y0
        A :class:`~physnode.data.Trajectories`: the initial states come from ``y0=`` or the metadata
        ``"initial_state"`` at metadata ``"initial_time"`` (else at the data's first time); its metadata, ids,
        time units and channel units are copied (not its ``attrs``, which describe how the data were made: the
        forecast's ``attrs`` record the model, its parameter values, the solver, the physnode version and the
        data's digest). Or initial states ``(S,)`` / ``(N, S)``, given at ``t[..., 0]``.
    t
        Forecast times ``(T,)`` or ``(N, T)``, strictly increasing; they may start after the initial time (the
        solve then starts at the initial time and reports only ``t``).
    y0
        Initial states ``(N, S)`` overriding the metadata (e.g. ``FitResult.initial_states``).
    method, rtol, atol, step_size, options
        As in :func:`physnode.odeint`: keywords, or one :class:`~physnode.SolveOptions` as ``options`` (e.g. a
        fit's ``result.solve_options``; its gradient method is irrelevant here: the bands differentiate with
        ``"direct"``).
    uncertainty
        ``None`` (plain predictions), ``"linear"`` (linearised propagation ``Σ_y = J Σ Jᵀ`` with ``J`` the exact
        Jacobian of the predictions with respect to the fitted unknowns) or ``"laplace"`` (``n_samples`` draws
        from the Laplace approximation ``N(θ̂, Σ)``, each solved; empirical quantiles). See
        :mod:`physnode.predictive` for the formulas. The propagated unknowns are the raw tensors of the learnable
        parameters and, when the fit learned the initial states *and* the forecast starts from them (``y0`` equal
        to ``result.initial_states``), the initial states; network weights are held fixed.
    level
        Probability content of the central band, in ``(0, 1)``.
    noise
        Observation-noise standard deviation added to the predictions' variance: a number (every channel),
        ``{channel: σ}`` (channels not named get none) or a tensor ``(S,)``; ``0`` for none. Default: the fit's
        noise when it estimated one per channel (``result.noise``, ``loss="gaussian_nll"``), matched to the
        forecast's channels by name; else none. With noise the band is a **predictive** band (where a new noisy
        observation falls with probability ``level``), without it a **confidence** band (where the noise-free
        trajectory lies). For an ``"mse"`` fit, ``noise=result.residual_std`` gives predictive bands.
    n_samples
        Number of Laplace draws (``"laplace"``), from 2 to ``MAX_LAPLACE_SAMPLES`` = 100,000.
    seed
        Seed of the Laplace draws and their noise (a CPU ``torch.Generator``), for reproducible bands.
    inputs
        External inputs over the forecast (a treatment plan, :class:`~physnode.data.Inputs` with ``N`` rows or one
        shared series): ``model`` is then called as ``model(t, y, u)``. A counterfactual plan for the same
        trajectories is just another ``Inputs``. Default: the inputs of the data (``Trajectories.inputs``) when the
        model takes them (three positional arguments), else none. The returned trajectories carry the plan.

    Returns
    -------
    Trajectories or Forecast
        Without ``uncertainty``: ``(N, T, S)`` predicted states (fully observed), no gradient. With it: a
        :class:`~physnode.predictive.Forecast` (``mean``, ``std``, ``lower``, ``upper`` ``(N, T, S)``, ``level``,
        ``method``, ``noise``; :meth:`~physnode.predictive.Forecast.band` for plots,
        :meth:`~physnode.predictive.Forecast.to_netcdf` for files).

    Raises
    ------
    TypeError, ValueError
        Bad arguments, e.g. ``uncertainty=`` with a plain model (pass the ``FitResult``), or a fit without a
        covariance (``fit(..., uncertainty=False)`` or no learnable parameters).
    """
    from .fit.api import FitResult

    result = model if isinstance(model, FitResult) else None
    if result is not None:
        model = result.model
        given = (method, rtol, atol, step_size)
        untouched = all(v is d for v, d in zip(given, _KEYWORD_DEFAULTS.values(), strict=True))
        if options is None and untouched:
            options = result.solve_options
    if not isinstance(model, nn.Module) and not callable(model):
        raise TypeError(f"model must be an nn.Module f(t, y) or a FitResult, got {type(model).__name__}.")
    if uncertainty is not None:
        _check_uncertainty_args(uncertainty, result, level, n_samples, seed)
    if not isinstance(t, Tensor):
        raise TypeError(f"t must be a tensor of times (T,) or (N, T), got {type(t).__name__}.")
    opts = resolve_options(options, _KEYWORD_DEFAULTS, method=method, rtol=rtol, atol=atol, step_size=step_size)
    metadata = None
    ids = None
    data = None
    time_units = "1"
    if isinstance(data_or_y0, Trajectories):
        data = data_or_y0
        N = data.n_trajectories
        metadata, ids, time_units = data.metadata, data.ids, data.time_units
        if y0 is None:
            if not all("initial_state" in m for m in data.metadata):
                raise ValueError(
                    "forecast needs initial states: the data have no metadata 'initial_state'; pass y0=... "
                    "(e.g. result.initial_states)."
                )
            y0 = data.metadata_tensor("initial_state", dtype=data.values.dtype).to(data.device)
        t_init = initial_times(data)
    elif isinstance(data_or_y0, Tensor):
        y0 = data_or_y0
        if y0.ndim not in (1, 2):
            raise ValueError(f"y0 must have shape (S,) or (N, S), got {tuple(y0.shape)}.")
        y0 = y0.unsqueeze(0) if y0.ndim == 1 else y0
        N = y0.shape[0]
        t_init = None
    else:
        raise TypeError(
            f"data_or_y0 must be Trajectories or a tensor of initial states, got {type(data_or_y0).__name__}."
        )
    if not isinstance(y0, Tensor) or y0.ndim != 2 or y0.shape[0] != N:
        raise ValueError(f"y0 must have shape (N, S) with N = {N}, got {getattr(y0, 'shape', y0)}.")
    t = t.to(device=y0.device, dtype=y0.dtype)
    if t.ndim == 1:
        t = t.unsqueeze(0).expand(N, -1)
    if t.ndim != 2 or t.shape[0] != N:
        raise ValueError(f"t must have shape (T,) or (N, T) with N = {N}, got {tuple(t.shape)}.")
    grid = t
    prepend = False
    if t_init is not None:
        t_init = t_init.to(t)
        if bool((t_init > t[:, 0]).any()):
            raise ValueError("forecast times must not start before the initial time of each trajectory.")
        if bool((t_init < t[:, 0]).all()):
            grid = torch.cat([t_init.unsqueeze(1), t], dim=1)
            prepend = True
        elif not bool((t_init == t[:, 0]).all()):
            raise ValueError("forecast times must all start at, or all after, the trajectories' initial times.")
    solve_opts = opts.without_gradient()
    plan = inputs  # the treatment plan: given, or the data's own when the model takes inputs (model(t, y, u))
    if plan is None and takes_inputs(model):
        plan = getattr(data_or_y0, "inputs", None)
    if plan is not None and not isinstance(plan, Inputs):
        raise TypeError(f"inputs must be a physnode.data.Inputs (a treatment plan), got {type(plan).__name__}.")

    def solve(func: Any, starts: Tensor) -> Tensor:
        """States ``(rows, T, S)`` at ``t`` from ``starts (rows, S)`` (rows: a multiple of ``N``)."""
        reps = starts.shape[0] // N
        u = None if plan is None else plan.expand(N).to(device=starts.device, dtype=starts.dtype)
        u = Inputs.concat([u] * reps) if u is not None and reps > 1 else u
        ys = odeint(func, starts, grid.repeat(reps, 1) if reps > 1 else grid, options=solve_opts, inputs=u)
        return ys[:, 1:] if prepend else ys

    names = getattr(model, "state_names", None)
    S = y0.shape[-1]
    channels = list(names) if names is not None and len(names) == S else [f"y{j}" for j in range(S)]
    units = None if data is None else channel_units(data, channels)
    attrs = forecast_attrs(model, solve_opts, result=result, data=data)

    def trajectories(values: Tensor) -> Trajectories:
        return Trajectories(
            t,
            values,
            channels=channels,
            units=units,
            time_units=time_units,
            metadata=metadata,
            attrs=attrs,
            ids=ids,
            inputs=None if plan is None else plan.to(device=t.device),
        )

    if uncertainty is None:
        with torch.no_grad():
            return trajectories(solve(model, y0))
    assert result is not None  # checked by _check_uncertainty_args
    sigma = _noise(noise, result, channels, y0)
    return _bands(uncertainty, result, result.model, y0, solve, trajectories, sigma, level, n_samples, seed)


def channel_units(data: Trajectories, channels: list[str]) -> list[str]:
    """Units of forecast channels: the data's for its own channels, else the data's ``attrs["state_units"]``
    (paired with ``attrs["state_names"]``), else ``"1"``."""
    units: dict[str, str] = {}
    names, state_units = data.attrs.get("state_names"), data.attrs.get("state_units")
    if isinstance(names, list) and isinstance(state_units, list) and len(names) == len(state_units):
        units.update({str(n): str(u) for n, u in zip(names, state_units, strict=True)})
    units.update(dict(zip(data.channels, data.units, strict=True)))
    return [units.get(c, "1") for c in channels]


def forecast_attrs(
    model: Any, options: SolveOptions, *, result: FitResult | None = None, data: Trajectories | None = None
) -> dict[str, Any]:
    """What produced a forecast (its ``attrs``): the model, its parameter values, the solver, the physnode version
    and the data it started from (digest, dataset name, title). Not the data's own attributes: those describe how
    the data were made (e.g. a generator's true parameters and solver), not these predictions."""
    from . import __version__

    attrs: dict[str, Any] = {
        "title": f"Forecast of the {type(model).__name__} model",
        "source": f"physnode {__version__}",
        "physnode_version": __version__,
        "predicted_by": type(model).__name__,
    }
    try:
        attrs["solver"] = {k: v for k, v in options.to_dict().items() if k != "grad"}
    except TypeError:  # options that cannot be written to a file (e.g. a solver object's option): name the method
        attrs["solver"] = {"method": options.method_name}
    quantities = getattr(model, "physical_parameters", None)
    if callable(quantities):
        attrs["fitted_parameters" if result is not None else "parameters"] = {
            k: v.detach().cpu().to(torch.float64).tolist() for k, v in quantities().items()
        }
    if result is not None:
        attrs["fit"] = {"optimizer": result.optimizer, "epochs": result.epochs, "loss": result.loss}
    if data is not None:
        attrs["data"] = {"digest": data.digest(), **{k: data.attrs[k] for k in ("dataset", "title") if k in data.attrs}}
    if names := getattr(model, "state_names", None):
        attrs["state_names"] = list(names)
    return attrs


#: Most Laplace draws of one forecast (``n_samples``): each is a solve of every trajectory, all kept in memory.
MAX_LAPLACE_SAMPLES = 100_000


def _check_uncertainty_args(uncertainty: object, result: Any, level: object, n_samples: object, seed: object) -> None:
    if uncertainty not in UNCERTAINTY_METHODS:
        raise ValueError(f"uncertainty must be None or one of {list(UNCERTAINTY_METHODS)}, got {uncertainty!r}.")
    if result is None:
        raise TypeError(
            f"uncertainty={uncertainty!r} needs the fit's covariance: pass the FitResult instead of the model, "
            "e.g. forecast(result, data, t, uncertainty=...)."
        )
    if result.raw_covariance is None:
        raise ValueError(
            "this FitResult has no covariance to propagate (fitted with uncertainty=False, or without learnable "
            "parameters); refit with uncertainty=True, or forecast without uncertainty=."
        )
    if not bool(torch.isfinite(result.raw_covariance).all()):
        raise ValueError(
            "the fit's covariance is not finite (J^T J was singular: some parameter is not identifiable from the "
            "data); fix or drop that parameter (Param(learnable=False)) before forecasting with bands."
        )
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be a probability in (0, 1), e.g. 0.95, got {level!r}.")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or not 2 <= n_samples <= MAX_LAPLACE_SAMPLES:
        raise ValueError(
            f"n_samples must be an integer from 2 to {MAX_LAPLACE_SAMPLES:,} (Laplace draws, each a solve of every "
            f"trajectory; a few hundred give stable 95 % bands), got {n_samples!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}.")


def _noise(noise: Noise | None, result: Any, channels: list[str], like: Tensor) -> Tensor:
    """The observation-noise standard deviation per forecast channel, ``(S,)`` (0 where none)."""
    S = len(channels)
    zero = torch.zeros(S, dtype=like.dtype, device=like.device)
    if noise is None:
        if not result.noise:
            return zero
        return torch.tensor([float(result.noise.get(c, 0.0)) for c in channels], dtype=like.dtype, device=like.device)
    if isinstance(noise, Mapping):
        unknown = sorted(set(noise) - set(channels))
        if unknown:
            raise ValueError(f"noise names unknown channels {unknown}; the forecast's channels are {channels}.")
        sigma = torch.tensor([float(noise.get(c, 0.0)) for c in channels], dtype=like.dtype, device=like.device)
    elif isinstance(noise, Tensor):
        if noise.shape not in ((S,), ()):
            raise ValueError(f"noise must be a number or a tensor of shape ({S},), got shape {tuple(noise.shape)}.")
        sigma = (zero + noise.to(zero)).detach()
    elif isinstance(noise, (int, float)) and not isinstance(noise, bool):
        sigma = zero + float(noise)
    else:
        raise TypeError(
            f"noise must be a number, a {{channel: sigma}} mapping or a tensor, got {type(noise).__name__}."
        )
    if not bool((torch.isfinite(sigma) & (sigma >= 0)).all()):
        raise ValueError(f"noise standard deviations must be finite and >= 0, got {sigma.tolist()}.")
    return sigma


def _bands(
    kind: str,
    result: Any,
    model: nn.Module,
    y0: Tensor,
    solve: Any,
    trajectories: Any,
    sigma: Tensor,
    level: float,
    n_samples: int,
    seed: int,
) -> Forecast:
    """The :class:`Forecast` of ``result`` by ``kind`` (``"linear"`` / ``"laplace"``)."""
    from .fit.uncertainty import physical_quantities

    raws = [q.raw for q in physical_quantities(model) if q.raw is not None]
    cov = result.raw_covariance.to(device=y0.device)
    p_raw = sum(r.numel() for r in raws)
    learned_y0 = cov.shape[0] > p_raw
    if cov.shape[0] not in (p_raw, p_raw + result.initial_states.numel()):
        raise ValueError(
            f"the fit's covariance is over {cov.shape[0]} unknowns but the model has {p_raw} learnable parameter "
            "entries now; forecast with the model as fitted."
        )
    with_y0 = (
        learned_y0 and y0.shape == result.initial_states.shape and bool(torch.equal(y0, result.initial_states.to(y0)))
    )
    if not with_y0:
        cov = cov[:p_raw, :p_raw]
    cov = cov.to(y0.dtype)
    z = float(torch.special.ndtri(torch.tensor(0.5 + level / 2, dtype=torch.float64)))
    if kind == "linear":
        with torch.enable_grad():
            start = y0.detach().clone().requires_grad_(with_y0)
            ys = solve(model, start)
            var = linear_variance(ys, raws + ([start] if with_y0 else []), cov)
        mean = ys.detach()
        std = (var + sigma.square()).sqrt()
        return Forecast(trajectories(mean), std, mean - z * std, mean + z * std, float(level), kind, sigma)
    gen = torch.Generator().manual_seed(seed)
    theta_hat = torch.cat([r.detach().reshape(-1) for r in raws] + ([y0.reshape(-1)] if with_y0 else []))
    draws = laplace_samples(theta_hat, cov, n_samples, gen)
    N, S = y0.shape
    y0_draws = draws[:, p_raw:].reshape(n_samples, N, S) if with_y0 else None
    samples = solve_samples(model, raws, draws[:, :p_raw], y0, y0_draws, solve)
    if bool((sigma > 0).any()):
        eps = torch.randn(samples.shape, generator=gen, dtype=torch.float64).to(samples)
        samples = samples + eps * sigma
    lower, upper = quantiles(samples, [0.5 - level / 2, 0.5 + level / 2])
    mean = samples.mean(0)
    std = samples.std(0)
    return Forecast(trajectories(mean), std, lower, upper, float(level), kind, sigma, samples)
