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

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..data.trajectories import Trajectories
from ._common import Spec, check_options, generate

__all__ = [
    "GLV",
    "LINEAR_SPARSE",
    "SPRING_NETWORK",
    "GeneralisedLotkaVolterra",
    "HeldRHS",
    "LinearSystem",
    "SpringNetwork",
    "glv",
    "linear_sparse",
    "random_graph",
    "spring_network",
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


class HeldRHS:
    """``rhs`` with the components ``index`` held at ``values`` (derivative zero, others see the values)."""

    def __init__(self, rhs: Any, index: list[int], values: list[float]) -> None:
        self.rhs, self.index, self.values = rhs, torch.tensor(index), torch.tensor(values, dtype=F64)

    def apply(self, y: Tensor) -> Tensor:
        y = y.clone()
        y[..., self.index] = self.values.to(y)
        return y

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        f = self.rhs(t, self.apply(y))
        f[..., self.index] = 0
        return f


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


def _check_do(do: Mapping[str, float] | None, names: Sequence[str], positions: int) -> tuple[list[int], list[float]]:
    """Indices and values of a state intervention (positions of a second-order system also fix the velocity)."""
    if do is None:
        return [], []
    if not isinstance(do, Mapping):
        raise ValueError(f"do must be a dict {{variable: value}}, e.g. {{'x3': 0.5}}, got {do!r}.")
    idx, vals = [], []
    for k, v in do.items():
        if k not in names[:positions]:
            raise ValueError(
                f"do names {k!r}, which is not a variable of this system; choose from {', '.join(names[:positions])}."
            )
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"do[{k!r}] must be a number, got {v!r}.")
        i = list(names).index(k)
        idx.append(i)
        vals.append(float(v))
        if positions < len(names):  # second order: the held mass is at rest
            idx.append(i + positions)
            vals.append(0.0)
    return idx, vals


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(1, n + 1)]


def _as_list(x: Tensor) -> list:
    return [[float(v) for v in row] for row in x]


def _options(local: dict) -> dict:
    out = {}
    for k, v in local.items():
        if isinstance(v, tuple):
            v = list(v)
        if isinstance(v, Mapping):
            v = dict(v)
        out[k] = v
    return out


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
def _linear_spec(d: int) -> Spec:
    return Spec(
        name="linear_sparse",
        title=f"Random sparse stable linear system dx/dt = A x (d = {d})",
        equations=(
            "dx/dt = A x,  A = G - (alpha + 0.5) I,\n"
            "G: off-diagonal entries present with probability in_degree / (d - 1), sign +-1 and magnitude "
            "U(0.5, 1),\nalpha: the largest real part of the eigenvalues of G (so every eigenvalue of A has real "
            "part <= -0.5)."
        ),
        state_names=tuple(_names("x", d)),
        state_units=("1",) * d,
        parameters={
            "d": ("1", "number of variables"),
            "in_degree": ("1", "expected number of parents per variable"),
            "graph_seed": ("1", "seed of the graph and the coefficients"),
        },
        time_units="1",
        initial_conditions="x ~ N(0, 1) per component; without random_initial x = 1.",
        notes=_COMMON_NOTE,
    )


LINEAR_SPARSE = _linear_spec(10)


def linear_system(d: int, in_degree: float, graph_seed: int) -> tuple[Tensor, Tensor]:
    """``(A, graph)`` of :func:`linear_sparse`."""
    g = torch.Generator().manual_seed(10_000 + graph_seed)
    graph = random_graph(d, in_degree, g)
    mag = 0.5 + 0.5 * torch.rand(d, d, generator=g, dtype=F64)
    sign = torch.where(torch.rand(d, d, generator=g, dtype=F64) < 0.5, -1.0, 1.0)
    G = torch.where(graph, sign * mag, torch.zeros((), dtype=F64))
    alpha = float(torch.linalg.eigvals(G).real.max())
    return G - (alpha + 0.5) * torch.eye(d, dtype=F64), graph


def linear_sparse(
    d: int = 10,
    *,
    n_trajectories: int = 16,
    n_times: int = 60,
    t_span: Sequence[float] = (0.0, 6.0),
    irregular: bool = False,
    noise: float = 0.0,
    missing: float = 0.0,
    observe: Sequence[str] | None = None,
    seed: int = 0,
    random_initial: bool = True,
    in_degree: float = 2.0,
    graph_seed: int = 0,
    do: Mapping[str, float] | None = None,
) -> Trajectories:
    """Random sparse stable linear system ``dx/dt = A x`` with ``d`` variables; observes all by default."""
    options = _options(locals())
    t0, t1 = check_options(n_trajectories, n_times, t_span, noise, missing, seed)
    _graph_sizes(d, "d")
    A, graph = linear_system(d, in_degree, graph_seed)
    spec = _linear_spec(d)
    idx, vals = _check_do(do, spec.state_names, d)
    gen = torch.Generator().manual_seed(seed)
    N = n_trajectories
    y0 = torch.randn(N, d, generator=gen, dtype=F64) if random_initial else torch.ones(N, d, dtype=F64)
    rhs: Any = LinearSystem(A)
    if idx:
        rhs = HeldRHS(rhs, idx, vals)
        y0 = rhs.apply(y0)
    return generate(
        spec,
        rhs,
        y0,
        gen=gen,
        n_times=n_times,
        t0=t0,
        t1=t1,
        irregular=irregular,
        noise=noise,
        missing=missing,
        observe=observe,
        default_observe=spec.state_names,
        parameters={"d": d, "in_degree": in_degree, "graph_seed": graph_seed},
        options=options,
        attrs={"adjacency": graph.long().tolist(), "system": {"A": _as_list(A)}, "do": dict(do or {}), "order": 1},
    )


# ------------------------------------------------------------------------------------------ generalised LV
def _glv_spec(n: int) -> Spec:
    return Spec(
        name="glv",
        title=f"Generalised Lotka-Volterra community of {n} species with sparse interactions",
        equations=(
            "dx_i/dt = x_i (r_i + sum_j M_ij x_j),\n"
            "M = -I + G, G: off-diagonal interactions present with probability in_degree / (n - 1), sign +-1 and "
            "magnitude U(0.3, 0.6), scaled so that the symmetric part of M has eigenvalues <= -0.2 (a globally "
            "stable equilibrium),\nr = -M x* with the equilibrium x* ~ U(0.5, 1.5) per species."
        ),
        state_names=tuple(_names("x", n)),
        state_units=("1",) * n,
        parameters={
            "n_species": ("1", "number of species"),
            "in_degree": ("1", "expected number of interaction partners acting on a species"),
            "graph_seed": ("1", "seed of the graph, the interactions and the growth rates"),
        },
        time_units="1",
        initial_conditions="x_i = x*_i * U(0.2, 2) per species; without random_initial x = x*/2.",
        notes=_COMMON_NOTE,
    )


GLV = _glv_spec(10)


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


def glv(
    n_species: int = 10,
    *,
    n_trajectories: int = 16,
    n_times: int = 60,
    t_span: Sequence[float] = (0.0, 8.0),
    irregular: bool = False,
    noise: float = 0.0,
    missing: float = 0.0,
    observe: Sequence[str] | None = None,
    seed: int = 0,
    random_initial: bool = True,
    in_degree: float = 2.0,
    graph_seed: int = 0,
    do: Mapping[str, float] | None = None,
) -> Trajectories:
    """Generalised Lotka–Volterra community (abundances of order 1); observes all species by default."""
    options = _options(locals())
    t0, t1 = check_options(n_trajectories, n_times, t_span, noise, missing, seed)
    _graph_sizes(n_species, "n_species")
    r, M, x_star, graph = glv_system(n_species, in_degree, graph_seed)
    spec = _glv_spec(n_species)
    idx, vals = _check_do(do, spec.state_names, n_species)
    gen = torch.Generator().manual_seed(seed)
    N = n_trajectories
    if random_initial:
        y0 = x_star * (0.2 + 1.8 * torch.rand(N, n_species, generator=gen, dtype=F64))
    else:
        y0 = (0.5 * x_star).expand(N, -1).clone()
    rhs: Any = GeneralisedLotkaVolterra(r, M)
    if idx:
        rhs = HeldRHS(rhs, idx, vals)
        y0 = rhs.apply(y0)
    return generate(
        spec,
        rhs,
        y0,
        gen=gen,
        n_times=n_times,
        t0=t0,
        t1=t1,
        irregular=irregular,
        noise=noise,
        missing=missing,
        observe=observe,
        default_observe=spec.state_names,
        parameters={"n_species": n_species, "in_degree": in_degree, "graph_seed": graph_seed},
        options=options,
        attrs={
            "adjacency": graph.long().tolist(),
            "system": {"r": r.tolist(), "M": _as_list(M), "x_star": x_star.tolist()},
            "do": dict(do or {}),
            "order": 1,
        },
    )


# ------------------------------------------------------------------------------------------ spring network
def _spring_spec(n: int) -> Spec:
    return Spec(
        name="spring_network",
        title=f"Network of {n} masses coupled by springs on a sparse graph (second order)",
        equations=(
            "dx_i/dt = v_i,  m_i dv_i/dt = -k0 x_i - c v_i + sum_j K_ij (x_j - x_i),\n"
            "K symmetric: a spring between i and j with probability in_degree / (n - 1), stiffness U(0.5, 1.5); "
            "m_i ~ U(0.5, 1.5); every mass is also tied to its rest position by k0 and damped by c."
        ),
        state_names=tuple(_names("x", n) + _names("v", n)),
        state_units=("m",) * n + ("m s-1",) * n,
        parameters={
            "n_masses": ("1", "number of masses"),
            "in_degree": ("1", "expected number of springs per mass"),
            "k0": ("N m-1", "stiffness of the spring tying each mass to its rest position"),
            "c": ("N s m-1", "damping coefficient"),
            "graph_seed": ("1", "seed of the graph, stiffnesses and masses"),
        },
        time_units="s",
        initial_conditions="x ~ U(-1, 1) m, v ~ U(-0.5, 0.5) m/s; without random_initial x_1 = 1, others 0, v = 0.",
        notes=_COMMON_NOTE + " For this second-order system the graph is over the masses (x_j -> x_i when x_j or v_j "
        "enters the acceleration of mass i), and a held mass is at rest (v = 0).",
    )


SPRING_NETWORK = _spring_spec(8)


def spring_system(n: int, in_degree: float, graph_seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(K, masses, graph)`` of :func:`spring_network`."""
    g = torch.Generator().manual_seed(30_000 + graph_seed)
    graph = random_graph(n, in_degree, g, symmetric=True)
    k = 0.5 + torch.rand(n, n, generator=g, dtype=F64)
    k = torch.triu(k, 1)
    K = torch.where(graph, k + k.T, torch.zeros((), dtype=F64))
    masses = 0.5 + torch.rand(n, generator=g, dtype=F64)
    return K, masses, graph


def spring_network(
    n_masses: int = 8,
    *,
    n_trajectories: int = 16,
    n_times: int = 60,
    t_span: Sequence[float] = (0.0, 10.0),
    irregular: bool = False,
    noise: float = 0.0,
    missing: float = 0.0,
    observe: Sequence[str] | None = None,
    seed: int = 0,
    random_initial: bool = True,
    in_degree: float = 2.0,
    k0: float = 1.0,
    c: float = 0.1,
    graph_seed: int = 0,
    do: Mapping[str, float] | None = None,
) -> Trajectories:
    """Masses coupled by springs on a sparse graph (second order); observes positions and velocities by default."""
    options = _options(locals())
    t0, t1 = check_options(n_trajectories, n_times, t_span, noise, missing, seed)
    _graph_sizes(n_masses, "n_masses")
    K, masses, graph = spring_system(n_masses, in_degree, graph_seed)
    spec = _spring_spec(n_masses)
    idx, vals = _check_do(do, spec.state_names, n_masses)
    gen = torch.Generator().manual_seed(seed)
    N = n_trajectories
    if random_initial:
        x = 2 * torch.rand(N, n_masses, generator=gen, dtype=F64) - 1
        v = torch.rand(N, n_masses, generator=gen, dtype=F64) - 0.5
    else:
        x = torch.zeros(N, n_masses, dtype=F64)
        x[:, 0] = 1.0
        v = torch.zeros_like(x)
    y0 = torch.cat([x, v], 1)
    rhs: Any = SpringNetwork(K, masses, k0, c)
    if idx:
        rhs = HeldRHS(rhs, idx, vals)
        y0 = rhs.apply(y0)
    return generate(
        spec,
        rhs,
        y0,
        gen=gen,
        n_times=n_times,
        t0=t0,
        t1=t1,
        irregular=irregular,
        noise=noise,
        missing=missing,
        observe=observe,
        default_observe=spec.state_names,
        parameters={"n_masses": n_masses, "in_degree": in_degree, "k0": k0, "c": c, "graph_seed": graph_seed},
        options=options,
        attrs={
            "adjacency": graph.long().tolist(),
            "system": {"K": _as_list(K), "masses": masses.tolist()},
            "do": dict(do or {}),
            "order": 2,
        },
    )


#: Card information per registry name (default sizes).
SPECS: dict[str, Spec] = {"linear_sparse": LINEAR_SPARSE, "glv": GLV, "spring_network": SPRING_NETWORK}
