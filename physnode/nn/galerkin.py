"""Depth-variant parameters by a Galerkin expansion: ``θ(t) = Σ_k α_k φ_k(t)`` on a fixed basis.

A neural ODE whose weights do not depend on ``t`` has the same field at every depth: an autonomous flow. Letting
the weights vary with depth (time) — as a residual network's layers do — with a finite expansion on a basis keeps
the parameter count finite and the field smooth (or piecewise constant) in ``t`` (Massaroli et al. 2020, the
"Galerkin neural ODE"). The coefficients ``α_k`` are ordinary parameters, so every gradient method applies.

* bases, frozen dataclasses that check themselves: :class:`Fourier`, :class:`Chebyshev`,
  :class:`PiecewiseConstant`; ``basis(t)`` returns ``φ(t)`` of shape ``t.shape + (K,)``;
* :class:`GalerkinLinear` — a linear layer with ``W(t)``, ``b(t)``, called as ``layer(t, x)``;
* :class:`TimeSequential` — a sequence of layers where those with ``takes_time = True`` receive ``t``: a ready
  vector field ``f(t, y)``.

Each trajectory of a per-trajectory batch has its own time, so ``t`` of shape ``(B,)`` gives each row its own
weights.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._checks import check_dim, check_last_dim

__all__ = ["Basis", "Chebyshev", "Fourier", "GalerkinLinear", "PiecewiseConstant", "TimeSequential"]


class Basis(ABC):
    """A finite basis ``φ_0, …, φ_(K−1)`` of functions of time."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Number of basis functions ``K``."""

    @abstractmethod
    def __call__(self, t: Tensor) -> Tensor:
        """``φ(t)`` of shape ``t.shape + (K,)`` in ``t``'s dtype."""

    @abstractmethod
    def constant(self) -> list[float]:
        """Coefficients ``c`` with ``Σ_k c_k φ_k(t) = 1`` for all ``t``: a depth-invariant starting point."""


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    return float(value)


def _as_time(t: Tensor | float) -> Tensor:
    if not isinstance(t, Tensor):
        t = torch.as_tensor(t, dtype=torch.get_default_dtype())
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return t


@dataclass(frozen=True)
class Fourier(Basis):
    """``φ(t) = [1, cos(ω t), sin(ω t), …, cos(n ω t), sin(n ω t)]`` with ``ω = 2π / period``; ``K = 2 n + 1``.

    Parameters
    ----------
    harmonics
        ``n >= 0``, the highest harmonic.
    period
        Period in time units (> 0); typically the depth of the model, e.g. ``1.0`` for ``t ∈ [0, 1]``.
    """

    harmonics: int
    period: float = 1.0

    def __post_init__(self) -> None:
        check_dim("Fourier harmonics", self.harmonics, minimum=0)
        if _finite("Fourier period", self.period) <= 0:
            raise ValueError(f"Fourier period must be positive (time units), got {self.period!r}.")

    @property
    def size(self) -> int:
        return 2 * self.harmonics + 1

    def __call__(self, t: Tensor) -> Tensor:
        t = _as_time(t)
        k = torch.arange(1, self.harmonics + 1, dtype=t.dtype, device=t.device)
        angle = (2.0 * math.pi / self.period) * t.unsqueeze(-1) * k
        cs = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1).flatten(-2)  # cos1, sin1, cos2, ...
        return torch.cat([torch.ones_like(t).unsqueeze(-1), cs], dim=-1)

    def constant(self) -> list[float]:
        return [1.0] + [0.0] * (2 * self.harmonics)


@dataclass(frozen=True)
class Chebyshev(Basis):
    """Chebyshev polynomials ``T_0, …, T_degree`` of ``s = 2 (t − t0) / (t1 − t0) − 1``; ``K = degree + 1``.

    Well conditioned on ``[t0, t1]`` (``|T_k(s)| <= 1`` there); outside it they grow like ``|s|^k``.

    Parameters
    ----------
    degree
        Highest degree (>= 0).
    t0, t1
        The time interval mapped to ``[−1, 1]`` (``t0 < t1``, time units).
    """

    degree: int
    t0: float = 0.0
    t1: float = 1.0

    def __post_init__(self) -> None:
        check_dim("Chebyshev degree", self.degree, minimum=0)
        if not _finite("Chebyshev t0", self.t0) < _finite("Chebyshev t1", self.t1):
            raise ValueError(f"Chebyshev needs t0 < t1, got t0={self.t0!r}, t1={self.t1!r}.")

    @property
    def size(self) -> int:
        return self.degree + 1

    def __call__(self, t: Tensor) -> Tensor:
        t = _as_time(t)
        s = (2.0 * (t - self.t0) / (self.t1 - self.t0)) - 1.0
        out = [torch.ones_like(s)]
        if self.degree >= 1:
            out.append(s)
        for _ in range(2, self.degree + 1):
            out.append(2.0 * s * out[-1] - out[-2])
        return torch.stack(out, dim=-1)

    def constant(self) -> list[float]:
        return [1.0] + [0.0] * self.degree


@dataclass(frozen=True)
class PiecewiseConstant(Basis):
    """Indicators of the pieces ``(−∞, b_1), [b_1, b_2), …, [b_m, ∞)``; ``K = m + 1``.

    Piecewise-constant weights make the field discontinuous in ``t``: adaptive solvers reject the steps that
    straddle a breakpoint and shrink onto it, and no method differentiates with respect to the breakpoints.

    Parameters
    ----------
    breakpoints
        Strictly increasing interior breakpoints ``b_1 < … < b_m`` (time units, ``m >= 1``).
    """

    breakpoints: tuple[float, ...]

    def __post_init__(self) -> None:
        b = tuple(_finite("PiecewiseConstant breakpoint", v) for v in self.breakpoints)
        if not b:
            raise ValueError("PiecewiseConstant needs at least one breakpoint, e.g. breakpoints=(0.5,).")
        for i in range(1, len(b)):
            if not b[i] > b[i - 1]:
                raise ValueError(
                    f"PiecewiseConstant breakpoints must be strictly increasing; breakpoints[{i}] = {b[i]} <= "
                    f"breakpoints[{i - 1}] = {b[i - 1]}. Sort them and drop duplicates."
                )
        object.__setattr__(self, "breakpoints", b)

    @classmethod
    def uniform(cls, pieces: int, t0: float = 0.0, t1: float = 1.0) -> PiecewiseConstant:
        """``pieces`` (>= 2) equal pieces of ``[t0, t1]``."""
        check_dim("pieces", pieces, minimum=2)
        if not _finite("t0", t0) < _finite("t1", t1):
            raise ValueError(f"PiecewiseConstant.uniform needs t0 < t1, got t0={t0!r}, t1={t1!r}.")
        return cls(tuple(t0 + (t1 - t0) * k / pieces for k in range(1, pieces)))

    @property
    def size(self) -> int:
        return len(self.breakpoints) + 1

    def __call__(self, t: Tensor) -> Tensor:
        t = _as_time(t)
        b = torch.tensor(self.breakpoints, dtype=t.dtype, device=t.device)
        idx = torch.searchsorted(b, t.detach().contiguous(), right=True)
        return nn.functional.one_hot(idx, self.size).to(t.dtype)

    def constant(self) -> list[float]:
        return [1.0] * self.size


class GalerkinLinear(nn.Module):
    """``y = W(t) x + b(t)`` with ``W(t) = Σ_k A_k φ_k(t)``, ``b(t) = Σ_k c_k φ_k(t)``.

    At construction ``W(t)`` and ``b(t)`` are constant in ``t`` and equal to a freshly initialised
    ``nn.Linear`` (the basis's :meth:`~Basis.constant` coefficients), so training starts depth-invariant.

    Parameters
    ----------
    in_features, out_features
        Sizes of ``x`` and ``y``.
    basis
        A :class:`Basis` with ``K`` functions.
    bias
        Whether to learn ``b(t)``.
    dtype, device
        Of the coefficients.

    Attributes
    ----------
    coeff
        ``(K, out_features, in_features)``, the ``A_k``.
    bias_coeff
        ``(K, out_features)``, the ``c_k`` (``None`` without bias).
    takes_time
        ``True``: :class:`TimeSequential` calls it as ``layer(t, x)``.
    """

    takes_time = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        basis: Basis,
        *,
        bias: bool = True,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_dim("in_features", in_features)
        self.out_features = check_dim("out_features", out_features)
        if not isinstance(basis, Basis):
            raise TypeError(
                f"basis must be a physnode.nn Basis (Fourier, Chebyshev, PiecewiseConstant), got {basis!r}."
            )
        self.basis = basis
        ref = nn.Linear(in_features, out_features, bias=bias, dtype=dtype, device=device)
        c = torch.tensor(basis.constant(), dtype=ref.weight.dtype, device=ref.weight.device)
        self.coeff = nn.Parameter(c.view(-1, 1, 1) * ref.weight.detach())
        self.bias_coeff = nn.Parameter(c.view(-1, 1) * ref.bias.detach()) if bias else None

    def weight(self, t: Tensor) -> Tensor:
        """``W(t)`` of shape ``t.shape + (out_features, in_features)``."""
        phi = self.basis(_as_time(t).to(self.coeff.dtype))
        return torch.einsum("...k,koi->...oi", phi, self.coeff)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """``W(t) x + b(t)``.

        Parameters
        ----------
        t
            Times, ``()`` (shared) or broadcastable to ``x.shape[:-1]`` (e.g. ``(B,)``, one per trajectory).
        x
            Inputs ``(..., in_features)``.

        Returns
        -------
        Tensor
            ``(..., out_features)``.
        """
        check_last_dim("GalerkinLinear input x", x, self.in_features, "Features go on the last axis.")
        phi = self.basis(_as_time(t).to(dtype=x.dtype, device=x.device))  # t.shape + (K,)
        xk = torch.einsum("...i,koi->...ko", x, self.coeff)  # x.shape[:-1] + (K, out)
        y = (phi.unsqueeze(-1) * xk).sum(-2)
        if self.bias_coeff is not None:
            y = y + phi @ self.bias_coeff
        return y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, basis={self.basis}"


class TimeSequential(nn.Sequential):
    """``nn.Sequential`` for vector fields: ``forward(t, y)`` passes ``t`` to the layers with ``takes_time``.

    Examples
    --------
    >>> basis = Fourier(harmonics=2)
    >>> f = TimeSequential(GalerkinLinear(2, 16, basis), nn.Tanh(), GalerkinLinear(16, 2, basis))
    >>> f(torch.zeros(5), torch.randn(5, 2)).shape        # a field f(t, y) for physnode.odeint
    torch.Size([5, 2])
    """

    def forward(self, t: Tensor, y: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            y = layer(t, y) if getattr(layer, "takes_time", False) else layer(y)
        return y
