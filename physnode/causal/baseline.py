"""A classical baseline: sparse (lasso) regression of smoothed derivatives on a polynomial library.

1. **Derivatives.** Each observed channel of each trajectory is smoothed by a local polynomial (degree
   ``smooth_degree``, the ``window`` nearest observations, least squares — a Savitzky–Golay filter for irregular
   times and missing values); the fit gives the value and the time derivative at every valid time.
2. **Regression.** ``dy_i/dt ≈ c_i + Σ_f B_if φ_f(y)`` over a polynomial library ``φ`` (degree 1: the states;
   degree 2: also all products ``y_a y_b``), on standardised features, with an L1 penalty (lasso, solved by
   FISTA); the penalty is chosen by the error on held-out trajectories.
3. **Graph.** ``A[i, j]`` is the norm of the coefficients of target ``i`` on features that involve ``x_j``.

For ``order=2`` (state ``[x, v]``) only the accelerations are regressed (``dx/dt = v`` is kept exact) and the
features of ``x_j`` and ``v_j`` both count for source ``j``. The result is an ``nn.Module`` right-hand side, so it
can be solved, intervened on and forecast like any model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..data.trajectories import Trajectories

__all__ = ["SparseRegression", "fit_sparse_regression", "smoothed_derivatives"]


def smoothed_derivatives(
    data: Trajectories, *, window: int = 7, smooth_degree: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed states and time derivatives at every valid time, by local polynomial fits.

    Parameters
    ----------
    data
        ``(N, T, D)`` trajectories; each channel needs at least ``window`` observations per trajectory.
    window
        Number of nearest observations in each local fit (odd numbers centre the window).
    smooth_degree
        Degree of the local polynomial (``>= 1``, ``< window``).

    Returns
    -------
    states, derivatives
        ``(M, D)`` arrays over the ``M`` valid (trajectory, time) pairs; units of the channels and channels per
        time unit.
    """
    if not (isinstance(window, int) and isinstance(smooth_degree, int) and 1 <= smooth_degree < window):
        raise ValueError(f"need integers 1 <= smooth_degree < window, got smooth_degree={smooth_degree}, {window=}.")
    times = data.times.detach().cpu().numpy().astype(np.float64)
    vals = data.values.detach().cpu().numpy().astype(np.float64)
    mask = data.mask.detach().cpu().numpy()
    lengths = data.lengths.cpu().numpy()
    xs, dxs = [], []
    for n in range(data.n_trajectories):
        L = int(lengths[n])
        tq = times[n, :L]
        x = np.empty((L, data.n_channels))
        dx = np.empty((L, data.n_channels))
        for c in range(data.n_channels):
            obs = np.nonzero(mask[n, :L, c])[0]
            if len(obs) < window:
                raise ValueError(
                    f"trajectory {n}, channel {data.channels[c]!r} has {len(obs)} observations; the local fits need "
                    f"at least window = {window}. Lower window or drop the trajectory."
                )
            tau, u = tq[obs], vals[n, obs, c]
            near = np.searchsorted(tau, tq).clip(0, len(tau) - 1)
            start = (near - window // 2).clip(0, len(tau) - window)
            idx = start[:, None] + np.arange(window)[None, :]  # (L, w)
            dt = tau[idx] - tq[:, None]
            scale = np.abs(dt).max(axis=1, keepdims=True).clip(min=1e-12)
            X = (dt / scale)[..., None] ** np.arange(smooth_degree + 1)  # (L, w, p+1)
            XtX = np.einsum("lwp,lwq->lpq", X, X)
            Xtu = np.einsum("lwp,lw->lp", X, u[idx])
            beta = np.linalg.solve(XtX, Xtu[..., None])[..., 0]
            x[:, c] = beta[:, 0]
            dx[:, c] = beta[:, 1] / scale[:, 0]
        xs.append(x)
        dxs.append(dx)
    return np.concatenate(xs), np.concatenate(dxs)


def _library(S: int, degree: int) -> list[tuple[int, ...]]:
    feats: list[tuple[int, ...]] = [(a,) for a in range(S)]
    if degree >= 2:
        feats += list(itertools.combinations_with_replacement(range(S), 2))
    if degree >= 3:
        raise ValueError(f"degree must be 1 or 2, got {degree}.")
    return feats


def _features(y: np.ndarray | Tensor, feats: Sequence[tuple[int, ...]]):
    cols = []
    for f in feats:
        c = y[..., f[0]]
        for a in f[1:]:
            c = c * y[..., a]
        cols.append(c)
    return np.stack(cols, -1) if isinstance(y, np.ndarray) else torch.stack(cols, -1)


def _fista(X: np.ndarray, Y: np.ndarray, alpha: float, B0: np.ndarray, iters: int) -> np.ndarray:
    """``argmin 1/(2M) ||Y − X B||² + α ||B||_1`` (X standardised, Y centred) by FISTA from ``B0``."""
    M = X.shape[0]
    G = X.T @ X / M
    C = X.T @ Y / M
    L = max(float(np.linalg.eigvalsh(G)[-1]), 1e-12)
    B, Z, tk = B0.copy(), B0.copy(), 1.0
    for _ in range(iters):
        W = Z - (G @ Z - C) / L
        B_new = np.sign(W) * np.maximum(np.abs(W) - alpha / L, 0.0)
        t_new = 0.5 * (1 + math.sqrt(1 + 4 * tk * tk))
        Z = B_new + ((tk - 1) / t_new) * (B_new - B)
        B, tk = B_new, t_new
    return B


class SparseRegression(nn.Module):
    """Polynomial right-hand side ``f(y) = c + B φ(y)`` fitted by :func:`fit_sparse_regression`.

    Attributes
    ----------
    coef
        ``(n_targets, F)`` coefficients on the *raw* (unstandardised) features; ``intercept`` ``(n_targets,)``.
    strength
        ``(n_targets, F)`` coefficients on the standardised features (the scale-free edge strengths).
    """

    def __init__(
        self,
        d: int,
        order: int,
        degree: int,
        feats: list[tuple[int, ...]],
        coef: np.ndarray,
        intercept: np.ndarray,
        strength: np.ndarray,
        state_names: Sequence[str],
        alpha: float,
    ) -> None:
        super().__init__()
        self.d, self.order, self.degree, self.feats, self.alpha = d, order, degree, list(feats), alpha
        self.state_names = list(state_names)
        self.register_buffer("coef", torch.as_tensor(coef, dtype=torch.float64))
        self.register_buffer("intercept", torch.as_tensor(intercept, dtype=torch.float64))
        self.register_buffer("strength", torch.as_tensor(strength, dtype=torch.float64))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        f = _features(y, self.feats) @ self.coef.to(y).T + self.intercept.to(y)
        return f if self.order == 1 else torch.cat([y[..., self.d :], f], dim=-1)

    def adjacency(self) -> Tensor:
        """``(d, d)``: norm of target ``i``'s standardised coefficients on features that involve variable ``j``."""
        A = torch.zeros(self.d, self.d, dtype=torch.float64)
        s2 = self.strength.square()
        for j in range(self.d):
            uses = [k for k, f in enumerate(self.feats) if any(a % self.d == j for a in f)]
            A[:, j] = s2[:, uses].sum(1).sqrt()
        return A


def fit_sparse_regression(
    data: Trajectories,
    *,
    order: int = 1,
    degree: int = 2,
    window: int = 7,
    smooth_degree: int = 2,
    n_alphas: int = 12,
    validation_fraction: float = 0.25,
    iters: int = 400,
    seed: int = 0,
) -> SparseRegression:
    """Fit the lasso baseline to trajectory data (all state components observed as channels).

    Parameters
    ----------
    data
        Trajectories whose channels are the full state (``[x, v]`` for ``order=2``).
    order
        1 (regress every derivative) or 2 (regress the accelerations ``dv/dt`` only).
    degree
        Library degree, 1 (linear) or 2 (linear and quadratic terms).
    window, smooth_degree
        Local polynomial smoothing of :func:`smoothed_derivatives`.
    n_alphas
        Penalties on a geometric grid from ``α_max`` (all coefficients zero) down to ``1e-4 α_max``.
    validation_fraction
        Share of the trajectories held out to choose ``α`` (then refitted on all).
    iters
        FISTA iterations per ``α`` (warm started along the grid).
    seed
        Seed of the held-out split.

    Returns
    -------
    SparseRegression
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}.")
    S = data.n_channels
    if order == 2 and S % 2:
        raise ValueError(f"order=2 needs the state [x, v] as channels (an even number), got {S} channels.")
    d = S // order
    x, dx = smoothed_derivatives(data, window=window, smooth_degree=smooth_degree)
    lengths = data.lengths.cpu().numpy()
    traj_of = np.repeat(np.arange(data.n_trajectories), lengths)
    feats = _library(S, degree)
    Phi = _features(x, feats)
    Y = dx[:, S - d :] if order == 2 else dx
    mu, sd = Phi.mean(0), Phi.std(0).clip(min=1e-12)
    Xs = (Phi - mu) / sd
    rng = np.random.default_rng(seed)
    n_val = max(1, round(validation_fraction * data.n_trajectories)) if data.n_trajectories > 1 else 0
    val_traj = rng.permutation(data.n_trajectories)[:n_val]
    is_val = np.isin(traj_of, val_traj)

    def solve_path(Xa: np.ndarray, Ya: np.ndarray, alphas: np.ndarray) -> list[np.ndarray]:
        Yc = Ya - Ya.mean(0)
        B = np.zeros((Xa.shape[1], Ya.shape[1]))
        out = []
        for a in alphas:
            B = _fista(Xa, Yc, float(a), B, iters)
            out.append(B.copy())
        return out

    a_max = float(np.abs(Xs.T @ (Y - Y.mean(0))).max() / len(Xs))
    alphas = a_max * np.geomspace(1.0, 1e-4, n_alphas)
    if n_val and (~is_val).any():
        path = solve_path(Xs[~is_val], Y[~is_val], alphas)
        Yt = Y[~is_val].mean(0)
        errs = [float(((Xs[is_val] @ B + Yt - Y[is_val]) ** 2).mean()) for B in path]
        best = int(np.argmin(errs))
    else:
        best = n_alphas - 1
    B = solve_path(Xs, Y, alphas[: best + 1])[-1]  # (F, targets)
    coef = (B / sd[:, None]).T
    intercept = Y.mean(0) - coef @ mu
    names = list(data.channels)
    return SparseRegression(d, order, degree, feats, coef, intercept, B.T, names, float(alphas[best]))
