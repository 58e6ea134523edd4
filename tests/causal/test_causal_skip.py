"""Skip paths of StructuredODE (linear and multiplicative): their value, their place in the groups (adjacency and
proximal step), and the residual group lasso on the MLP output rows."""

from __future__ import annotations

import pytest
import torch

from physnode.causal import GroupLassoProx, StructuredODE, group_soft_threshold_

F64 = torch.float64


def skip_model(order: int = 1, edges: torch.Tensor | None = None) -> StructuredODE:
    m = StructuredODE(
        3, order=order, hidden=(4,), edges=edges, linear=True, multiplicative=True,
        generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        assert m.W_lin is not None and m.W_mul is not None
        m.W_lin.copy_(torch.randn(m.W_lin.shape, generator=g, dtype=F64))
        m.W_mul.copy_(torch.randn(m.W_mul.shape, generator=g, dtype=F64))
    return m


@pytest.mark.parametrize("order", [1, 2], ids=["first-order", "second-order"])
def test_field_adds_the_skip_paths(order: int) -> None:
    edges = torch.ones(3, 3, dtype=torch.bool)
    edges[0, 2] = False
    m = skip_model(order, edges)
    y = torch.randn(5, order * 3, dtype=F64)
    mlp = StructuredODE(3, order=order, hidden=(4,), edges=edges, generator=torch.Generator().manual_seed(3))
    assert m.W_lin is not None and m.W_mul is not None
    mask = edges[:, torch.arange(order * 3) % 3].to(F64)  # (d, n_in): the masked source's columns are unused
    ref = mlp.field(y) + y @ (m.W_lin * mask).T + y[:, :3] * (y @ (m.W_mul * mask).T)
    # reference and model differ only in the order of floating-point sums
    torch.testing.assert_close(m.field(y), ref, rtol=1e-12, atol=1e-14)


def test_adjacency_includes_the_skip_weights() -> None:
    m = StructuredODE(2, order=2, hidden=(2,), linear=True, multiplicative=True)
    assert m.W_lin is not None and m.W_mul is not None
    with torch.no_grad():
        m.W_in.zero_()
        m.W_in[0, :, 1] = torch.tensor([1.0, 0.0])  # x2 -> x1 through the MLP
        m.W_lin.zero_()
        m.W_lin[0, 3] = 3.0  # ... through v2 in the linear path
        m.W_mul.zero_()
        m.W_mul[0, 1] = 3.0  # ... and x2 in the multiplicative path: sqrt(1 + 9 + 9) = sqrt(19)
        m.W_mul[1, 0] = 2.0  # x1 -> x2 only through the multiplicative path
    A = m.adjacency()
    expected = torch.tensor([[0.0, 19.0**0.5], [2.0, 0.0]], dtype=F64)
    torch.testing.assert_close(A, expected, rtol=1e-14, atol=0)  # sums of a few exact squares


def test_prox_shrinks_and_removes_whole_groups_across_paths() -> None:
    m = skip_model()
    assert m.W_lin is not None and m.W_mul is not None
    norms = m.group_norms().detach()
    tau = float(norms.median())
    W0, L0, M0 = m.W_in.detach().clone(), m.W_lin.detach().clone(), m.W_mul.detach().clone()
    group_soft_threshold_(m, tau)
    for i in range(3):
        for j in range(3):
            if norms[i, j] <= tau:  # every weight of the group, in all three paths, exactly zero
                assert torch.count_nonzero(m.W_in[i, :, j]) == 0 and m.W_lin[i, j] == 0 and m.W_mul[i, j] == 0
            else:  # one common factor
                f = 1 - tau / norms[i, j]
                torch.testing.assert_close(m.W_in[i, :, j], f * W0[i, :, j], rtol=1e-13, atol=1e-16)
                torch.testing.assert_close(m.W_lin[i, j], f * L0[i, j], rtol=1e-13, atol=1e-16)
                torch.testing.assert_close(m.W_mul[i, j], f * M0[i, j], rtol=1e-13, atol=1e-16)


def test_residual_lasso_zeroes_mlp_output_rows() -> None:
    m = skip_model()
    with torch.no_grad():
        m.W_out.copy_(torch.tensor([[1e-3, 0.0, 0.0, 0.0], [3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]], dtype=F64))
    A0 = m.adjacency()
    prox = GroupLassoProx(0.0, lr=0.5, lam_residual=2.0)  # no optimiser: threshold lr * lam_residual = 1
    prox(m)
    assert torch.count_nonzero(m.W_out[0]) == 0  # norm 1e-3 < 1: removed exactly
    torch.testing.assert_close(m.W_out[1], torch.tensor([2.4, 3.2, 0.0, 0.0], dtype=F64), rtol=1e-14, atol=0)
    torch.testing.assert_close(m.W_out[2], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=F64), rtol=1e-14, atol=0)
    torch.testing.assert_close(m.adjacency(), A0, rtol=0, atol=0)  # lam = 0: the input groups are untouched
    with pytest.raises(ValueError, match="lam_residual"):
        GroupLassoProx(0.1, lr=0.1, lam_residual=-1.0)


def test_mlp_mask_holds_switched_off_mlps_at_zero() -> None:
    keep = torch.tensor([True, False, True])
    m = StructuredODE(
        3, hidden=(4,), linear=True, multiplicative=True, mlp=keep, generator=torch.Generator().manual_seed(3)
    )
    full = StructuredODE(3, hidden=(4,), linear=True, multiplicative=True, generator=torch.Generator().manual_seed(3))
    assert torch.count_nonzero(m.W_out[1]) == 0 and torch.count_nonzero(m.W_out[0]) > 0
    y = torch.randn(5, 3, dtype=F64)
    with torch.no_grad():
        ref = full.field(y)
        ref[:, 1] = full.b_out[1]  # variable 2: no MLP term, only its constant (skip weights are zero)
    # same weights, the same sums except a row of zeros: equal up to rounding
    torch.testing.assert_close(m.field(y), ref, rtol=1e-13, atol=1e-15)
    m.field(y).square().sum().backward()
    assert m.W_out.grad is not None and torch.count_nonzero(m.W_out.grad[1]) == 0  # an optimiser cannot revive it
    assert torch.count_nonzero(m.W_out.grad[0]) > 0
    with pytest.raises(ValueError, match=r"mlp must be a \(d,\) = \(3,\) boolean vector"):
        StructuredODE(3, mlp=torch.tensor([1, 2, 0]))
