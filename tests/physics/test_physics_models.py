"""Each physics model's right-hand side against an independent hand-written torch reference."""

from __future__ import annotations

import pytest
import sympy as sp
import torch
from physics_systems import (
    KEPLER,
    LV,
    TinyNet,
    double_pendulum_lagrangian,
    double_pendulum_ref,
    forced_oscillator,
    harmonic_chain,
    harmonic_chain_ref,
    kepler_energy_ref,
    kepler_hamiltonian,
    kepler_ref,
    lotka_volterra,
    lotka_volterra_ref,
    pendulum_lagrangian,
    pendulum_ref,
)
from systems import K1, K2, ThreeBody, TimeDependent, three_body_y0

import physnode
from physnode.physics import Hamiltonian, Hybrid, Lagrangian, NBodyGravity, Param, SymbolicODE

RTOL, ATOL = 1e-12, 1e-12


def _three_body_model() -> NBodyGravity:
    return NBodyGravity(3, dim=3, G=1.0, masses=Param([1.1, 1.1, 0.9]), k_r=K2, k_v=K1).double()


CASES = {
    "pendulum": (pendulum_lagrangian, pendulum_ref, 2),
    "double_pendulum": (double_pendulum_lagrangian, double_pendulum_ref, 4),
    "kepler": (kepler_hamiltonian, kepler_ref, 4),
    "harmonic_chain": (lambda: harmonic_chain(5), harmonic_chain_ref(), 10),
    "lotka_volterra": (lotka_volterra, lotka_volterra_ref, 2),
    "three_body": (_three_body_model, ThreeBody(), 18),
}


def _states(D: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    y = torch.randn(*shape, D, dtype=torch.float64, device=device)
    return y + 0.5  # keep Kepler / N-body away from the singularity at the origin


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
@pytest.mark.parametrize("shape", [(), (7,), (3, 4)], ids=["unbatched", "batch", "batch2d"])
def test_rhs_matches_reference(name: str, shape: tuple[int, ...], device: torch.device) -> None:
    build, ref, D = CASES[name]
    model = build().to(device)
    if isinstance(ref, torch.nn.Module):
        ref = ref.to(device)
    y = _states(D, shape, device)
    t = torch.rand(shape, dtype=torch.float64, device=device)
    out = model(t, y)
    assert out.shape == y.shape
    torch.testing.assert_close(out, ref(t, y), rtol=RTOL, atol=ATOL)


def test_three_body_gradients_match_reference() -> None:
    """Unconstrained learnable masses: gradients equal those of the hand-written reference."""
    model, ref = _three_body_model(), ThreeBody()
    y = three_body_y0().unsqueeze(0).repeat(3, 1) + 0.01 * torch.randn(3, 18, dtype=torch.float64)
    t = torch.zeros(3, dtype=torch.float64)
    w = torch.randn(3, 18, dtype=torch.float64)
    (g_model,) = torch.autograd.grad((model(t, y) * w).sum(), model.params["masses"].raw)
    (g_ref,) = torch.autograd.grad((ref(t, y) * w).sum(), ref.masses)
    torch.testing.assert_close(g_model, g_ref, rtol=1e-12, atol=0)


def test_three_body_solve_matches_reference() -> None:
    model, ref = _three_body_model(), ThreeBody()
    y0 = three_body_y0()
    t = torch.linspace(0, 0.5, 4, dtype=torch.float64)
    with torch.no_grad():
        a = physnode.odeint(model, y0, t, method="rk4", step_size=0.01)
        b = physnode.odeint(ref, y0, t, method="rk4", step_size=0.01)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_per_trajectory_time() -> None:
    """A time-dependent SymbolicODE equals tests/systems.py TimeDependent with per-trajectory t, in a solve too."""
    model, ref = forced_oscillator(), TimeDependent()
    y = torch.randn(5, 2, dtype=torch.float64)
    t = torch.linspace(-1, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(model(t, y), ref(t, y), rtol=RTOL, atol=ATOL)
    times = torch.stack([torch.linspace(s, s + 2, 6, dtype=torch.float64) for s in (0.0, 0.3, 1.7, -2.0, 5.0)])
    with torch.no_grad():
        a = physnode.odeint(model, y, times, rtol=1e-9, atol=1e-11)
        b = physnode.odeint(ref, y, times, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_constant_components_broadcast() -> None:
    """Components that are numbers or functions of the parameters only still give batch-shaped tensors."""
    model = SymbolicODE(["1", "k", "2*k + 0*x", "sqrt(2)*x"], ["x", "y", "z", "w"], {"k": Param(0.5)}).double()
    y = torch.randn(4, 3, 4, dtype=torch.float64)
    out = model(torch.zeros(4, 3, dtype=torch.float64), y)
    assert out.shape == (4, 3, 4)
    torch.testing.assert_close(out[..., 0], torch.ones(4, 3, dtype=torch.float64))
    torch.testing.assert_close(out[..., 1], torch.full((4, 3), 0.5, dtype=torch.float64))
    torch.testing.assert_close(out[..., 2], torch.full((4, 3), 1.0, dtype=torch.float64))
    torch.testing.assert_close(out[..., 3], 2**0.5 * y[..., 0], rtol=1e-15, atol=0)
    (g,) = torch.autograd.grad(out[..., 1].sum(), model.params["k"].raw)
    assert float(g) == 12.0


def test_kepler_energy_and_separability() -> None:
    model = kepler_hamiltonian()
    y = _states(4, (6,), torch.device("cpu"))
    torch.testing.assert_close(model.energy(torch.zeros(6, dtype=torch.float64), y), kepler_energy_ref(y))
    assert model.separable
    assert not Hamiltonian("p**2/2 + q**2*p", ["q"], ["p"]).separable
    assert not Hamiltonian("p**2/2 + q**2*t", ["q"], ["p"]).separable


def test_lagrangian_separability() -> None:
    assert pendulum_lagrangian().separable
    assert not double_pendulum_lagrangian().separable  # the mass matrix depends on a - b


def test_nbody_energy_is_conserved_by_its_equations() -> None:
    """dE/dt = ∇E · f = 0 for the scaled, softened equations (checked with autograd)."""
    model = NBodyGravity(4, dim=2, G=0.7, masses=[1.0, 2.0, 0.5, 1.5], softening=0.1, k_r=1.7, k_v=0.4).double()
    y = torch.randn(3, 16, dtype=torch.float64, requires_grad=True)
    t = torch.zeros(3, dtype=torch.float64)
    (grad_e,) = torch.autograd.grad(model.energy(t, y).sum(), y)
    dEdt = (grad_e * model(t, y)).sum(-1)
    torch.testing.assert_close(dEdt, torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_equations_read_back_current_values() -> None:
    model = lotka_volterra()
    with torch.no_grad():
        model.params["b"].set_(0.75)
    x, y = sp.Function("x")(sp.Symbol("t", real=True)), sp.Function("y")(sp.Symbol("t", real=True))
    eqs = model.equations()
    assert len(eqs) == 2
    rhs_x = eqs[0].rhs
    assert abs(float(rhs_x.coeff(x * y)) + 0.75) < 1e-12
    assert abs(float(rhs_x.coeff(x).subs(y, 0)) - LV["a"]) < 1e-12
    phys = model.physical_parameters()
    assert set(phys) == set(LV)
    assert abs(float(phys["b"].detach()) - 0.75) < 1e-12
    ham = kepler_hamiltonian().hamiltonian()
    assert not (ham.free_symbols & {sp.Symbol("m", positive=True), sp.Symbol("k", positive=True)})
    assert (
        abs(
            float(ham.subs({sp.Symbol(n, real=True): v for n, v in {"x": 1.0, "y": 0.0, "px": 0.0, "py": 0.0}.items()}))
            + KEPLER["k"] * KEPLER["m"]
        )
        < 1e-12
    )
    lag = pendulum_lagrangian().equations()
    assert len(lag) == 1 and "theta_ddot" in str(lag[0])


def test_hybrid_adds_residual_on_chosen_components() -> None:
    physics = kepler_hamiltonian()
    net = TinyNet(4, 2)
    model = Hybrid(physics, net, on="velocities")
    y = _states(4, (5,), torch.device("cpu"))
    t = torch.zeros(5, dtype=torch.float64)
    expected = kepler_ref(t, y) + torch.cat([torch.zeros(5, 2, dtype=torch.float64), net(y)], -1)
    torch.testing.assert_close(model(t, y), expected, rtol=RTOL, atol=ATOL)
    with model.without_correction():
        torch.testing.assert_close(model(t, y), kepler_ref(t, y), rtol=RTOL, atol=ATOL)
    assert model.correction_enabled
    assert set(model.physical_parameters()) == {"m", "k"}
    assert not model.separable
    names = {n for n, _ in model.named_parameters()}
    assert {"physics.params.m.raw", "physics.params.k.raw"} <= names and any(n.startswith("correction") for n in names)

    class TimeNet(torch.nn.Module):
        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return t.unsqueeze(-1) * y[..., :1]

    m2 = Hybrid(physics, TimeNet(), on=[3])
    t2 = torch.rand(5, dtype=torch.float64)
    expected2 = kepler_ref(t2, y)
    expected2[..., 3] += t2 * y[..., 0]
    torch.testing.assert_close(m2(t2, y), expected2, rtol=RTOL, atol=ATOL)


def test_hybrid_errors() -> None:
    physics = kepler_hamiltonian()
    with pytest.raises(ValueError, match="on indices must be integers in"):
        Hybrid(physics, TinyNet(4, 1), on=[7])
    with pytest.raises(ValueError, match="on must be 'all'"):
        Hybrid(physics, TinyNet(4, 1), on="accelerations")
    with pytest.raises(TypeError, match="must be a physnode.physics model"):
        Hybrid(kepler_ref, TinyNet(4, 4))  # type: ignore[arg-type]
    bad = Hybrid(physics, TinyNet(4, 3), on="velocities")
    with pytest.raises(ValueError, match=r"must return shape \(5, 2\)"):
        bad(torch.zeros(5, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64))


def test_model_input_errors() -> None:
    model = kepler_hamiltonian()
    with pytest.raises(ValueError, match=r"expects a state y of shape \(\.\.\., 4\)"):
        model(torch.zeros(2, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="one momentum per coordinate"):
        Hamiltonian("p**2", ["q", "r"], ["p"])
    with pytest.raises(ValueError, match="undeclared"):
        Hamiltonian(sp.Symbol("p") ** 2 + sp.Symbol("omega") * sp.Symbol("q") ** 2, ["q"], ["p"])
    with pytest.raises(ValueError, match="both as a parameter and as a state"):
        SymbolicODE(["x"], ["x"], {"x": 1.0})
    with pytest.raises(ValueError, match="one expression per state variable"):
        SymbolicODE(["x", "x"], ["x"])
    with pytest.raises(ValueError, match="mass matrix"):
        Lagrangian("cos(q)", ["q"])
    with pytest.raises(ValueError, match="masses must have shape"):
        NBodyGravity(3, masses=[1.0, 2.0])
    with pytest.raises(ValueError, match="scalar parameters only"):
        SymbolicODE(["k*x"], ["x"], {"k": Param([1.0, 2.0])})


def test_linear_systems_compile_to_one_matrix_product() -> None:
    """Affine-in-state right-hand sides (chain, forced oscillator) take the matrix path; nonlinear ones do not,
    and both paths agree with the generic component-wise code."""
    chain, forced, kepler = harmonic_chain(5), forced_oscillator(), kepler_hamiltonian()
    assert chain.compiled.linear is not None and forced.compiled.linear is not None
    assert kepler.compiled.linear is None
    for model in (chain, forced):
        y = torch.randn(3, model.compiled.n_state, dtype=torch.float64)
        t = torch.rand(3, dtype=torch.float64)
        params = model.param_values()
        generic = model.compiled._stack(model.compiled.function(t, *y.unbind(-1), *params), y)
        torch.testing.assert_close(model.compiled(t, y, params), generic, rtol=1e-14, atol=1e-14)


def test_nbody_state_names_match_the_dataset_channels() -> None:
    """NBodyGravity names its state like physnode.datasets, so data channels map to state components by name."""
    from physnode.datasets import three_body
    from physnode.physics import NBodyGravity

    data = three_body(n_times=3)
    model = NBodyGravity(3, dim=3)
    assert model.state_names == data.attrs["state_names"]
    assert set(data.channels) <= set(model.state_names)
    assert NBodyGravity(2, dim=2).state_names == ["x1", "y1", "x2", "y2", "vx1", "vy1", "vx2", "vy2"]
