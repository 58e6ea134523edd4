"""Integral losses ``∫ L(t, z(t)) dt`` carried as extra state components of the solve.

A loss on the whole trajectory (not just its values at the observation times) is the integral of an integrand
along the solution. Appending ``ℓ`` with ``dℓ/dt = L(t, z)`` and ``ℓ(t_0) = 0`` to the state gives
``ℓ(t_j) = ∫_(t_0)^(t_j) L(t, z(t)) dt`` at every observation time, computed by the same solver, with the same
error control, to the same tolerance as ``z``. Because ``ℓ`` is ordinary state, every gradient method
differentiates it — the exact ones exactly — with no dense output, no quadrature grid and no extra backward pass.
The price: ``ℓ`` takes part in step control like any other component (tolerances apply to it as well).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ._checks import check_returned
from .regularisers import Regulariser

__all__ = ["IntegralLoss"]

Integrand = Callable[[Tensor, Tensor], Tensor] | Regulariser


class IntegralLoss(nn.Module):
    """The field ``[f(t, z), L_1(t, z), …, L_m(t, z)]`` on the state ``y = [z, ℓ_1, …, ℓ_m]``.

    Parameters
    ----------
    field
        ``f(t, z) -> dz/dt``, ``(..., D)`` (its parameters become this module's).
    terms
        One integrand or a sequence of ``m`` integrands. A plain callable is called as ``L(t, z)`` and returns
        ``(...)`` (one number per trajectory, ``t`` of shape ``(...)``); a :class:`~physnode.nn.Regulariser`
        (:class:`~physnode.nn.KineticEnergy`, :class:`~physnode.nn.JacobianFrobenius`) is called as
        ``r(t, z, f(t, z))`` and reuses the field's value.

    Examples
    --------
    >>> loss = IntegralLoss(field, [KineticEnergy(), JacobianFrobenius()])
    >>> y0 = loss.initial_state(z0)                    # (B, D + 2); draws the Hutchinson noise for this solve
    >>> ys = physnode.odeint(loss, y0, t, grad="aca")  # (B, T, D + 2)
    >>> z, integrals = loss.split(ys)                  # (B, T, D), (B, T, 2) running integrals from t[..., 0]
    >>> reg = integrals[:, -1].mean(0)                 # (2,): ∫‖f‖² dt and ∫‖∂f/∂z‖_F² dt, batch mean
    """

    def __init__(self, field: Callable[[Tensor, Tensor], Tensor], terms: Integrand | Sequence[Integrand]) -> None:
        super().__init__()
        if not callable(field):
            raise TypeError(f"field must be callable as field(t, z), got {type(field).__name__}.")
        terms = list(terms) if isinstance(terms, (list, tuple, nn.ModuleList)) else [terms]
        if not terms:
            raise ValueError("IntegralLoss needs at least one integrand, e.g. terms=[KineticEnergy()].")
        for i, term in enumerate(terms):
            if not callable(term):
                raise TypeError(f"terms[{i}] must be callable as L(t, z) or be a Regulariser, got {term!r}.")
        self.field = field
        self._terms: list[Integrand] = terms
        # Modules among the terms are registered so that their parameters and buffers (the noise) follow the
        # module (``.to``, ``.parameters()``).
        self.term_modules = nn.ModuleList([term for term in terms if isinstance(term, nn.Module)])
        self._needs_vjp = any(isinstance(term, Regulariser) and term.needs_vjp for term in terms)

    @property
    def n_terms(self) -> int:
        """Number of integrals ``m`` carried after the state."""
        return len(self._terms)

    def _state_dim(self, y: Tensor, who: str) -> int:
        m = self.n_terms
        if not isinstance(y, Tensor) or y.ndim < 1 or y.shape[-1] <= m:
            raise ValueError(
                f"{who} expects a state [z, ℓ] of shape (..., D + {m}) with D >= 1 ({m} integrals), got "
                f"{getattr(y, 'shape', type(y).__name__)}. Build it with IntegralLoss.initial_state(z0)."
            )
        return y.shape[-1] - m

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """``[f(t, z), L_1(t, z), …]`` ``(..., D + m)`` for ``y = [z, ℓ]``."""
        d = self._state_dim(y, "IntegralLoss")
        z = y[..., :d]
        vjp = None
        if self._needs_vjp:
            # torch.func.vjp differentiates f with respect to z inside its own transform level: the result stays
            # differentiable with respect to y and the parameters by ordinary autograd (double backward for the
            # replay methods), it works with grad mode off (the forward pass of the replay methods), and no
            # helper leaf tensor enters the graph of the output.
            dz, pull = torch.func.vjp(lambda zz: self.field(t, zz), z)

            def vjp(eps: Tensor) -> Tensor:
                return pull(eps)[0]

        else:
            dz = self.field(t, z)
        check_returned("IntegralLoss's field(t, z)", dz, tuple(z.shape), "The field returns dz/dt.")
        cols = []
        for i, term in enumerate(self._terms):
            value = term(t, z, dz, vjp) if isinstance(term, Regulariser) else term(t, z)
            check_returned(
                f"IntegralLoss terms[{i}]",
                value,
                tuple(z.shape[:-1]),
                "An integrand returns one number per trajectory (reduce over the state axis).",
            )
            cols.append(value.to(dz.dtype))
        return torch.cat([dz, torch.stack(cols, dim=-1)], dim=-1)

    def initial_state(self, z0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``[z0, 0, …, 0]`` ``(..., D + m)``, and draw the noise every stochastic term holds for this solve.

        Call once per solve: the Hutchinson noise of :class:`~physnode.nn.JacobianFrobenius` is drawn here (one
        ``ε`` per trajectory, from ``generator`` when given) and kept until the next call.
        """
        if not isinstance(z0, Tensor) or z0.ndim < 1 or not z0.is_floating_point():
            raise ValueError(
                f"z0 must be a floating-point tensor of shape (..., D), got {getattr(z0, 'shape', type(z0).__name__)}."
            )
        for term in self._terms:
            if isinstance(term, Regulariser):
                term.resample(z0.detach(), generator=generator)
        return torch.cat([z0, z0.new_zeros(*z0.shape[:-1], self.n_terms)], dim=-1)

    def split(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, ℓ)`` from states ``(..., D + m)``: ``z`` ``(..., D)`` and the running integrals ``(..., m)``.

        For ``ys`` ``(B, T, D + m)`` from a state built by :meth:`initial_state`, ``ℓ[b, j, i]`` is
        ``∫_(t[b, 0])^(t[b, j]) L_i(t, z_b(t)) dt``.
        """
        d = self._state_dim(y, "IntegralLoss.split")
        return y[..., :d], y[..., d:]

    def extra_repr(self) -> str:
        return f"n_terms={self.n_terms}"
