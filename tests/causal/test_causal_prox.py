"""Group soft-thresholding: exact zeros, the shrink factor, known edges, the fit hook and the path."""

from __future__ import annotations

import math

import pytest
import torch

import physnode
from physnode.causal import (
    GroupLassoProx,
    StructuredODE,
    group_lasso_penalty,
    group_soft_threshold_,
    regularisation_path,
)
from physnode.data import Trajectories

F64 = torch.float64


def small_net(**kw) -> StructuredODE:
    return StructuredODE(3, hidden=(4,), generator=torch.Generator().manual_seed(0), **kw)


def test_groups_below_the_threshold_become_exact_zeros_and_the_others_shrink() -> None:
    m = small_net()
    before = m.adjacency()
    W0 = m.W_in.detach().clone()
    tau = float(before.median())
    after = group_soft_threshold_(m, tau)
    small = before <= tau
    assert bool(small.any()) and bool((~small).any()), "the test needs groups on both sides of the threshold"
    for i, j in small.nonzero().tolist():
        assert torch.count_nonzero(m.W_in[i, :, j]) == 0  # exactly zero, every weight of the group
    assert bool((after[small] == 0).all())
    # surviving groups: W ← W (1 − τ / ||W||), so the norm drops by exactly τ and the direction is kept
    torch.testing.assert_close(after[~small], before[~small] - tau, rtol=1e-13, atol=1e-15)
    for i, j in (~small).nonzero().tolist():
        factor = 1 - tau / before[i, j]
        torch.testing.assert_close(m.W_in[i, :, j], factor * W0[i, :, j], rtol=1e-13, atol=1e-16)
    # other parameters untouched
    assert m.b_in.requires_grad and m.W_in.requires_grad


def test_known_edges_and_diagonal_are_not_penalised() -> None:
    known = torch.zeros(3, 3, dtype=torch.bool)
    known[0, 2] = True
    m = small_net(known=known)
    before = m.adjacency()
    after = group_soft_threshold_(m, 1e6, penalise_diagonal=False)  # everything else goes to zero
    assert float(after[0, 2]) == float(before[0, 2])
    torch.testing.assert_close(after.diagonal(), before.diagonal(), rtol=0, atol=0)
    off = ~torch.eye(3, dtype=torch.bool) & ~known
    assert bool((after[off] == 0).all())


def test_weights_scale_the_threshold() -> None:
    m = small_net()
    before = m.adjacency()
    w = torch.full((3, 3), 0.5, dtype=F64)
    after = group_soft_threshold_(m, 0.01, weights=w)
    torch.testing.assert_close(after, (before - 0.005).clamp_min(0), rtol=1e-12, atol=1e-15)


def test_penalty_value() -> None:
    m = small_net()
    assert math.isclose(float(group_lasso_penalty(m, 0.3).detach()), 0.3 * float(m.adjacency().sum()), rel_tol=1e-13)


@pytest.mark.parametrize(
    "bad", [-0.1, float("nan"), float("inf"), True, "0.1"], ids=["negative", "nan", "inf", "bool", "str"]
)
def test_bad_lambda_is_explained(bad) -> None:
    with pytest.raises(ValueError, match=r"lam \(the group-lasso weight\) must be a finite number >= 0, got"):
        GroupLassoProx(bad, lr=0.1)


def test_bad_lr_and_weights_are_explained() -> None:
    with pytest.raises(ValueError, match="lr must be the optimiser's positive step size"):
        GroupLassoProx(0.1, lr=0.0)
    with pytest.raises(ValueError, match=r"weights must be a \(d, d\) = \(3, 3\)"):
        group_soft_threshold_(small_net(), 0.1, weights=torch.ones(2, 2))


def decay_data(n: int = 4) -> Trajectories:
    """x1' = -x1, x2' = -x2 + x1, x3' = -x3: the edge x1 -> x2 only."""
    A = torch.tensor([[-1.0, 0.0, 0.0], [1.0, -1.0, 0.0], [0.0, 0.0, -1.0]], dtype=F64)
    y0 = torch.randn(n, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    t = torch.linspace(0, 2, 9, dtype=F64)
    ys = torch.stack([y0 @ torch.linalg.matrix_exp(A * s).T for s in t], 1)
    meta = [{"initial_state": y0[i].tolist(), "initial_time": 0.0} for i in range(n)]
    return Trajectories(t.expand(n, -1), ys, channels=["x1", "x2", "x3"], metadata=meta)


def test_fit_calls_after_step_after_every_optimiser_step_and_keeps_zeros() -> None:
    data = decay_data()
    m = small_net()
    prox = GroupLassoProx(0.5, lr=0.05)
    seen = []

    def hook(model):
        prox(model)
        seen.append(int((model.adjacency() == 0).sum()))

    physnode.fit(
        m,
        data,
        lr=0.05,
        epochs=6,
        batch_size=2,
        method="rk4",
        step_size=0.25,
        grad="direct",
        optimizer=prox.adam,
        progress=False,
        uncertainty=False,
        after_step=hook,
    )
    assert prox.calls == 6 * 2  # two batches per epoch
    assert seen[-1] > 0, "a strong penalty leaves some groups exactly zero after the last step"
    with pytest.raises(TypeError, match="after_step must be a callable"):
        physnode.fit(m, data, epochs=1, after_step=3, progress=False)


def test_regularisation_path_gets_sparser_and_restores_the_selected_stage() -> None:
    data = decay_data(6)
    train, val = data[:4], data[4:]
    m = small_net()
    path = regularisation_path(
        m, train, [0.0, 0.3, 3.0], validation=val, lr=0.05, epochs=4, method="rk4", step_size=0.25, grad="direct"
    )
    assert path.lambdas.tolist() == [0.0, 0.3, 3.0]
    assert path.adjacencies.shape == (3, 3, 3)
    assert int(path.n_edges[-1]) <= int(path.n_edges[0])
    assert int(path.n_edges[-1]) == 0  # lambda = 3 removes every off-diagonal group
    assert bool(torch.isfinite(path.validation_errors).all())
    torch.testing.assert_close(m.adjacency(), path.best_adjacency, rtol=0, atol=0)
    with pytest.raises(ValueError, match="every lambda"):
        regularisation_path(m, train, [-1.0])
