"""Augmentation: solve the neural ODE in a larger space than the data (ANODE, input layers, second order).

The flow of ``dz/dt = f(t, z)`` is a homeomorphism of the state space: trajectories cannot cross, so a neural ODE
on the data's own space cannot, for instance, pull a disc out of the annulus around it. Solving in
``R^(D + A)`` removes that limitation; the extra ``A`` components are ordinary state, so every solver and every
gradient method applies unchanged.

* :class:`ZeroAugment` — ``z(0) = [x, 0]`` (augmented neural ODEs, Dupont et al. 2019);
* :class:`InputAugment` — a learned lift ``z(0) = h(x)`` and a learned projection ``y = g(z(T))``
  (input-layer augmentation, Massaroli et al. 2020);
* :class:`SecondOrder` — ``z'' = a(t, z, z')`` written as a first-order system on ``[z, z']``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ._checks import check_dim, check_last_dim, check_returned

__all__ = ["InputAugment", "SecondOrder", "ZeroAugment"]


class ZeroAugment(nn.Module):
    """Zero augmentation (ANODE): ``z(0) = [x, 0, …, 0]`` with ``augment_dim`` zeros appended.

    Parameters
    ----------
    augment_dim
        Number of zero components ``A`` appended to the input.

    Examples
    --------
    >>> aug = ZeroAugment(2)
    >>> z0 = aug(torch.ones(5, 2))  # (5, 4): [x, 0, 0]
    >>> aug.project(z0).shape
    torch.Size([5, 2])
    """

    def __init__(self, augment_dim: int) -> None:
        super().__init__()
        self.augment_dim = check_dim("augment_dim", augment_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Lift ``x`` ``(..., D)`` to ``(..., D + A)`` by appending zeros (same dtype and device)."""
        if not isinstance(x, Tensor) or x.ndim < 1:
            raise ValueError(f"ZeroAugment expects x of shape (..., D), got {getattr(x, 'shape', type(x).__name__)}.")
        return torch.cat([x, x.new_zeros(*x.shape[:-1], self.augment_dim)], dim=-1)

    def project(self, z: Tensor) -> Tensor:
        """Drop the augmented components: ``(..., D + A) -> (..., D)``.

        A classifier usually reads the whole augmented state instead (a linear layer on ``(..., D + A)``).
        """
        if not isinstance(z, Tensor) or z.ndim < 1 or z.shape[-1] <= self.augment_dim:
            raise ValueError(
                f"ZeroAugment.project expects z of shape (..., D + {self.augment_dim}) with D >= 1, got "
                f"{getattr(z, 'shape', type(z).__name__)}."
            )
        return z[..., : z.shape[-1] - self.augment_dim]

    def extra_repr(self) -> str:
        return f"augment_dim={self.augment_dim}"


class InputAugment(nn.Module):
    """Input-layer augmentation: a learned lift ``z(0) = h(x)`` into ``R^state_dim`` and projection ``g(z)``.

    Parameters
    ----------
    in_dim
        Size ``D`` of the data ``x``.
    state_dim
        Size of the ODE state ``z``; larger than ``in_dim`` to leave the flow room to untangle the data.
    out_dim
        Size of the output of :meth:`project` (e.g. the number of classes). ``None``: :meth:`project` is the
        identity.
    lift
        Module mapping ``(..., in_dim)`` to ``(..., state_dim)``; default ``nn.Linear(in_dim, state_dim)``.
    dtype, device
        Of the default linear layers.
    """

    def __init__(
        self,
        in_dim: int,
        state_dim: int,
        out_dim: int | None = None,
        *,
        lift: nn.Module | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.in_dim = check_dim("in_dim", in_dim)
        self.state_dim = check_dim("state_dim", state_dim)
        self.out_dim = None if out_dim is None else check_dim("out_dim", out_dim)
        if lift is not None and not isinstance(lift, nn.Module):
            raise TypeError(f"lift must be an nn.Module mapping (..., {in_dim}) to (..., {state_dim}), got {lift!r}.")
        self.lift = lift if lift is not None else nn.Linear(in_dim, state_dim, dtype=dtype, device=device)
        self.head = None if out_dim is None else nn.Linear(state_dim, out_dim, dtype=dtype, device=device)

    def forward(self, x: Tensor) -> Tensor:
        """Lift ``x`` ``(..., in_dim)`` to the initial state ``(..., state_dim)``."""
        check_last_dim("InputAugment input x", x, self.in_dim, "Pass the data with its features on the last axis.")
        z0 = self.lift(x)
        return check_returned(
            "InputAugment's lift", z0, (*x.shape[:-1], self.state_dim), "The lift must map in_dim to state_dim."
        )

    def project(self, z: Tensor) -> Tensor:
        """Project a state ``(..., state_dim)`` to ``(..., out_dim)`` (identity when ``out_dim`` is ``None``)."""
        check_last_dim("InputAugment.project input z", z, self.state_dim, "Pass ODE states, e.g. ys[..., -1, :].")
        return z if self.head is None else self.head(z)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, state_dim={self.state_dim}, out_dim={self.out_dim}"


class SecondOrder(nn.Module):
    """A second-order neural ODE ``q'' = a(t, q, q')`` as the first-order field on ``y = [q, v]``.

    ``forward(t, y)`` returns ``[v, a(t, y)]``. The state has twice the dimension of ``q``, so a second-order
    model is also an augmented one (with the velocity as the augmentation and ``v(0)`` its initial value).

    Parameters
    ----------
    accel
        ``accel(t, y) -> (..., D)``: the acceleration, given ``t`` ``(...)`` and the whole state ``y = [q, v]``
        ``(..., 2 D)`` (any ``f(t, y)`` module, e.g. an MLP from ``2 D`` to ``D`` inputs).

    Attributes
    ----------
    separable
        ``False``: the acceleration may depend on the velocity, so the leapfrog solvers do not apply.
    """

    separable = False

    def __init__(self, accel: Callable[[Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        if not callable(accel):
            raise TypeError(f"accel must be callable as accel(t, y), got {type(accel).__name__}.")
        self.accel = accel

    @staticmethod
    def _half(y: Tensor, who: str) -> int:
        if not isinstance(y, Tensor) or y.ndim < 1 or y.shape[-1] % 2 or y.shape[-1] == 0:
            raise ValueError(
                f"{who} expects a state [q, v] of shape (..., 2 D), got {getattr(y, 'shape', type(y).__name__)}. "
                "Build it with SecondOrder.initial_state(q0, v0)."
            )
        return y.shape[-1] // 2

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """``dy/dt = [v, a(t, y)]`` for ``y = [q, v]`` ``(..., 2 D)``."""
        d = self._half(y, "SecondOrder")
        a = self.accel(t, y)
        check_returned("SecondOrder's accel(t, y)", a, (*y.shape[:-1], d), "accel returns the acceleration of q.")
        return torch.cat([y[..., d:], a], dim=-1)

    @staticmethod
    def initial_state(q0: Tensor, v0: Tensor | None = None) -> Tensor:
        """``[q0, v0]`` ``(..., 2 D)``; ``v0`` defaults to zeros (a learned ``v0`` is another input layer)."""
        if not isinstance(q0, Tensor) or q0.ndim < 1:
            raise ValueError(f"q0 must be a tensor of shape (..., D), got {getattr(q0, 'shape', type(q0).__name__)}.")
        if v0 is None:
            v0 = torch.zeros_like(q0)
        elif not isinstance(v0, Tensor) or v0.shape != q0.shape:
            got = getattr(v0, "shape", type(v0).__name__)
            raise ValueError(f"v0 must have the shape of q0, {tuple(q0.shape)}; got {got}.")
        return torch.cat([q0, v0], dim=-1)

    def positions(self, y: Tensor) -> Tensor:
        """``q`` from states ``(..., 2 D)``."""
        return y[..., : self._half(y, "SecondOrder.positions")]

    def velocities(self, y: Tensor) -> Tensor:
        """``v = q'`` from states ``(..., 2 D)``."""
        return y[..., self._half(y, "SecondOrder.velocities") :]
