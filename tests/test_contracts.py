"""The class contracts of solvers and gradient methods are checked, and the registries take one shape."""

from __future__ import annotations

import pytest
from torch import Tensor

from physnode._registry import ContractError, Registry
from physnode.gradients import GRADIENTS, GradientMethod
from physnode.integrate import Integration, Problem
from physnode.solvers import SOLVERS, ExplicitRK, Solver, State, Tableau


class _Euler(Solver):
    """A minimal complete solver; the broken ones below derive from it and spoil one attribute."""

    name = "test_euler"
    order = 1
    adaptive = False
    error_order = 2

    def init(self, func, t0: Tensor, y0: Tensor, h0: Tensor) -> State:
        return (y0,)

    def step(self, func, t: Tensor, h: Tensor, state: State) -> tuple[State, Tensor | None]:
        return (state[0] + h[:, None] * func(t, state[0]),), None


def test_a_complete_solver_builds_and_registers() -> None:
    registry: Registry[Solver] = Registry("method", Solver)
    assert registry.register(_Euler) is _Euler
    assert registry.names() == ["test_euler"]
    assert registry.build("test_euler").order == 1


@pytest.mark.parametrize(
    ("attr", "value", "expected"),
    [("order", "2", "an int >= 1"), ("order", 0, "an int >= 1"), ("adaptive", "no", "True or False")],
    ids=["order-str", "order-zero", "adaptive-str"],
)
def test_a_wrong_class_attribute_fails_at_class_definition(attr: str, value: object, expected: str) -> None:
    with pytest.raises(ContractError, match=rf"Broken breaks the Solver contract: class attribute '{attr}' must be "):
        type("Broken", (_Euler,), {attr: value})
    with pytest.raises(TypeError, match=expected):  # a ContractError is a TypeError
        type("Broken", (_Euler,), {attr: value})


def test_a_missing_attribute_fails_when_an_instance_is_built() -> None:
    class NoOrder(Solver):
        name = "no_order"
        adaptive = False
        error_order = 2

        def init(self, func, t0, y0, h0):  # type: ignore[no-untyped-def]
            return (y0,)

        def step(self, func, t, h, state):  # type: ignore[no-untyped-def]
            return state, None

    with pytest.raises(ContractError, match=r"NoOrder breaks the Solver contract: attribute 'order' must be an int"):
        NoOrder()
    with pytest.raises(ContractError, match="it is missing"):
        NoOrder()


def test_an_attribute_set_in_init_is_checked_on_the_instance() -> None:
    class Damped(_Euler):
        def __init__(self, order: object) -> None:
            self.order = order  # type: ignore[assignment]

    assert Damped(2).order == 2
    with pytest.raises(ContractError, match=r"attribute 'order' must be an int >= 1.*got 1.5"):
        Damped(1.5)


def test_a_tableau_solver_takes_its_name_from_the_tableau() -> None:
    class MyRK(ExplicitRK):
        tableau = Tableau(name="my_rk", c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0), order=2)

    assert MyRK.name == "my_rk" and MyRK().name == "my_rk"


def test_registering_needs_a_class_level_name_and_a_subclass_of_the_base() -> None:
    registry: Registry[Solver] = Registry("method", Solver)

    class Nameless(_Euler):
        name = property(lambda self: "computed")  # type: ignore[assignment]

    with pytest.raises(ContractError, match="class attribute 'name' must be a non-empty string"):
        registry.register(Nameless)
    with pytest.raises(TypeError, match="must be a subclass of Solver"):
        registry.register(int)
    registry.register(_Euler)
    with pytest.raises(ValueError, match="'test_euler' is already registered"):
        registry.register(_Euler)


def test_gradient_method_contract() -> None:
    with pytest.raises(ContractError, match=r"BadExact breaks the GradientMethod contract: .*'exact'"):
        type("BadExact", (GradientMethod,), {"name": "bad", "exact": "yes"})
    with pytest.raises(ContractError, match=r"'solvers' must be a Solver subclass"):
        type("BadSolvers", (GradientMethod,), {"name": "bad", "solvers": int})

    class NoName(GradientMethod):
        def solve(self, problem: Problem) -> Integration:
            raise NotImplementedError

    with pytest.raises(ContractError, match=r"NoName breaks the GradientMethod contract: attribute 'name'"):
        NoName()


@pytest.mark.parametrize("name", SOLVERS.names(), ids=SOLVERS.names())
def test_every_registered_solver_meets_the_contract(name: str) -> None:
    solver = SOLVERS.build(name)
    assert solver.name == name
    assert solver.error_order >= 1 and solver.order >= 1


@pytest.mark.parametrize("grad", GRADIENTS.names(), ids=GRADIENTS.names())
def test_every_gradient_method_names_its_solvers(grad: str) -> None:
    cls = GRADIENTS.cls(grad)
    supported = [n for n in SOLVERS.names() if cls.supports(SOLVERS.cls(n))]
    assert supported, f"grad={grad!r} supports no registered solver"
    if cls.requires_method is not None:
        assert cls.requires_method in supported
