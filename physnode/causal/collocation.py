"""Derivative matching (collocation): a cheap warm start of a StructuredODE before fitting trajectories.

The data are smoothed by local polynomials (:func:`~physnode.causal.smoothed_derivatives`), giving states
``y_m`` and derivatives ``ẏ_m`` at every valid time; the network's field is then fitted to them,
``min Σ_m ||f(y_m) − ẏ_m||² / (M d s²)`` with ``s²`` the mean variance of the targets (for ``order=2`` the
accelerations only) — the normalisation makes the loss, and so ``λ``, dimensionless — by Adam with the group-lasso
proximal step (in Adam's metric, see :class:`~physnode.causal.GroupLassoProx`) after every step. No ODE is solved,
so thousands of steps take seconds; the result starts :func:`physnode.fit` (which matches the trajectories
themselves) close to a good solution.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..data.trajectories import Trajectories
from .baseline import smoothed_derivatives
from .prox import GroupLassoProx
from .structured import find_structured

__all__ = ["fit_collocation"]


def fit_collocation(
    model: nn.Module,
    data: Trajectories,
    *,
    lam: float = 0.0,
    lr: float = 1e-2,
    epochs: int = 2000,
    window: int = 7,
    smooth_degree: int = 2,
    lam_residual: float = 0.0,
) -> list[float]:
    """Fit ``model``'s StructuredODE to smoothed derivatives of ``data`` (full-batch Adam + proximal step).

    Parameters
    ----------
    model
        A StructuredODE (or a model holding one); fitted in place. The data channels must be its full state.
    data
        Trajectories (irregular times and missing values are fine: each channel is smoothed on its own
        observations).
    lam
        Group-lasso weight of the proximal step, in units of the normalised loss (dimensionless; the same value
        suits systems whose derivatives have different scales).
    lr, epochs
        Adam step size and number of full-batch steps.
    window, smooth_degree
        Local polynomial smoothing.
    lam_residual
        Group lasso on each variable's MLP output row (see :class:`~physnode.causal.GroupLassoProx`).

    Returns
    -------
    list[float]
        The loss after every step.
    """
    net = find_structured(model)
    n_in = net.order * net.d
    if data.n_channels != n_in:
        raise ValueError(
            f"fit_collocation needs the full state as channels ({n_in}: {net.state_names}), got {data.n_channels} "
            f"channels {data.channels}."
        )
    x, dx = smoothed_derivatives(data, window=window, smooth_degree=smooth_degree)
    p = net.W_in
    X = torch.as_tensor(x, dtype=p.dtype, device=p.device)
    Y: Tensor = torch.as_tensor(dx, dtype=p.dtype, device=p.device)[:, n_in - net.d :]
    inv_var = 1.0 / float(Y.var(0).mean().clamp_min(torch.finfo(Y.dtype).tiny))
    prox = GroupLassoProx(lam, lr, lam_residual=lam_residual)
    opt = prox.adam([q for q in net.parameters() if q.requires_grad])
    losses = []
    for _step in range(epochs):
        opt.zero_grad()
        loss = ((net.field(X) - Y).square() * inv_var).mean()
        loss.backward()
        opt.step()
        prox(net)
        losses.append(float(loss.detach()))
    return losses
