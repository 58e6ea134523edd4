"""Interventions ``do(·)`` on ODE models: hold variables at values, or fix physical parameters.

* A **state intervention** ``do={"x3": 0.5}`` replaces the mechanism of ``x3`` by a constant: ``x3`` is held at
  0.5 (its derivative is zero and every other equation sees 0.5). For a model with ``order == 2`` (state
  ``[x, v]``, e.g. a second-order :class:`~physnode.causal.StructuredODE`) holding a position also holds its
  velocity at 0. The value is applied to the initial state too (:meth:`Intervened.apply`, :func:`forecast`).
* A **parameter intervention** ``do={"k": 2.0}`` on a physics model (a :class:`~physnode.physics.Param` named
  ``k``) returns a copy of the model with ``k`` fixed at 2.0 (a known constant).

Both work for learned and symbolic models, and mix in one ``do``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..data.trajectories import Trajectories, solver_ready_times
from ..fit.initial import initial_times

__all__ = ["Intervened", "forecast", "intervene", "prediction_error"]


def _param_owners(model: nn.Module) -> dict[str, list[nn.Module]]:
    """``name -> [physics models holding a Param called name]``."""
    from ..physics.base import PhysicsModel

    owners: dict[str, list[nn.Module]] = {}
    for m in model.modules():
        if isinstance(m, PhysicsModel):
            for name in m.params:
                owners.setdefault(name, []).append(m)
    return owners


def _value(name: str, v: Any) -> float:
    if isinstance(v, Tensor) and v.numel() == 1:
        v = float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"do[{name!r}] must be a finite number, got {v!r}.")
    return float(v)


class Intervened(nn.Module):
    """A model under a state intervention: clamped components held at fixed values.

    ``forward(t, y)`` evaluates the base model on ``y`` with the clamped components replaced by their values and
    returns its derivative with zeros at the clamped components.

    Attributes
    ----------
    base
        The model intervened on.
    index
        ``(k,)`` clamped state indices; ``values`` ``(k,)`` their values.
    do
        The intervention, ``{name: value}`` (state variables only; parameters are already fixed in ``base``).
    """

    def __init__(self, base: nn.Module, index: list[int], values: list[float], do: dict[str, float]) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)
        self.register_buffer("values", torch.tensor(values, dtype=torch.float64), persistent=False)
        self.do = dict(do)
        names = getattr(base, "state_names", None)
        if names is not None:
            self.state_names = list(names)
        if hasattr(base, "order"):
            self.order = base.order

    def apply(self, y: Tensor) -> Tensor:
        """``y (..., S)`` with the clamped components set to their values (e.g. the initial states)."""
        if not self.index.numel():
            return y
        y = y.clone()
        y[..., self.index] = self.values.to(y)
        return y

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        f = self.base(t, self.apply(y))
        if not self.index.numel():
            return f
        keep = torch.ones(f.shape[-1], dtype=f.dtype, device=f.device)
        keep[self.index] = 0
        return f * keep

    def extra_repr(self) -> str:
        return f"do={self.do}"


def intervene(model: nn.Module, do: Mapping[str, float]) -> nn.Module:
    """The model under the intervention ``do``.

    Parameters
    ----------
    model
        Any right-hand side ``model(t, y)`` with ``state_names`` (a StructuredODE, a physics model, a Hybrid, ...).
    do
        ``{name: value}``: state variables (held at the value) and/or physical parameters (fixed at the value).

    Returns
    -------
    nn.Module
        An :class:`Intervened` wrapper (state interventions), a modified copy (parameter interventions only), or
        an Intervened wrapper of a modified copy. The original model is never changed.

    Raises
    ------
    ValueError
        An unknown name (the message lists the state variables and parameters), a non-finite value, or a
        parameter whose shape is not scalar.
    """
    if not isinstance(do, Mapping) or not do:
        raise ValueError(f"do must be a non-empty dict {{name: value}}, e.g. {{'x3': 0.5}}, got {do!r}.")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module with forward(t, y), got {type(model).__name__}.")
    names = list(getattr(model, "state_names", None) or [])
    owners = _param_owners(model)
    state_do: dict[str, float] = {}
    param_do: dict[str, float] = {}
    for name, v in do.items():
        if name in names:
            state_do[name] = _value(name, v)
        elif name in owners:
            param_do[name] = _value(name, v)
        else:
            raise ValueError(
                f"do names {name!r}, which is neither a state variable nor a parameter of the model. State "
                f"variables: {', '.join(names) or '(none: the model has no state_names)'}; parameters: "
                f"{', '.join(owners) or '(none)'}. Use one of those names."
            )
    out = model
    if param_do:
        from ..physics.params import Param

        out = copy.deepcopy(model)
        new_owners = _param_owners(out)
        for name, v in param_do.items():
            for m in new_owners[name]:
                old = m.params[name]
                if old.shape != torch.Size([]):
                    raise ValueError(f"do[{name!r}]: parameter {name!r} has shape {tuple(old.shape)}; only scalars.")
                m.params[name] = Param(torch.tensor(v, dtype=old.raw.dtype, device=old.raw.device), learnable=False)
    if not state_do:
        return out
    order = getattr(model, "order", 1)
    index, values = [], []
    for name, v in state_do.items():
        i = names.index(name)
        index.append(i)
        values.append(v)
        if order == 2 and i < len(names) // 2:
            vi = i + len(names) // 2
            if names[vi] not in state_do:
                index.append(vi)
                values.append(0.0)
    return Intervened(out, index, values, {**state_do, **param_do})


def _initial(data: Trajectories) -> tuple[Tensor, Tensor]:
    if not all("initial_state" in m for m in data.metadata):
        raise ValueError(
            "the data have no metadata 'initial_state' per trajectory; build Trajectories with metadata "
            "[{'initial_state': [...], 'initial_time': t0}, ...]."
        )
    y0 = data.metadata_tensor("initial_state", dtype=data.values.dtype).to(data.device)
    return y0, initial_times(data)


def _predict(model: nn.Module, data: Trajectories, **solve_kw: Any) -> tuple[Tensor, Tensor]:
    """Predicted states at the data times ``(N, T, S)`` and the valid-time mask ``(N, T)``."""
    from ..odeint import odeint

    y0, t0 = _initial(data)
    if isinstance(model, Intervened):
        y0 = model.apply(y0)
    t = solver_ready_times(data.times, data.lengths)
    same = bool(torch.allclose(t0, t[:, 0], rtol=0, atol=1e-12 * max(1.0, float(t.abs().max()))))
    grid = t if same else torch.cat([t0.unsqueeze(1), t], dim=1)
    with torch.no_grad():
        ys = odeint(model, y0, grid, **solve_kw)
    return (ys if same else ys[:, 1:]), data.time_mask


def prediction_error(model: nn.Module, data: Trajectories, *, relative: bool = False, **solve_kw: Any) -> float:
    """Masked mean squared error of the model's solve from the data's initial states against the data.

    Parameters
    ----------
    model
        Right-hand side (an :class:`Intervened` model starts from its intervened initial states).
    data
        Trajectories with metadata ``initial_state``; the channels must be named like the model's state
        components (or be all of them, in order).
    relative
        Divide by the mean square of the observed values (a scale-free error).
    **solve_kw
        ``method``, ``rtol``, ``atol``, ``step_size``, ``options`` of :func:`physnode.odeint`.

    Returns
    -------
    float
        ``Σ_observed (ŷ − y)² / n_observed`` (or its relative version).
    """
    kw = {k: v for k, v in solve_kw.items() if v is not None}
    ys, _ = _predict(model, data, **kw)
    names = list(getattr(model, "state_names", None) or [])
    if ys.shape[-1] == data.n_channels and (not names or names == list(data.channels)):
        pred = ys
    else:
        missing = [c for c in data.channels if c not in names]
        if missing:
            raise ValueError(
                f"the data channels {missing} are not state components of the model ({names}); pass data with "
                "channels named like the model's state_names."
            )
        pred = ys[..., [names.index(c) for c in data.channels]]
    m = data.mask
    err = torch.where(m, pred - data.values, torch.zeros((), dtype=pred.dtype, device=pred.device)).square().sum()
    n = m.sum().clamp_min(1)
    mse = float(err / n)
    if relative:
        scale = torch.where(m, data.values, torch.zeros((), dtype=pred.dtype, device=pred.device)).square().sum() / n
        mse = mse / max(float(scale), 1e-300)
    return mse


def forecast(
    model: nn.Module,
    data_or_y0: Trajectories | Tensor,
    t: Tensor,
    *,
    do: Mapping[str, float] | None = None,
    **kwargs: Any,
) -> Trajectories:
    """:func:`physnode.forecast` under the intervention ``do`` (held values applied to the initial states).

    Parameters
    ----------
    model
        A right-hand side, or an already intervened model (then ``do`` must be ``None``).
    data_or_y0, t, **kwargs
        As in :func:`physnode.forecast` (``y0=`` overrides the metadata's initial states).
    do
        The intervention (see :func:`intervene`); ``None`` forecasts ``model`` as it is.

    Returns
    -------
    Trajectories
        ``(N, T, S)`` predicted states; ``attrs["do"]`` records the intervention.
    """
    from ..forecast import forecast as base_forecast

    m = intervene(model, do) if do else model
    y0 = kwargs.pop("y0", None)
    if isinstance(m, Intervened):
        if y0 is None and isinstance(data_or_y0, Trajectories):
            y0, _ = _initial(data_or_y0)
        if y0 is not None:
            y0 = m.apply(y0)
        elif isinstance(data_or_y0, Tensor):
            data_or_y0 = m.apply(data_or_y0)
    out = base_forecast(m, data_or_y0, t, y0=y0, **kwargs)
    out.attrs = {**(out.attrs or {}), "do": dict(getattr(m, "do", {}))}
    return out
