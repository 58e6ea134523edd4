"""The networked systems of the zoo: stored graphs, exact references, interventions, determinism."""

from __future__ import annotations

import pytest
import torch

from physnode.datasets import make
from physnode.datasets.networks import glv_system, linear_system, spring_system

F64 = torch.float64


def test_linear_sparse_matches_the_matrix_exponential_and_stores_the_graph() -> None:
    tr = make("linear_sparse", d=6, n_trajectories=2, n_times=5, t_span=(0.0, 1.0))
    A = torch.tensor(tr.attrs["system"]["A"], dtype=F64)
    graph = torch.tensor(tr.attrs["adjacency"]).bool()
    assert graph.shape == (6, 6) and not bool(graph.diagonal().any())
    off = ~torch.eye(6, dtype=torch.bool)
    assert torch.equal(graph, (A != 0) & off)
    assert float(torch.linalg.eigvals(A).real.max()) <= -0.5 + 1e-9  # stable by construction
    y0 = torch.tensor(tr.metadata[0]["initial_state"], dtype=F64)
    for k, s in enumerate(tr.times[0]):
        ref = torch.linalg.matrix_exp(A * s) @ y0
        torch.testing.assert_close(tr.values[0, k], ref, rtol=0, atol=1e-9)  # dopri8 at rtol 1e-10


def test_graphs_depend_on_graph_seed_only() -> None:
    a = make("glv", n_trajectories=2, n_times=4, seed=0).attrs["adjacency"]
    b = make("glv", n_trajectories=2, n_times=4, seed=7, noise=0.01).attrs["adjacency"]
    c = make("glv", n_trajectories=2, n_times=4, graph_seed=1).attrs["adjacency"]
    assert a == b and a != c
    r, M, x_star, _ = glv_system(10, 2.0, 0)
    torch.testing.assert_close(r + M @ x_star, torch.zeros(10, dtype=F64), rtol=0, atol=1e-14)  # equilibrium
    assert float(torch.linalg.eigvalsh(0.5 * (M + M.T)).max()) <= -0.2 + 1e-12
    K, masses, g = spring_system(8, 2.0, 0)
    assert torch.equal(g, g.T) and torch.equal(K, K.T) and bool((masses > 0).all())
    _, g_lin = linear_system(10, 2.0, 0)
    assert int(g_lin.sum()) > 0


@pytest.mark.parametrize("name", ["linear_sparse", "glv", "spring_network"])
def test_intervention_holds_the_variable(name: str) -> None:
    tr = make(name, n_trajectories=3, n_times=8, do={"x2": 0.4}, irregular=True)
    assert tr.attrs["do"] == {"x2": 0.4}
    j = tr.channels.index("x2")
    vals = tr.values[..., j][tr.time_mask]
    assert bool(((vals - 0.4).abs() < 1e-12).all())
    if name == "spring_network":  # the held mass is at rest
        assert bool((tr.values[..., tr.channels.index("v2")][tr.time_mask].abs() < 1e-12).all())
    assert all(m["initial_state"][j] == 0.4 for m in tr.metadata)


def test_glv_intervention_changes_the_children_only() -> None:
    """Knocking out a species changes exactly its descendants' trajectories (from the same initial states)."""
    base = make("glv", n_trajectories=2, n_times=6, seed=3)
    graph = torch.tensor(base.attrs["adjacency"]).bool()
    j = int(graph.sum(0).argmax())
    name = base.channels[j]
    y0j = base.metadata[0]["initial_state"][j]
    held = make("glv", n_trajectories=2, n_times=6, seed=3, do={name: y0j})
    reach = graph.clone()
    for _ in range(10):  # transitive closure: who is downstream of j
        reach = reach | ((reach.double() @ graph.double()) > 0)
    down = reach[:, j]
    changed = (held.values[0] - base.values[0]).abs().amax(0) > 1e-10
    changed[j] = False  # j itself is held at its initial value instead of evolving
    assert not bool((changed & ~down).any())


@pytest.mark.parametrize(
    ("name", "kw", "match"),
    [
        ("glv", {"do": {"y1": 0.0}}, "do names 'y1', which is not a variable"),
        ("spring_network", {"do": {"v1": 0.0}}, "do names 'v1'"),
        ("linear_sparse", {"d": 1}, "d must be an integer >= 2"),
        ("glv", {"do": {"x1": "a"}}, r"do\['x1'\] must be a number"),
    ],
    ids=["glv-unknown", "spring-velocity", "linear-d", "value"],
)
def test_errors(name: str, kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(name, n_trajectories=1, n_times=3, **kw)
