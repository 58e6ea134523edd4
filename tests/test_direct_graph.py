"""What ``grad="direct"`` puts on the autograd graph: the accepted steps and one write of the outputs.

Rejected trial steps must not stay on the graph (their stages would be differentiated into zeros), and the
observed states must be written into the output once after the loop, not once per landing (each write of the
whole ``(B, T, D)`` output puts a full copy of its gradient into the backward pass: O(T) per landing).
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import physnode


def _pendulums(length: torch.Tensor):
    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack([y[..., 1], -torch.sin(y[..., 0]) / length], -1)

    return f


def _graph_nodes(out: torch.Tensor) -> Counter[str]:
    """Node types of the autograd graph behind ``out``, each node counted once."""
    seen: set[object] = set()
    count: Counter[str] = Counter()
    stack = [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        count[type(node).__name__] += 1
        stack.extend(nxt for nxt, _ in node.next_functions)
    return count


@pytest.mark.parametrize("unbatched", [True, False], ids=["y0 (D,)", "y0 (1, D)"])
def test_rejected_steps_leave_the_graph(unbatched: bool) -> None:
    """One trajectory: the graph holds the evaluations of the accepted steps only. dopri5 evaluates the first
    derivative, then six stages per step, the last of which (FSAL) only starts the next step, so the outputs depend
    on 6 per accepted step; the sine appears once per evaluation and nowhere in the solver."""
    length = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([2.5, 0.0], dtype=torch.float64)
    y0 = (y0 if unbatched else y0.unsqueeze(0)).requires_grad_(True)
    t = torch.linspace(0.0, 6.0, 7, dtype=torch.float64)
    # A large first step and a tight tolerance make the controller reject steps.
    sol = physnode.solve(_pendulums(length), y0, t, method="dopri5", grad="direct", rtol=1e-9, atol=1e-9, step_size=2.0)
    n_acc, n_rej = int(sol.stats.n_accepted.sum()), int(sol.stats.n_rejected.sum())
    assert n_rej > 0, "the setting must reject steps for this test to mean something"
    assert _graph_nodes(sol.ys)["SinBackward0"] == 6 * n_acc
    # ... and the gradient is that of the accepted steps: equal to the replayed solve's (aca) to round-off.
    g_direct = torch.autograd.grad(sol.ys.square().sum(), (length, y0))
    ys_aca = physnode.odeint(
        _pendulums(length), y0, t, method="dopri5", grad="aca", rtol=1e-9, atol=1e-9, step_size=2.0, params=[length]
    )
    g_aca = torch.autograd.grad(ys_aca.square().sum(), (length, y0))
    for a, b in zip(g_direct, g_aca, strict=True):
        # Two summation orders of the same products: equal to a few ulps of the result, not bit for bit.
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("T", [5, 100], ids=["T=5", "T=100"])
def test_landing_outputs_are_written_once(T: int) -> None:
    """Staggered observation times (each trajectory lands on its own, some iterations land only some rows): the
    graph writes the output once, whatever ``T``, and the observed states are those of the solve."""
    B = 3
    length = torch.tensor([0.7, 1.0, 1.6], dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([[1.0, 0.0], [0.5, 0.2], [2.0, -0.1]], dtype=torch.float64, requires_grad=True)
    t = torch.sort(torch.rand(B, T, dtype=torch.float64) * 3.0, dim=1).values
    t[:, 0] = 0.0
    ys = physnode.odeint(_pendulums(length), y0, t, method="dopri5", grad="direct", rtol=1e-8, atol=1e-8)
    nodes = _graph_nodes(ys)
    writes = sum(n for name, n in nodes.items() if "Scatter" in name or "IndexPut" in name or "CopySlices" in name)
    # One write of the landed states plus the copy of y0 into slot 0.
    assert writes <= 2, dict(nodes)
    for b in range(B):
        alone = physnode.odeint(_pendulums(length[b]), y0[b], t[b], method="dopri5", rtol=1e-8, atol=1e-8)
        # A trajectory's steps do not depend on its batch (tests/test_per_trajectory.py); the states agree to the
        # round-off of batched against single-row arithmetic.
        torch.testing.assert_close(ys[b], alone, rtol=1e-12, atol=1e-12)
