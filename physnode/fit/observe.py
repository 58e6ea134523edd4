"""The observation map ``observe``: model state ``(..., S)`` -> observed channels ``(..., D)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["Observation", "resolve_observe"]


class Observation:
    """A resolved observation map.

    Attributes
    ----------
    index
        State indices of the observed channels (``None`` for a callable map).
    identity
        Whether the map is the identity (state == channels).
    """

    def __init__(self, fn: Callable[[Tensor], Tensor], index: list[int] | None, identity: bool, n_channels: int):
        self._fn = fn
        self.index = index
        self.identity = identity
        self.n_channels = n_channels

    def __call__(self, y: Tensor) -> Tensor:
        out = self._fn(y)
        if not isinstance(out, Tensor) or out.shape != (*y.shape[:-1], self.n_channels):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"observe(y) must map states of shape {tuple(y.shape)} to the {self.n_channels} data channels, "
                f"shape {(*y.shape[:-1], self.n_channels)}; got {got}."
            )
        if not self.identity and self.index is None and not bool(torch.isfinite(out).all()):
            if bool(torch.isfinite(y).all()):  # the states are fine: the map itself made the NaN / Inf
                raise ValueError(
                    "observe(y) returned NaN or Inf for finite states y; the fit's loss and gradients would be NaN "
                    "(and the parameters with them). Make the observation map finite on the states the model "
                    "reaches (guard divisions, logarithms and square roots)."
                )
        return out


def resolve_observe(
    observe: Sequence[int] | Sequence[str] | Callable[[Tensor], Tensor] | None,
    state_dim: int,
    state_names: Sequence[str] | None,
    channels: Sequence[str],
    data_state_names: Sequence[str] | None = None,
) -> Observation:
    """Turn ``observe=`` into an :class:`Observation`.

    ``None``: the identity when the state has as many components as the data has channels; otherwise the state
    components named like the data channels, looked up in the model's ``state_names`` or, failing that, in the
    data's own ``attrs["state_names"]`` (the dataset's full state, in the model's order, as written by
    :mod:`physnode.datasets`) when it has ``S`` entries; else a ``ValueError``. A list of ints picks state
    components by index, a list of str by name; a callable ``observe(y) -> (..., D)`` is used as is.
    """
    D = len(channels)
    if observe is None:
        if state_dim == D:
            return Observation(lambda y: y, list(range(D)), True, D)
        if state_names is not None and all(c in state_names for c in channels):
            return _indexed([list(state_names).index(c) for c in channels], state_dim, D)
        if data_state_names is not None and len(data_state_names) == state_dim:
            if all(c in data_state_names for c in channels):
                return _indexed([list(data_state_names).index(c) for c in channels], state_dim, D)
        raise ValueError(
            f"the model state has {state_dim} components but the data has {D} channels {list(channels)}, and they "
            "are not all state names of the model; pass observe= (state indices, state names, or a callable "
            "y -> observed channels)."
        )
    if callable(observe):
        return Observation(observe, None, False, D)
    if isinstance(observe, (str, bytes)) or not isinstance(observe, Sequence):
        raise TypeError(
            f"observe must be None, a list of state indices or names, or a callable, got {type(observe).__name__}."
        )
    items = list(observe)
    if len(items) != D:
        raise ValueError(
            f"observe lists {len(items)} state components but the data has {D} channels {list(channels)}; give one "
            "state component per data channel."
        )
    if all(isinstance(i, str) for i in items):
        if state_names is None:
            raise ValueError("observe names state components, but the model has no state_names; use indices.")
        missing = [i for i in items if i not in state_names]
        if missing:
            raise ValueError(f"observe names unknown state components {missing}; the model's are {list(state_names)}.")
        items = [list(state_names).index(i) for i in items]
    for i in items:
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < state_dim:
            raise ValueError(f"observe indices must be integers in [0, {state_dim}), got {i!r} in {list(observe)}.")
    return _indexed(items, state_dim, D)


def _indexed(idx: list[int], state_dim: int, D: int) -> Observation:
    identity = idx == list(range(state_dim))
    index_t: dict[torch.device, Tensor] = {}

    def fn(y: Tensor) -> Tensor:
        if y.device not in index_t:
            index_t[y.device] = torch.tensor(idx, dtype=torch.long, device=y.device)
        return y.index_select(-1, index_t[y.device])

    return Observation(fn, idx, identity, D)
