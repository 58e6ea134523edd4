"""Figures of a graph: the adjacency as a heatmap, and as a directed graph on a circle (matplotlib only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["plot_adjacency", "plot_graph"]


def _matrix(A: Any) -> np.ndarray:
    if isinstance(A, Tensor):
        A = A.detach().cpu().numpy()
    a = np.asarray(A, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"the adjacency must be a square (d, d) matrix with [i, j] for j -> i, got {a.shape}.")
    return a


def _names(names: Sequence[str] | None, d: int) -> list[str]:
    names = [f"x{i}" for i in range(1, d + 1)] if names is None else list(names)
    if len(names) != d:
        raise ValueError(f"names must hold one label per variable ({d}), got {len(names)}.")
    return names


def plot_adjacency(
    A: Any, *, truth: Any = None, names: Sequence[str] | None = None, ax: Any = None, title: str | None = None
) -> Any:
    """Heatmap of ``|A|`` (rows: targets ``i``, columns: sources ``j``); true edges outlined when ``truth`` is given.

    Returns the matplotlib ``Axes``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    a = np.abs(_matrix(A))
    d = a.shape[0]
    labels = _names(names, d)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.35 * d + 2, 0.35 * d + 1.5))
    im = ax.imshow(a, cmap="viridis", interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="|A[i, j]|")
    if truth is not None:
        t = _matrix(truth) != 0
        if t.shape != a.shape:
            raise ValueError(f"truth {t.shape} and A {a.shape} must have the same shape.")
        for i, j in zip(*np.nonzero(t), strict=True):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.2))
    step = max(1, d // 20)
    ax.set_xticks(range(0, d, step), labels[::step], rotation=90)
    ax.set_yticks(range(0, d, step), labels[::step])
    ax.set_xlabel("source j (drives)")
    ax.set_ylabel("target i (driven)")
    ax.set_title(title or ("adjacency (red: true edges)" if truth is not None else "adjacency"))
    return ax


def plot_graph(
    A: Any,
    *,
    names: Sequence[str] | None = None,
    truth: Any = None,
    ax: Any = None,
    cut: float = 0.0,
    self_edges: bool = False,
    title: str | None = None,
) -> Any:
    """Directed graph of the edges ``|A[i, j]| > cut`` (arrow ``j → i``, width by weight) on a circle.

    With ``truth``: correct edges black, spurious edges orange, missed true edges dashed grey. Returns the ``Axes``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    a = np.abs(_matrix(A))
    d = a.shape[0]
    labels = _names(names, d)
    t = None if truth is None else _matrix(truth) != 0
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    ang = np.pi / 2 - 2 * np.pi * np.arange(d) / d
    pos = np.stack([np.cos(ang), np.sin(ang)], 1)
    wmax = a[~np.eye(d, dtype=bool)].max() if d > 1 else a.max()
    wmax = wmax if wmax > 0 else 1.0
    r_node = 0.08 if d <= 20 else 0.04

    def arrow(j: int, i: int, width: float, color: str, style: str) -> None:
        p, q = pos[j], pos[i]
        ax.add_patch(
            FancyArrowPatch(
                p,
                q,
                arrowstyle="-|>",
                mutation_scale=8 + 4 * width,
                linewidth=0.5 + 2.5 * width,
                color=color,
                linestyle=style,
                connectionstyle="arc3,rad=0.12",
                shrinkA=72 * r_node * 2.2,
                shrinkB=72 * r_node * 2.2,
                alpha=0.85,
            )
        )

    for i in range(d):
        for j in range(d):
            if i == j and not self_edges:
                continue
            present = a[i, j] > cut
            if present:
                color = "black" if t is None or t[i, j] else "tab:orange"
                arrow(j, i, a[i, j] / wmax, color, "solid")
            elif t is not None and t[i, j]:
                arrow(j, i, 0.2, "grey", "dashed")
    ax.scatter(pos[:, 0], pos[:, 1], s=(1800 * r_node) ** 1.3 / 10, c="white", edgecolors="black", zorder=3)
    for k in range(d):
        ax.text(pos[k, 0], pos[k, 1], labels[k], ha="center", va="center", fontsize=8 if d <= 20 else 5, zorder=4)
    ax.set_xlim(-1.25, 1.25)
    ax.set_ylim(-1.25, 1.25)
    ax.set_aspect("equal")
    ax.axis("off")
    default = "graph (black: found, orange: spurious, dashed: missed)" if t is not None else "graph"
    ax.set_title(title or default)
    return ax
