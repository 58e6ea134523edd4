"""The lasso baseline on a noise-free linear system; smoothed derivatives; the two figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from physnode.causal import adjacency, auroc, fit_sparse_regression, plot_adjacency, plot_graph, smoothed_derivatives
from physnode.datasets import make

F64 = torch.float64


def test_smoothed_derivatives_of_a_polynomial_are_exact() -> None:
    """A local quadratic reproduces x(t) = 1 + 2t − t² and its derivative at every time (irregular, missing)."""
    from physnode.data import Trajectories

    t = torch.sort(torch.rand(1, 30, generator=torch.Generator().manual_seed(0), dtype=F64) * 3, 1).values
    x = 1 + 2 * t - t**2
    mask = torch.rand(1, 30, 1, generator=torch.Generator().manual_seed(1)) > 0.2
    tr = Trajectories(t, x.unsqueeze(-1), mask, channels=["x"])
    xs, dxs = smoothed_derivatives(tr, window=5, smooth_degree=2)
    np.testing.assert_allclose(xs[:, 0], x[0].numpy(), atol=1e-9)
    np.testing.assert_allclose(dxs[:, 0], (2 - 2 * t[0]).numpy(), atol=1e-8)
    with pytest.raises(ValueError, match="smooth_degree < window"):
        smoothed_derivatives(tr, window=2, smooth_degree=2)


def test_lasso_recovers_a_noise_free_linear_system() -> None:
    tr = make("linear_sparse", d=5, n_trajectories=12, n_times=60, t_span=(0.0, 4.0))
    truth = torch.tensor(tr.attrs["adjacency"])
    model = fit_sparse_regression(tr, degree=1)
    assert auroc(adjacency(model), truth) == 1.0
    A = torch.tensor(tr.attrs["system"]["A"], dtype=F64)
    torch.testing.assert_close(model.coef, A, rtol=0, atol=0.05)  # lasso shrinkage and smoothing error
    y = torch.randn(3, 5, dtype=F64)
    assert model(None, y).shape == (3, 5)


def test_figures() -> None:
    A = torch.tensor([[0.0, 1.0, 0.0], [0.2, 0.0, 0.0], [0.0, 0.5, 0.0]])
    truth = (A > 0.3).long()
    ax = plot_adjacency(A, truth=truth, names=["a", "b", "c"])
    assert ax.get_xlabel().startswith("source")
    ax = plot_graph(A, truth=truth)
    assert len(ax.patches) >= 3  # two found edges and one spurious (b <- a at 0.2)
    plt.close("all")
    with pytest.raises(ValueError, match="one label per variable"):
        plot_graph(A, names=["a"])
