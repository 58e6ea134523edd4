"""The zoo's generators: each solves its system with dopri8 (rtol 1e-10, float64) and returns Trajectories.

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
from collections.abc import Sequence

import torch
from torch import Tensor

from ..data.trajectories import Trajectories
from . import _systems as systems
from ._common import Spec, check_options, generate
from ._systems import ACA_MASSES, ACA_R0, ACA_V0, K1, K2, three_body_y0

__all__ = [
    "ACA_MASSES",
    "ACA_R0",
    "ACA_V0",
    "K1",
    "K2",
    "SPECS",
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


def _body_names(n: int, dim: int) -> tuple[list[str], list[str]]:
    axes = "xyz"[:dim] if dim <= 3 else [f"q{k}_" for k in range(dim)]
    pos = [f"{a}{i}" for i in range(1, n + 1) for a in axes]
    vel = [f"v{a}{i}" for i in range(1, n + 1) for a in axes]
    return pos, vel


def _options(local: dict) -> dict:
    out = {}
    for k, v in local.items():
        if k in ("gen",):
            continue
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


# ------------------------------------------------------------------------------------------ three body
_POS3, _VEL3 = _body_names(3, 3)
THREE_BODY = Spec(
    name="three_body",
    title="Three-body problem of the ACA paper (nondimensionalised)",
    equations=(
        "dr_i/dt = K2 v_i,  dv_i/dt = K1 * sum_{j != i} m_j (r_j - r_i) / |r_j - r_i|^3,  i = 1, 2, 3 (3-D),\n"
        "K1 = G t_nd m_nd / (r_nd^2 v_nd),  K2 = v_nd t_nd / r_nd,\n"
        "G = 6.67408e-11 m^3 kg^-1 s^-2, m_nd = 1.989e30 kg, r_nd = 5.326e12 m, v_nd = 3e4 m/s,\n"
        "t_nd = 79.91 * 365 * 24 * 3600 * 0.51 s."
    ),
    state_names=tuple(_POS3 + _VEL3),
    state_units=("1",) * 18,
    parameters={
        "masses": ("1 (units of m_nd)", "masses m_1, m_2, m_3"),
        "K1": ("1", "G t_nd m_nd / (r_nd^2 v_nd)"),
        "K2": ("1", "v_nd t_nd / r_nd"),
    },
    time_units="1",
    initial_conditions=(
        "r1 = (0, 0.2, 0), r2 = (0.5, 0, 0.5), r3 = (0, 0, 0.5); v1 = (0, 0.1, 0), v2 = (0, 0, 0.1), "
        "v3 = (0.1, 0, 0). With random_initial=True each component gets an added N(0, init_scale^2) draw."
    ),
    notes=(
        "Observation window [0, 1] (1000 points by default, `attrs['t_split'] = 1`), forecast window [1, 2] with "
        "the same spacing: `observe, forecast = traj.split_by_time(1.0)`."
    ),
)


def three_body(
    *,
    n_trajectories: int = 1,
    n_times: int = 1999,
    t_span: Sequence[float] = (0.0, 2.0),
    irregular: bool = False,
    noise: float = 0.0,
    missing: float = 0.0,
    observe: Sequence[str] | None = None,
    seed: int = 0,
    random_initial: bool = False,
    init_scale: float = 0.05,
    masses: Sequence[float] = ACA_MASSES,
) -> Trajectories:
    """The ACA paper's three-body experiment; observes the nine position components by default.

    The default times are ``linspace(0, 2, 1999)``: 1000 points on the observation window ``[0, 1]`` and the
    forecast window ``[1, 2]`` with the same spacing (``attrs["t_split"] = 1.0``). Metadata: the full initial
    state (18 values, ``[r_1, r_2, r_3, v_1, v_2, v_3]``) and parameters ``masses``, ``K1``, ``K2``.
    """
    options = _options(locals())
    t0, t1 = check_options(n_trajectories, n_times, t_span, noise, missing, seed)
    if len(masses) != 3 or not all(float(m) > 0 for m in masses):
        raise ValueError(f"masses must be three positive numbers, got {masses!r}.")
    gen = torch.Generator().manual_seed(seed)
    y0 = three_body_y0().expand(n_trajectories, -1).clone()
    if random_initial:
        y0 = y0 + init_scale * torch.randn(y0.shape, generator=gen, dtype=torch.float64)
    m = torch.tensor([float(x) for x in masses], dtype=torch.float64)
    return generate(
        THREE_BODY,
        systems.ThreeBody(m, learnable=False),
        y0,
        gen=gen,
        n_times=n_times,
        t0=t0,
        t1=t1,
        irregular=irregular,
        noise=noise,
        missing=missing,
        observe=observe,
        default_observe=_POS3,
        parameters={"masses": m.tolist(), "K1": K1, "K2": K2},
        options=options,
        attrs={"t_split": 0.5 * (t0 + t1)},
    )


# ------------------------------------------------------------------------------------------ n body
def _n_body_spec(n: int, dim: int) -> Spec:
    pos, vel = _body_names(n, dim)
    return Spec(
        name="n_body",
        title=f"Softened gravitational {n}-body problem in {dim} dimensions",
        equations=("dr_i/dt = v_i,  dv_i/dt = G * sum_{j != i} m_j (r_j - r_i) / (|r_j - r_i|^2 + eps^2)^{3/2}"),
        state_names=tuple(pos + vel),
        state_units=("1",) * (2 * n * dim),
        parameters={
            "masses": ("1", "masses m_i"),
            "G": ("1", "gravitational constant"),
            "softening": ("1", "Plummer softening length eps"),
        },
        time_units="1",
        initial_conditions=(
            "positions N(0, 1) per component; velocities N(0, 0.5^2) per component, minus the mass-weighted mean "
            "velocity (zero total momentum). Without random_initial: bodies on a unit circle (first two axes), "
            "velocities 0.5 tangential."
        ),
    )


def n_body(
    n: int = 3,
    dim: int = 2,
    *,
    n_trajectories: int = 8,
    n_times: int = 200,
    t_span: Sequence[float] = (0.0, 2.0),
    irregular: bool = False,
    noise: float = 0.0,
    missing: float = 0.0,
    observe: Sequence[str] | None = None,
    seed: int = 0,
    random_initial: bool = True,
    masses: Sequence[float] | None = None,
    G: float = 1.0,
    softening: float = 0.1,
) -> Trajectories:
    """``n`` softened point masses in ``dim`` dimensions (nondimensional); observes positions by default."""
    options = _options(locals())
    t0, t1 = check_options(n_trajectories, n_times, t_span, noise, missing, seed)
    if not isinstance(n, int) or n < 2 or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"n_body needs n >= 2 bodies and dim >= 1, got n={n!r}, dim={dim!r}.")
    m = torch.ones(n, dtype=torch.float64) if masses is None else torch.tensor(masses, dtype=torch.float64)
    if m.shape != (n,) or not bool((m > 0).all()):
        raise ValueError(f"masses must be {n} positive numbers, got {masses!r}.")
    spec = _n_body_spec(n, dim)
    gen = torch.Generator().manual_seed(seed)
    N = n_trajectories
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
    y0 = torch.cat([r.reshape(N, -1), v.reshape(N, -1)], dim=1)
    return generate(
        spec,
        systems.NBody(m, dim, eps=softening, c_v=G),
        y0,
        gen=gen,
        n_times=n_times,
        t0=t0,
        t1=t1,
        irregular=irregular,
        noise=noise,
        missing=missing,
        observe=observe,
        default_observe=spec.state_names[: n * dim],
        parameters={"masses": m.tolist(), "G": G, "softening": softening, "n": n, "dim": dim},
        options=options,
    )


# ------------------------------------------------------------------------------------------ kepler
KEPLER = Spec(
    name="kepler",
    title="Kepler problem (relative two-body motion in the plane)",
    equations="d(x, y)/dt = (vx, vy),  d(vx, vy)/dt = -mu (x, y) / (x^2 + y^2)^{3/2}",
    state_names=("x", "y", "vx", "vy"),
    state_units=("1", "1", "1", "1"),
    parameters={"mu": ("1", "gravitational parameter G (m_1 + m_2)")},
    time_units="1",
    initial_conditions=(
        "start at periapsis of an ellipse with semi-major axis a ~ U(0.8, 1.2), eccentricity e ~ U(0, 0.5) and "
        "argument of periapsis w ~ U(0, 2 pi): r = a (1 - e) (cos w, sin w), speed sqrt(mu (1 + e) / (a (1 - e))) "
        "counter-clockwise. Without random_initial: a = 1, e = 0.3, w = 0. Each trajectory's metadata holds "
        "`orbit = {a, e, omega}`."
    ),
)


def kepler(
    *,
    n_trajectories: int = 8,
    n_times: int = 200,
    t_span: Sequence[float] = (0.0, 2 * math.pi),
    irregular: bool = False,
    noise: float = 0.0,
    missing: float = 0.0,
    observe: Sequence[str] | None = None,
    seed: int = 0,
    random_initial: bool = True,
    mu: float = 1.0,
) -> Trajectories:
    """Kepler orbits started at periapsis; observes ``x, y`` by default. Metadata ``orbit``: ``a, e, omega``."""
    options = _options(locals())
    t0, t1 = check_options(n_trajectories, n_times, t_span, noise, missing, seed)
    gen = torch.Generator().manual_seed(seed)
    N = n_trajectories
    if random_initial:
        a = _uniform(gen, (N,), 0.8, 1.2)
        e = _uniform(gen, (N,), 0.0, 0.5)
        w = _uniform(gen, (N,), 0.0, 2 * math.pi)
    else:
        a, e, w = (torch.full((N,), x, dtype=torch.float64) for x in (1.0, 0.3, 0.0))
    rp = a * (1 - e)
    vp = torch.sqrt(mu * (1 + e) / rp)
    y0 = torch.stack([rp * torch.cos(w), rp * torch.sin(w), -vp * torch.sin(w), vp * torch.cos(w)], dim=1)
    orbits = [{"orbit": {"a": float(a[i]), "e": float(e[i]), "omega": float(w[i])}} for i in range(N)]
    return generate(
        KEPLER,
        systems.Kepler(mu),
        y0,
        gen=gen,
        n_times=n_times,
        t0=t0,
        t1=t1,
        irregular=irregular,
        noise=noise,
        missing=missing,
        observe=observe,
        default_observe=("x", "y"),
        parameters={"mu": mu},
        options=options,
        per_trajectory=orbits,
    )


# ------------------------------------------------------------------------------------------ pendulum
PENDULUM = Spec(
    name="pendulum",
    title="Ideal pendulum",
    equations="d theta/dt = omega,  d omega/dt = -(g / L) sin(theta)",
    state_names=("theta", "omega"),
    state_units=("rad", "rad s-1"),
    parameters={"g": ("m s-2", "gravitational acceleration"), "length": ("m", "rod length L")},
    time_units="s",
    initial_conditions="theta ~ U(-2, 2) rad, omega ~ U(-1, 1) rad/s; without random_initial theta = 1, omega = 0.",
)


def pendulum(
    *,
    n_trajectories: int = 8,
    n_times: int = 200,
    t_span: Sequence[float] = (0.0, 10.0),
    irregular: bool = False,
    noise: float = 0.0,
    missing: float = 0.0,
    observe: Sequence[str] | None = None,
    seed: int = 0,
    random_initial: bool = True,
    g: float = 9.81,
    length: float = 1.0,
) -> Trajectories:
    """Undamped pendulum (time in s, angle in rad); observes ``theta, omega`` by default."""
    options = _options(locals())
    t0, t1 = check_options(n_trajectories, n_times, t_span, noise, missing, seed)
    gen = torch.Generator().manual_seed(seed)
    N = n_trajectories
    if random_initial:
        y0 = torch.stack([_uniform(gen, (N,), -2.0, 2.0), _uniform(gen, (N,), -1.0, 1.0)], dim=1)
    else:
        y0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64).expand(N, -1).clone()
    return generate(
        PENDULUM,
        systems.Pendulum(g, length),
        y0,
        gen=gen,
        n_times=n_times,
        t0=t0,
        t1=t1,
        irregular=irregular,
        noise=noise,
        missing=missing,
        observe=observe,
        default_observe=("theta", "omega"),
        parameters={"g": g, "length": length},
        options=options,
    )


# ------------------------------------------------------------------------------------------ double pendulum
DOUBLE_PENDULUM = Spec(
    name="double_pendulum",
    title="Planar double pendulum (point masses, massless rods)",
    equations=(
        "delta = theta1 - theta2,  den = 2 m1 + m2 - m2 cos(2 delta),\n"
        "omega1' = [-g (2 m1 + m2) sin theta1 - m2 g sin(theta1 - 2 theta2) - 2 sin(delta) m2 (omega2^2 l2 + "
        "omega1^2 l1 cos delta)] / (l1 den),\n"
        "omega2' = 2 sin(delta) [omega1^2 l1 (m1 + m2) + g (m1 + m2) cos theta1 + omega2^2 l2 m2 cos delta] / "
        "(l2 den),\ntheta1' = omega1, theta2' = omega2."
    ),
    state_names=("theta1", "theta2", "omega1", "omega2"),
    state_units=("rad", "rad", "rad s-1", "rad s-1"),
    parameters={
        "m1": ("kg", "upper mass"),
        "m2": ("kg", "lower mass"),
        "l1": ("m", "upper rod length"),
        "l2": ("m", "lower rod length"),
        "g": ("m s-2", "gravitational acceleration"),
    },
    time_units="s",
    initial_conditions=(
        "theta1, theta2 ~ U(-pi/2, pi/2) rad, omega1, omega2 ~ U(-1, 1) rad/s; without random_initial "
        "(pi/2, pi/2, 0, 0)."
    ),
)


def double_pendulum(
    *,
    n_trajectories: int = 8,
    n_times: int = 200,
    t_span: Sequence[float] = (0.0, 10.0),
    irregular: bool = False,
    noise: float = 0.0,
    missing: float = 0.0,
    observe: Sequence[str] | None = None,
    seed: int = 0,
    random_initial: bool = True,
    m1: float = 1.0,
    m2: float = 1.0,
    l1: float = 1.0,
    l2: float = 1.0,
    g: float = 9.81,
) -> Trajectories:
    """Chaotic double pendulum; observes the two angles by default."""
    options = _options(locals())
    t0, t1 = check_options(n_trajectories, n_times, t_span, noise, missing, seed)
    gen = torch.Generator().manual_seed(seed)
    N = n_trajectories
    if random_initial:
        th = _uniform(gen, (N, 2), -math.pi / 2, math.pi / 2)
        w = _uniform(gen, (N, 2), -1.0, 1.0)
        y0 = torch.cat([th, w], dim=1)
    else:
        y0 = torch.tensor([[math.pi / 2, math.pi / 2, 0.0, 0.0]], dtype=torch.float64).expand(N, -1).clone()
    return generate(
        DOUBLE_PENDULUM,
        systems.DoublePendulum(m1, m2, l1, l2, g),
        y0,
        gen=gen,
        n_times=n_times,
        t0=t0,
        t1=t1,
        irregular=irregular,
        noise=noise,
        missing=missing,
        observe=observe,
        default_observe=("theta1", "theta2"),
        parameters={"m1": m1, "m2": m2, "l1": l1, "l2": l2, "g": g},
        options=options,
    )


# ------------------------------------------------------------------------------------------ mass-spring chain
def _chain_spec(n: int) -> Spec:
    return Spec(
        name="mass_spring_chain",
        title=f"Chain of {n} masses and {n + 1} springs between fixed walls",
        equations="m x_i'' = k (x_{i+1} - 2 x_i + x_{i-1}),  x_0 = x_{n+1} = 0 (fixed walls)",
        state_names=tuple([f"x{i}" for i in range(1, n + 1)] + [f"v{i}" for i in range(1, n + 1)]),
        state_units=("m",) * n + ("m s-1",) * n,
        parameters={"k": ("N m-1", "spring constant"), "m": ("kg", "mass"), "n_masses": ("1", "number of masses")},
        time_units="s",
        initial_conditions=(
            "displacements ~ U(-0.5, 0.5) m, velocities 0; without random_initial x_1 = 0.5 m, all others 0."
        ),
    )


def mass_spring_chain(
    n_masses: int = 4,
    *,
    n_trajectories: int = 8,
    n_times: int = 200,
    t_span: Sequence[float] = (0.0, 20.0),
    irregular: bool = False,
    noise: float = 0.0,
    missing: float = 0.0,
    observe: Sequence[str] | None = None,
    seed: int = 0,
    random_initial: bool = True,
    k: float = 1.0,
    m: float = 1.0,
) -> Trajectories:
    """Linear chain of ``n_masses`` masses; observes the displacements by default."""
    options = _options(locals())
    t0, t1 = check_options(n_trajectories, n_times, t_span, noise, missing, seed)
    if not isinstance(n_masses, int) or n_masses < 1:
        raise ValueError(f"n_masses must be a positive integer, got {n_masses!r}.")
    spec = _chain_spec(n_masses)
    gen = torch.Generator().manual_seed(seed)
    N = n_trajectories
    if random_initial:
        x = _uniform(gen, (N, n_masses), -0.5, 0.5)
    else:
        x = torch.zeros(N, n_masses, dtype=torch.float64)
        x[:, 0] = 0.5
    y0 = torch.cat([x, torch.zeros_like(x)], dim=1)
    return generate(
        spec,
        systems.MassSpringChain(n_masses, k, m),
        y0,
        gen=gen,
        n_times=n_times,
        t0=t0,
        t1=t1,
        irregular=irregular,
        noise=noise,
        missing=missing,
        observe=observe,
        default_observe=spec.state_names[:n_masses],
        parameters={"k": k, "m": m, "n_masses": n_masses},
        options=options,
    )


# ------------------------------------------------------------------------------------------ damped oscillator
DAMPED_OSCILLATOR = Spec(
    name="damped_oscillator",
    title="Damped harmonic oscillator",
    equations="dx/dt = v,  dv/dt = -omega0^2 x - 2 zeta omega0 v",
    state_names=("x", "v"),
    state_units=("m", "m s-1"),
    parameters={"omega0": ("rad s-1", "undamped angular frequency"), "zeta": ("1", "damping ratio")},
    time_units="s",
    initial_conditions="x ~ U(-1, 1) m, v ~ U(-1, 1) m/s; without random_initial x = 1, v = 0.",
)


def damped_oscillator(
    *,
    n_trajectories: int = 8,
    n_times: int = 200,
    t_span: Sequence[float] = (0.0, 20.0),
    irregular: bool = False,
    noise: float = 0.0,
    missing: float = 0.0,
    observe: Sequence[str] | None = None,
    seed: int = 0,
    random_initial: bool = True,
    omega0: float = 1.0,
    zeta: float = 0.1,
) -> Trajectories:
    """Damped linear oscillator; observes ``x, v`` by default."""
    options = _options(locals())
    t0, t1 = check_options(n_trajectories, n_times, t_span, noise, missing, seed)
    gen = torch.Generator().manual_seed(seed)
    N = n_trajectories
    if random_initial:
        y0 = _uniform(gen, (N, 2), -1.0, 1.0)
    else:
        y0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64).expand(N, -1).clone()
    return generate(
        DAMPED_OSCILLATOR,
        systems.DampedOscillator(omega0, zeta),
        y0,
        gen=gen,
        n_times=n_times,
        t0=t0,
        t1=t1,
        irregular=irregular,
        noise=noise,
        missing=missing,
        observe=observe,
        default_observe=("x", "v"),
        parameters={"omega0": omega0, "zeta": zeta},
        options=options,
    )


# ------------------------------------------------------------------------------------------ lotka-volterra
LOTKA_VOLTERRA = Spec(
    name="lotka_volterra",
    title="Lotka-Volterra predator-prey model",
    equations="dx/dt = alpha x - beta x y,  dy/dt = delta x y - gamma y  (x: prey, y: predator)",
    state_names=("prey", "predator"),
    state_units=("1", "1"),
    parameters={
        "alpha": ("1", "prey growth rate"),
        "beta": ("1", "predation rate"),
        "gamma": ("1", "predator death rate"),
        "delta": ("1", "predator growth per prey"),
    },
    time_units="1",
    initial_conditions="prey, predator ~ U(0.5, 3) each; without random_initial (1, 1).",
)


def lotka_volterra(
    *,
    n_trajectories: int = 8,
    n_times: int = 200,
    t_span: Sequence[float] = (0.0, 10.0),
    irregular: bool = False,
    noise: float = 0.0,
    missing: float = 0.0,
    observe: Sequence[str] | None = None,
    seed: int = 0,
    random_initial: bool = True,
    alpha: float = 1.5,
    beta: float = 1.0,
    gamma: float = 3.0,
    delta: float = 1.0,
) -> Trajectories:
    """Lotka-Volterra populations; observes both by default."""
    options = _options(locals())
    t0, t1 = check_options(n_trajectories, n_times, t_span, noise, missing, seed)
    gen = torch.Generator().manual_seed(seed)
    N = n_trajectories
    if random_initial:
        y0 = _uniform(gen, (N, 2), 0.5, 3.0)
    else:
        y0 = torch.ones(N, 2, dtype=torch.float64)
    return generate(
        LOTKA_VOLTERRA,
        systems.LotkaVolterra(alpha, beta, gamma, delta),
        y0,
        gen=gen,
        n_times=n_times,
        t0=t0,
        t1=t1,
        irregular=irregular,
        noise=noise,
        missing=missing,
        observe=observe,
        default_observe=("prey", "predator"),
        parameters={"alpha": alpha, "beta": beta, "gamma": gamma, "delta": delta},
        options=options,
    )


#: Card information per registry name (for n_body and mass_spring_chain: the default sizes).
SPECS: dict[str, Spec] = {
    "three_body": THREE_BODY,
    "n_body": _n_body_spec(3, 2),
    "kepler": KEPLER,
    "pendulum": PENDULUM,
    "double_pendulum": DOUBLE_PENDULUM,
    "mass_spring_chain": _chain_spec(4),
    "damped_oscillator": DAMPED_OSCILLATOR,
    "lotka_volterra": LOTKA_VOLTERRA,
}
