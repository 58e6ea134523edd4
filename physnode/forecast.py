"""``physnode.forecast``: run a (fitted) model forward from known initial states and return Trajectories."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .data.trajectories import Trajectories
from .fit.initial import initial_times
from .odeint import odeint
from .options import DEFAULT_ATOL, DEFAULT_METHOD, DEFAULT_RTOL, SolveOptions, resolve_options

__all__ = ["forecast"]

_KEYWORD_DEFAULTS: dict[str, Any] = {
    "method": DEFAULT_METHOD,
    "rtol": DEFAULT_RTOL,
    "atol": DEFAULT_ATOL,
    "step_size": None,
}


def forecast(
    model: nn.Module,
    data_or_y0: Trajectories | Tensor,
    t: Tensor,
    *,
    y0: Tensor | None = None,
    method: str = DEFAULT_METHOD,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    step_size: float | None = None,
    options: Mapping[str, Any] | SolveOptions | None = None,
) -> Trajectories:
    """The model's state at times ``t`` from each trajectory's initial state.

    Parameters
    ----------
    model
        ODE right-hand side ``model(t, y)``; channel names come from ``model.state_names`` when it has them,
        else ``y0, y1, ...``.
    data_or_y0
        A :class:`~physnode.data.Trajectories`: the initial states come from ``y0=`` or the metadata
        ``"initial_state"`` at metadata ``"initial_time"`` (else at the data's first time); its metadata and ids
        are copied. Or initial states ``(S,)`` / ``(N, S)``, given at ``t[..., 0]``.
    t
        Forecast times ``(T,)`` or ``(N, T)``, strictly increasing; they may start after the initial time (the
        solve then starts at the initial time and reports only ``t``).
    y0
        Initial states ``(N, S)`` overriding the metadata (e.g. ``FitResult.initial_states``).
    method, rtol, atol, step_size, options
        As in :func:`physnode.odeint`: keywords, or one :class:`~physnode.SolveOptions` as ``options`` (e.g. a
        fit's ``result.solve_options``; its gradient method is irrelevant here, nothing is differentiated).

    Returns
    -------
    Trajectories
        ``(N, T, S)`` predicted states (fully observed), no gradient.
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"t must be a tensor of times (T,) or (N, T), got {type(t).__name__}.")
    opts = resolve_options(options, _KEYWORD_DEFAULTS, method=method, rtol=rtol, atol=atol, step_size=step_size)
    metadata = None
    ids = None
    attrs = None
    time_units = "1"
    if isinstance(data_or_y0, Trajectories):
        data = data_or_y0
        N = data.n_trajectories
        metadata, ids, attrs, time_units = data.metadata, data.ids, data.attrs, data.time_units
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
    with torch.no_grad():
        ys = odeint(model, y0, grid, options=opts.without_gradient())
    if prepend:
        ys = ys[:, 1:]
    names = getattr(model, "state_names", None)
    S = ys.shape[-1]
    channels = list(names) if names is not None and len(names) == S else [f"y{j}" for j in range(S)]
    return Trajectories(t, ys, channels=channels, time_units=time_units, metadata=metadata, attrs=attrs, ids=ids)
