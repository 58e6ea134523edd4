"""Shared machinery of the gradient methods that run their own backward pass (ACA, symplectic, adjoint, and the
reversible methods of :mod:`physnode.gradients.reversible`).

Each such method is a :class:`torch.autograd.Function` with inputs ``(y0, *problem.params)`` and output
``ys`` ``(B, T, D)``. Its forward pass runs :func:`~physnode.integrate.integrate` without a graph (keeping
the per-iteration records the method needs); its backward pass walks those records in reverse and returns
the gradient to ``y0`` and to every parameter. This module holds what they share:

- :class:`CustomSolve`, the one :class:`torch.autograd.Function` of all of them: its forward pass calls the
  method's ``forward_solve``, its backward pass the method's ``backward``;
- :class:`ReplayGradient`, the base class (``needs_params = True``; subclasses implement :meth:`backward`);
- :func:`output_cotangents`, the gradient of the loss w.r.t. the state written by each iteration;
- :func:`vjp`, one vector-Jacobian product with ``None`` turned into zeros.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor

from ..integrate import Integration, Problem, integrate
from ._guards import first_order_only, wants_custom_backward
from .base import GradientMethod

__all__ = [
    "CustomBackward",
    "CustomSolve",
    "ReplayGradient",
    "interpolated_cotangent",
    "output_cotangent",
    "pad_output_gradient",
    "vjp",
]


def vjp(outputs: Sequence[Tensor], inputs: Sequence[Tensor], cotangents: Sequence[Tensor]) -> list[Tensor]:
    """Return ``sum_k cotangents[k]^T d outputs[k] / d inputs[i]`` for each input (zeros where unused).

    Outputs that do not require grad (constant w.r.t. every input) are skipped.
    """
    pairs = [(o, c) for o, c in zip(outputs, cotangents, strict=True) if o.requires_grad]
    if not pairs:
        return [torch.zeros_like(x) for x in inputs]
    outs, cots = zip(*pairs, strict=True)
    grads = torch.autograd.grad(outs, list(inputs), cots, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True)]


def pad_output_gradient(grad_ys: Tensor) -> Tensor:
    """``grad_ys`` ``(B, T, D)`` with a zero slot ``T`` appended: the cotangent of iterations that wrote nothing."""
    B, _, D = grad_ys.shape
    return torch.cat([grad_ys, grad_ys.new_zeros(B, 1, D)], dim=1)


def output_cotangent(padded: Tensor, slot: Tensor) -> Tensor:
    """Gradient of the loss w.r.t. the state written by one iteration, ``(B, D)``.

    An iteration that landed on observation ``j`` of trajectory ``b`` wrote ``ys[b, j]``, so row ``b`` is
    ``grad_ys[b, j]``; rows that wrote nothing (slot ``T``) get zeros from the padding slot.
    """
    B, _, D = padded.shape
    return padded.gather(1, slot.view(B, 1, 1).expand(B, 1, D)).squeeze(1)


def interpolated_cotangent(padded: Tensor, slots: Tensor) -> Tensor:
    """Gradient of the loss w.r.t. the states one step interpolated (``outputs="interpolate"``), ``(B, M, D)``:
    row ``b``, entry ``m`` is ``grad_ys[b, slots[b, m]]`` (zeros for slot ``T``, where nothing was written)."""
    D = padded.shape[-1]
    return padded.gather(1, slots.unsqueeze(-1).expand(*slots.shape, D))


class CustomBackward(Protocol):
    """What :class:`CustomSolve` needs from a gradient method."""

    @property
    def name(self) -> str:
        """The ``grad=`` name, for messages."""
        ...

    def forward_solve(self, problem: Problem) -> Integration:
        """The forward solve, without a graph, keeping what :meth:`backward` needs."""
        ...

    def backward(
        self, problem: Problem, result: Integration, grad_ys: Tensor, params: tuple[Tensor, ...]
    ) -> tuple[Tensor, Sequence[Tensor | None]]:
        """``(dL/dy0, [dL/dp for p in params])`` from ``grad_ys = dL/dys`` (``None`` for an unused ``p``)."""
        ...


class CustomSolve(torch.autograd.Function):
    """``ys = solve(y0, *params)`` with the gradient given by ``method.backward``: the one autograd Function of the
    gradient methods with their own backward pass. The evaluations of ``f`` in the backward pass are added to
    ``stats.nfe_backward``; a second differentiation raises (:func:`first_order_only`)."""

    @staticmethod
    def forward(ctx: Any, method: CustomBackward, problem: Problem, box: list, y0: Tensor, *params: Tensor) -> Tensor:
        result = method.forward_solve(problem)
        box.append(result)
        ctx.method, ctx.problem, ctx.result = method, problem, result
        ctx.anchors = (y0, *params)  # inputs only (no cycle through the outputs): see first_order_only
        return result.ys

    @staticmethod
    @first_order_only(lambda ctx: ctx.method.name, lambda ctx: ctx.anchors)
    def backward(ctx: Any, grad_ys: Tensor) -> tuple[Tensor | None, ...]:
        method, problem, result = ctx.method, ctx.problem, ctx.result
        nfe0 = problem.func.nfe
        wanted = tuple(p for p, need in zip(problem.params, ctx.needs_input_grad[4:], strict=True) if need)
        try:
            g_y0, g_wanted = method.backward(problem, result, grad_ys.contiguous(), wanted)
        finally:
            result.stats.nfe_backward += problem.func.nfe - nfe0
        it = iter(g_wanted)
        g_params = [next(it) if need else None for need in ctx.needs_input_grad[4:]]
        return (None, None, None, g_y0 if ctx.needs_input_grad[3] else None, *g_params)


class ReplayGradient(GradientMethod):
    """Base of the gradient methods with a custom backward pass over the records of the forward solve.

    Subclasses set :attr:`record` (what the forward solve keeps) and implement :meth:`backward`.
    """

    needs_params = True
    #: What :func:`~physnode.integrate.integrate` records in the forward pass (``"states"``, ``"steps"`` or
    #: ``None``).
    record: ClassVar[str | None] = "states"

    def forward_solve(self, problem: Problem) -> Integration:
        """The forward solve of :class:`CustomSolve`: :func:`~physnode.integrate.integrate` keeping :attr:`record`."""
        return integrate(problem, record=self.record)

    def solve(self, problem: Problem) -> Integration:
        """Solve ``problem``; with grad mode on and ``y0`` or a parameter requiring grad, attach the custom
        backward pass, otherwise solve plainly (a plain function with no tensor to differentiate needs no
        ``params=``).

        Raises
        ------
        ValueError
            When ``f`` uses a tensor that requires grad and is not among ``problem.params`` (it would silently
            get no gradient).
        """
        if not wants_custom_backward(problem, self.name):
            return integrate(problem)
        box: list[Integration] = []
        ys = CustomSolve.apply(self, problem, box, problem.y0, *problem.params)
        result = box[0]
        return Integration(ys, result.stats, result.final_state, h0=result.h0, dense=result.dense)

    @abstractmethod
    def backward(
        self, problem: Problem, result: Integration, grad_ys: Tensor, params: tuple[Tensor, ...]
    ) -> tuple[Tensor, list[Tensor]]:
        """Return ``(dL/dy0 (B, D), [dL/dp for p in params])`` given ``grad_ys = dL/dys`` ``(B, T, D)``.

        ``params`` are the entries of ``problem.params`` whose gradient is wanted (a subset, in order).
        """
