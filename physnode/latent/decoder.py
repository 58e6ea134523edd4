"""Decoders of latent hybrid models: observations ``x = g(z_e, z_m) + noise`` with a masked Gaussian likelihood."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["GaussianDecoder", "mlp"]


def mlp(n_in: int, hidden: int, n_out: int, depth: int = 2) -> nn.Sequential:
    """``depth`` hidden tanh layers of width ``hidden``; the last layer starts small (near-zero outputs)."""
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.Tanh()]
        width = hidden
    last = nn.Linear(width, n_out)
    nn.init.normal_(last.weight, std=0.1 / math.sqrt(width))
    nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


class GaussianDecoder(nn.Module):
    """``x ~ N(g(z), diag(σ²))`` with ``g`` a network on the (scaled) state and ``σ`` learned per channel.

    The network works in standardised units: ``g(z) = loc + scale · net(z_scaled)``, with the observation location
    and scale set from the training data (:meth:`physnode.latent.LatentHybrid.set_scales`); ``σ`` is in the
    channels' units.

    Parameters
    ----------
    state_dim
        ``D_e + D_m``: the decoder reads the expert states (divided by their scale) and the latent states.
    data_dim
        Observed channels ``D_x``.
    hidden
        Width of the network (``0``: a linear map).
    """

    def __init__(self, state_dim: int, data_dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.net: nn.Module = mlp(state_dim, hidden, data_dim) if hidden else nn.Linear(state_dim, data_dim)
        self.log_sigma = nn.Parameter(torch.full((data_dim,), math.log(0.5)))

    def forward(self, z_scaled: Tensor) -> Tensor:
        """Standardised means ``(..., D_x)`` from scaled states ``(..., D_e + D_m)``."""
        return self.net(z_scaled)

    def nll(self, mean_std: Tensor, values_std: Tensor, mask: Tensor) -> Tensor:
        """Negative log-likelihood summed over the observed entries (standardised units; ``σ`` standardised too).

        Parameters
        ----------
        mean_std, values_std
            ``(B, T, D_x)`` predicted means and observations, both standardised.
        mask
            ``(B, T, D_x)`` bool.

        Returns
        -------
        Tensor
            ``(B,)`` per trajectory.
        """
        log_sigma = self.log_sigma.clamp(-7.0, 3.0)
        r = (values_std - mean_std) * torch.exp(-log_sigma)
        per = 0.5 * r * r + log_sigma + 0.5 * math.log(2 * math.pi)
        return torch.where(mask, per, torch.zeros((), dtype=per.dtype, device=per.device)).sum(dim=(1, 2))
