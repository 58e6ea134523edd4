"""Physics test systems: physnode.physics models and independent hand-written torch references."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from physnode.physics import Hamiltonian, Hybrid, Lagrangian, NBodyGravity, Param, SymbolicODE

# ---------------------------------------------------------------------------------------------- pendulum
PENDULUM = {"m": 1.3, "l": 0.7, "g": 9.81}


def pendulum_lagrangian() -> Lagrangian:
    return Lagrangian(
        "m*l**2*theta_dot**2/2 + m*g*l*cos(theta)",
        ["theta"],
        {"m": Param(PENDULUM["m"], positive=True), "l": PENDULUM["l"], "g": Param(PENDULUM["g"], bounds=(1.0, 20.0))},
    ).double()


def pendulum_ref(t: Tensor, y: Tensor) -> Tensor:
    theta, omega = y[..., 0], y[..., 1]
    return torch.stack([omega, -PENDULUM["g"] / PENDULUM["l"] * torch.sin(theta)], -1)


# ---------------------------------------------------------------------------------------- double pendulum
DOUBLE = {"m1": 1.0, "m2": 0.6, "l1": 1.1, "l2": 0.8, "g": 9.81}


def double_pendulum_lagrangian() -> Lagrangian:
    L = (
        "(m1 + m2)*l1**2*a_dot**2/2 + m2*l2**2*b_dot**2/2 + m2*l1*l2*a_dot*b_dot*cos(a - b)"
        " + (m1 + m2)*g*l1*cos(a) + m2*g*l2*cos(b)"
    )
    params = {k: Param(v, positive=True) for k, v in DOUBLE.items() if k != "g"}
    params["g"] = DOUBLE["g"]
    return Lagrangian(L, ["a", "b"], params).double()


def double_pendulum_ref(t: Tensor, y: Tensor) -> Tensor:
    """The textbook closed form of the double pendulum's angular accelerations."""
    m1, m2, l1, l2, g = DOUBLE["m1"], DOUBLE["m2"], DOUBLE["l1"], DOUBLE["l2"], DOUBLE["g"]
    a, b, w1, w2 = y.unbind(-1)
    den = 2 * m1 + m2 - m2 * torch.cos(2 * a - 2 * b)
    a_dd = (
        -g * (2 * m1 + m2) * torch.sin(a)
        - m2 * g * torch.sin(a - 2 * b)
        - 2 * torch.sin(a - b) * m2 * (w2**2 * l2 + w1**2 * l1 * torch.cos(a - b))
    ) / (l1 * den)
    b_dd = (
        2
        * torch.sin(a - b)
        * (w1**2 * l1 * (m1 + m2) + g * (m1 + m2) * torch.cos(a) + w2**2 * l2 * m2 * torch.cos(a - b))
    ) / (l2 * den)
    return torch.stack([w1, w2, a_dd, b_dd], -1)


# ------------------------------------------------------------------------------------------------ Kepler
KEPLER = {"m": 0.8, "k": 1.5}


def kepler_hamiltonian() -> Hamiltonian:
    return Hamiltonian(
        "(px**2 + py**2)/(2*m) - k*m/sqrt(x**2 + y**2)",
        ["x", "y"],
        ["px", "py"],
        {"m": Param(KEPLER["m"], positive=True), "k": Param(KEPLER["k"], positive=True)},
    ).double()


def kepler_ref(t: Tensor, y: Tensor) -> Tensor:
    q, p = y[..., :2], y[..., 2:]
    r3 = q.square().sum(-1, keepdim=True).pow(1.5)
    return torch.cat([p / KEPLER["m"], -KEPLER["k"] * KEPLER["m"] * q / r3], -1)


def kepler_energy_ref(y: Tensor) -> Tensor:
    q, p = y[..., :2], y[..., 2:]
    return p.square().sum(-1) / (2 * KEPLER["m"]) - KEPLER["k"] * KEPLER["m"] / q.norm(dim=-1)


# ---------------------------------------------------------------------------------------- harmonic chain
def harmonic_chain(n: int, k: float = 2.0, m: float = 0.5, learnable: bool = True) -> Hamiltonian:
    """n equal masses between two fixed walls, joined by n + 1 equal springs."""
    qs = [f"q{i}" for i in range(n)]
    ps = [f"p{i}" for i in range(n)]
    kinetic = " + ".join(f"{p}**2" for p in ps)
    walls = ["0", *qs, "0"]
    springs = " + ".join(f"({walls[i + 1]} - {walls[i]})**2" for i in range(n + 1))
    H = f"({kinetic})/(2*m) + k*({springs})/2"
    return Hamiltonian(H, qs, ps, {"k": Param(k, positive=learnable, learnable=learnable), "m": m}).double()


def harmonic_chain_ref(k: float = 2.0, m: float = 0.5):
    def f(t: Tensor, y: Tensor) -> Tensor:
        n = y.shape[-1] // 2
        q, p = y[..., :n], y[..., n:]
        padded = torch.nn.functional.pad(q, (1, 1))
        force = k * (padded[..., :-2] - 2 * q + padded[..., 2:])
        return torch.cat([p / m, force], -1)

    return f


# ---------------------------------------------------------------------------------------- Lotka–Volterra
LV = {"a": 1.1, "b": 0.4, "c": 0.9, "d": 0.25}


def lotka_volterra() -> SymbolicODE:
    return SymbolicODE(
        {"x": "a*x - b*x*y", "y": "d*x*y - c*y"}, ["x", "y"], {k: Param(v, positive=True) for k, v in LV.items()}
    ).double()


def lotka_volterra_ref(t: Tensor, y: Tensor) -> Tensor:
    x, z = y[..., 0], y[..., 1]
    return torch.stack([LV["a"] * x - LV["b"] * x * z, LV["d"] * x * z - LV["c"] * z], -1)


# ------------------------------------------------------------------------------------- forced oscillator
def forced_oscillator() -> SymbolicODE:
    """The physnode.physics version of tests/systems.py TimeDependent (parameters 1.3, 0.2, 0.7, 2.1)."""
    return SymbolicODE(
        ["v", "-k*x - c*v + a*sin(w*t)"], ["x", "v"], {"k": Param(1.3), "c": Param(0.2), "a": Param(0.7), "w": 2.1}
    ).double()


class TinyNet(nn.Module):
    """A small residual network of the state."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, 8), nn.Tanh(), nn.Linear(8, d_out)).double()

    def forward(self, y: Tensor) -> Tensor:
        return self.net(y)


# ------------------------------------------------------------------------------- one example of each model
def nbody_2d() -> NBodyGravity:
    """Two bodies in the plane with learnable ``G`` and masses."""
    return NBodyGravity(2, dim=2, G=Param(1.0, positive=True), masses=Param([1.0, 0.5], positive=True)).double()


def hybrid_kepler() -> Hybrid:
    """Kepler's Hamiltonian plus a small neural residual on the velocities."""
    return Hybrid(kepler_hamiltonian(), TinyNet(4, 2), on="velocities")


#: One example system of every physics model class: class → (builder, a typical initial state). A new model
#: class in :mod:`physnode.physics` needs one line here (``test_physics_catalogue.py`` checks that each class of
#: ``registries.PHYSICS_MODELS`` has one) and then gets the catalogue's tests.
PHYSICS_EXAMPLES: dict[type, tuple[Callable[[], nn.Module], list[float]]] = {
    Lagrangian: (double_pendulum_lagrangian, [0.3, -0.2, 0.1, 0.0]),
    Hamiltonian: (kepler_hamiltonian, [1.0, 0.0, 0.0, 1.1]),
    SymbolicODE: (lotka_volterra, [2.0, 1.0]),
    NBodyGravity: (nbody_2d, [1.0, 0.0, -0.5, 0.0, 0.0, 0.3, 0.0, -0.6]),
    Hybrid: (hybrid_kepler, [1.0, 0.0, 0.0, 1.1]),
}
