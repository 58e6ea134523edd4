"""Every physics model class has an example system, and every example passes the same checks.

The classes come from ``registries.PHYSICS_MODELS`` (all ``PhysicsModel`` subclasses that
:mod:`physnode.physics` exports); the examples from ``physics_systems.PHYSICS_EXAMPLES``.
"""

from __future__ import annotations

import pytest
import torch
from physics_systems import PHYSICS_EXAMPLES
from registries import ALL_GRADIENTS, PHYSICS_MODELS, solver_for

import physnode
from physnode.physics import PhysicsModel

NAMES = [cls.__name__ for cls in PHYSICS_MODELS]


@pytest.mark.parametrize("model_cls", PHYSICS_MODELS, ids=NAMES)
def test_every_model_class_has_an_example(model_cls: type) -> None:
    assert model_cls in PHYSICS_EXAMPLES, (
        f"{model_cls.__name__} has no example system: add one line to PHYSICS_EXAMPLES in "
        "tests/physics/physics_systems.py"
    )
    build, _ = PHYSICS_EXAMPLES[model_cls]
    assert isinstance(build(), model_cls)


@pytest.mark.parametrize("model_cls", PHYSICS_MODELS, ids=NAMES)
def test_batched_forward_matches_one_by_one(model_cls: type) -> None:
    build, state = PHYSICS_EXAMPLES[model_cls]
    model = build()
    y = torch.tensor(state, dtype=torch.float64) + 0.05 * torch.randn(3, len(state), dtype=torch.float64)
    t = torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64)
    out = model(t, y)
    assert out.shape == y.shape and torch.isfinite(out).all()
    for b in range(3):
        torch.testing.assert_close(model(t[b : b + 1], y[b : b + 1])[0], out[b], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("grad", ALL_GRADIENTS, ids=ALL_GRADIENTS)
@pytest.mark.parametrize("model_cls", PHYSICS_MODELS, ids=NAMES)
def test_every_gradient_reaches_every_parameter(model_cls: type, grad: str) -> None:
    build, state = PHYSICS_EXAMPLES[model_cls]
    model: PhysicsModel = build()
    method = solver_for(grad)
    kw: dict = dict(method=method, grad=grad, rtol=1e-5, atol=1e-7)
    if not physnode.SOLVERS.build(method).adaptive:
        kw["step_size"] = 0.01
    t = torch.linspace(0.0, 0.3, 3, dtype=torch.float64)
    ys = physnode.odeint(model, torch.tensor(state, dtype=torch.float64), t, **kw)
    params = dict(model.named_parameters())
    assert params, f"the {model_cls.__name__} example has no learnable parameter to check"
    grads = torch.autograd.grad((ys[-1] ** 2).sum() + ys.sin().sum(), list(params.values()))
    for name, g in zip(params, grads, strict=True):
        assert torch.isfinite(g).all() and g.abs().max() > 0, f"{grad}: no gradient reaches {name}"
