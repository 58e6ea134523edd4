"""The zoo's generators against independent references, plus determinism and options."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from physnode.datasets import DATASETS, SYSTEMS, Parameter, System, generate, make
from physnode.datasets.regenerate import differences


def _clean(tr):
    """Observed values where all channels are present, as (N, T, D) with lengths."""
    assert bool(tr.mask[tr.time_mask].all())
    return tr.values, tr.times


def test_three_body_aca_constants_and_metadata():
    tr = make("three_body", n_times=11, t_span=(0.0, 0.1))
    m = tr.metadata[0]
    assert m["parameters"]["masses"] == [1.1, 1.1, 0.9]
    assert abs(m["parameters"]["K1"] - 0.2005) < 5e-5 and abs(m["parameters"]["K2"] - 7.239) < 5e-4
    assert m["initial_state"] == [0, 0.2, 0, 0.5, 0, 0.5, 0, 0, 0.5, 0, 0.1, 0, 0, 0, 0.1, 0.1, 0, 0]
    assert tr.channels == ["x1", "y1", "z1", "x2", "y2", "z2", "x3", "y3", "z3"]
    assert tr.attrs["t_split"] == 0.05  # the middle of t_span: 1.0 for the default (0, 2)
    assert make("three_body", n_times=3, t_span=(0.0, 0.01)).attrs["options"]["t_span"] == [0.0, 0.01]
    # default sampling: 1000 points on the observation window [0, 1]
    default_times = torch.linspace(0, 2, 1999, dtype=torch.float64)
    assert int((default_times <= 1.0).sum()) == 1000


def test_three_body_matches_scipy_dop853():
    tr = make("three_body", n_times=101)
    p = tr.metadata[0]["parameters"]
    K1, K2, masses = p["K1"], p["K2"], np.array(p["masses"])

    def f(t, y):
        r, v = y[:9].reshape(3, 3), y[9:].reshape(3, 3)
        a = np.zeros((3, 3))
        for i in range(3):
            for j in range(3):
                if i != j:
                    d = r[j] - r[i]
                    a[i] += masses[j] * d / np.linalg.norm(d) ** 3
        return np.concatenate([K2 * v.ravel(), K1 * a.ravel()])

    t = tr.times[0].numpy()
    sol = solve_ivp(
        f, (t[0], t[-1]), np.array(tr.metadata[0]["initial_state"]), method="DOP853", t_eval=t, rtol=1e-12, atol=1e-14
    )
    assert sol.success
    err = np.abs(sol.y[:9].T - tr.values[0].numpy()).max()
    assert err < 1e-7, err  # measured ~1e-10 (chaotic close encounters amplify both solvers' errors)


def _kepler_position(a: float, e: float, w: float, mu: float, t: np.ndarray) -> np.ndarray:
    M = math.sqrt(mu / a**3) * t
    E = M.copy()
    for _ in range(50):  # Newton on Kepler's equation E - e sin E = M
        E = E - (E - e * np.sin(E) - M) / (1 - e * np.cos(E))
    xp, yp = a * (np.cos(E) - e), a * math.sqrt(1 - e * e) * np.sin(E)
    return np.stack([xp * math.cos(w) - yp * math.sin(w), xp * math.sin(w) + yp * math.cos(w)], axis=-1)


def test_kepler_matches_keplers_equation():
    tr = make("kepler", n_trajectories=3, n_times=60, irregular=True, seed=4)
    for i in range(3):
        o = tr.metadata[i]["orbit"]
        n = int(tr.lengths[i])
        ref = _kepler_position(o["a"], o["e"], o["omega"], 1.0, tr.times[i, :n].numpy())
        assert np.abs(ref - tr.values[i, :n].numpy()).max() < 1e-8


def test_pendulum_conserves_energy():
    tr = make("pendulum", n_trajectories=4, n_times=100)
    th, om = tr.values[..., 0], tr.values[..., 1]
    E = 0.5 * om**2 - 9.81 * torch.cos(th)
    assert float((E - E[:, :1]).abs().max()) < 1e-8


def test_double_pendulum_conserves_energy():
    tr = make(
        "double_pendulum",
        n_trajectories=3,
        n_times=50,
        t_span=(0.0, 3.0),
        observe=["theta1", "theta2", "omega1", "omega2"],
    )
    th1, th2, w1, w2 = tr.values.unbind(-1)
    m1 = m2 = l1 = l2 = 1.0
    g = 9.81
    kin = 0.5 * (m1 + m2) * l1**2 * w1**2 + 0.5 * m2 * l2**2 * w2**2 + m2 * l1 * l2 * w1 * w2 * torch.cos(th1 - th2)
    pot = -(m1 + m2) * g * l1 * torch.cos(th1) - m2 * g * l2 * torch.cos(th2)
    E = kin + pot
    assert float((E - E[:, :1]).abs().max()) < 1e-7


def test_damped_oscillator_closed_form():
    tr = make("damped_oscillator", n_trajectories=3, n_times=40, irregular=True, seed=2)
    w0, z = 1.0, 0.1
    wd = w0 * math.sqrt(1 - z * z)
    for i in range(3):
        x0, v0 = tr.metadata[i]["initial_state"]
        n = int(tr.lengths[i])
        t = tr.times[i, :n]
        x = torch.exp(-z * w0 * t) * (x0 * torch.cos(wd * t) + (v0 + z * w0 * x0) / wd * torch.sin(wd * t))
        assert float((x - tr.values[i, :n, 0]).abs().max()) < 1e-9


def test_mass_spring_chain_matrix_exponential():
    tr = make("mass_spring_chain", n_trajectories=2, n_times=30, observe=[f"x{i}" for i in range(1, 5)] + ["v1"])
    n = 4
    L = -2 * torch.eye(n, dtype=torch.float64) + torch.diag(torch.ones(n - 1, dtype=torch.float64), 1)
    L = L + torch.diag(torch.ones(n - 1, dtype=torch.float64), -1)
    A = torch.zeros(2 * n, 2 * n, dtype=torch.float64)
    A[:n, n:] = torch.eye(n, dtype=torch.float64)
    A[n:, :n] = L
    for i in range(2):
        y0 = torch.tensor(tr.metadata[i]["initial_state"], dtype=torch.float64)
        ref = torch.stack([torch.linalg.matrix_exp(A * t) @ y0 for t in tr.times[i]])
        assert float((ref[:, [0, 1, 2, 3, 4]] - tr.values[i]).abs().max()) < 1e-9


def test_lotka_volterra_invariant():
    tr = make("lotka_volterra", n_trajectories=3, n_times=50)
    x, y = tr.values[..., 0], tr.values[..., 1]
    V = 1.0 * x - 3.0 * torch.log(x) + 1.0 * y - 1.5 * torch.log(y)
    assert float((V - V[:, :1]).abs().max()) < 1e-8


def test_n_body_conserves_momentum():
    tr = make("n_body", n=3, dim=2, n_trajectories=2, n_times=20, t_span=(0.0, 0.5))
    full = make(
        "n_body",
        n=3,
        dim=2,
        n_trajectories=2,
        n_times=20,
        t_span=(0.0, 0.5),
        observe=["vx1", "vy1", "vx2", "vy2", "vx3", "vy3"],
    )
    p = full.values.unflatten(-1, (3, 2)).sum(-2)  # unit masses
    assert float((p - p[:, :1]).abs().max()) < 1e-9
    assert tr.channels == ["x1", "y1", "x2", "y2", "x3", "y3"]


@pytest.mark.parametrize("name", ["pendulum", "kepler", "n_body"])
def test_deterministic_by_seed(name):
    opts = {"n_trajectories": 2, "n_times": 20, "irregular": True, "noise": 0.01, "missing": 0.3}
    opts["t_span"] = (0.0, 1.0)
    a, b = make(name, seed=5, **opts), make(name, seed=5, **opts)
    # same seed: the same data up to round-off (names, masks and lengths exactly); another seed: other data
    assert differences(a, b) == []
    assert differences(make(name, seed=6, **opts), a) != []


def test_irregular_noise_missing_options():
    clean = make("damped_oscillator", n_trajectories=50, n_times=40, irregular=True, seed=1)
    noisy = make("damped_oscillator", n_trajectories=50, n_times=40, irregular=True, seed=1, noise=0.05)
    # irregular: own counts and times per trajectory, t0 first, all inside the window
    assert len(set(clean.lengths.tolist())) > 1 and int(clean.lengths.min()) >= 20
    assert bool((clean.times[:, 0] == 0).all())
    assert bool((clean.times[clean.time_mask] <= 20.0).all())
    assert not torch.equal(clean.times[0], clean.times[1])
    # noise: same times (drawn before the noise), residual std close to 0.05
    assert torch.equal(clean.times, noisy.times)
    res = (noisy.values - clean.values)[clean.mask]
    assert 0.045 < float(res.std()) < 0.055
    holes = make("damped_oscillator", n_trajectories=50, n_times=40, seed=1, missing=0.3)
    assert 0.25 < 1 - float(holes.mask.float().mean()) < 0.35


def test_make_errors():
    with pytest.raises(ValueError, match="unknown dataset 'pendulm'.*Did you mean 'pendulum'"):
        make("pendulm")
    with pytest.raises(ValueError, match="unknown option"):
        make("pendulum", n_traj=3)
    with pytest.raises(ValueError, match="observe must name"):
        make("pendulum", observe=["phi"], n_times=5)
    with pytest.raises(ValueError, match="missing must be a rate"):
        make("pendulum", missing=1.5)
    assert set(DATASETS) >= {
        "three_body",
        "n_body",
        "kepler",
        "pendulum",
        "double_pendulum",
        "mass_spring_chain",
        "damped_oscillator",
        "lotka_volterra",
    }


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_generator_is_generate_of_its_system(name):
    """Each registered generator is ``generate`` of its record, with the record's defaults in its signature."""
    system = SYSTEMS[name]
    sig = inspect.signature(DATASETS[name]).parameters
    assert sig["n_trajectories"].default == system.n_trajectories and sig["n_times"].default == system.n_times
    assert tuple(sig["t_span"].default) == system.t_span and sig["random_initial"].default == system.random_initial
    a = DATASETS[name](n_trajectories=2, n_times=12, seed=3)
    b = generate(system, n_trajectories=2, n_times=12, seed=3)
    assert differences(a, b) == []
    assert a.attrs["title"] == system.spec().title and a.time_units == system.time_units


def test_sizes_by_position_and_constants_are_not_options():
    chain = DATASETS["mass_spring_chain"](3, n_trajectories=1, n_times=5, random_initial=False)
    assert chain.channels == ["x1", "x2", "x3"] and chain.attrs["parameters"]["n_masses"] == 3
    assert chain.attrs["title"] == "Chain of 3 masses and 4 springs between fixed walls"
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['K1'\] for dataset 'three_body'"):
        make("three_body", K1=1.0)
    with pytest.raises(TypeError, match=r"pendulum\(\): too many positional arguments; accepted: n_trajectories"):
        DATASETS["pendulum"](3)


def test_a_new_system_is_one_record():
    """A system written as a record alone gets sampling, noise, masks and metadata from ``generate``."""
    decay = System(
        name="decay",
        title="Exponential decay",
        equations="dx/dt = -k x",
        states=(("x", "mol"),),
        parameters={"k": Parameter(0.5, "s-1", "rate constant")},
        time_units="s",
        t_span=(0.0, 4.0),
        initial_conditions="x ~ U(1, 2) mol",
        initial=lambda gen, n, random_initial, p, o: 1 + torch.rand(n, 1, generator=gen, dtype=torch.float64),
        rhs=lambda p: lambda t, y: -p["k"] * y,
        n_trajectories=3,
        n_times=9,
    )
    tr = generate(decay, k=0.25, missing=0.2, seed=2)
    assert tr.values.shape == (3, 9, 1) and tr.attrs["parameters"] == {"k": 0.25}
    x0 = tr.metadata_tensor("initial_state")[:, 0]
    exact = x0[:, None] * torch.exp(-0.25 * tr.times)
    assert torch.allclose(tr.values[..., 0][tr.mask[..., 0]], exact[tr.mask[..., 0]], rtol=1e-9, atol=0)
    assert 0 < int((~tr.mask).sum()) < 27
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['rate'\] for dataset 'decay'"):
        generate(decay, rate=1.0)
