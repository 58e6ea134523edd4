"""Guards shared by the gradient methods that build their own backward pass.

A method with its own backward pass (ACA, symplectic, continuous adjoint, MALI, reversible Heun, and the
SDE adjoint) returns gradients only for the tensors it was told about: ``y0`` and the parameters found on an
``nn.Module`` or passed with ``params=``. Three things would otherwise go silently or cryptically wrong:

- a tensor that requires grad but reaches ``f`` some other way (a global or closed-over tensor, an attribute
  of the module that is neither a parameter nor a buffer) would get no gradient: :func:`undeclared_leaves`
  finds such tensors with one bounded walk of the autograd graph of a single evaluation of ``f``, and
  :func:`check_declared` raises naming them;
- a solve in which nothing requires grad needs no custom backward at all: :func:`wants_custom_backward`
  says whether to build one;
- the custom backward passes are first order: :func:`first_order_only` marks their results so that
  differentiating them again raises a clear error instead of torch's "element 0 of tensors does not require
  grad".
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ..integrate import Problem

__all__ = [
    "check_declared",
    "derived_from_declared",
    "first_order_only",
    "undeclared_leaves",
    "wants_custom_backward",
]

#: The walk of the graph of one evaluation stops after this many nodes (a guard against pathological graphs,
#: not a limit any right-hand side of a neural ODE comes near).
WALK_LIMIT = 100_000


def undeclared_leaves(outputs: Sequence[Tensor], declared: Sequence[Tensor], limit: int = WALK_LIMIT) -> list[Tensor]:
    """Leaf tensors that require grad, reached by the graph of ``outputs``, that are not in ``declared``.

    The walk follows ``grad_fn.next_functions`` from every output and stops at the graph node of a declared
    non-leaf tensor (its gradient is delivered there and flows on by autograd) and after ``limit`` nodes.

    Parameters
    ----------
    outputs
        Results of one evaluation (e.g. ``f(t0, y0)`` with ``y0`` detached).
    declared
        The tensors whose gradient the method computes.
    limit
        Maximum number of graph nodes visited.

    Returns
    -------
    list of Tensor
        The undeclared leaves, each once, in the order found.
    """
    leaf_ok = [p for p in declared if p.grad_fn is None]
    stop = [p.grad_fn for p in declared if p.grad_fn is not None]
    found: list[Tensor] = []
    stack = [o.grad_fn for o in outputs if isinstance(o, Tensor) and o.grad_fn is not None]
    seen: set[int] = set()
    while stack and len(seen) < limit:
        node = stack.pop()
        if id(node) in seen or any(node is s for s in stop):
            continue
        seen.add(id(node))
        var = getattr(node, "variable", None)
        if isinstance(var, Tensor):
            if not any(var is p for p in leaf_ok) and not any(var is q for q in found):
                found.append(var)
            continue
        stack.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
    return found


def describe(tensors: Sequence[Tensor], most: int = 4) -> str:
    """``"tensor of shape (3,), torch.float64; ..."`` for an error message (at most ``most`` named)."""
    parts = [f"tensor of shape {tuple(x.shape)}, {x.dtype}" for x in tensors[:most]]
    if len(tensors) > most:
        parts.append(f"and {len(tensors) - most} more")
    return "; ".join(parts)


def undeclared_message(name: str, leaves: Sequence[Tensor], where: str = "func") -> str:
    """The error for tensors a custom backward pass would silently leave without gradient."""
    n = len(leaves)
    return (
        f"grad={name!r} builds the gradient in its own backward pass and returns it only for y0 and the declared "
        f"parameters, but {where} uses {n} other tensor{'s' if n > 1 else ''} that require{'' if n > 1 else 's'} "
        f"grad ({describe(leaves)}); {'they' if n > 1 else 'it'} would silently get no gradient. Register "
        f"{'them' if n > 1 else 'it'} as an nn.Parameter of the module or pass params=[...] listing every tensor "
        f"to differentiate; if {'they' if n > 1 else 'it'} should stay constant, detach {'them' if n > 1 else 'it'} "
        "(or register a buffer without grad). grad='direct' differentiates any tensor."
    )


def derived_from_declared(declared: Sequence[Tensor], limit: int = WALK_LIMIT) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``: the declared non-leaf tensor ``declared[i]`` is computed from ``declared[j]``.

    A method with its own backward pass returns a gradient for every declared tensor, and autograd then carries
    the gradient of ``declared[i]`` on through its graph to ``declared[j]``, which already received its own,
    total gradient from the backward pass: that path would be counted twice. One bounded walk per non-leaf.
    """
    pairs: list[tuple[int, int]] = []
    for i, p in enumerate(declared):
        if p.grad_fn is None:
            continue
        stack = [nxt for nxt, _ in p.grad_fn.next_functions if nxt is not None]
        seen: set[int] = set()
        while stack and len(seen) < limit:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            var = getattr(node, "variable", None)
            hit = [
                j
                for j, q in enumerate(declared)
                if j != i and (q is var or (q.grad_fn is not None and q.grad_fn is node))
            ]
            if hit:
                pairs.extend((i, j) for j in hit if (i, j) not in pairs)
                continue
            if isinstance(var, Tensor):
                continue
            stack.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
    return pairs


def check_declared(problem: Problem, name: str) -> None:
    """Raise ``ValueError`` when ``f`` reaches tensors that require grad and are not in ``problem.params``.

    Costs one evaluation of ``f`` at ``(t0, y0)`` with a graph (not counted in ``stats.nfe``) and one walk of
    its graph, once per solve; nothing is done when grad mode is off.

    Raises
    ------
    ValueError
        Naming the undeclared tensors (shape, dtype) and how to declare them.
    """
    if not torch.is_grad_enabled():
        return
    derived = derived_from_declared(problem.params)
    if derived:
        i, j = derived[0]
        p, q = problem.params[i], problem.params[j]
        raise ValueError(
            f"grad={name!r}: the declared parameter {describe([p])} is computed (with a graph) from another declared "
            f"parameter, {describe([q])}; a method with its own backward pass returns a gradient for both, and "
            "autograd would then add the first one's again to the second through that computation (counting the "
            "path twice). Declare only the independent tensors and compute the derived one inside func (or in the "
            "module's forward), or declare it computed from detached inputs; grad='direct' differentiates either way."
        )
    func = problem.func
    nfe = func.nfe
    out = func(problem.t[:, 0], problem.y0.detach())
    func.nfe = nfe
    if not isinstance(out, Tensor) or not out.requires_grad:
        return
    leaves = undeclared_leaves([out], problem.params)
    if leaves:
        raise ValueError(undeclared_message(name, leaves))


def wants_custom_backward(problem: Problem, name: str) -> bool:
    """Whether the solve needs the method's own backward pass: grad mode is on and ``y0`` or a declared
    parameter requires grad. Checks first that no undeclared tensor would miss its gradient
    (:func:`check_declared`)."""
    check_declared(problem, name)
    return torch.is_grad_enabled() and any(x.requires_grad for x in (problem.y0, *problem.params))


class _NoSecondOrder(torch.autograd.Function):
    """Identity whose backward raises: marks a gradient computed by a first-order-only backward pass."""

    @staticmethod
    def forward(ctx: Any, name: str, x: Tensor, *anchors: Tensor) -> Tensor:
        # ``anchors``: the tensors the gradient is taken with respect to. They put this node on the path from the
        # gradient back to them, so that torch.autograd.grad(g, anchor) reaches the backward below (and its
        # message) instead of stopping with torch's "appears to not have been used in the graph".
        ctx.name = name
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, ...]:
        raise RuntimeError(
            f"double backward (a gradient of a gradient, e.g. torch.autograd.grad(..., create_graph=True) "
            f"followed by another backward) is supported only with grad='direct'; grad={ctx.name!r} computes "
            "first-order gradients in its own backward pass. Use grad='direct' for higher-order derivatives."
        )


def first_order_only(
    name_of: Callable[[Any], str], anchors_of: Callable[[Any], Sequence[Tensor]] | None = None
) -> Callable[[Callable], Callable]:
    """Decorator for the ``backward`` of a :class:`torch.autograd.Function` computed without a graph.

    Runs ``backward`` like :func:`torch.autograd.function.once_differentiable` (grad mode off outside the
    method's own ``torch.enable_grad()`` blocks). When the caller asked for a differentiable gradient
    (``create_graph=True``), every returned tensor is routed through an identity whose backward raises a
    ``RuntimeError`` naming the method, so that a second differentiation fails with that message.

    Parameters
    ----------
    name_of
        ``name_of(ctx)`` gives the ``grad=`` name for the message.
    anchors_of
        ``anchors_of(ctx)``: the forward's input tensors (those requiring grad are used), so that a second
        differentiation with respect to them, ``torch.autograd.grad(g, k)``, also reaches the message.
    """

    def decorate(backward: Callable) -> Callable:
        @functools.wraps(backward)
        def wrapper(ctx: Any, *grads: Tensor) -> Any:
            create_graph = torch.is_grad_enabled()
            with torch.no_grad():
                out = backward(ctx, *grads)
            if not create_graph:
                return out
            name = name_of(ctx)
            anchors = [a for a in (anchors_of(ctx) if anchors_of is not None else ()) if a.requires_grad]
            return tuple(
                _NoSecondOrder.apply(name, g.detach().requires_grad_(), *anchors) if isinstance(g, Tensor) else g
                for g in out
            )

        return wrapper

    return decorate
