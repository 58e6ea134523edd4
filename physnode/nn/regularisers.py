"""Regularisers of the vector field, integrated along the solve by :class:`~physnode.nn.IntegralLoss`.

* :class:`KineticEnergy` — ``‖f(t, z)‖²``: penalises fast, long trajectories (RNODE, Finlay et al. 2020);
* :class:`JacobianFrobenius` — ``‖∂f/∂z‖_F²``: penalises stiff, rapidly varying fields, estimated with
  Hutchinson's estimator ``‖εᵀ ∂f/∂z‖²``, ``E[ε εᵀ] = I``, or computed exactly for small states.

Both make the learned dynamics easier to integrate (fewer steps) at little cost in fit; STEER
(:mod:`physnode.fit.steer`) regularises through the end time instead.

The noise of the estimator is drawn **once per solve** — by :meth:`JacobianFrobenius.resample`, which
:meth:`~physnode.nn.IntegralLoss.initial_state` calls — and held fixed during the solve. A fresh draw at every
evaluation would make the field random: adaptive step control would see noise, and the gradient methods that
re-evaluate the field in their backward pass (``aca``, ``symplectic``, ``mali``, ``reversible_heun``,
``adjoint``) would differentiate a different function from the one that was solved. With the noise fixed, the
integrand is a deterministic function of ``(t, z)`` and every exact method stays exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

__all__ = ["JacobianFrobenius", "KineticEnergy", "Regulariser"]


class Regulariser(nn.Module):
    """An integrand ``r(t, z, f(t, z)) -> (...)`` that :class:`~physnode.nn.IntegralLoss` integrates.

    Attributes
    ----------
    needs_vjp
        Whether the integrand differentiates ``f`` with respect to ``z``; then ``IntegralLoss`` evaluates the
        field with :func:`torch.func.vjp` and passes the pull-back ``vjp(ε) = εᵀ ∂f/∂z``.
    """

    needs_vjp: ClassVar[bool] = False

    def resample(self, z0: Tensor, generator: torch.Generator | None = None) -> None:
        """Draw whatever randomness the integrand holds fixed for the next solve (nothing by default)."""

    def forward(self, t: Tensor, z: Tensor, dz: Tensor, vjp: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """The integrand ``(...)`` at times ``t`` for states ``z`` ``(..., D)``.

        Parameters
        ----------
        t, z
            Times ``(...)`` and states ``(..., D)``.
        dz
            ``f(t, z)``, ``(..., D)``.
        vjp
            ``vjp(ε) = εᵀ ∂f/∂z`` ``(..., D)`` for ``ε`` ``(..., D)`` (row by row), when :attr:`needs_vjp`.
        """
        raise NotImplementedError


class KineticEnergy(Regulariser):
    """``‖f(t, z)‖² = Σ_i f_i(t, z)²`` per trajectory (no extra evaluation of ``f``)."""

    def forward(self, t: Tensor, z: Tensor, dz: Tensor, vjp: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        return dz.square().sum(-1)


class JacobianFrobenius(Regulariser):
    """``‖∂f/∂z‖_F²`` per trajectory, by Hutchinson's estimator with noise fixed per solve, or exactly.

    The estimate is ``‖εᵀ J‖²`` with ``J = ∂f/∂z`` and ``ε`` ``(..., D)`` drawn by :meth:`resample` with
    ``E[ε εᵀ] = I``, so ``E[‖εᵀ J‖²] = tr(J Jᵀ) = ‖J‖_F²`` (unbiased; one vector-Jacobian product per
    evaluation). Rademacher noise has the smaller variance, ``2 Σ_(i≠j) (J Jᵀ)_ij²`` against Gaussian's
    ``2 ‖J Jᵀ‖_F²``. The exact mode takes ``D`` vector-Jacobian products and needs no noise.

    Assumes the rows of the batch do not interact inside ``f`` (no batch normalisation).

    Parameters
    ----------
    estimator
        ``"rademacher"`` (default), ``"gaussian"`` or ``"exact"``.
    """

    needs_vjp = True
    ESTIMATORS: ClassVar[tuple[str, ...]] = ("rademacher", "gaussian", "exact")
    noise: Tensor | None

    def __init__(self, estimator: str = "rademacher") -> None:
        super().__init__()
        if estimator not in self.ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(self.ESTIMATORS)}; got {estimator!r}.")
        self.estimator = estimator
        self.register_buffer("noise", None, persistent=False)

    def resample(self, z0: Tensor, generator: torch.Generator | None = None) -> None:
        """Draw the noise ``ε`` (shape, dtype and device of ``z0`` ``(..., D)``) held fixed for the next solve.

        Each trajectory gets its own ``ε``. Nothing is drawn for ``estimator="exact"``.
        """
        if self.estimator == "exact":
            return
        if not isinstance(z0, Tensor) or z0.ndim < 1 or not z0.is_floating_point():
            raise ValueError(f"resample needs floating-point states z0 of shape (..., D), got {z0!r}.")
        if self.estimator == "gaussian":
            eps = torch.randn(z0.shape, generator=generator, dtype=z0.dtype, device=z0.device)
        else:
            eps = torch.randint(0, 2, z0.shape, generator=generator, device=z0.device).to(z0.dtype) * 2 - 1
        self.noise = eps

    def forward(self, t: Tensor, z: Tensor, dz: Tensor, vjp: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        if vjp is None:
            raise ValueError(
                "JacobianFrobenius needs the pull-back vjp(ε) = εᵀ ∂f/∂z; use it inside IntegralLoss, which passes it."
            )
        if self.estimator == "exact":
            total = dz.new_zeros(dz.shape[:-1])
            for i in range(z.shape[-1]):
                e = torch.zeros_like(dz)
                e[..., i] = 1.0
                total = total + vjp(e).square().sum(-1)
            return total
        eps = self.noise
        if eps is None:
            raise RuntimeError(
                "JacobianFrobenius has no noise for this solve: build the initial state with "
                "IntegralLoss.initial_state(z0), which draws it, or call resample(z0) before the solve."
            )
        if eps.shape != z.shape or eps.dtype != z.dtype or eps.device != z.device:
            raise ValueError(
                f"JacobianFrobenius noise has shape {tuple(eps.shape)} ({eps.dtype}, {eps.device}) but the states "
                f"have {tuple(z.shape)} ({z.dtype}, {z.device}); the noise was drawn for another batch. Call "
                "IntegralLoss.initial_state(z0) (or resample(z0)) for each solve."
            )
        return vjp(eps).square().sum(-1)

    def extra_repr(self) -> str:
        return f"estimator={self.estimator!r}"
