"""Causal structure of ODE systems from trajectories, and forecasts under interventions.

* :class:`StructuredODE` — one small MLP per variable, batched; ``A[i, j] = ||W_i[:, j]||`` is a weighted graph.
* :class:`GroupLassoProx`, :func:`group_soft_threshold_`, :func:`regularisation_path` — group lasso by a proximal
  step after each optimiser step of :func:`physnode.fit` (``after_step=``), and a sweep over its weight.
* :func:`adjacency`, :func:`graph_metrics` (:func:`auroc`, :func:`auprc`, :func:`shd`) — identification output.
* :func:`intervene`, :func:`forecast` — ``do(x_j = c)`` and ``do(k = value)`` for learned and symbolic models.
* :func:`fit_sparse_regression` — a classical baseline (lasso on smoothed derivatives).
* :func:`plot_adjacency`, :func:`plot_graph` — heatmap and circle-graph figures.

Convention: ``A[i, j]`` is the edge ``j → i`` (``x_j`` enters ``dx_i/dt``).
"""

from __future__ import annotations

from torch import Tensor, nn

from .baseline import SparseRegression, fit_sparse_regression, smoothed_derivatives
from .intervene import Intervened, forecast, intervene, prediction_error
from .metrics import auprc, auroc, graph_metrics, shd, threshold
from .plot import plot_adjacency, plot_graph
from .prox import (
    GroupLassoProx,
    RegularisationPath,
    group_lasso_penalty,
    group_soft_threshold_,
    regularisation_path,
)
from .structured import ACTIVATIONS, StructuredODE, find_structured

__all__ = [
    "ACTIVATIONS",
    "GroupLassoProx",
    "Intervened",
    "RegularisationPath",
    "SparseRegression",
    "StructuredODE",
    "adjacency",
    "auprc",
    "auroc",
    "find_structured",
    "fit_sparse_regression",
    "forecast",
    "graph_metrics",
    "group_lasso_penalty",
    "group_soft_threshold_",
    "intervene",
    "plot_adjacency",
    "plot_graph",
    "prediction_error",
    "regularisation_path",
    "shd",
    "smoothed_derivatives",
    "threshold",
]


def adjacency(model: nn.Module, *, cut: float | None = None) -> Tensor:
    """The ``(d, d)`` weighted adjacency of a model (``A[i, j]`` for ``j → i``), or the boolean graph ``A > cut``.

    Works for a :class:`StructuredODE`, a model holding one (e.g. a Hybrid correction) and the
    :class:`SparseRegression` baseline.
    """
    if hasattr(model, "adjacency") and callable(model.adjacency):
        A = model.adjacency()
    else:
        A = find_structured(model).adjacency()
    return A if cut is None else A.abs() > cut
