"""The zoo's systems as :class:`~physnode.datasets.system.System` records, and their generators.

Each generator is :func:`physnode.datasets.system.generate` applied to one record: it solves the system with dopri8
(rtol 1e-10, float64) and returns Trajectories. ``SYSTEMS`` maps names to records, ``SPECS`` to the card
information at the default sizes.

Common options of every generator
---------------------------------
n_trajectories
    Number of trajectories ``N``.
n_times
    Number of observation times per trajectory (with ``irregular``, the most a trajectory gets).
t_span
    ``(t0, t1)``: the initial state is given at ``t0``, observations lie in ``[t0, t1]``.
irregular
    Random times per trajectory: ``t0`` plus sorted uniform draws, a random count in ``[n_times // 2, n_times]``.
noise
    Standard deviation of additive Gaussian observation noise, in the units of each channel.
missing
    Probability that an observation of a channel is dropped (mask false), independently per entry.
observe
    Names of the observed state components (default: see each generator).
seed
    Seed of the ``torch.Generator`` that draws initial states, times, noise and the mask (in that order).
random_initial
    Draw random initial states (else every trajectory starts from the documented default state).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from . import _systems as systems
from ._common import Spec
from ._systems import ACA_MASSES, ACA_R0, ACA_V0, K1, K2, three_body_y0
from .system import Parameter, System, generator

__all__ = [
    "ACA_MASSES",
    "ACA_R0",
    "ACA_V0",
    "K1",
    "K2",
    "SPECS",
    "SYSTEMS",
    "damped_oscillator",
    "double_pendulum",
    "kepler",
    "lotka_volterra",
    "mass_spring_chain",
    "n_body",
    "pendulum",
    "three_body",
]


def _uniform(gen: torch.Generator, shape: tuple[int, ...], lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)


def _fixed(N: int, *state: float) -> Tensor:
    """``N`` copies of one initial state."""
    return torch.tensor([state], dtype=torch.float64).expand(N, -1).clone()


def _body_states(n: int, dim: int) -> list[tuple[str, str]]:
    axes = "xyz"[:dim] if dim <= 3 else [f"q{k}_" for k in range(dim)]
    pos = [f"{a}{i}" for i in range(1, n + 1) for a in axes]
    vel = [f"v{a}{i}" for i in range(1, n + 1) for a in axes]
    return [(c, "1") for c in pos + vel]


def _masses(masses: Any, n: int) -> Tensor:
    m = torch.ones(n, dtype=torch.float64) if masses is None else torch.tensor(masses, dtype=torch.float64)
    if m.shape != (n,) or not bool((m > 0).all()):
        raise ValueError(f"masses must be {n} positive numbers, got {masses!r}.")
    return m


# ------------------------------------------------------------------------------------------ three body
def _three_body_prepare(p: dict[str, Any]) -> dict[str, Any]:
    masses = p["masses"]
    if len(masses) != 3 or not all(float(m) > 0 for m in masses):
        raise ValueError(f"masses must be three positive numbers, got {masses!r}.")
    return {**p, "masses": [float(m) for m in masses]}


def _three_body_initial(
    gen: torch.Generator, N: int, random_initial: bool, p: Mapping[str, Any], o: Mapping[str, Any]
) -> Tensor:
    y0 = three_body_y0().expand(N, -1).clone()
    if random_initial:
        y0 = y0 + o["init_scale"] * torch.randn(y0.shape, generator=gen, dtype=torch.float64)
    return y0


THREE_BODY = System(
    name="three_body",
    title="Three-body problem of the ACA paper (nondimensionalised)",
    equations=(
        "dr_i/dt = K2 v_i,  dv_i/dt = K1 * sum_{j != i} m_j (r_j - r_i) / |r_j - r_i|^3,  i = 1, 2, 3 (3-D),\n"
        "K1 = G t_nd m_nd / (r_nd^2 v_nd),  K2 = v_nd t_nd / r_nd,\n"
        "G = 6.67408e-11 m^3 kg^-1 s^-2, m_nd = 1.989e30 kg, r_nd = 5.326e12 m, v_nd = 3e4 m/s,\n"
        "t_nd = 79.91 * 365 * 24 * 3600 * 0.51 s."
    ),
    states=_body_states(3, 3),
    parameters={
        "masses": Parameter(ACA_MASSES, "1 (units of m_nd)", "masses m_1, m_2, m_3"),
        "K1": Parameter(K1, "1", "G t_nd m_nd / (r_nd^2 v_nd)", kind="constant"),
        "K2": Parameter(K2, "1", "v_nd t_nd / r_nd", kind="constant"),
    },
    time_units="1",
    t_span=(0.0, 2.0),
    initial_conditions=(
        "r1 = (0, 0.2, 0), r2 = (0.5, 0, 0.5), r3 = (0, 0, 0.5); v1 = (0, 0.1, 0), v2 = (0, 0, 0.1), "
        "v3 = (0.1, 0, 0). With random_initial=True each component gets an added N(0, init_scale^2) draw."
    ),
    initial=_three_body_initial,
    rhs=lambda p: systems.ThreeBody(p["masses"], learnable=False),
    observed="positions",
    n_trajectories=1,
    n_times=1999,
    random_initial=False,
    options={"init_scale": 0.05},
    prepare=_three_body_prepare,
    attrs=lambda t0, t1, p: {"t_split": 0.5 * (t0 + t1)},
    notes=(
        "Observation window [0, 1] (1000 points by default, `attrs['t_split'] = 1`), forecast window [1, 2] with "
        "the same spacing: `observe, forecast = traj.split_by_time(1.0)`."
    ),
    doc=(
        "The ACA paper's three-body experiment; observes the nine position components by default.\n\n"
        "The default times are ``linspace(0, 2, 1999)``: 1000 points on the observation window ``[0, 1]`` and the\n"
        'forecast window ``[1, 2]`` with the same spacing (``attrs["t_split"] = 1.0``). Metadata: the full initial\n'
        "state (18 values, ``[r_1, r_2, r_3, v_1, v_2, v_3]``) and parameters ``masses``, ``K1``, ``K2``."
    ),
)


# ------------------------------------------------------------------------------------------ n body
def _n_body_prepare(p: dict[str, Any]) -> dict[str, Any]:
    n, dim = p["n"], p["dim"]
    if not isinstance(n, int) or n < 2 or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"n_body needs n >= 2 bodies and dim >= 1, got n={n!r}, dim={dim!r}.")
    return {"masses": _masses(p["masses"], n).tolist(), "G": p["G"], "softening": p["softening"], "n": n, "dim": dim}


def _n_body_initial(
    gen: torch.Generator, N: int, random_initial: bool, p: Mapping[str, Any], o: Mapping[str, Any]
) -> Tensor:
    n, dim = p["n"], p["dim"]
    m = torch.tensor(p["masses"], dtype=torch.float64)
    if random_initial:
        r = torch.randn(N, n, dim, generator=gen, dtype=torch.float64)
        v = 0.5 * torch.randn(N, n, dim, generator=gen, dtype=torch.float64)
        v = v - (m[:, None] * v).sum(1, keepdim=True) / m.sum()
    else:
        ang = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
        r = torch.zeros(N, n, dim, dtype=torch.float64)
        v = torch.zeros(N, n, dim, dtype=torch.float64)
        r[..., 0] = torch.cos(ang)
        if dim > 1:
            r[..., 1] = torch.sin(ang)
            v[..., 0] = -0.5 * torch.sin(ang)
            v[..., 1] = 0.5 * torch.cos(ang)
    return torch.cat([r.reshape(N, -1), v.reshape(N, -1)], dim=1)


N_BODY = System(
    name="n_body",
    title=lambda n, dim: f"Softened gravitational {n}-body problem in {dim} dimensions",
    equations="dr_i/dt = v_i,  dv_i/dt = G * sum_{j != i} m_j (r_j - r_i) / (|r_j - r_i|^2 + eps^2)^{3/2}",
    states=_body_states,
    parameters={
        "masses": Parameter(None, "1", "masses m_i (default: all 1)"),
        "G": Parameter(1.0, "1", "gravitational constant"),
        "softening": Parameter(0.1, "1", "Plummer softening length eps"),
        "n": Parameter(3, "1", "number of bodies", kind="size"),
        "dim": Parameter(2, "1", "number of space dimensions", kind="size"),
    },
    time_units="1",
    t_span=(0.0, 2.0),
    initial_conditions=(
        "positions N(0, 1) per component; velocities N(0, 0.5^2) per component, minus the mass-weighted mean "
        "velocity (zero total momentum). Without random_initial: bodies on a unit circle (first two axes), "
        "velocities 0.5 tangential."
    ),
    initial=_n_body_initial,
    rhs=lambda p: systems.NBody(p["masses"], p["dim"], eps=p["softening"], c_v=p["G"]),
    observed="positions",
    prepare=_n_body_prepare,
    doc="``n`` softened point masses in ``dim`` dimensions (nondimensional); observes positions by default.",
)


# ------------------------------------------------------------------------------------------ kepler
def _kepler_initial(
    gen: torch.Generator, N: int, random_initial: bool, p: Mapping[str, Any], o: Mapping[str, Any]
) -> tuple[Tensor, list[dict[str, Any]]]:
    if random_initial:
        a = _uniform(gen, (N,), 0.8, 1.2)
        e = _uniform(gen, (N,), 0.0, 0.5)
        w = _uniform(gen, (N,), 0.0, 2 * math.pi)
    else:
        a, e, w = (torch.full((N,), x, dtype=torch.float64) for x in (1.0, 0.3, 0.0))
    rp = a * (1 - e)
    vp = torch.sqrt(p["mu"] * (1 + e) / rp)
    y0 = torch.stack([rp * torch.cos(w), rp * torch.sin(w), -vp * torch.sin(w), vp * torch.cos(w)], dim=1)
    return y0, [{"orbit": {"a": float(a[i]), "e": float(e[i]), "omega": float(w[i])}} for i in range(N)]


KEPLER = System(
    name="kepler",
    title="Kepler problem (relative two-body motion in the plane)",
    equations="d(x, y)/dt = (vx, vy),  d(vx, vy)/dt = -mu (x, y) / (x^2 + y^2)^{3/2}",
    states=(("x", "1"), ("y", "1"), ("vx", "1"), ("vy", "1")),
    parameters={"mu": Parameter(1.0, "1", "gravitational parameter G (m_1 + m_2)")},
    time_units="1",
    t_span=(0.0, 2 * math.pi),
    initial_conditions=(
        "start at periapsis of an ellipse with semi-major axis a ~ U(0.8, 1.2), eccentricity e ~ U(0, 0.5) and "
        "argument of periapsis w ~ U(0, 2 pi): r = a (1 - e) (cos w, sin w), speed sqrt(mu (1 + e) / (a (1 - e))) "
        "counter-clockwise. Without random_initial: a = 1, e = 0.3, w = 0. Each trajectory's metadata holds "
        "`orbit = {a, e, omega}`."
    ),
    initial=_kepler_initial,
    rhs=lambda p: systems.Kepler(p["mu"]),
    observed="positions",
    doc="Kepler orbits started at periapsis; observes ``x, y`` by default. Metadata ``orbit``: ``a, e, omega``.",
)


# ------------------------------------------------------------------------------------------ pendulum
def _pendulum_initial(
    gen: torch.Generator, N: int, random_initial: bool, p: Mapping[str, Any], o: Mapping[str, Any]
) -> Tensor:
    if random_initial:
        return torch.stack([_uniform(gen, (N,), -2.0, 2.0), _uniform(gen, (N,), -1.0, 1.0)], dim=1)
    return _fixed(N, 1.0, 0.0)


PENDULUM = System(
    name="pendulum",
    title="Ideal pendulum",
    equations="d theta/dt = omega,  d omega/dt = -(g / L) sin(theta)",
    states=(("theta", "rad"), ("omega", "rad s-1")),
    parameters={
        "g": Parameter(9.81, "m s-2", "gravitational acceleration"),
        "length": Parameter(1.0, "m", "rod length L"),
    },
    time_units="s",
    t_span=(0.0, 10.0),
    initial_conditions="theta ~ U(-2, 2) rad, omega ~ U(-1, 1) rad/s; without random_initial theta = 1, omega = 0.",
    initial=_pendulum_initial,
    rhs=lambda p: systems.Pendulum(p["g"], p["length"]),
    doc="Undamped pendulum (time in s, angle in rad); observes ``theta, omega`` by default.",
)


# ------------------------------------------------------------------------------------------ double pendulum
def _double_pendulum_initial(
    gen: torch.Generator, N: int, random_initial: bool, p: Mapping[str, Any], o: Mapping[str, Any]
) -> Tensor:
    if random_initial:
        th = _uniform(gen, (N, 2), -math.pi / 2, math.pi / 2)
        w = _uniform(gen, (N, 2), -1.0, 1.0)
        return torch.cat([th, w], dim=1)
    return _fixed(N, math.pi / 2, math.pi / 2, 0.0, 0.0)


DOUBLE_PENDULUM = System(
    name="double_pendulum",
    title="Planar double pendulum (point masses, massless rods)",
    equations=(
        "delta = theta1 - theta2,  den = 2 m1 + m2 - m2 cos(2 delta),\n"
        "omega1' = [-g (2 m1 + m2) sin theta1 - m2 g sin(theta1 - 2 theta2) - 2 sin(delta) m2 (omega2^2 l2 + "
        "omega1^2 l1 cos delta)] / (l1 den),\n"
        "omega2' = 2 sin(delta) [omega1^2 l1 (m1 + m2) + g (m1 + m2) cos theta1 + omega2^2 l2 m2 cos delta] / "
        "(l2 den),\ntheta1' = omega1, theta2' = omega2."
    ),
    states=(("theta1", "rad"), ("theta2", "rad"), ("omega1", "rad s-1"), ("omega2", "rad s-1")),
    parameters={
        "m1": Parameter(1.0, "kg", "upper mass"),
        "m2": Parameter(1.0, "kg", "lower mass"),
        "l1": Parameter(1.0, "m", "upper rod length"),
        "l2": Parameter(1.0, "m", "lower rod length"),
        "g": Parameter(9.81, "m s-2", "gravitational acceleration"),
    },
    time_units="s",
    t_span=(0.0, 10.0),
    initial_conditions=(
        "theta1, theta2 ~ U(-pi/2, pi/2) rad, omega1, omega2 ~ U(-1, 1) rad/s; without random_initial "
        "(pi/2, pi/2, 0, 0)."
    ),
    initial=_double_pendulum_initial,
    rhs=lambda p: systems.DoublePendulum(p["m1"], p["m2"], p["l1"], p["l2"], p["g"]),
    observed="positions",
    doc="Chaotic double pendulum; observes the two angles by default.",
)


# ------------------------------------------------------------------------------------------ mass-spring chain
def _chain_prepare(p: dict[str, Any]) -> dict[str, Any]:
    n = p["n_masses"]
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n_masses must be a positive integer, got {n!r}.")
    return p


def _chain_initial(
    gen: torch.Generator, N: int, random_initial: bool, p: Mapping[str, Any], o: Mapping[str, Any]
) -> Tensor:
    n = p["n_masses"]
    if random_initial:
        x = _uniform(gen, (N, n), -0.5, 0.5)
    else:
        x = torch.zeros(N, n, dtype=torch.float64)
        x[:, 0] = 0.5
    return torch.cat([x, torch.zeros_like(x)], dim=1)


MASS_SPRING_CHAIN = System(
    name="mass_spring_chain",
    title=lambda n_masses: f"Chain of {n_masses} masses and {n_masses + 1} springs between fixed walls",
    equations="m x_i'' = k (x_{i+1} - 2 x_i + x_{i-1}),  x_0 = x_{n+1} = 0 (fixed walls)",
    states=lambda n_masses: (
        [(f"x{i}", "m") for i in range(1, n_masses + 1)] + [(f"v{i}", "m s-1") for i in range(1, n_masses + 1)]
    ),
    parameters={
        "k": Parameter(1.0, "N m-1", "spring constant"),
        "m": Parameter(1.0, "kg", "mass"),
        "n_masses": Parameter(4, "1", "number of masses", kind="size"),
    },
    time_units="s",
    t_span=(0.0, 20.0),
    initial_conditions=(
        "displacements ~ U(-0.5, 0.5) m, velocities 0; without random_initial x_1 = 0.5 m, all others 0."
    ),
    initial=_chain_initial,
    rhs=lambda p: systems.MassSpringChain(p["n_masses"], p["k"], p["m"]),
    observed="positions",
    prepare=_chain_prepare,
    doc="Linear chain of ``n_masses`` masses; observes the displacements by default.",
)


# ------------------------------------------------------------------------------------------ damped oscillator
def _damped_initial(
    gen: torch.Generator, N: int, random_initial: bool, p: Mapping[str, Any], o: Mapping[str, Any]
) -> Tensor:
    return _uniform(gen, (N, 2), -1.0, 1.0) if random_initial else _fixed(N, 1.0, 0.0)


DAMPED_OSCILLATOR = System(
    name="damped_oscillator",
    title="Damped harmonic oscillator",
    equations="dx/dt = v,  dv/dt = -omega0^2 x - 2 zeta omega0 v",
    states=(("x", "m"), ("v", "m s-1")),
    parameters={
        "omega0": Parameter(1.0, "rad s-1", "undamped angular frequency"),
        "zeta": Parameter(0.1, "1", "damping ratio"),
    },
    time_units="s",
    t_span=(0.0, 20.0),
    initial_conditions="x ~ U(-1, 1) m, v ~ U(-1, 1) m/s; without random_initial x = 1, v = 0.",
    initial=_damped_initial,
    rhs=lambda p: systems.DampedOscillator(p["omega0"], p["zeta"]),
    doc="Damped linear oscillator; observes ``x, v`` by default.",
)


# ------------------------------------------------------------------------------------------ lotka-volterra
def _lotka_volterra_initial(
    gen: torch.Generator, N: int, random_initial: bool, p: Mapping[str, Any], o: Mapping[str, Any]
) -> Tensor:
    return _uniform(gen, (N, 2), 0.5, 3.0) if random_initial else torch.ones(N, 2, dtype=torch.float64)


LOTKA_VOLTERRA = System(
    name="lotka_volterra",
    title="Lotka-Volterra predator-prey model",
    equations="dx/dt = alpha x - beta x y,  dy/dt = delta x y - gamma y  (x: prey, y: predator)",
    states=(("prey", "1"), ("predator", "1")),
    parameters={
        "alpha": Parameter(1.5, "1", "prey growth rate"),
        "beta": Parameter(1.0, "1", "predation rate"),
        "gamma": Parameter(3.0, "1", "predator death rate"),
        "delta": Parameter(1.0, "1", "predator growth per prey"),
    },
    time_units="1",
    t_span=(0.0, 10.0),
    initial_conditions="prey, predator ~ U(0.5, 3) each; without random_initial (1, 1).",
    initial=_lotka_volterra_initial,
    rhs=lambda p: systems.LotkaVolterra(p["alpha"], p["beta"], p["gamma"], p["delta"]),
    doc="Lotka-Volterra populations; observes both by default.",
)


#: Registry name -> system record.
SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        THREE_BODY,
        N_BODY,
        KEPLER,
        PENDULUM,
        DOUBLE_PENDULUM,
        MASS_SPRING_CHAIN,
        DAMPED_OSCILLATOR,
        LOTKA_VOLTERRA,
    )
}

#: Card information per registry name (for n_body and mass_spring_chain: the default sizes).
SPECS: dict[str, Spec] = {name: s.spec() for name, s in SYSTEMS.items()}

three_body = generator(THREE_BODY)
n_body = generator(N_BODY)
kepler = generator(KEPLER)
pendulum = generator(PENDULUM)
double_pendulum = generator(DOUBLE_PENDULUM)
mass_spring_chain = generator(MASS_SPRING_CHAIN)
damped_oscillator = generator(DAMPED_OSCILLATOR)
lotka_volterra = generator(LOTKA_VOLTERRA)
