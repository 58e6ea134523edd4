"""Interventions: on a SymbolicODE they equal solving the modified equations; on learned models they clamp."""

from __future__ import annotations

import pytest
import torch

import physnode
from physnode.causal import Intervened, StructuredODE, forecast, intervene, prediction_error
from physnode.data import Trajectories
from physnode.physics import Hybrid, Param, SymbolicODE

F64 = torch.float64
TOL = {"method": "dopri5", "rtol": 1e-10, "atol": 1e-12}


def chain() -> SymbolicODE:
    """x -> y -> z with a learnable rate k and a known constant c."""
    return SymbolicODE(["-x", "k*x - y", "c*y - z"], ["x", "y", "z"], {"k": Param(1.5, positive=True), "c": 0.8})


def test_state_intervention_equals_solving_the_modified_equations() -> None:
    """do(y = 0.7): dy/dt = 0 and y replaced by 0.7 in the other equations; both solves at rtol 1e-10 agree to
    1e-8 (two independent adaptive solves of the same ODE)."""
    y0 = torch.tensor([[1.0, -0.3, 0.2], [0.5, 2.0, -1.0]], dtype=F64)
    t = torch.linspace(0, 3, 13, dtype=F64)
    model = chain()
    do_model = intervene(model, {"y": 0.7})
    modified = SymbolicODE(["-x", "0", "c*0.7 - z"], ["x", "y", "z"], {"c": 0.8})
    y0_do = y0.clone()
    y0_do[:, 1] = 0.7
    got = physnode.odeint(do_model, y0_do, t, **TOL)
    ref = physnode.odeint(modified, y0_do, t, **TOL)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-8)
    # forecast applies the held value to the initial state itself
    out = forecast(model, y0, t, do={"y": 0.7}, **TOL)
    torch.testing.assert_close(out.values, ref, rtol=0, atol=1e-8)
    assert out.attrs["do"] == {"y": 0.7}
    # the original model is unchanged
    assert float(model.params.k().detach()) == pytest.approx(1.5)


def test_parameter_intervention_equals_the_model_with_that_value() -> None:
    y0 = torch.tensor([[1.0, -0.3, 0.2]], dtype=F64)
    t = torch.linspace(0, 2, 5, dtype=F64)
    model = chain()
    do_model = intervene(model, {"k": 2.0})
    assert not isinstance(do_model, Intervened) and do_model is not model
    ref = SymbolicODE(["-x", "2.0*x - y", "0.8*y - z"], ["x", "y", "z"])
    torch.testing.assert_close(
        physnode.odeint(do_model, y0, t, **TOL), physnode.odeint(ref, y0, t, **TOL), rtol=0, atol=1e-8
    )
    assert not do_model.params.k.learnable and model.params.k.learnable
    # mixed: a parameter and a state variable in one do
    mixed = intervene(model, {"k": 2.0, "x": 0.0})
    assert isinstance(mixed, Intervened) and float(mixed.base.params.k()) == 2.0
    torch.testing.assert_close(mixed(torch.zeros(1, dtype=F64), y0)[:, 0], torch.zeros(1, dtype=F64))


def test_parameter_intervention_on_a_hybrid_reaches_the_physics() -> None:
    net = torch.nn.Linear(3, 3).double()
    model = Hybrid(chain(), net)
    do_model = intervene(model, {"k": 3.0})
    assert float(do_model.physics.params.k()) == 3.0 and float(model.physics.params.k().detach()) == pytest.approx(1.5)


def test_learned_model_clamp_and_second_order_velocity() -> None:
    m = StructuredODE(3, order=2, hidden=(4,))
    im = intervene(m, {"x2": 0.5})
    y = torch.randn(6, 6, dtype=F64)
    f = im(None, y)
    assert bool((f[:, [1, 4]] == 0).all())  # x2 and its velocity v2 are held
    y_held = y.clone()
    y_held[:, 1], y_held[:, 4] = 0.5, 0.0
    torch.testing.assert_close(f[:, [0, 2, 3, 5]], m(None, y_held)[:, [0, 2, 3, 5]], rtol=0, atol=0)
    first = intervene(StructuredODE(3), {"x3": -1.0})
    assert first.index.tolist() == [2]


def test_prediction_error_under_intervention() -> None:
    """The true model under do() has zero error on data generated from it."""
    model = chain()
    y0 = torch.tensor([[1.0, -0.3, 0.2], [0.5, 2.0, -1.0]], dtype=F64)
    t = torch.linspace(0, 2, 7, dtype=F64)
    truth = forecast(model, y0, t, do={"z": 0.1}, **TOL)
    meta = [{"initial_state": y0[i].tolist(), "initial_time": 0.0} for i in range(2)]
    data = Trajectories(t.expand(2, -1), truth.values, channels=["x", "y", "z"], metadata=meta)
    err = prediction_error(intervene(model, {"z": 0.1}), data, **TOL)
    assert err < 1e-16
    assert prediction_error(model, data, **TOL) > 1e-4  # the unintervened model does not fit


@pytest.mark.parametrize(
    ("do", "match"),
    [
        ({"w": 1.0}, r"do names 'w', which is neither a state variable nor a parameter.*x, y, z.*k, c"),
        ({"x": float("nan")}, r"do\['x'\] must be a finite number"),
        ({}, "non-empty dict"),
    ],
    ids=["unknown-name", "nan-value", "empty"],
)
def test_errors(do: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        intervene(chain(), do)


def test_unknown_variable_of_a_learned_model() -> None:
    with pytest.raises(ValueError, match=r"do names 'x9'.*State variables: x1, x2, x3.*parameters: \(none\)"):
        intervene(StructuredODE(3), {"x9": 0.0})


def test_intervened_true_spring_network_reproduces_the_zoo_do_data() -> None:
    """Holding a mass of the second-order spring network means x_k = c and v_k = 0 from t0 on, in the data
    generator (``do=``) and in ``intervene`` on a model with ``order == 2`` alike: the true right-hand side under
    ``intervene`` reproduces the generated interventional data (dopri5 at rtol 1e-10 against the generator's
    dopri8 at 1e-10: two independent accurate solves, agreement to 1e-7 relative)."""
    from physnode.datasets import make
    from physnode.datasets.networks import SpringNetwork, spring_system

    data = make("spring_network", n_masses=4, n_trajectories=3, n_times=12, t_span=(0.0, 4.0), do={"x2": 0.8})
    K, masses, _ = spring_system(4, 2.0, 0)

    class Truth(torch.nn.Module):
        state_names = data.attrs["state_names"]
        order = 2

        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return SpringNetwork(K, masses, 1.0, 0.1)(t, y)

    held = intervene(Truth(), {"x2": 0.8})
    assert sorted(held.index.tolist()) == [1, 5]  # x2 and v2
    assert bool((data.values[..., 1] == 0.8).all()) and bool((data.values[..., 5] == 0).all())
    assert prediction_error(held, data, relative=True, **TOL) < 1e-14  # squared: 1e-7 relative
    assert prediction_error(Truth(), data, relative=True, **TOL) > 1e-3  # the unheld system does not fit
