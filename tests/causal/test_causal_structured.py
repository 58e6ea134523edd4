"""StructuredODE: the batched evaluation equals one network per variable, and the adjacency of a hand-built net."""

from __future__ import annotations

import pytest
import torch

from physnode.causal import StructuredODE, adjacency, find_structured
from physnode.physics import Hybrid, SymbolicODE

F64 = torch.float64


def loop_field(m: StructuredODE, y: torch.Tensor) -> torch.Tensor:
    """Reference: the d networks evaluated one by one in a Python loop."""
    out = []
    for i in range(m.d):
        W = m.W_in[i] if m.input_mask is None else m.W_in[i] * m.input_mask[i]
        h = torch.tanh(y @ W.T + m.b_in[i])
        for Wk, bk in zip(m.W_hidden, m.b_hidden, strict=True):
            h = torch.tanh(h @ Wk[i].T + bk[i])
        out.append(h @ m.W_out[i] + m.b_out[i])
    return torch.stack(out, -1)


@pytest.mark.parametrize("order", [1, 2], ids=["first-order", "second-order"])
@pytest.mark.parametrize("hidden", [(8,), (6, 5)], ids=["one-layer", "two-layers"])
def test_batched_equals_per_variable_loop(order: int, hidden: tuple[int, ...]) -> None:
    m = StructuredODE(4, order=order, hidden=hidden, generator=torch.Generator().manual_seed(1))
    y = torch.randn(7, order * 4, dtype=F64)
    f = m.field(y)
    torch.testing.assert_close(f, loop_field(m, y), rtol=1e-12, atol=1e-14)
    dy = m(torch.zeros(7, dtype=F64), y)
    if order == 1:
        torch.testing.assert_close(dy, f, rtol=0, atol=0)
    else:  # dx/dt = v exactly, dv/dt = f
        assert dy.shape == (7, 8)
        torch.testing.assert_close(dy[:, :4], y[:, 4:], rtol=0, atol=0)
        torch.testing.assert_close(dy[:, 4:], f, rtol=0, atol=0)


def test_leading_batch_shapes() -> None:
    m = StructuredODE(3)
    y = torch.randn(2, 5, 3, dtype=F64)
    assert m(None, y).shape == (2, 5, 3)
    torch.testing.assert_close(m(None, y)[1, 2], m(None, y[1, 2]), rtol=1e-13, atol=1e-15)


def test_adjacency_of_a_hand_built_network() -> None:
    """x1 <- x2 (columns (3, 4)), x2 <- nothing but itself, x3 <- x1 and x2; second order groups x_j and v_j."""
    m = StructuredODE(3, order=2, hidden=(2,))
    with torch.no_grad():
        m.W_in.zero_()
        m.W_in[0, :, 1] = torch.tensor([3.0, 0.0])  # x2 -> x1 via the position
        m.W_in[0, :, 4] = torch.tensor([0.0, 4.0])  # ... and the velocity v2: group norm sqrt(9 + 16) = 5
        m.W_in[1, :, 1] = torch.tensor([1.0, 1.0])  # x2 -> x2: sqrt(2)
        m.W_in[2, :, 0] = torch.tensor([0.0, 2.0])  # x1 -> x3: 2
        m.W_in[2, :, 4] = torch.tensor([0.5, 0.0])  # v2 -> x3: 0.5
    expected = torch.tensor([[0.0, 5.0, 0.0], [0.0, 2**0.5, 0.0], [2.0, 0.5, 0.0]], dtype=F64)
    torch.testing.assert_close(adjacency(m), expected, rtol=1e-15, atol=0)
    torch.testing.assert_close(adjacency(m, cut=1.0), expected > 1.0, rtol=0, atol=0)
    # the field of x1 does not change when x1, x3, v1, v3 change (they are absent from its inputs)
    y = torch.randn(5, 6, dtype=F64)
    z = y.clone()
    z[:, [0, 2, 3, 5]] += 1.0
    torch.testing.assert_close(m.field(z)[:, 0], m.field(y)[:, 0], rtol=0, atol=0)


def test_edges_mask_makes_and_keeps_structural_zeros() -> None:
    edges = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 1]], dtype=torch.bool)
    m = StructuredODE(3, edges=edges)
    assert bool((m.adjacency()[~edges] == 0).all()) and bool((m.adjacency()[edges] > 0).all())
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    y = torch.randn(10, 3, dtype=F64)
    for _ in range(3):
        opt.zero_grad()
        m(None, y).square().sum().backward()
        opt.step()
    assert bool((m.adjacency()[~edges] == 0).all())
    y2 = y.clone()
    y2[:, 2] += 5.0  # x3 enters only x3's own derivative
    torch.testing.assert_close(m(None, y2)[:, :2], m(None, y)[:, :2], rtol=0, atol=0)


def test_inside_a_hybrid_model() -> None:
    """Known terms from physics plus the structured network's field on the velocities."""
    phys = SymbolicODE(["v1", "v2", "-k*x1", "-k*x2"], ["x1", "x2", "v1", "v2"], {"k": 1.0})
    net = StructuredODE(2, order=2, field_only=True)
    model = Hybrid(phys, net, on="velocities")
    y = torch.randn(4, 4, dtype=F64)
    expected = phys(torch.zeros(4, dtype=F64), y).clone()
    expected[:, 2:] += net.field(y)
    torch.testing.assert_close(model(torch.zeros(4, dtype=F64), y), expected, rtol=1e-14, atol=1e-15)
    assert find_structured(model) is net
    assert adjacency(model).shape == (2, 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d": 0}, "positive integer"),
        ({"d": 3, "order": 3}, "order must be 1"),
        ({"d": 3, "hidden": ()}, "hidden must be"),
        ({"d": 3, "activation": "relu6"}, "unknown activation"),
        ({"d": 3, "edges": torch.ones(2, 3)}, r"edges must be a \(d, d\)"),
        ({"d": 2, "edges": torch.eye(2, dtype=torch.bool), "known": torch.ones(2, 2, dtype=torch.bool)}, "both known"),
        ({"d": 2, "state_names": ["a"]}, "state_names must be 2"),
    ],
    ids=["d", "order", "hidden", "activation", "edges-shape", "known-vs-edges", "names"],
)
def test_constructor_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StructuredODE(**kwargs)


def test_wrong_state_shape_is_explained() -> None:
    with pytest.raises(ValueError, match=r"expects a state of shape \(\.\.\., 6\).*got \(4, 3\)"):
        StructuredODE(3, order=2)(None, torch.zeros(4, 3, dtype=F64))


def test_find_structured_error() -> None:
    with pytest.raises(TypeError, match="exactly one"):
        find_structured(torch.nn.Linear(2, 2))
