"""Networked systems with a known causal graph: sparse linear, generalised Lotka–Volterra, spring network.

The graph is drawn from ``graph_seed`` (independent of ``seed``, which draws initial states, times, noise and the
mask), so data sets with different seeds or interventions share one system. The true graph is stored in
``attrs["adjacency"]`` (``A[i][j] = 1`` for the edge ``j → i``: ``x_j`` enters ``dx_i/dt``; self-edges are 0
there, every variable depends on itself), the system's matrices in ``attrs["system"]``, and an intervention in
``attrs["do"]``.

``do={"x3": 0.5}`` generates data of the system under the intervention: ``x3`` is held at 0.5 from the initial
time on (its derivative is zero; for the spring network the mass is also at rest, ``v3 = 0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ._common import Spec
from .system import HeldRHS, Parameter, System, generator

__all__ = [
    "GLV",
    "LINEAR_SPARSE",
    "SPECS",
    "SPRING_NETWORK",
    "SYSTEMS",
    "GeneralisedLotkaVolterra",
    "HeldRHS",
    "LinearSystem",
    "SpringNetwork",
    "glv",
    "glv_system",
    "linear_sparse",
    "linear_system",
    "random_graph",
    "spring_network",
    "spring_system",
]

F64 = torch.float64


# ------------------------------------------------------------------------------------------ right-hand sides
class LinearSystem:
    """``dx/dt = A x``; ``A (d, d)``."""

    def __init__(self, A: Tensor) -> None:
        self.A = A

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        return y @ self.A.to(y).T


class GeneralisedLotkaVolterra:
    """``dx_i/dt = x_i (r_i + Σ_j M_ij x_j)``."""

    def __init__(self, r: Tensor, M: Tensor) -> None:
        self.r, self.M = r, M

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        return y * (self.r.to(y) + y @ self.M.to(y).T)


class SpringNetwork:
    """``dx/dt = v``, ``m_i dv_i/dt = −k0 x_i − c v_i + Σ_j K_ij (x_j − x_i)``; state ``[x, v]`` (``2 n``)."""

    def __init__(self, K: Tensor, masses: Tensor, k0: float, c: float) -> None:
        self.K, self.m, self.k0, self.c = K, masses, k0, c
        self.n = K.shape[0]

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        x, v = y[..., : self.n], y[..., self.n :]
        K = self.K.to(y)
        force = -self.k0 * x - self.c * v + x @ K.T - K.sum(1) * x
        return torch.cat([v, force / self.m.to(y)], dim=-1)


# ------------------------------------------------------------------------------------------ helpers
def random_graph(d: int, in_degree: float, gen: torch.Generator, symmetric: bool = False) -> Tensor:
    """Boolean ``(d, d)`` graph without self-edges, each edge present with probability ``in_degree / (d − 1)``."""
    p = min(1.0, in_degree / max(d - 1, 1))
    u = torch.rand(d, d, generator=gen, dtype=F64)
    if symmetric:
        u = torch.triu(u, 1)
        g = (u < p) & (u > 0)
        g = g | g.T
    else:
        g = u < p
    g.fill_diagonal_(False)
    return g


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(1, n + 1)]


def _as_list(x: Tensor) -> list:
    return [[float(v) for v in row] for row in x]


def _graph_sizes(d: int, what: str, lo: int = 2) -> None:
    if not isinstance(d, int) or isinstance(d, bool) or d < lo:
        raise ValueError(f"{what} must be an integer >= {lo}, got {d!r}.")


_COMMON_NOTE = (
    "The true graph is stored in `attrs['adjacency']` (`A[i][j] = 1` for the edge x_j -> x_i, self-edges 0) and "
    "the system matrices in `attrs['system']`; both depend on `graph_seed` only, so data with other seeds or "
    "interventions share the system. `do={'x3': 0.5}` generates data under the intervention (x3 held at 0.5 from "
    "t0 on, recorded in `attrs['do']`)."
)


# ------------------------------------------------------------------------------------------ linear
def linear_system(d: int, in_degree: float, graph_seed: int) -> tuple[Tensor, Tensor]:
    """``(A, graph)`` of :func:`linear_sparse`."""
    g = torch.Generator().manual_seed(10_000 + graph_seed)
    graph = random_graph(d, in_degree, g)
    mag = 0.5 + 0.5 * torch.rand(d, d, generator=g, dtype=F64)
    sign = torch.where(torch.rand(d, d, generator=g, dtype=F64) < 0.5, -1.0, 1.0)
    G = torch.where(graph, sign * mag, torch.zeros((), dtype=F64))
    alpha = float(torch.linalg.eigvals(G).real.max())
    return G - (alpha + 0.5) * torch.eye(d, dtype=F64), graph


def _linear_prepare(p: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    _graph_sizes(p["d"], "d")
    A, graph = linear_system(p["d"], p["in_degree"], p["graph_seed"])
    return p, {"A": A, "graph": graph}


def _linear_initial(
    gen: torch.Generator, N: int, random_initial: bool, p: Mapping[str, Any], o: Mapping[str, Any]
) -> Tensor:
    d = p["d"]
    return torch.randn(N, d, generator=gen, dtype=F64) if random_initial else torch.ones(N, d, dtype=F64)


LINEAR_SPARSE = System(
    name="linear_sparse",
    title=lambda d: f"Random sparse stable linear system dx/dt = A x (d = {d})",
    equations=(
        "dx/dt = A x,  A = G - (alpha + 0.5) I,\n"
        "G: off-diagonal entries present with probability in_degree / (d - 1), sign +-1 and magnitude "
        "U(0.5, 1),\nalpha: the largest real part of the eigenvalues of G (so every eigenvalue of A has real "
        "part <= -0.5)."
    ),
    states=lambda d: [(x, "1") for x in _names("x", d)],
    parameters={
        "d": Parameter(10, "1", "number of variables", kind="size"),
        "in_degree": Parameter(2.0, "1", "expected number of parents per variable"),
        "graph_seed": Parameter(0, "1", "seed of the graph and the coefficients"),
    },
    time_units="1",
    t_span=(0.0, 6.0),
    initial_conditions="x ~ N(0, 1) per component; without random_initial x = 1.",
    initial=_linear_initial,
    rhs=lambda m: LinearSystem(m["A"]),
    prepare=_linear_prepare,
    attrs=lambda t0, t1, m: {"adjacency": m["graph"].long().tolist(), "system": {"A": _as_list(m["A"])}},
    doc="Random sparse stable linear system ``dx/dt = A x`` with ``d`` variables; observes all by default.",
    n_trajectories=16,
    n_times=60,
    order=1,
    notes=_COMMON_NOTE,
)


# ------------------------------------------------------------------------------------------ generalised LV
def glv_system(n: int, in_degree: float, graph_seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(r, M, x_star, graph)`` of :func:`glv`."""
    g = torch.Generator().manual_seed(20_000 + graph_seed)
    graph = random_graph(n, in_degree, g)
    mag = 0.3 + 0.3 * torch.rand(n, n, generator=g, dtype=F64)
    sign = torch.where(torch.rand(n, n, generator=g, dtype=F64) < 0.5, -1.0, 1.0)
    G = torch.where(graph, sign * mag, torch.zeros((), dtype=F64))
    lam = float(torch.linalg.eigvalsh(0.5 * (G + G.T)).max())
    if lam > 0.8:
        G = G * (0.8 / lam)
    M = G - torch.eye(n, dtype=F64)
    x_star = 0.5 + torch.rand(n, generator=g, dtype=F64)
    r = -(M @ x_star)
    return r, M, x_star, graph


def _glv_prepare(p: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    _graph_sizes(p["n_species"], "n_species")
    r, M, x_star, graph = glv_system(p["n_species"], p["in_degree"], p["graph_seed"])
    return p, {"r": r, "M": M, "x_star": x_star, "graph": graph}


def _glv_initial(
    gen: torch.Generator, N: int, random_initial: bool, p: Mapping[str, Any], o: Mapping[str, Any]
) -> Tensor:
    x_star = p["x_star"]
    if random_initial:
        return x_star * (0.2 + 1.8 * torch.rand(N, p["n_species"], generator=gen, dtype=F64))
    return (0.5 * x_star).expand(N, -1).clone()


GLV = System(
    name="glv",
    title=lambda n_species: f"Generalised Lotka-Volterra community of {n_species} species with sparse interactions",
    equations=(
        "dx_i/dt = x_i (r_i + sum_j M_ij x_j),\n"
        "M = -I + G, G: off-diagonal interactions present with probability in_degree / (n - 1), sign +-1 and "
        "magnitude U(0.3, 0.6), scaled so that the symmetric part of M has eigenvalues <= -0.2 (a globally "
        "stable equilibrium),\nr = -M x* with the equilibrium x* ~ U(0.5, 1.5) per species."
    ),
    states=lambda n_species: [(x, "1") for x in _names("x", n_species)],
    parameters={
        "n_species": Parameter(10, "1", "number of species", kind="size"),
        "in_degree": Parameter(2.0, "1", "expected number of interaction partners acting on a species"),
        "graph_seed": Parameter(0, "1", "seed of the graph, the interactions and the growth rates"),
    },
    time_units="1",
    t_span=(0.0, 8.0),
    initial_conditions="x_i = x*_i * U(0.2, 2) per species; without random_initial x = x*/2.",
    initial=_glv_initial,
    rhs=lambda m: GeneralisedLotkaVolterra(m["r"], m["M"]),
    prepare=_glv_prepare,
    attrs=lambda t0, t1, m: {
        "adjacency": m["graph"].long().tolist(),
        "system": {"r": m["r"].tolist(), "M": _as_list(m["M"]), "x_star": m["x_star"].tolist()},
    },
    doc="Generalised Lotka–Volterra community (abundances of order 1); observes all species by default.",
    n_trajectories=16,
    n_times=60,
    order=1,
    notes=_COMMON_NOTE,
)


# ------------------------------------------------------------------------------------------ spring network
def spring_system(n: int, in_degree: float, graph_seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(K, masses, graph)`` of :func:`spring_network`."""
    g = torch.Generator().manual_seed(30_000 + graph_seed)
    graph = random_graph(n, in_degree, g, symmetric=True)
    k = 0.5 + torch.rand(n, n, generator=g, dtype=F64)
    k = torch.triu(k, 1)
    K = torch.where(graph, k + k.T, torch.zeros((), dtype=F64))
    masses = 0.5 + torch.rand(n, generator=g, dtype=F64)
    return K, masses, graph


def _spring_prepare(p: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    _graph_sizes(p["n_masses"], "n_masses")
    K, masses, graph = spring_system(p["n_masses"], p["in_degree"], p["graph_seed"])
    return p, {"K": K, "masses": masses, "graph": graph}


def _spring_initial(
    gen: torch.Generator, N: int, random_initial: bool, p: Mapping[str, Any], o: Mapping[str, Any]
) -> Tensor:
    n = p["n_masses"]
    if random_initial:
        x = 2 * torch.rand(N, n, generator=gen, dtype=F64) - 1
        v = torch.rand(N, n, generator=gen, dtype=F64) - 0.5
    else:
        x = torch.zeros(N, n, dtype=F64)
        x[:, 0] = 1.0
        v = torch.zeros_like(x)
    return torch.cat([x, v], 1)


SPRING_NETWORK = System(
    name="spring_network",
    title=lambda n_masses: f"Network of {n_masses} masses coupled by springs on a sparse graph (second order)",
    equations=(
        "dx_i/dt = v_i,  m_i dv_i/dt = -k0 x_i - c v_i + sum_j K_ij (x_j - x_i),\n"
        "K symmetric: a spring between i and j with probability in_degree / (n - 1), stiffness U(0.5, 1.5); "
        "m_i ~ U(0.5, 1.5); every mass is also tied to its rest position by k0 and damped by c."
    ),
    states=lambda n_masses: [(x, "m") for x in _names("x", n_masses)] + [(v, "m s-1") for v in _names("v", n_masses)],
    parameters={
        "n_masses": Parameter(8, "1", "number of masses", kind="size"),
        "in_degree": Parameter(2.0, "1", "expected number of springs per mass"),
        "k0": Parameter(1.0, "N m-1", "stiffness of the spring tying each mass to its rest position"),
        "c": Parameter(0.1, "N s m-1", "damping coefficient"),
        "graph_seed": Parameter(0, "1", "seed of the graph, stiffnesses and masses"),
    },
    time_units="s",
    t_span=(0.0, 10.0),
    initial_conditions="x ~ U(-1, 1) m, v ~ U(-0.5, 0.5) m/s; without random_initial x_1 = 1, others 0, v = 0.",
    initial=_spring_initial,
    rhs=lambda m: SpringNetwork(m["K"], m["masses"], m["k0"], m["c"]),
    prepare=_spring_prepare,
    attrs=lambda t0, t1, m: {
        "adjacency": m["graph"].long().tolist(),
        "system": {"K": _as_list(m["K"]), "masses": m["masses"].tolist()},
    },
    n_trajectories=16,
    n_times=60,
    order=2,
    notes=_COMMON_NOTE + " For this second-order system the graph is over the masses (x_j -> x_i when x_j or v_j "
    "enters the acceleration of mass i), and a held mass is at rest (v = 0).",
    doc="Masses coupled by springs on a sparse graph (second order); observes positions and velocities by default.",
)


#: Registry name -> system record.
SYSTEMS: dict[str, System] = {s.name: s for s in (LINEAR_SPARSE, GLV, SPRING_NETWORK)}

#: Card information per registry name (default sizes).
SPECS: dict[str, Spec] = {name: s.spec() for name, s in SYSTEMS.items()}

linear_sparse = generator(LINEAR_SPARSE)
glv = generator(GLV)
spring_network = generator(SPRING_NETWORK)
for _gen in (linear_sparse, glv, spring_network):
    _gen.__module__ = __name__
