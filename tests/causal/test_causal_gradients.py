"""Every exact gradient method equals backprop (``grad="direct"``) through the same discrete solve of a
StructuredODE (first and second order, with a masked edge and both skip paths), float64, to 1e-10 relative.

The list of methods comes from the registry; a method with ``requires_method`` runs on that solver, the others on
dopri5 — as in ``tests/test_gradients_exact.py``.
"""

from __future__ import annotations

import pytest
import torch

import physnode
from physnode.causal import StructuredODE
from physnode.gradients import GRADIENTS
from physnode.solvers import SOLVERS

EXACT = [n for n in GRADIENTS.names() if GRADIENTS.cls(n).exact and n != "direct"]
F64 = torch.float64


def method_for(grad: str) -> str:
    return GRADIENTS.cls(grad).requires_method or "dopri5"


def solve_kwargs(method: str) -> dict:
    if SOLVERS.build(method).order < 4:  # exactness does not depend on the tolerance, only on replaying the steps
        return {"method": method, "rtol": 1e-4, "atol": 1e-6}
    return {"method": method, "rtol": 1e-8, "atol": 1e-10}


def grads(model: StructuredODE, y0: torch.Tensor, t: torch.Tensor, grad: str, **kw):
    y0 = y0.detach().clone().requires_grad_()
    sol = physnode.solve(model, y0, t, grad=grad, **kw)
    w = torch.linspace(-1.0, 2.0, sol.ys.numel(), dtype=F64).reshape(sol.ys.shape)
    loss = (w * sol.ys).sum() + 0.5 * sol.ys.square().sum()
    params = [p for p in model.parameters() if p.requires_grad]
    return sol, torch.autograd.grad(loss, [y0, *params])


@pytest.mark.parametrize("order", [1, 2], ids=["first-order", "second-order"])
@pytest.mark.parametrize("grad", EXACT, ids=EXACT)
def test_same_grid_exactness(grad: str, order: int) -> None:
    d = 3
    edges = torch.ones(d, d, dtype=torch.bool)
    edges[0, 2] = False
    model = StructuredODE(
        d, order=order, hidden=(5, 4), edges=edges, generator=torch.Generator().manual_seed(2), linear=True,
        multiplicative=True,
    )  # fmt: skip
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # the skip paths start at zero; give them values so that they enter the solve
        assert model.W_lin is not None and model.W_mul is not None
        model.W_lin.copy_(0.3 * torch.randn(model.W_lin.shape, generator=g, dtype=F64))
        model.W_mul.copy_(0.3 * torch.randn(model.W_mul.shape, generator=g, dtype=F64))
    y0 = 0.5 * torch.randn(2, order * d, generator=g, dtype=F64)
    t = torch.sort(torch.rand(2, 5, generator=g, dtype=F64) * 1.5, dim=1).values
    t = torch.cat([torch.zeros(2, 1, dtype=F64), t], 1)
    kw = solve_kwargs(method_for(grad))
    try:
        SOLVERS.build(kw["method"]).check_compatible(model)
    except ValueError as exc:
        pytest.skip(f"{kw['method']} does not accept this right-hand side: {exc}")
    ref, g_ref = grads(model, y0, t, "direct", **kw)
    sol, g_got = grads(model, y0, t, grad, **kw)
    assert torch.equal(sol.stats.n_accepted, ref.stats.n_accepted)
    for i, (a, b) in enumerate(zip(g_got, g_ref, strict=True)):
        scale = float(b.abs().max())
        assert scale > 0, f"reference gradient {i} is zero; the test would be vacuous"
        rel = float((a - b).abs().max()) / scale
        assert rel <= 1e-10, f"{grad}: gradient {i} differs from direct backprop by {rel:.3e} (relative)"
    # the masked group gets a zero gradient (it does not enter the computation)
    names = [n for n, _ in model.named_parameters()]
    w_in, w_lin = g_got[1 + names.index("W_in")], g_got[1 + names.index("W_lin")]
    assert bool((w_in[0, :, 2] == 0).all()) and bool((w_lin[0, 2::d] == 0).all())
