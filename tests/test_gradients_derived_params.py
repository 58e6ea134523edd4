"""A declared parameter computed from another declared parameter: the custom-backward methods refuse it clearly.

Such a method returns a gradient for every declared tensor and autograd then carries the derived tensor's
gradient on to its source, which already got its total gradient: without the check the path is counted twice
(``p = q + 1`` gave exactly twice the ``direct`` gradient with ``aca``) or, when the derived tensor's graph saves
tensors, torch fails with "backward through the graph a second time".
"""

from __future__ import annotations

import pytest
import torch
from registries import EXACT_GRADIENTS, solver_for

import physnode
from physnode.gradients._guards import derived_from_declared

CUSTOM = [g for g in EXACT_GRADIENTS if g != "direct"] + ["adjoint"]


def _problem(derive):
    q = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    p = derive(q)
    y0 = torch.tensor([1.0], dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    return q, p, y0, t


@pytest.mark.parametrize("grad", CUSTOM)
@pytest.mark.parametrize("derive", [lambda q: q + 1.0, lambda q: 2 * q], ids=["add", "mul"])
def test_custom_backward_refuses_a_parameter_derived_from_another(grad: str, derive) -> None:
    q, p, y0, t = _problem(derive)
    kw = {"method": solver_for(grad)} if solver_for(grad) else {}
    if not physnode.SOLVERS.build(kw.get("method", "dopri5")).adaptive:
        kw["step_size"] = 0.1
    with pytest.raises(ValueError, match="computed \\(with a graph\\) from another declared parameter"):
        physnode.odeint(lambda t, y: -p * y, y0, t, grad=grad, params=[q, p], **kw)


def test_direct_is_unaffected_and_declaring_the_source_alone_is_exact() -> None:
    q, p, y0, t = _problem(lambda q: q + 1.0)
    (g_direct,) = torch.autograd.grad(physnode.odeint(lambda t, y: -p * y, y0, t, params=[q, p])[-1].sum(), q)
    # Computing the derived value inside func from the declared source: aca equals direct (same discrete solve).
    ys = physnode.odeint(lambda t, y: -(q + 1.0) * y, y0, t, grad="aca", params=[q])
    (g_aca,) = torch.autograd.grad(ys[-1].sum(), q)
    torch.testing.assert_close(g_aca, g_direct, rtol=1e-12, atol=0)
    # The closed form of the discrete solve is not needed: the exact flow gives -t e^{-(q+1) t} at t = 1.
    assert abs(float(g_direct) + float(torch.exp(torch.tensor(-1.5)))) < 1e-6


def test_the_walk_finds_leaf_and_non_leaf_sources_only() -> None:
    a = torch.tensor(1.0, requires_grad=True)
    b = a * 3  # non-leaf from a declared leaf
    c = b.exp()  # non-leaf from a declared non-leaf
    d = torch.tensor(2.0, requires_grad=True) * 2  # independent non-leaf
    assert derived_from_declared([a, b, c, d]) == [(1, 0), (2, 1)]
    assert derived_from_declared([a, d]) == []
