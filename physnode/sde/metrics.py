"""Distances between ensembles of stochastic trajectories and forecast calibration.

Three ways to say how close a generative model of paths is to data, all on paths sampled at common times:

- :func:`marginal_w1`: the Wasserstein-1 distance between the one-dimensional marginal distributions of each
  channel at each time (exact for empirical distributions, with observation masks as weights);
- :func:`mmd`: the maximum mean discrepancy between the path distributions with a Gaussian kernel on the
  flattened paths (signature-free; sensitive to the joint law across times, not only the marginals);
- :func:`quantile_coverage`: how often observations fall inside the central prediction intervals of a
  sample ensemble (a calibrated model covers a fraction ``level`` of them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["marginal_w1", "mmd", "quantile_coverage"]


def _check_paths(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a tensor of shape (N, T, D), got {type(x).__name__}.")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}.")
    if x.ndim != 3 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, T, D) with N >= 1 paths, got {tuple(x.shape)}.")
    return x


def _check_mask(mask: Tensor | None, x: Tensor, name: str) -> Tensor:
    if mask is None:
        return torch.isfinite(x)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor of the shape of the values, got {type(mask).__name__}.")
    if mask.shape != x.shape:
        raise ValueError(f"{name} has shape {tuple(mask.shape)} but the values have {tuple(x.shape)}.")
    bad = mask & ~torch.isfinite(x)
    if bool(bad.any()):
        idx = tuple(torch.nonzero(bad)[0].tolist())
        raise ValueError(f"{name} marks a non-finite value as observed (first at {idx}); unmark it.")
    return mask


def marginal_w1(x: Tensor, y: Tensor, mask_x: Tensor | None = None, mask_y: Tensor | None = None) -> Tensor:
    """Wasserstein-1 distance between the marginals of two ensembles, per time and channel.

    For each time index ``k`` and channel ``d`` the empirical distributions ``{x[i, k, d]}`` and
    ``{y[j, k, d]}`` (observed entries only, equal weights) are compared with
    ``W1 = ∫ |F_x(z) − F_y(z)| dz`` (``F`` the empirical distribution functions), which is exact for empirical
    measures and equals :func:`scipy.stats.wasserstein_distance`.

    Parameters
    ----------
    x
        Paths ``(N, T, D)``.
    y
        Paths ``(M, T, D)`` at the same ``T`` times (``N`` and ``M`` may differ).
    mask_x, mask_y
        Bool ``(N, T, D)`` / ``(M, T, D)``: which entries are observed. Default: the finite entries.

    Returns
    -------
    Tensor
        ``(T, D)`` distances in units of the channels; NaN where either side has no observation.
    """
    x, y = _check_paths(x, "x"), _check_paths(y, "y")
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(
            f"x has shape {tuple(x.shape)} and y {tuple(y.shape)}: they must share (T, D) — the same times and "
            "channels. Sample both at common times first."
        )
    mx, my = _check_mask(mask_x, x, "mask_x"), _check_mask(mask_y, y, "mask_y")
    dtype = torch.promote_types(x.dtype, y.dtype)
    x, y = x.to(dtype), y.to(dtype)
    nx = mx.sum(0).to(dtype)  # (T, D)
    ny = my.sum(0).to(dtype)
    vals = torch.cat([torch.where(mx, x, 0.0), torch.where(my, y, 0.0)])  # (N + M, T, D)
    wx = torch.cat([mx.to(dtype) / nx.clamp_min(1), torch.zeros_like(y)])
    wy = torch.cat([torch.zeros_like(x), my.to(dtype) / ny.clamp_min(1)])
    order = vals.argsort(dim=0)
    vals = vals.gather(0, order)
    cdf_x = wx.gather(0, order).cumsum(0)
    cdf_y = wy.gather(0, order).cumsum(0)
    # Between consecutive sorted values both distribution functions are constant: integrate |F_x - F_y|.
    w1 = ((cdf_x[:-1] - cdf_y[:-1]).abs() * vals.diff(dim=0)).sum(0)
    return torch.where((nx > 0) & (ny > 0), w1, torch.full_like(w1, float("nan")))


def mmd(x: Tensor, y: Tensor, bandwidth: float | None = None) -> Tensor:
    """Unbiased squared maximum mean discrepancy between two path ensembles, Gaussian kernel.

    ``MMD² = E k(x, x') + E k(y, y') − 2 E k(x, y)`` with ``k(a, b) = exp(−|a − b|² / (2 h² P))``, ``|·|`` the
    Euclidean norm of the flattened path (``P = T·D`` entries) and the expectations estimated by the unbiased
    U-statistics (diagonal terms excluded). The kernel is characteristic, so ``MMD² = 0`` only when the two path
    distributions agree on the grid; the estimate fluctuates around 0 (it can be slightly negative) for equal
    distributions.

    Parameters
    ----------
    x
        Paths ``(N, T, D)``, ``N >= 2``, fully observed (no NaN).
    y
        Paths ``(M, T, D)``, ``M >= 2``, at the same times.
    bandwidth
        Kernel length scale ``h`` per entry (units of the channels). Default: the median heuristic, the median of
        ``|a − b| / sqrt(P)`` over all distinct pairs of the pooled sample.

    Returns
    -------
    Tensor
        0-d, the unbiased ``MMD²`` estimate (dimensionless).
    """
    x, y = _check_paths(x, "x"), _check_paths(y, "y")
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"x has shape {tuple(x.shape)} and y {tuple(y.shape)}: they must share (T, D).")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"mmd needs at least 2 paths on each side, got N = {x.shape[0]} and M = {y.shape[0]}.")
    for name, v in (("x", x), ("y", y)):
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"{name} has NaN or Inf; mmd compares fully observed paths (sample them on a grid).")
    dtype = torch.promote_types(x.dtype, y.dtype)
    a, b = x.to(dtype).flatten(1), y.to(dtype).flatten(1)
    P = a.shape[1]
    z = torch.cat([a, b])
    d2 = torch.cdist(z, z).square()
    if bandwidth is None:
        off = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
        h = (d2[off].clamp_min(0).sqrt() / P**0.5).median()
        h = h if float(h) > 0 else torch.ones((), dtype=dtype, device=z.device)
    else:
        if not (isinstance(bandwidth, (int, float)) and bandwidth > 0):
            raise ValueError(f"bandwidth must be a positive number, got {bandwidth!r}.")
        h = torch.tensor(float(bandwidth), dtype=dtype, device=z.device)
    k = torch.exp(-d2 / (2 * h * h * P))
    N, M = len(a), len(b)
    kxx, kyy, kxy = k[:N, :N], k[N:, N:], k[:N, N:]
    exx = (kxx.sum() - kxx.diagonal().sum()) / (N * (N - 1))
    eyy = (kyy.sum() - kyy.diagonal().sum()) / (M * (M - 1))
    return exx + eyy - 2 * kxy.mean()


def quantile_coverage(
    samples: Tensor, observed: Tensor, levels: Sequence[float] = (0.5, 0.9), mask: Tensor | None = None
) -> Tensor:
    """Fraction of observations inside the central prediction intervals of a sample ensemble.

    For each level ``α`` the interval at each time and channel runs from the ``(1 − α)/2`` to the ``(1 + α)/2``
    quantile of the samples (linear interpolation between order statistics, ``torch.quantile``); the coverage is
    the fraction of observed entries inside it (ends included). A calibrated model gives coverage ``≈ α``;
    lower means over-confident, higher under-confident.

    Parameters
    ----------
    samples
        Predictive samples: ``(S, T, D)`` shared by every observed path, or ``(S, N, T, D)`` one ensemble per
        observed path (e.g. forecasts conditioned on each path's past). Fully observed.
    observed
        Observations ``(N, T, D)``.
    levels
        Central interval probabilities, each in ``(0, 1)``.
    mask
        Bool ``(N, T, D)``, the observed entries (default: the finite ones).

    Returns
    -------
    Tensor
        ``(L,)`` coverage per level, in ``[0, 1]``.
    """
    observed = _check_paths(observed, "observed")
    m = _check_mask(mask, observed, "mask")
    if not isinstance(samples, Tensor) or samples.ndim not in (3, 4) or samples.shape[-2:] != observed.shape[-2:]:
        got = tuple(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
        raise ValueError(
            f"samples must have shape (S, T, D) or (S, N, T, D) with (T, D) = {tuple(observed.shape[1:])}, got {got}."
        )
    if samples.ndim == 4 and samples.shape[1] != observed.shape[0]:
        raise ValueError(f"samples (S, N, T, D) has N = {samples.shape[1]} but observed has {observed.shape[0]}.")
    if samples.shape[0] < 2 or not bool(torch.isfinite(samples).all()):
        raise ValueError("samples needs S >= 2 finite sample paths.")
    lv = [float(a) for a in levels]
    if not lv or not all(0 < a < 1 for a in lv):
        raise ValueError(f"levels must be probabilities in (0, 1), got {list(levels)}.")
    dtype = torch.promote_types(samples.dtype, observed.dtype)
    s = samples.to(dtype)
    out = []
    for a in lv:
        q = torch.tensor([(1 - a) / 2, (1 + a) / 2], dtype=dtype, device=s.device)
        lo, hi = torch.quantile(s, q, dim=0)  # (T, D) or (N, T, D)
        inside = (observed >= lo) & (observed <= hi) & m
        out.append(inside.sum().to(dtype) / m.sum().clamp_min(1))
    return torch.stack(out)
