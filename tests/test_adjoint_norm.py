"""The continuous adjoint's backward error norm: a seminorm by construction (the parameter adjoint is a side
quadrature, never in the norm: torchdiffeq's ``adjoint_options=dict(norm="seminorm")``), and a user ``norm=``
applied to the backward solve too (to the ``y`` and the ``a`` parts, the larger of the two), explicit and ESDIRK."""

from __future__ import annotations

import pytest
import torch

import physnode

F64 = torch.float64
Y0 = torch.tensor([[1.0, 0.5, -0.3], [-0.2, 0.8, 0.4]], dtype=F64)
T = torch.linspace(0.0, 2.0, 5, dtype=F64)


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.W = torch.nn.Parameter(torch.randn(3, 3, generator=g, dtype=F64) * 0.6)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(y @ self.W.T) - 0.3 * y + 0.1 * torch.sin(3 * t).unsqueeze(-1)


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.square().mean(-1).sqrt()


def _solve(grad: str, method: str = "dopri5", **kw) -> tuple[physnode.Solution, list[torch.Tensor]]:
    f = _Net()
    y0 = Y0.clone().requires_grad_()
    sol = physnode.solve(f, y0, T, method=method, grad=grad, **kw)
    loss = (sol.ys * torch.linspace(-1.0, 1.0, 3, dtype=F64)).sum() + sol.ys.square().sum()
    return sol, list(torch.autograd.grad(loss, [y0, f.W]))


@pytest.mark.parametrize("method", ["dopri5", pytest.param("kvaerno5", marks=pytest.mark.slow)])  # ESDIRK: ~4 s
def test_user_norm_reaches_the_backward_solve(method: str) -> None:
    shapes: list[tuple[int, ...]] = []

    def counted(x: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return _rms(x)

    f = _Net()
    y0 = Y0.clone().requires_grad_()
    tol = dict(rtol=1e-6, atol=1e-8) if method == "dopri5" else dict(rtol=1e-3, atol=1e-5)  # ESDIRK: fewer steps
    sol = physnode.solve(f, y0, T[:3], method=method, grad="adjoint", norm=counted, **tol)
    forward_calls = len(shapes)
    torch.autograd.grad(sol.ys.sum(), [y0, f.W])
    assert len(shapes) > forward_calls  # the backward solve called the user's norm
    # ... on the (B, D) parts ([y, a] split in two for the explicit path; a alone for ESDIRK), never on 2D columns.
    assert set(shapes[forward_calls:]) == {(2, 3)}


def test_larger_backward_norm_takes_more_evaluations_and_stays_accurate() -> None:
    """torchdiffeq's norm test, for the backward solve: a 10x larger norm never takes fewer evaluations; and the
    gradient with the user norm at a tight tolerance agrees with backprop through a tighter solve."""
    kw = dict(rtol=1e-7, atol=1e-9)
    rms_sol, rms_grads = _solve("adjoint", norm=_rms, **kw)
    big_sol, _ = _solve("adjoint", norm=lambda x: 10.0 * _rms(x), **kw)
    assert big_sol.stats.nfe_backward > rms_sol.stats.nfe_backward > 0
    _, ref = _solve("direct", rtol=1e-12, atol=1e-14)
    for g, r in zip(rms_grads, ref, strict=True):
        # The adjoint is the gradient of the exact flow; at rtol 1e-7 it agrees to ~1e-7 relative (measured).
        assert float((g - r).abs().max()) <= 1e-5 * float(r.abs().max())


def test_without_user_norm_the_backward_norm_is_the_seminorm() -> None:
    """The parameter adjoint is not in the backward norm: scaling the parameters' effect on the loss through a
    reparametrisation ``W = s W'`` (so ``dL/dW'`` is ``s`` times larger) does not change the backward steps."""

    class Scaled(_Net):
        def __init__(self, s: float) -> None:
            super().__init__()
            self.s = s
            with torch.no_grad():
                self.W /= s

        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.tanh(y @ (self.s * self.W).T) - 0.3 * y + 0.1 * torch.sin(3 * t).unsqueeze(-1)

    counts = []
    for s in (1e-8, 1.0, 1e8):
        f = Scaled(s)
        y0 = Y0.clone().requires_grad_()
        sol = physnode.solve(f, y0, T, grad="adjoint", rtol=1e-6, atol=1e-9)
        torch.autograd.grad(sol.ys.square().sum(), [y0, f.W])
        counts.append(sol.stats.nfe_backward)
    # With the parameter adjoint (of size ~s: 1e-8 is below atol) in an absolute-plus-relative norm the steps would
    # change with s.
    assert counts[0] == counts[1] == counts[2]
