"""Diffusion terms for :func:`physnode.sde.sdeint`: additive noise with a learnable positive scale, and neural.

Every diffusion is an ``nn.Module`` called as ``diffusion(t, y)`` with ``t`` of shape ``y.shape[:-1]`` and
``y`` of shape ``(..., D)``. It acts on chosen components only (``components=``, e.g. noise on the velocities
of a mechanical system but not on the positions) and returns, by its ``noise`` type:

- ``"diagonal"``: ``(..., D)``, ``g_i`` multiplies an independent Brownian motion ``dW_i`` (zero for the
  components without noise);
- ``"scalar"``: ``(..., D, 1)``, one Brownian motion shared by the noisy components;
- ``"general"``: ``(..., D, K)`` for ``K`` noisy components, component ``c_k`` driven by its own ``dW_k``
  (the same law as ``"diagonal"``, with only ``K`` Brownian channels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["DiagonalDiffusion", "LogPositive", "NeuralDiffusion", "ScalarDiffusion"]

_NOISES = ("diagonal", "scalar", "general")


class LogPositive(nn.Module):
    """A learnable positive tensor stored as its logarithm: ``value = exp(log_value)``.

    The log-parametrisation keeps the value positive under any optimiser step and makes gradient steps
    relative (scale-free), which suits noise amplitudes that may span decades.

    Parameters
    ----------
    value
        Initial value(s), strictly positive and finite; a float or a tensor of any shape.
    learnable
        Whether ``log_value`` is an ``nn.Parameter`` (else a buffer).
    dtype
        Floating-point dtype; by default a tensor keeps its own and a float uses ``torch.get_default_dtype()``.
    """

    def __init__(
        self, value: float | Sequence[float] | Tensor, learnable: bool = True, dtype: torch.dtype | None = None
    ):
        super().__init__()
        v = torch.as_tensor(value, dtype=dtype).detach().clone()
        if not v.is_floating_point():
            v = v.to(dtype or torch.get_default_dtype())
        if v.numel() == 0 or not bool(torch.isfinite(v).all()) or not bool((v > 0).all()):
            raise ValueError(f"a positive scale must be finite and > 0, got {v.tolist()}.")
        log_v = v.log()
        if learnable:
            self.log_value = nn.Parameter(log_v)
        else:
            self.register_buffer("log_value", log_v)

    def forward(self) -> Tensor:
        """The positive value, ``exp(log_value)``."""
        return self.log_value.exp()


def _check_noise(noise: str) -> str:
    if noise not in _NOISES:
        raise ValueError(f"unknown noise={noise!r}; choose one of {', '.join(map(repr, _NOISES))}.")
    return noise


def _check_components(components: Sequence[int] | None) -> tuple[int, ...] | None:
    if components is None:
        return None
    comps = tuple(components)
    if len(comps) == 0 or not all(isinstance(c, int) and not isinstance(c, bool) for c in comps):
        raise ValueError(f"components must be a non-empty sequence of channel indices (ints), got {components!r}.")
    if len(set(comps)) != len(comps):
        raise ValueError(f"components must not repeat an index, got {comps}.")
    return comps


class _ComponentDiffusion(nn.Module):
    """Places per-component amplitudes ``(..., K)`` into the output layout of the noise type."""

    def __init__(self, components: Sequence[int] | None, noise: str) -> None:
        super().__init__()
        self.components = _check_components(components)
        self.noise = _check_noise(noise)

    def _index(self, D: int, device: torch.device) -> Tensor:
        if self.components is None:
            return torch.arange(D, device=device)
        bad = [c for c in self.components if not -D <= c < D]
        if bad:
            raise ValueError(
                f"components {bad} are out of range for a state with D = {D} channels; valid indices are 0 .. {D - 1}."
            )
        return torch.tensor([c % D for c in self.components], device=device)

    def _place(self, amplitude: Tensor, y: Tensor) -> Tensor:
        """``amplitude``: ``(..., K)`` (or broadcastable), the diffusion of the ``K`` noisy components."""
        D = y.shape[-1]
        idx = self._index(D, y.device)
        K = idx.numel()
        amp = amplitude.to(y.dtype).expand(*y.shape[:-1], K)
        if self.noise == "general":
            out = y.new_zeros(*y.shape[:-1], D, K)
            out[..., idx, torch.arange(K, device=y.device)] = amp
            return out
        if self.components is None:
            g = amp
        else:
            g = y.new_zeros(y.shape)
            g[..., idx] = amp
        return g.unsqueeze(-1) if self.noise == "scalar" else g


class ScalarDiffusion(_ComponentDiffusion):
    """Additive noise of one learnable amplitude ``sigma`` on the chosen components: ``dy_c = ... + sigma dW``.

    Parameters
    ----------
    sigma
        Initial amplitude, > 0, in units of ``y`` per square-root time.
    components
        Channels that carry noise (default: all).
    noise
        Output layout, ``"diagonal"`` (default), ``"scalar"`` or ``"general"`` (module docstring).
    learnable
        Whether ``sigma`` is trained (stored as ``log sigma``).
    dtype
        dtype of the parameter (default ``torch.get_default_dtype()``; outputs take ``y``'s dtype).
    """

    def __init__(
        self,
        sigma: float,
        components: Sequence[int] | None = None,
        *,
        noise: str = "diagonal",
        learnable: bool = True,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(components, noise)
        if isinstance(sigma, Tensor) and sigma.numel() != 1:
            raise ValueError(
                f"ScalarDiffusion takes one amplitude, got shape {tuple(sigma.shape)}; use DiagonalDiffusion."
            )
        if not isinstance(sigma, Tensor) and not (isinstance(sigma, (int, float)) and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a positive finite number, got {sigma!r}.")
        self.scale = LogPositive(torch.as_tensor(sigma, dtype=dtype).reshape(()), learnable=learnable, dtype=dtype)

    @property
    def sigma(self) -> Tensor:
        """The amplitude, a 0-d tensor."""
        return self.scale()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self._place(self.sigma.unsqueeze(-1), y)


class DiagonalDiffusion(_ComponentDiffusion):
    """Additive noise with a learnable amplitude per noisy component: ``dy_{c_k} = ... + sigma_k dW_k``.

    Parameters
    ----------
    sigma
        Initial amplitudes ``(K,)``, > 0, one per entry of ``components`` (or per channel, ``K = D``, when
        ``components`` is ``None``); units of each component per square-root time.
    components
        Channels that carry noise (default: all; ``len(sigma)`` must then equal ``D``).
    noise
        Output layout, ``"diagonal"`` (default), ``"scalar"`` or ``"general"``. With ``"scalar"`` the
        components share one Brownian motion (perfectly correlated kicks) with their own amplitudes.
    learnable
        Whether the amplitudes are trained (stored as ``log sigma``).
    dtype
        dtype of the parameter.
    """

    def __init__(
        self,
        sigma: Sequence[float] | Tensor,
        components: Sequence[int] | None = None,
        *,
        noise: str = "diagonal",
        learnable: bool = True,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(components, noise)
        s = torch.as_tensor(sigma, dtype=dtype)
        if s.ndim != 1 or s.numel() == 0:
            raise ValueError(f"sigma must have shape (K,) with K >= 1 amplitudes, got shape {tuple(s.shape)}.")
        if self.components is not None and s.numel() != len(self.components):
            raise ValueError(
                f"sigma has {s.numel()} amplitudes but components lists {len(self.components)} channels "
                f"{self.components}; give one amplitude per noisy component."
            )
        self.scale = LogPositive(s, learnable=learnable, dtype=dtype)

    @property
    def sigma(self) -> Tensor:
        """The amplitudes, ``(K,)``."""
        return self.scale()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        sigma = self.sigma
        if self.components is None and sigma.numel() != y.shape[-1]:
            raise ValueError(
                f"DiagonalDiffusion has {sigma.numel()} amplitudes but the state has D = {y.shape[-1]} channels; "
                "pass one amplitude per channel or name the noisy channels with components=[...]."
            )
        return self._place(sigma, y)


class NeuralDiffusion(_ComponentDiffusion):
    """State-dependent noise from a network: ``g_{c_k}(y) = net(y)_k`` on the chosen components.

    Parameters
    ----------
    net
        ``nn.Module`` mapping ``y`` ``(..., D)`` to ``(..., K)`` amplitudes (``K`` noisy components, ``D`` when
        ``components`` is ``None``); with ``time_dependent=True`` it is called as ``net(t, y)``.
    components
        Channels that carry noise (default: all).
    noise
        Output layout, ``"diagonal"`` (default), ``"scalar"`` or ``"general"``.
    time_dependent
        Call ``net(t, y)`` instead of ``net(y)``.

    Notes
    -----
    With state-dependent noise the calculus matters: the reversible Heun, midpoint and Heun methods read the
    equation as Stratonovich, Euler–Maruyama, Milstein and SRK as Itô (the two differ by the drift
    ``½ Σ_j g_j ∂g_j/∂y``). The sign of a diagonal amplitude does not change the law (``-dW`` is a Brownian
    motion too), so no positivity is imposed.
    """

    def __init__(
        self,
        net: nn.Module,
        components: Sequence[int] | None = None,
        *,
        noise: str = "diagonal",
        time_dependent: bool = False,
    ) -> None:
        super().__init__(components, noise)
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be an nn.Module, got {type(net).__name__}.")
        self.net = net
        self.time_dependent = time_dependent

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        amp = self.net(t, y) if self.time_dependent else self.net(y)
        K = y.shape[-1] if self.components is None else len(self.components)
        if not isinstance(amp, Tensor) or amp.shape != (*y.shape[:-1], K):
            got = tuple(amp.shape) if isinstance(amp, Tensor) else type(amp).__name__
            raise ValueError(
                f"NeuralDiffusion's net must return one amplitude per noisy component, shape "
                f"{(*y.shape[:-1], K)}; got {got}."
            )
        return self._place(amp, y)
