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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..physics.params import Param

__all__ = [
    "PRECISION_FACTOR",
    "FitUncertainty",
    "Quantity",
    "UncertaintyWarning",
    "correlation",
    "delta_method_errors",
    "entry_names",
    "physical_covariance",
    "physical_quantities",
    "precision_warning",
    "residual_jacobian",
    "value_jacobian",
]

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
    value: Callable[[], Tensor]
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

    def identity(p: Tensor) -> Callable[[], Tensor]:
        return lambda: p

    return [Quantity(n, identity(p), p) for n, p in plain]


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


# ------------------------------------------------------------------------------------------ covariance of a fit
class UncertaintyWarning(UserWarning):
    """Issued at the end of a fit whose standard errors are not meaningful (see :func:`precision_warning`)."""


#: The standard errors are flagged as meaningless when the RMS of the fit's errors is at most this many times the
#: solver's own error scale ``rtol · rms(data) + atol`` (see :func:`precision_warning`). A solve controls the local
#: error per step to about ``rtol·|y| + atol``; its global error over many steps is typically one to a hundred
#: times that, so residuals below the bound may be nothing but the solver's error.
PRECISION_FACTOR = 100.0


def entry_names(quantities: Sequence[Quantity]) -> list[str]:
    """Names of the entries of the learnable quantities, in the order of their flattened raw tensors.

    A scalar is named by itself (``"k"``), an entry of a vector or matrix by its index (``"masses[0]"``,
    ``"W[1,2]"``).
    """
    names: list[str] = []
    for q in quantities:
        if q.raw is None:
            continue
        shape = tuple(q.value().shape)
        if len(shape) == 0:
            names.append(q.name)
            continue
        for idx in torch.cartesian_prod(*[torch.arange(n) for n in shape]).reshape(-1, len(shape)).tolist():
            names.append(f"{q.name}[{','.join(str(i) for i in idx)}]")
    return names


def value_jacobian(quantities: Sequence[Quantity], dtype: torch.dtype, device: torch.device) -> Tensor:
    """``G = ∂v/∂raw`` of shape ``(P_v, P_raw)``: the flattened values of the learnable quantities with respect to
    their flattened raw tensors (in the order of :func:`entry_names`)."""
    learn = [q for q in quantities if q.raw is not None]
    raws = [q.raw for q in quantities if q.raw is not None]
    p_raw = sum(r.numel() for r in raws)
    rows: list[Tensor] = []
    with torch.enable_grad():
        for q in learn:
            vf = q.value().reshape(-1)
            for k in range(vf.numel()):
                grads = torch.autograd.grad(vf[k], raws, retain_graph=True, allow_unused=True)
                rows.append(
                    torch.cat(
                        [
                            (g if g is not None else torch.zeros_like(r)).reshape(-1).to(dtype=dtype, device=device)
                            for g, r in zip(grads, raws, strict=True)
                        ]
                    )
                    if raws
                    else torch.zeros(0, dtype=dtype, device=device)
                )
    if not rows:
        return torch.zeros(0, p_raw, dtype=dtype, device=device)
    return torch.stack(rows)


def physical_covariance(quantities: Sequence[Quantity], cov_raw: Tensor) -> Tensor:
    """Covariance ``G Σ_raw Gᵀ`` (delta method) of the learnable quantities' values, ``(P_v, P_v)``.

    ``cov_raw`` is the covariance of their flattened raw tensors (its leading ``P_raw`` rows and columns are used;
    further unknowns such as initial states are marginalised by dropping them).
    """
    G = value_jacobian(quantities, cov_raw.dtype, cov_raw.device)
    p_raw = G.shape[1]
    block = cov_raw[:p_raw, :p_raw]
    return G @ block @ G.T


def correlation(cov: Tensor) -> Tensor:
    """Correlation matrix ``C_ij = Σ_ij / sqrt(Σ_ii Σ_jj)`` of a covariance ``(P, P)``; NaN in the rows and columns
    of entries whose variance is not positive."""
    var = torch.diagonal(cov)
    sd = torch.where(var > 0, var.clamp_min(0).sqrt(), torch.full_like(var, float("nan")))
    return cov / (sd[:, None] * sd[None, :])


def precision_warning(
    error_rms: float, data_rms: float, rtol: float, atol: float, factor: float = PRECISION_FACTOR
) -> str | None:
    """A message when the fit's residuals are at the solver's precision (so the standard errors mean nothing).

    The rule: ``error_rms <= factor · (rtol · data_rms + atol)``, with ``error_rms`` the root mean square of the
    errors (prediction − data) over the observed entries, ``data_rms`` that of the data, and the solve's
    tolerances (their largest entries when given per component). Such residuals are what the solver's own
    discretisation error leaves on noise-free data: the Gauss–Newton standard errors, which scale with the
    residuals, then describe the solver's error rather than the parameters' (they are far too small), while the
    actual error of the estimates is set by the solver's bias.

    Returns
    -------
    str or None
        The message, or ``None`` when the residuals are well above the solver's error scale.
    """
    scale = rtol * data_rms + atol
    if not (math.isfinite(error_rms) and math.isfinite(scale)) or error_rms > factor * scale:
        return None
    return (
        f"standard errors not meaningful: the residuals (RMS {error_rms:.2g}) are at the solver's precision "
        f"(rtol {rtol:.2g} x data RMS {data_rms:.2g} + atol {atol:.2g} = {scale:.2g}; flagged below {factor:g} "
        "times that), as on noise-free data; the actual errors of the estimates are set by the solver's error and "
        "may be much larger. Tighten rtol/atol to shrink them, or fit noisy data."
    )


@dataclass
class FitUncertainty:
    """What a fit's uncertainty analysis found (the fields :class:`~physnode.fit.FitResult` carries).

    Attributes
    ----------
    standard_errors
        ``{name: standard error}`` of every physical quantity (0 for known constants).
    covariance
        ``(P, P)`` covariance of the learnable quantities' entries (physical values, delta method), named by
        ``names``; ``None`` without learnable quantities.
    names
        The ``P`` entry names (:func:`entry_names`).
    raw_covariance
        Covariance of the unconstrained unknowns: the learnable quantities' raw tensors (flattened, in order;
        ``P_raw`` entries), then the ``N·S`` fitted initial states (row-major) when they were learned.
    initial_states_learned
        Whether ``raw_covariance`` ends with the initial-state block.
    residual_std
        ``sqrt(RSS / (n_obs − p))``: the noise level the residuals imply (``loss="mse"``), else ``None``.
    warning
        :func:`precision_warning`'s message, or ``None``.
    """

    standard_errors: dict[str, float | list]
    covariance: Tensor | None = None
    names: list[str] = field(default_factory=list)
    raw_covariance: Tensor | None = None
    initial_states_learned: bool = False
    residual_std: float | None = None
    warning: str | None = None
