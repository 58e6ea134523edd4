"""Scores of an estimated graph against a known one: AUROC, AUPRC and structural Hamming distance.

Convention: ``A[i, j]`` is the edge ``j → i`` (``x_j`` enters the derivative of ``x_i``). Self-edges are left out
by default (``include_diagonal=False``): in the systems of the zoo every variable's derivative depends on itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["auprc", "auroc", "edge_scores", "graph_metrics", "shd", "threshold"]


def _as_numpy(x: Any, what: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{what} must be a square (d, d) matrix with [i, j] for the edge j -> i, got {a.shape}.")
    return a


def edge_scores(estimate: Any, truth: Any, *, include_diagonal: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Flattened ``(scores, labels)`` over the evaluated entries (off-diagonal unless ``include_diagonal``).

    ``scores = |estimate|``; ``labels = truth != 0``.
    """
    est = _as_numpy(estimate, "estimate").astype(np.float64)
    tru = _as_numpy(truth, "truth")
    if est.shape != tru.shape:
        raise ValueError(f"estimate {est.shape} and truth {tru.shape} must have the same shape.")
    if not np.isfinite(est).all():
        raise ValueError("estimate holds non-finite entries; scores must be finite.")
    keep = np.ones(est.shape, dtype=bool) if include_diagonal else ~np.eye(est.shape[0], dtype=bool)
    return np.abs(est[keep]), tru[keep] != 0


def auroc(estimate: Any, truth: Any, *, include_diagonal: bool = False) -> float:
    """Area under the ROC curve of ranking the entries of ``|estimate|`` against the edges of ``truth``.

    Computed as the Mann–Whitney statistic ``P(score of an edge > score of a non-edge)`` with ties counted half,
    which equals the trapezoidal area under the ROC curve. NaN when ``truth`` has no edges or no non-edges.
    """
    s, y = edge_scores(estimate, truth, include_diagonal=include_diagonal)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks of ties (1-based)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def auprc(estimate: Any, truth: Any, *, include_diagonal: bool = False) -> float:
    """Area under the precision–recall curve as average precision, ``Σ_k (R_k − R_{k−1}) P_k``.

    Thresholds run over the distinct scores from high to low (tied scores enter together). A random ranking scores
    about the edge density; a perfect one 1. NaN when ``truth`` has no edges.
    """
    s, y = edge_scores(estimate, truth, include_diagonal=include_diagonal)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    # last index of each block of tied scores
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp_b = tp[last].astype(np.float64)
    n_b = last + 1.0
    precision = tp_b / n_b
    recall = tp_b / n_pos
    recall_prev = np.r_[0.0, recall[:-1]]
    return float(((recall - recall_prev) * precision).sum())


def threshold(estimate: Any, value: float = 0.0, *, relative: bool = False) -> Tensor:
    """Boolean graph ``|estimate| > value`` (``value`` times the largest off-diagonal entry with ``relative``)."""
    est = torch.as_tensor(_as_numpy(estimate, "estimate")).abs()
    if relative:
        off = est.clone()
        off.fill_diagonal_(0)
        value = value * float(off.max())
    return est > value


def shd(estimate: Any, truth: Any, *, include_diagonal: bool = False) -> int:
    """Structural Hamming distance: the number of edge insertions and deletions that turn ``estimate != 0`` into
    ``truth != 0`` (a reversed edge counts twice, once for each direction; self-edges ignored by default).

    Threshold a weighted estimate first (:func:`threshold`).
    """
    est = _as_numpy(estimate, "estimate") != 0
    tru = _as_numpy(truth, "truth") != 0
    if est.shape != tru.shape:
        raise ValueError(f"estimate {est.shape} and truth {tru.shape} must have the same shape.")
    diff = est ^ tru
    if not include_diagonal:
        np.fill_diagonal(diff, False)
    return int(diff.sum())


def graph_metrics(
    estimate: Any, truth: Any, *, cut: float = 0.0, relative: bool = False, include_diagonal: bool = False
) -> dict[str, float]:
    """``{"auroc", "auprc", "shd", "n_edges"}`` of a weighted estimate; SHD and ``n_edges`` after
    :func:`threshold` at ``cut`` (exact zeros of a proximal fit are absent edges with the default 0)."""
    g = threshold(estimate, cut, relative=relative).numpy()
    off = np.ones(g.shape, dtype=bool) if include_diagonal else ~np.eye(g.shape[0], dtype=bool)
    return {
        "auroc": auroc(estimate, truth, include_diagonal=include_diagonal),
        "auprc": auprc(estimate, truth, include_diagonal=include_diagonal),
        "shd": shd(g, truth, include_diagonal=include_diagonal),
        "n_edges": int((g & off).sum()),
    }
