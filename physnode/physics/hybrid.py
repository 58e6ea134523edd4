"""Known physics plus a learned residual on chosen state components."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sympy as sp
import torch
from torch import Tensor, nn

from .base import PhysicsModel

__all__ = ["Hybrid"]


def _takes_time(module: nn.Module) -> bool:
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())


class Hybrid(PhysicsModel):
    """``dy/dt = physics(t, y) + P · correction(y)``: known physics plus a neural residual on chosen components.

    Parameters
    ----------
    physics
        The known part, a :class:`PhysicsModel` (its named parameters are this model's too).
    correction
        Any ``nn.Module``; called as ``correction(t, y)`` if its ``forward`` takes two positional arguments,
        else ``correction(y)``. It must return ``(..., k)`` with ``k`` the number of components in ``on``.
    on
        Which state components receive the residual: ``"all"`` (default), ``"positions"`` (first half),
        ``"velocities"`` (second half, e.g. only accelerations / forces), or a sequence of indices.

    Attributes
    ----------
    correction_enabled
        Set to ``False`` (or use :meth:`without_correction`) to run the physics alone, for comparison.
    separable
        ``False``: a learned residual of the whole state breaks the position/velocity split.
    """

    separable = False

    def __init__(self, physics: PhysicsModel, correction: nn.Module, *, on: str | Sequence[int] = "all") -> None:
        super().__init__(None)
        if not isinstance(physics, PhysicsModel):
            raise TypeError(
                f"Hybrid physics must be a physnode.physics model (SymbolicODE, Hamiltonian, ...), got "
                f"{type(physics).__name__}."
            )
        if not isinstance(correction, nn.Module):
            raise TypeError(f"Hybrid correction must be an nn.Module, got {type(correction).__name__}.")
        D = physics.state_dim
        if isinstance(on, str):
            if on == "all":
                idx = list(range(D))
            elif on in ("positions", "velocities"):
                if D % 2:
                    raise ValueError(f"on={on!r} needs an even state dimension, got D = {D}.")
                idx = list(range(D // 2)) if on == "positions" else list(range(D // 2, D))
            else:
                raise ValueError(f"on must be 'all', 'positions', 'velocities' or a list of indices, got {on!r}.")
        elif isinstance(on, Sequence):
            idx = list(on)
            for i in idx:
                if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < D:
                    raise ValueError(f"on indices must be integers in [0, {D}), got {i!r} in {list(on)}.")
            if len(set(idx)) != len(idx) or not idx:
                raise ValueError(f"on indices must be distinct and non-empty, got {idx}.")
        else:
            raise TypeError(
                f"on must be 'all', 'positions', 'velocities' or a list of indices, got {type(on).__name__} {on!r}."
            )
        self.physics = physics
        self.correction = correction
        self.register_buffer("on_index", torch.tensor(idx, dtype=torch.long), persistent=False)
        self.state_names = list(physics.state_names)
        self.correction_enabled = True
        self._with_time = _takes_time(correction)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """physics(t, y) plus the residual on the chosen components (when enabled)."""
        f = self.physics(t, y)
        if not self.correction_enabled:
            return f
        r = self.correction(t, y) if self._with_time else self.correction(y)
        k = self.on_index.numel()
        if not isinstance(r, Tensor) or r.shape != (*f.shape[:-1], k):
            got = tuple(r.shape) if isinstance(r, Tensor) else type(r).__name__
            raise ValueError(
                f"Hybrid correction must return shape {(*f.shape[:-1], k)} (one value per component in on), got {got}."
            )
        return f.index_add(-1, self.on_index, r.to(f.dtype))

    def physical_parameters(self) -> dict[str, Tensor]:
        """The physics' named quantities (the network's weights are not physical parameters)."""
        return self.physics.physical_parameters()

    @contextmanager
    def without_correction(self) -> Iterator[Hybrid]:
        """Context in which the model is the physics alone."""
        before = self.correction_enabled
        self.correction_enabled = False
        try:
            yield self
        finally:
            self.correction_enabled = before

    def equations(self) -> list[sp.Eq]:
        """The known physics' equations (the residual is a network and has no closed form)."""
        return self.physics.equations()
