"""Distances between path ensembles: W1 per time and channel vs scipy, MMD vs a direct sum, quantile coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from physnode.sde import marginal_w1, mmd, quantile_coverage

F64 = torch.float64


def test_marginal_w1_matches_scipy_per_time_and_channel_with_masks() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, 2, generator=g, dtype=F64)
    y = 0.5 + 2 * torch.randn(25, 3, 2, generator=g, dtype=F64)
    mx = torch.rand(40, 3, 2, generator=g) < 0.7
    my = torch.rand(25, 3, 2, generator=g) < 0.8
    x_nan = torch.where(mx, x, float("nan"))  # masked entries may hold NaN
    w = marginal_w1(x_nan, y, mx, my)
    assert w.shape == (3, 2)
    for k in range(3):
        for d in range(2):
            ref = wasserstein_distance(x[:, k, d][mx[:, k, d]].numpy(), y[:, k, d][my[:, k, d]].numpy())
            assert float(w[k, d]) == pytest.approx(ref, rel=1e-12, abs=1e-14)
    # Default masks: the finite entries.
    assert torch.allclose(marginal_w1(x_nan, torch.where(my, y, float("nan"))), w, rtol=1e-12)


def test_marginal_w1_is_nan_where_a_side_has_no_observation() -> None:
    x, y = torch.zeros(3, 2, 1), torch.ones(4, 2, 1)
    mx = torch.tensor([[[True], [False]]] * 3)
    w = marginal_w1(x, y, mx, torch.ones(4, 2, 1, dtype=torch.bool))
    assert float(w[0, 0]) == pytest.approx(1.0) and math.isnan(float(w[1, 0]))


def _mmd_reference(x: np.ndarray, y: np.ndarray, h: float) -> float:
    a, b = x.reshape(len(x), -1), y.reshape(len(y), -1)
    P = a.shape[1]

    def k(u: np.ndarray, v: np.ndarray) -> float:
        return math.exp(-float(((u - v) ** 2).sum()) / (2 * h * h * P))

    n, m = len(a), len(b)
    sxx = sum(k(a[i], a[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    syy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(k(a[i], b[j]) for i in range(n) for j in range(m)) / (n * m)
    return sxx + syy - 2 * sxy


def test_mmd_matches_a_direct_double_sum() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 4, 2, generator=g, dtype=F64)
    y = torch.randn(9, 4, 2, generator=g, dtype=F64) + 0.3
    assert float(mmd(x, y, bandwidth=0.8)) == pytest.approx(_mmd_reference(x.numpy(), y.numpy(), 0.8), rel=1e-12)


def test_mmd_separates_distributions_beyond_sampling_noise() -> None:
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(200, 5, 1, generator=g, dtype=F64), torch.randn(200, 5, 1, generator=g, dtype=F64)
    shifted = torch.randn(200, 5, 1, generator=g, dtype=F64) + 0.5
    same, diff = float(mmd(a, b)), float(mmd(a, shifted))
    # Same law: the unbiased estimate is centred on 0 with standard deviation O(1/N) (measured |same| ~ 1e-3);
    # a shift of half a standard deviation per entry gives ~0.1.
    assert abs(same) < 0.01
    assert diff > 10 * abs(same) and diff > 0.03


def test_quantile_coverage_is_calibrated_for_samples_of_the_same_law() -> None:
    g = torch.Generator().manual_seed(3)
    samples = torch.randn(4000, 6, 2, generator=g, dtype=F64)
    obs = torch.randn(2000, 6, 2, generator=g, dtype=F64)
    cov = quantile_coverage(samples, obs, levels=(0.5, 0.9))
    n = obs.numel()
    for c, level in zip(cov.tolist(), (0.5, 0.9), strict=True):
        # Binomial standard error sqrt(a(1-a)/n) ≈ 0.004 (plus a smaller quantile-estimation error): 5 sigma.
        assert abs(c - level) < 5 * math.sqrt(level * (1 - level) / n) + 0.01
    narrow = quantile_coverage(0.3 * samples, obs, levels=(0.9,))
    assert float(narrow[0]) < 0.5  # an over-confident ensemble under-covers


def test_quantile_coverage_per_path_ensembles_and_masks() -> None:
    samples = torch.arange(5, dtype=F64).view(5, 1, 1, 1).expand(5, 2, 1, 1)  # 0..4 for both paths
    obs = torch.tensor([[[2.0]], [[4.5]]], dtype=F64)
    assert quantile_coverage(samples, obs, levels=(0.5,)).tolist() == [0.5]  # interval [1, 3]
    mask = torch.tensor([[[True]], [[False]]])
    assert quantile_coverage(samples, obs, levels=(0.5,), mask=mask).tolist() == [1.0]


def test_metric_errors_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="share \\(T, D\\)"):
        marginal_w1(torch.zeros(3, 4, 1), torch.zeros(3, 5, 1))
    with pytest.raises(ValueError, match="at least 2 paths"):
        mmd(torch.zeros(1, 2, 1), torch.zeros(3, 2, 1))
    with pytest.raises(ValueError, match="levels must be probabilities"):
        quantile_coverage(torch.zeros(3, 2, 1), torch.zeros(4, 2, 1), levels=(1.5,))
    with pytest.raises(ValueError, match="marks a non-finite value"):
        marginal_w1(torch.full((2, 1, 1), float("nan")), torch.zeros(2, 1, 1), torch.ones(2, 1, 1, dtype=torch.bool))
