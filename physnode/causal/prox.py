"""Group lasso on the input groups of a :class:`~physnode.causal.StructuredODE`: proximal step and path.

The penalty is ``λ Σ_ij w_ij ||W_i[:, j]||_2``. Its proximal operator with step ``η`` is group soft-thresholding,

    W_i[:, j] ← W_i[:, j] · max(0, 1 − η λ w_ij / ||W_i[:, j]||_2),

which sets a whole group to exactly zero once its norm falls below ``η λ w_ij``. Calling it after every optimiser
step (``physnode.fit(..., after_step=GroupLassoProx(lam, lr))``) is the proximal-gradient method: the smooth data
loss goes through the optimiser, the non-smooth penalty through the proximal operator.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..data.trajectories import Trajectories
from .structured import StructuredODE, find_structured

__all__ = [
    "GroupLassoProx",
    "RegularisationPath",
    "group_lasso_penalty",
    "group_soft_threshold_",
    "regularisation_path",
]


def _check_lambda(lam: float, what: str = "lam") -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
        raise ValueError(
            f"{what} (the group-lasso weight) must be a finite number >= 0, got {lam!r}. Use 0 for no "
            "regularisation and larger values for sparser graphs."
        )
    return float(lam)


def _weights(model: StructuredODE, weights: Tensor | None, penalise_diagonal: bool) -> Tensor:
    d = model.d
    w = torch.ones(d, d, dtype=model.W_in.dtype, device=model.W_in.device)
    if weights is not None:
        weights = torch.as_tensor(weights, dtype=w.dtype, device=w.device)
        if weights.shape != (d, d) or not bool((weights >= 0).all()) or not bool(torch.isfinite(weights).all()):
            raise ValueError(
                f"weights must be a (d, d) = ({d}, {d}) tensor of finite values >= 0, got shape {tuple(weights.shape)}."
            )
        w = weights.clone()
    if not penalise_diagonal:
        w.fill_diagonal_(0.0)
    if model.known_edges is not None:
        w = torch.where(model.known_edges, torch.zeros_like(w), w)
    return w


@torch.no_grad()
def group_soft_threshold_(
    model: nn.Module, threshold: float | Tensor, *, weights: Tensor | None = None, penalise_diagonal: bool = True
) -> Tensor:
    """Apply group soft-thresholding to the input groups of ``model``'s StructuredODE, in place.

    Parameters
    ----------
    model
        A :class:`~physnode.causal.StructuredODE`, or a model holding exactly one.
    threshold
        ``η λ`` (step size times weight), a number ``>= 0`` or a ``(d, d)`` tensor.
    weights
        Optional ``(d, d)`` per-group factors ``w_ij >= 0`` (adaptive group lasso); known edges get 0.
    penalise_diagonal
        Whether the self groups ``W_i[:, i]`` are shrunk too.

    Returns
    -------
    Tensor
        The ``(d, d)`` adjacency after the step (exact zeros where a group was removed).
    """
    net = find_structured(model)
    if not isinstance(threshold, Tensor):
        threshold = _check_lambda(threshold, "threshold")
    elif threshold.shape not in ((), (net.d, net.d)) or not bool((threshold >= 0).all()):
        raise ValueError(f"threshold must be a number or a ({net.d}, {net.d}) tensor of values >= 0.")
    tau = threshold * _weights(net, weights, penalise_diagonal)  # (d, d)
    norms = net.group_norms()  # (d, d)
    scale = torch.where(norms > tau, 1 - tau / norms.clamp_min(torch.finfo(norms.dtype).tiny), 0.0)
    col_scale = scale[:, net.source]  # (d, n_in)
    net.W_in.mul_(col_scale.unsqueeze(1))
    for p in (net.W_lin, net.W_mul):
        if p is not None:
            p.mul_(col_scale)
            if net.input_mask is not None:
                p.mul_(net.input_mask[:, 0])
    if net.input_mask is not None:
        net.W_in.mul_(net.input_mask)
    return net.group_norms()


def group_lasso_penalty(
    model: nn.Module, lam: float, *, weights: Tensor | None = None, penalise_diagonal: bool = True
) -> Tensor:
    """``λ Σ_ij w_ij ||W_i[:, j]||_2`` of ``model``'s StructuredODE (differentiable; for reporting objectives)."""
    lam = _check_lambda(lam)
    net = find_structured(model)
    return lam * (_weights(net, weights, penalise_diagonal) * net.group_norms()).sum()


class GroupLassoProx:
    """The proximal step of the group lasso, as an ``after_step`` hook of :func:`physnode.fit`.

    With plain gradient steps (SGD) the threshold is ``η λ w_ij``. Adam scales each weight's step by
    ``η / (sqrt(v̂) + ε)``, so a plain threshold ``η λ`` is too small to keep a group at zero (Adam's normalised
    step on it is about ``η`` per weight whatever the gradient). Create the optimiser through :meth:`adam`
    (``fit(..., optimizer=prox.adam, after_step=prox)``) and the threshold of each group is taken in Adam's
    metric: ``λ w_ij`` times the group's mean step size ``η / (sqrt(v̂) + ε)``. A group then stays exactly zero
    while its gradient is small compared with ``λ``, as in the proximal-gradient method.

    Parameters
    ----------
    lam
        Regularisation weight ``λ >= 0`` (loss units per unit of group norm).
    lr
        Step size ``η`` of the optimiser (the ``lr`` passed to ``fit``).
    weights, penalise_diagonal
        As in :func:`group_soft_threshold_`.
    lam_residual
        Weight ``λ_r >= 0`` of a second group lasso on each variable's MLP output row ``W_out[i]`` (one group per
        variable, in Adam's metric too). With the skip paths of :class:`StructuredODE` (``linear=True``,
        ``multiplicative=True``) this makes the network pay for using its MLP: a variable whose mechanism the
        skip paths express gets an exactly zero MLP, and so a mechanism that extrapolates. Independent of
        ``lam`` (it may be used with ``lam = 0``, e.g. in an unpenalised refit on a selected support).

    Attributes
    ----------
    calls
        Number of proximal steps taken.
    optimizer
        The Adam optimiser made by :meth:`adam` (``None`` until then: plain threshold ``η λ w_ij``).

    Examples
    --------
    >>> prox = GroupLassoProx(0.1, lr=1e-2)  # doctest: +SKIP
    >>> physnode.fit(model, data, lr=1e-2, optimizer=prox.adam, after_step=prox)  # doctest: +SKIP
    """

    def __init__(
        self,
        lam: float,
        lr: float,
        *,
        weights: Tensor | None = None,
        penalise_diagonal: bool = True,
        lam_residual: float = 0.0,
    ) -> None:
        self.lam = _check_lambda(lam)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or not math.isfinite(lr):
            raise ValueError(f"lr must be the optimiser's positive step size, got {lr!r}.")
        self.lr = float(lr)
        self.weights = weights
        self.penalise_diagonal = penalise_diagonal
        self.lam_residual = _check_lambda(lam_residual, "lam_residual")
        self.calls = 0
        self.optimizer: torch.optim.Adam | None = None

    def adam(self, params: Any) -> torch.optim.Adam:
        """An Adam optimiser with step size ``lr`` whose state the proximal step reads (an ``optimizer=`` factory
        for :func:`physnode.fit`)."""
        self.optimizer = torch.optim.Adam(params, lr=self.lr)
        return self.optimizer

    def _adam_scale(self, net: StructuredODE) -> Tensor | None:
        """``(d, d)`` mean of ``1 / (sqrt(v̂) + ε)`` over each group's weights (``None`` before the first step)."""
        opt = self.optimizer
        if opt is None:
            return None
        # mean of η / (sqrt(v̂) + ε) over the weights of each group that act: the MLP input weights of a variable
        # whose MLP output row is exactly zero (residual lasso) get no gradient and are left out, so that their
        # growing 1 / (sqrt(v̂) + ε) does not remove the live skip-path weights of the same group
        live = (net.W_out != 0).any(1).to(net.W_in.dtype).unsqueeze(1)  # (d, 1)
        total: Tensor | None = None
        count: Tensor | float = 0.0
        for p in net.group_parameters():
            state = opt.state.get(p)
            if not state or "exp_avg_sq" not in state:
                return None
            group = next(g for g in opt.param_groups if any(q is p for q in g["params"]))
            beta2, eps = group["betas"][1], group["eps"]
            v_hat = state["exp_avg_sq"] / (1 - beta2 ** float(state["step"]))
            inv = 1.0 / (v_hat.sqrt() + eps)  # (d, H, n_in) or (d, n_in)
            if inv.ndim == 3:
                w = live if len(net.group_parameters()) > 1 else torch.ones_like(live)
                part, n = inv.sum(1) * w, inv.shape[1] * w
            else:
                part, n = inv, 1.0
            total = part if total is None else total + part
            count = count + n
        assert total is not None  # W_in is always a group parameter
        per_col = total / count  # (d, n_in)
        per_group = per_col.reshape(net.d, net.order, net.d).mean(1)
        return per_group

    @torch.no_grad()
    def _shrink_residual(self, net: StructuredODE) -> None:
        """Group soft-thresholding of each row ``W_out[i]`` with threshold ``η λ_r`` (in Adam's metric)."""
        W = net.W_out  # (d, H)
        tau = torch.full((net.d,), self.lr * self.lam_residual, dtype=W.dtype, device=W.device)
        state = self.optimizer.state.get(W) if self.optimizer is not None else None
        if state and "exp_avg_sq" in state:
            group = next(g for g in self.optimizer.param_groups if any(q is W for q in g["params"]))  # type: ignore[union-attr]
            beta2, eps = group["betas"][1], group["eps"]
            v_hat = state["exp_avg_sq"] / (1 - beta2 ** float(state["step"]))
            tau = tau * (1.0 / (v_hat.sqrt() + eps)).mean(1)
        norms = W.norm(dim=1)
        W.mul_(torch.where(norms > tau, 1 - tau / norms.clamp_min(torch.finfo(W.dtype).tiny), 0.0).unsqueeze(1))

    def __call__(self, model: nn.Module) -> None:
        self.calls += 1
        if self.lam_residual > 0:
            self._shrink_residual(find_structured(model))
        if self.lam <= 0:
            return
        net = find_structured(model)
        scale = self._adam_scale(net)
        if scale is None:
            threshold: float | Tensor = self.lr * self.lam
        else:
            threshold = self.lr * self.lam * scale
        group_soft_threshold_(net, threshold, weights=self.weights, penalise_diagonal=self.penalise_diagonal)

    def __repr__(self) -> str:
        extra = f", lam_residual={self.lam_residual:g}" if self.lam_residual else ""
        return f"GroupLassoProx(lam={self.lam:g}, lr={self.lr:g}{extra})"


@dataclass
class RegularisationPath:
    """A sweep over ``λ`` with warm starts (see :func:`regularisation_path`).

    Attributes
    ----------
    lambdas
        ``(K,)`` the weights, in the order fitted (increasing).
    adjacencies
        ``(K, d, d)`` weighted adjacency at the end of each stage.
    train_losses
        ``(K,)`` final data loss of each stage (``FitResult.loss``).
    validation_errors
        ``(K,)`` masked mean squared prediction error on the validation data (NaN without validation data).
    n_edges
        ``(K,)`` number of non-zero off-diagonal groups.
    best
        Index of the selected ``λ``.
    states
        Model ``state_dict`` at the end of each stage.
    """

    lambdas: Tensor
    adjacencies: Tensor
    train_losses: Tensor
    validation_errors: Tensor
    n_edges: Tensor
    best: int
    states: list[dict[str, Tensor]] = field(repr=False, default_factory=list)

    @property
    def best_lambda(self) -> float:
        """The selected ``λ``."""
        return float(self.lambdas[self.best])

    @property
    def best_adjacency(self) -> Tensor:
        """``(d, d)`` adjacency at the selected ``λ``."""
        return self.adjacencies[self.best]


def regularisation_path(
    model: nn.Module,
    data: Trajectories,
    lambdas: Sequence[float],
    *,
    validation: Trajectories | None = None,
    lr: float = 1e-2,
    epochs: int = 100,
    warmup_epochs: int = 0,
    tolerance: float = 0.05,
    weights: Tensor | None = None,
    penalise_diagonal: bool = True,
    fit: Callable[..., Any] | None = None,
    **fit_kwargs: Any,
) -> RegularisationPath:
    """Fit ``model`` along increasing ``λ`` with warm starts, and select ``λ`` by validation error.

    Stage ``k`` continues from stage ``k − 1`` for ``epochs`` Adam epochs with ``GroupLassoProx(λ_k, lr)`` (in
    Adam's metric, see :class:`GroupLassoProx`). The
    selection takes the largest ``λ`` whose validation error is within ``(1 + tolerance)`` of the smallest (the
    sparsest graph that predicts about as well as the best); without validation data, the smallest training loss
    with the same rule. The model is left at the selected stage.

    Parameters
    ----------
    model
        A StructuredODE or a model holding one (fitted in place).
    data, validation
        Training and validation :class:`~physnode.data.Trajectories` (initial states in the metadata).
    lambdas
        Weights ``>= 0``; sorted increasingly.
    lr, epochs, warmup_epochs
        Adam step size, epochs per stage, and unregularised epochs before the first stage.
    tolerance
        Relative slack of the selection rule (0 picks the minimum).
    weights, penalise_diagonal
        As in :class:`GroupLassoProx`.
    fit
        The fitting function (default :func:`physnode.fit`).
    **fit_kwargs
        Passed to ``fit`` (``method``, ``grad``, ``step_size``, ``batch_size``, ...).

    Returns
    -------
    RegularisationPath
    """
    from .intervene import prediction_error

    if fit is None:
        from ..fit import fit as fit_fn
    else:
        fit_fn = fit
    lams = sorted(_check_lambda(float(x), "every lambda") for x in lambdas)
    if not lams:
        raise ValueError("lambdas must hold at least one value, e.g. [0.0, 1e-3, 1e-2, 1e-1].")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must lie in [0, 1), got {tolerance!r}.")
    net = find_structured(model)
    fit_kwargs.setdefault("progress", False)
    fit_kwargs.setdefault("uncertainty", False)
    solve_kw = {k: fit_kwargs[k] for k in ("method", "rtol", "atol", "step_size", "options") if k in fit_kwargs}
    if warmup_epochs:
        fit_fn(model, data, lr=lr, epochs=warmup_epochs, **fit_kwargs)
    adj, losses, vals, edges, states = [], [], [], [], []
    off = ~torch.eye(net.d, dtype=torch.bool, device=net.W_in.device)
    for lam in lams:
        prox = GroupLassoProx(lam, lr, weights=weights, penalise_diagonal=penalise_diagonal)
        res = fit_fn(model, data, lr=lr, epochs=epochs, optimizer=prox.adam, after_step=prox, **fit_kwargs)
        A = net.adjacency()
        adj.append(A.cpu())
        losses.append(res.loss)
        vals.append(prediction_error(model, validation, **solve_kw) if validation is not None else math.nan)
        edges.append(int(((A > 0) & off).sum()))
        states.append(copy.deepcopy(model.state_dict()))
    score = torch.tensor(vals if validation is not None else losses, dtype=torch.float64)
    finite = torch.isfinite(score)
    if not bool(finite.any()):
        best = 0
    else:
        lo = float(score[finite].min())
        ok = [k for k in range(len(lams)) if bool(finite[k]) and float(score[k]) <= lo * (1 + tolerance)]
        best = max(ok)
    model.load_state_dict(states[best])
    return RegularisationPath(
        lambdas=torch.tensor(lams, dtype=torch.float64),
        adjacencies=torch.stack(adj),
        train_losses=torch.tensor(losses, dtype=torch.float64),
        validation_errors=torch.tensor(vals, dtype=torch.float64),
        n_edges=torch.tensor(edges),
        best=best,
        states=states,
    )
