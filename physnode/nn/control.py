"""Data-controlled neural ODEs: the vector field sees the input, ``dz/dt = f(t, z, x)``.

A neural ODE whose field depends on ``z`` only has a single flow for all inputs, and the flow is a
homeomorphism. Letting the field see the input ``x`` of each trajectory gives each input its own flow (a family
of vector fields indexed by the data), which removes that limitation without enlarging ``z``.

How ``x`` reaches the field: the state carries it. :meth:`DataControlled.initial_state` appends ``x`` to
``z(0)``; the field returns zeros for those components, so ``x`` stays constant along each trajectory. This
makes ``x`` per trajectory for free (any batch, any per-trajectory times), and because ``x`` is part of the
state every gradient method differentiates through it exactly — including with respect to ``x`` itself, when
``x`` comes from an encoder. The constant components have zero local error, which lowers the RMS error norm of
the adaptive solvers by ``sqrt(dim_z / (dim_z + dim_x))`` (equivalently, loosens ``rtol``/``atol`` by the
inverse factor); tighten the tolerances by that factor for the same accuracy on ``z``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ._checks import check_dim, check_returned

__all__ = ["DataControlled"]


class DataControlled(nn.Module):
    """The field ``dz/dt = field(t, z, x)`` on the state ``y = [z, x]`` with ``dx/dt = 0``.

    Parameters
    ----------
    field
        ``field(t, z, x) -> dz/dt`` with ``t`` ``(...)``, ``z`` ``(..., Dz)``, ``x`` ``(..., Dx)``; returns
        ``(..., Dz)``. Its parameters are this module's (found automatically by every gradient method).
    input_dim
        ``Dx``, the size of the control input ``x`` (the last ``Dx`` components of the state).

    Examples
    --------
    >>> f = DataControlled(lambda t, z, x: -z + x, input_dim=2)
    >>> y0 = f.initial_state(torch.zeros(8, 2), x)          # (8, 4) = [z0, x]
    >>> ys = physnode.odeint(f, y0, t, grad="aca")          # (8, T, 4)
    >>> z, x_again = f.split(ys)                            # (8, T, 2), (8, T, 2)
    """

    def __init__(self, field: Callable[[Tensor, Tensor, Tensor], Tensor], input_dim: int) -> None:
        super().__init__()
        if not callable(field):
            raise TypeError(f"field must be callable as field(t, z, x), got {type(field).__name__}.")
        self.field = field
        self.input_dim = check_dim("input_dim", input_dim)

    def _state_dim(self, y: Tensor, who: str) -> int:
        if not isinstance(y, Tensor) or y.ndim < 1 or y.shape[-1] <= self.input_dim:
            raise ValueError(
                f"{who} expects a state [z, x] of shape (..., Dz + {self.input_dim}) with Dz >= 1, got "
                f"{getattr(y, 'shape', type(y).__name__)}. Build it with DataControlled.initial_state(z0, x)."
            )
        return y.shape[-1] - self.input_dim

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """``[field(t, z, x), 0]`` for ``y = [z, x]`` ``(..., Dz + Dx)``."""
        d = self._state_dim(y, "DataControlled")
        z, x = y[..., :d], y[..., d:]
        dz = self.field(t, z, x)
        check_returned("DataControlled's field(t, z, x)", dz, tuple(z.shape), "The field returns dz/dt.")
        return torch.cat([dz, torch.zeros_like(x)], dim=-1)

    def initial_state(self, z0: Tensor, x: Tensor) -> Tensor:
        """``[z0, x]`` ``(..., Dz + Dx)``; ``x`` ``(..., Dx)`` is broadcast to ``z0``'s batch shape.

        Parameters
        ----------
        z0
            Initial states ``(..., Dz)`` (often ``x`` itself, or a lift of it).
        x
            Control inputs ``(..., Dx)``, one per trajectory (or one shared, broadcast).
        """
        if not isinstance(z0, Tensor) or z0.ndim < 1:
            raise ValueError(f"z0 must be a tensor of shape (..., Dz), got {getattr(z0, 'shape', type(z0).__name__)}.")
        if not isinstance(x, Tensor) or x.ndim < 1 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"x must have shape (..., {self.input_dim}) (input_dim={self.input_dim}), got "
                f"{getattr(x, 'shape', type(x).__name__)}."
            )
        batch = z0.shape[:-1]
        try:
            x = torch.broadcast_to(x, (*batch, self.input_dim))
        except RuntimeError:
            raise ValueError(
                f"x of shape {tuple(x.shape)} does not match the batch of z0, {tuple(z0.shape)}: give one x per "
                f"trajectory, shape ({', '.join(map(str, batch))}, {self.input_dim}), or one shared x."
            ) from None
        if x.dtype != z0.dtype or x.device != z0.device:
            raise TypeError(
                f"x ({x.dtype}, {x.device}) must have the dtype and device of z0 ({z0.dtype}, {z0.device})."
            )
        return torch.cat([z0, x], dim=-1)

    def split(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, x)`` from states ``(..., Dz + Dx)`` (e.g. ``ys`` of shape ``(B, T, Dz + Dx)``)."""
        d = self._state_dim(y, "DataControlled.split")
        return y[..., :d], y[..., d:]

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}"
