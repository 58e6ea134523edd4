"""Exact residual Jacobians and Gauss–Newton (Fisher / Laplace) standard errors of fitted parameters.

Jacobian
--------
For a residual vector ``r (M,)`` built through a solve that supports double backward (``grad="direct"``) and
unknowns ``θ (P,)``, ``g(u) = Jᵀu = ∂(r·u)/∂θ`` is formed with ``create_graph=True`` for a dummy ``u`` and
then ``J[:, j] = ∂g_j/∂u``: all ``P`` columns in one vectorised (``is_grads_batched``) double-backward pass, or
one pass per column when an operation lacks a batching rule. This is cheap for the few parameters of a physics
model (about 3.5 solves for the three-body masses); a reverse pass per residual would need ``M`` passes instead.

Covariance
----------
At the optimum of ``Σ r²`` the Gauss–Newton approximation of the Hessian is ``2 JᵀJ``. For least squares
(``loss="mse"`` with residuals ``r = sqrt(w) (pred − data)``) the covariance of the unconstrained unknowns is
``cov = σ² (JᵀJ)⁻¹`` with ``σ² = RSS / (n_obs − p)``, ``n_obs`` the number of observed entries and ``p`` the
number of unknowns; for ``loss="gaussian_nll"`` the residuals are whitened by the fitted noise and
``cov = (JᵀJ)⁻¹`` (the inverse Fisher information). The unknowns are the raw (unconstrained) tensors of the
learnable physical parameters together with the learnable initial and segment states (so their uncertainty is
marginalised); network weights are held fixed (the errors are conditional on them). A physical value
``v = map(raw)`` gets ``cov_v = G cov_raw Gᵀ`` with ``G = ∂v/∂raw`` (delta method), and the standard error is
``sqrt(diag(cov_v))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..physics.params import Param

__all__ = ["Quantity", "delta_method_errors", "physical_quantities", "residual_jacobian"]

#: Models without ``physical_parameters()`` report their trainable tensors when they hold at most this many numbers.
MAX_PLAIN_PARAMETERS = 100


def residual_jacobian(r: Tensor, theta: Sequence[Tensor]) -> Tensor:
    """``J = ∂r/∂θ`` of shape ``(M, P)``, ``P`` the total number of entries of ``theta``, by double backward.

    ``r`` must have been computed with a graph that supports double backward. Unknowns ``r`` does not depend on
    give zero columns.
    """
    M = r.numel()
    P = sum(t.numel() for t in theta)
    J = torch.zeros(M, P, dtype=r.dtype, device=r.device)
    if M == 0 or P == 0 or not r.requires_grad:
        return J
    u = torch.zeros(M, dtype=r.dtype, device=r.device, requires_grad=True)
    grads = torch.autograd.grad(r.reshape(-1), list(theta), grad_outputs=u, create_graph=True, allow_unused=True)
    flat = [
        g.reshape(-1) if g is not None else torch.zeros(t.numel(), dtype=r.dtype, device=r.device)
        for t, g in zip(theta, grads, strict=True)
    ]
    g = torch.cat(flat)
    if not g.requires_grad:
        return J
    try:
        # All P columns in one vmapped double-backward pass.
        eye = torch.eye(P, dtype=r.dtype, device=r.device)
        (cols,) = torch.autograd.grad(g, u, grad_outputs=eye, is_grads_batched=True, retain_graph=True)
        return cols.T.detach().clone()
    except RuntimeError:
        pass  # an operation without a batching rule: one pass per column
    for j in range(P):
        if g[j].requires_grad:
            (c,) = torch.autograd.grad(g[j], u, retain_graph=True, allow_unused=True)
            if c is not None:
                J[:, j] = c
    return J.detach()


@dataclass
class Quantity:
    """A named fitted quantity: its current value and, when learnable, the raw tensor it is computed from."""

    name: str
    value: callable
    raw: Tensor | None


def physical_quantities(model: nn.Module) -> list[Quantity]:
    """The model's named physical quantities.

    With ``model.physical_parameters()`` (every :class:`~physnode.physics.PhysicsModel`): one entry per name, with
    the raw tensor of the matching learnable :class:`~physnode.physics.Param` (``None`` for constants). Otherwise
    every trainable tensor by its dotted name when they hold at most :data:`MAX_PLAIN_PARAMETERS` numbers in all
    (the identity map), else nothing.
    """
    if hasattr(model, "physical_parameters") and callable(model.physical_parameters):
        names = list(model.physical_parameters())
        params: dict[str, Param] = {}
        for path, mod in model.named_modules():
            if isinstance(mod, Param):
                leaf = path.rsplit(".", 1)[-1]
                params.setdefault(leaf, mod)
        out = []
        for name in names:
            p = params.get(name)
            raw = p.raw if (p is not None and p.learnable and p.raw.requires_grad) else None

            def value(name: str = name) -> Tensor:
                return model.physical_parameters()[name]

            out.append(Quantity(name, value, raw))
        return out
    plain = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if sum(p.numel() for _, p in plain) > MAX_PLAIN_PARAMETERS:
        return []
    return [Quantity(n, (lambda p=p: p), p) for n, p in plain]


def to_python(x: Tensor) -> float | list:
    """A float for a 0-d tensor, a (nested) list otherwise."""
    x = x.detach().cpu().to(torch.float64)
    return float(x) if x.ndim == 0 else x.tolist()


def delta_method_errors(quantities: Sequence[Quantity], cov: Tensor) -> dict[str, float | list]:
    """Standard errors of the quantities' values from the covariance ``cov (P, P)`` of their raw tensors.

    ``cov`` is indexed by the raw tensors of the learnable quantities in order (flattened). Known constants get
    ``0.0`` (or zeros). A non-finite or negative variance gives NaN.
    """
    out: dict[str, float | list] = {}
    col = 0
    for q in quantities:
        v = q.value()
        if q.raw is None:
            out[q.name] = to_python(torch.zeros_like(v))
            continue
        n = q.raw.numel()
        raw = q.raw
        with torch.enable_grad():
            vf = q.value().reshape(-1)
            G = torch.zeros(vf.numel(), n, dtype=cov.dtype, device=cov.device)
            for k in range(vf.numel()):
                (g,) = torch.autograd.grad(vf[k], raw, retain_graph=True, allow_unused=True)
                if g is not None:
                    G[k] = g.reshape(-1).to(cov.dtype)
        block = cov[col : col + n, col : col + n]
        var = torch.diagonal(G @ block @ G.T)
        se = torch.where(var >= 0, var.clamp_min(0).sqrt(), torch.full_like(var, float("nan")))
        out[q.name] = to_python(se.reshape(v.shape))
        col += n
    return out


def covariance(JtJ: Tensor, scale: float) -> Tensor:
    """``scale · (JᵀJ)⁻¹``; NaN where ``JᵀJ`` is singular (unidentifiable directions)."""
    try:
        inv = torch.linalg.inv(JtJ)
    except RuntimeError:
        return torch.full_like(JtJ, float("nan"))
    if not bool(torch.isfinite(inv).all()):
        return torch.full_like(JtJ, float("nan"))
    return scale * inv
